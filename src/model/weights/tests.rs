use std::path::PathBuf;

use serde_json::json;

use crate::model::safetensors::serialize;
use crate::model::{load, ModelSource};

const DIM: usize = 64;
const HD: usize = 32;
const FFN: usize = 64;
const VOCAB: usize = 8;

/// `(hf name, shape)` of a one-layer Qwen2 checkpoint (2 heads of 32, 1 KV head, tied).
fn qwen2_tensors() -> Vec<(String, Vec<usize>)> {
    let l = |s: &str| format!("model.layers.0.{s}");
    vec![
        ("model.embed_tokens.weight".into(), vec![VOCAB, DIM]),
        ("model.norm.weight".into(), vec![DIM]),
        (l("input_layernorm.weight"), vec![DIM]),
        (l("self_attn.q_proj.weight"), vec![2 * HD, DIM]),
        (l("self_attn.q_proj.bias"), vec![2 * HD]),
        (l("self_attn.k_proj.weight"), vec![HD, DIM]),
        (l("self_attn.k_proj.bias"), vec![HD]),
        (l("self_attn.v_proj.weight"), vec![HD, DIM]),
        (l("self_attn.v_proj.bias"), vec![HD]),
        (l("self_attn.o_proj.weight"), vec![DIM, 2 * HD]),
        (l("post_attention_layernorm.weight"), vec![DIM]),
        (l("mlp.gate_proj.weight"), vec![FFN, DIM]),
        (l("mlp.up_proj.weight"), vec![FFN, DIM]),
        (l("mlp.down_proj.weight"), vec![DIM, FFN]),
    ]
}

/// Writes a checkpoint directory: `tensors` as f32 (or `dtype` for the one named `odd`).
fn write_dir(name: &str, tensors: &[(String, Vec<usize>)], odd: Option<(&str, &str)>) -> PathBuf {
    let d = std::env::temp_dir().join(format!("rill-weights-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    let config = json!({"model_type": "qwen2", "hidden_size": DIM, "intermediate_size": FFN,
        "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1,
        "vocab_size": VOCAB, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
        "tie_word_embeddings": true});
    std::fs::write(d.join("config.json"), config.to_string()).unwrap();
    let data: Vec<(String, String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .enumerate()
        .map(|(k, (n, shape))| {
            let count: usize = shape.iter().product();
            let dtype = match odd {
                Some((o, dt)) if o == n => dt,
                _ => "F32",
            };
            let size = if dtype == "F32" || dtype == "I32" {
                4
            } else {
                2
            };
            let bytes: Vec<u8> = (0..count)
                .flat_map(|i| (((i * 7 + k) % 13) as f32 / 13.0 - 0.4).to_le_bytes())
                .take(count * size)
                .collect();
            (n.clone(), dtype.to_owned(), shape.clone(), bytes)
        })
        .collect();
    let refs: Vec<(&str, &str, &[usize], &[u8])> = data
        .iter()
        .map(|(n, d, s, b)| (n.as_str(), d.as_str(), s.as_slice(), b.as_slice()))
        .collect();
    std::fs::write(d.join("model.safetensors"), serialize(&refs)).unwrap();
    d
}

fn load_err(dir: &PathBuf) -> String {
    let e = match load(dir) {
        Ok(_) => panic!("loaded a broken checkpoint"),
        Err(e) => e.to_string(),
    };
    std::fs::remove_dir_all(dir).unwrap();
    e
}

#[test]
fn loads_a_qwen2_checkpoint_and_runs_it() {
    let d = write_dir("ok", &qwen2_tensors(), None);
    let m = load(&d).unwrap();
    assert!(matches!(m.source, ModelSource::Hf { .. }));
    assert_eq!(m.model.config.kind, crate::model::Arch::Qwen2);
    // Tied: the embedding is mapped once.
    let want = 4 * (VOCAB * DIM + 2 * HD * DIM + 2 * HD * DIM + DIM * 2 * HD + 3 * FFN * DIM);
    assert_eq!(m.mapped_bytes, want);
    let logits = super::super::decoder::tests::run_prompt(&m.model, &[1, 5, 2, 7]);
    assert_eq!(logits.len(), VOCAB);
    assert!(logits.iter().all(|v| v.is_finite()));
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn refuses_a_missing_tensor_by_its_file_name() {
    let mut t = qwen2_tensors();
    t.retain(|(n, _)| n != "model.layers.0.self_attn.k_proj.bias");
    let e = load_err(&write_dir("missing", &t, None));
    assert!(
        e.contains("missing tensor model.layers.0.self_attn.k_proj.bias"),
        "{e}"
    );
    assert!(e.contains("model.safetensors"), "{e}");
}

#[test]
fn refuses_a_wrong_shape_naming_tensor_and_file() {
    let mut t = qwen2_tensors();
    t[5].1 = vec![HD, DIM + 32];
    let e = load_err(&write_dir("shape", &t, None));
    assert!(
        e.contains("tensor model.layers.0.self_attn.k_proj.weight")
            && e.contains("expected [64, 32]"),
        "{e}"
    );
    assert!(e.contains("model.safetensors"), "{e}");
}

#[test]
fn refuses_an_unsupported_dtype_naming_the_tensor() {
    let name = "model.layers.0.mlp.up_proj.weight";
    let e = load_err(&write_dir("dtype", &qwen2_tensors(), Some((name, "I32"))));
    assert!(e.contains(name) && e.contains("I32"), "{e}");
}

#[test]
fn refuses_an_untied_model_without_lm_head() {
    let d = write_dir("untied", &qwen2_tensors(), None);
    let mut c: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("config.json")).unwrap()).unwrap();
    c["tie_word_embeddings"] = json!(false);
    std::fs::write(d.join("config.json"), c.to_string()).unwrap();
    assert!(load_err(&d).contains("missing tensor lm_head.weight"));
}

#[test]
fn refuses_an_unsupported_architecture_by_name() {
    let d = write_dir("arch", &qwen2_tensors(), None);
    let c = json!({"model_type": "gemma3", "hidden_size": DIM});
    std::fs::write(d.join("config.json"), c.to_string()).unwrap();
    assert!(load_err(&d).contains("\"gemma3\""));
}
