use std::path::{Path, PathBuf};

use serde_json::json;

use super::*;
use crate::model::safetensors::serialize;

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("rill-hf-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn f32s(n: usize) -> Vec<u8> {
    (0..n).flat_map(|i| (i as f32).to_le_bytes()).collect()
}

#[test]
fn maps_names_like_convert_hf_to_gguf() {
    assert_eq!(
        hf_name("token_embd.weight").unwrap(),
        "model.embed_tokens.weight"
    );
    assert_eq!(hf_name("output.weight").unwrap(), "lm_head.weight");
    assert_eq!(
        hf_name("blk.3.attn_q.bias").unwrap(),
        "model.layers.3.self_attn.q_proj.bias"
    );
    assert_eq!(
        hf_name("blk.0.attn_k_norm.weight").unwrap(),
        "model.layers.0.self_attn.k_norm.weight"
    );
    assert_eq!(
        hf_name("blk.1.ffn_down.weight").unwrap(),
        "model.layers.1.mlp.down_proj.weight"
    );
    assert_eq!(
        hf_name("blk.1.ffn_norm.weight").unwrap(),
        "model.layers.1.post_attention_layernorm.weight"
    );
    assert!(hf_name("rope_freqs.weight").is_none());
}

#[test]
fn opens_single_and_sharded_checkpoints() {
    let d = tmpdir("shards");
    let a = f32s(6);
    std::fs::write(
        d.join("a.safetensors"),
        serialize(&[("model.norm.weight", "F32", &[6], &a)]),
    )
    .unwrap();
    std::fs::write(
        d.join("b.safetensors"),
        serialize(&[("lm_head.weight", "F32", &[2, 3], &a)]),
    )
    .unwrap();
    let index = json!({"metadata": {}, "weight_map": {
        "model.norm.weight": "a.safetensors", "lm_head.weight": "b.safetensors"}});
    std::fs::write(d.join("model.safetensors.index.json"), index.to_string()).unwrap();
    let w = HfWeights::open(&d).unwrap();
    let (file, name, t) = w.find("output.weight").unwrap();
    assert_eq!(
        (name.as_str(), t.shape.clone()),
        ("lm_head.weight", vec![2, 3])
    );
    assert!(file.path.ends_with("b.safetensors"));
    let e = w.missing("blk.0.attn_q.weight").to_string();
    assert!(
        e.contains("model.layers.0.self_attn.q_proj.weight") && e.contains("index.json"),
        "{e}"
    );

    // An index that names a tensor its shard lacks, or a shard outside the directory.
    let bad = json!({"weight_map": {"model.norm.weight": "b.safetensors"}});
    std::fs::write(d.join("model.safetensors.index.json"), bad.to_string()).unwrap();
    let e = HfWeights::open(&d).err().unwrap().to_string();
    assert!(
        e.contains("tensor model.norm.weight") && e.contains("b.safetensors"),
        "{e}"
    );
    let bad = json!({"weight_map": {"model.norm.weight": "../a.safetensors"}});
    std::fs::write(d.join("model.safetensors.index.json"), bad.to_string()).unwrap();
    assert!(HfWeights::open(&d)
        .err()
        .unwrap()
        .to_string()
        .contains("plain file name"));
    std::fs::remove_file(d.join("model.safetensors.index.json")).unwrap();
    assert!(HfWeights::open(&d)
        .err()
        .unwrap()
        .to_string()
        .contains("model.safetensors"));
    std::fs::write(
        d.join("model.safetensors"),
        serialize(&[("model.norm.weight", "F32", &[6], &a)]),
    )
    .unwrap();
    assert!(HfWeights::open(&d)
        .unwrap()
        .find("output_norm.weight")
        .is_some());
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn reads_generation_config() {
    let p = Path::new("/m/generation_config.json");
    let v = json!({"do_sample": true, "temperature": 0.6, "top_p": 0.95, "top_k": 20,
        "min_p": 0.0, "repetition_penalty": 1.05, "bos_token_id": 151643,
        "eos_token_id": [151645, 151643], "transformers_version": "4.51.0"});
    let g = GenerationConfig::from_json(p, &v).unwrap();
    assert_eq!(g.eos_token_ids, vec![151645, 151643]);
    assert_eq!(
        (g.temperature, g.top_k, g.do_sample),
        (Some(0.6), Some(20), Some(true))
    );
    assert_eq!((g.top_p, g.repetition_penalty), (Some(0.95), Some(1.05)));
    let g = GenerationConfig::from_json(p, &json!({"eos_token_id": 2})).unwrap();
    assert_eq!((g.eos_token_ids, g.temperature), (vec![2], None));
    for (k, bad) in [
        ("temperature", json!("hot")),
        ("top_k", json!(-1)),
        ("eos_token_id", json!(["x"])),
    ] {
        let e = GenerationConfig::from_json(p, &json!({ k: bad }))
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains(&format!("\"{k}\"")) && e.contains("generation_config.json"),
            "{e}"
        );
    }
    assert_eq!(
        GenerationConfig::read(Path::new("/nonexistent")).unwrap(),
        GenerationConfig::default()
    );
}
