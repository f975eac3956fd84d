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

/// A GGUF v3 image: string/u32 metadata, F32 tensors of the given ggml-order dims.
fn gguf_image(meta: &[(String, Meta)], tensors: &[(String, Vec<usize>)]) -> Vec<u8> {
    fn s(b: &mut Vec<u8>, v: &str) {
        b.extend_from_slice(&(v.len() as u64).to_le_bytes());
        b.extend_from_slice(v.as_bytes());
    }
    let mut b = b"GGUF".to_vec();
    b.extend_from_slice(&3u32.to_le_bytes());
    b.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    b.extend_from_slice(&(meta.len() as u64).to_le_bytes());
    for (k, v) in meta {
        s(&mut b, k);
        match v {
            Meta::Str(x) => {
                b.extend_from_slice(&8u32.to_le_bytes());
                s(&mut b, x);
            }
            Meta::U32(x) => {
                b.extend_from_slice(&4u32.to_le_bytes());
                b.extend_from_slice(&x.to_le_bytes());
            }
        }
    }
    let mut off = 0u64;
    for (name, dims) in tensors {
        s(&mut b, name);
        b.extend_from_slice(&(dims.len() as u32).to_le_bytes());
        for &d in dims {
            b.extend_from_slice(&(d as u64).to_le_bytes());
        }
        b.extend_from_slice(&0u32.to_le_bytes());
        b.extend_from_slice(&off.to_le_bytes());
        off += 4 * dims.iter().product::<usize>() as u64;
    }
    while !b.len().is_multiple_of(32) {
        b.push(0);
    }
    b.resize(b.len() + off as usize, 0);
    b
}

enum Meta {
    Str(&'static str),
    U32(u32),
}

/// The tensors of a one-layer Qwen3 GGUF (ggml order: `[cols, rows]`).
fn qwen3_gguf_tensors() -> Vec<(String, Vec<usize>)> {
    let b = |s: &str| format!("blk.0.{s}.weight");
    vec![
        ("token_embd.weight".into(), vec![DIM, VOCAB]),
        ("output_norm.weight".into(), vec![DIM]),
        (b("attn_norm"), vec![DIM]),
        (b("attn_q"), vec![DIM, 2 * HD]),
        (b("attn_k"), vec![DIM, HD]),
        (b("attn_v"), vec![DIM, HD]),
        (b("attn_q_norm"), vec![HD]),
        (b("attn_k_norm"), vec![HD]),
        (b("attn_output"), vec![2 * HD, DIM]),
        (b("ffn_norm"), vec![DIM]),
        (b("ffn_gate"), vec![DIM, FFN]),
        (b("ffn_up"), vec![DIM, FFN]),
        (b("ffn_down"), vec![FFN, DIM]),
    ]
}

fn gguf_load(
    name: &str,
    arch: &'static str,
    tensors: &[(String, Vec<usize>)],
) -> crate::Result<crate::model::LoadedModel> {
    let a = |k: &str| format!("{arch}.{k}");
    let meta = [
        ("general.architecture".to_owned(), Meta::Str(arch)),
        (a("block_count"), Meta::U32(1)),
        (a("embedding_length"), Meta::U32(DIM as u32)),
        (a("feed_forward_length"), Meta::U32(FFN as u32)),
        (a("attention.head_count"), Meta::U32(2)),
        (a("attention.head_count_kv"), Meta::U32(1)),
        (a("attention.key_length"), Meta::U32(HD as u32)),
    ];
    let p = std::env::temp_dir().join(format!("rill-weights-{name}-{}.gguf", std::process::id()));
    std::fs::write(&p, gguf_image(&meta, tensors)).unwrap();
    let r = load(&p);
    std::fs::remove_file(&p).unwrap();
    r
}

#[test]
fn loads_a_qwen3_gguf_and_refuses_its_faults_by_name() {
    let m = gguf_load("q3", "qwen3", &qwen3_gguf_tensors()).unwrap();
    let c = &m.model.config;
    assert!(c.rope_neox && c.tied_output && c.head_dim == HD && c.q_dim() == 2 * HD);
    let logits = super::super::decoder::tests::run_prompt(&m.model, &[3, 1]);
    assert!(logits.iter().all(|v| v.is_finite()));

    let mut t = qwen3_gguf_tensors();
    t.retain(|(n, _)| n != "blk.0.attn_k_norm.weight");
    let e = gguf_load("q3-missing", "qwen3", &t)
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("missing tensor blk.0.attn_k_norm.weight") && e.contains(".gguf"),
        "{e}"
    );

    let mut t = qwen3_gguf_tensors();
    t[4].1 = vec![DIM, 2 * HD];
    let e = gguf_load("q3-shape", "qwen3", &t)
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("tensor blk.0.attn_k.weight") && e.contains("expected [64, 32]"),
        "{e}"
    );

    let e = gguf_load("gemma", "gemma3", &qwen3_gguf_tensors())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("unsupported architecture \"gemma3\""), "{e}");
    // Qwen2 requires its Q/K/V biases.
    let e = gguf_load("q2", "qwen2", &qwen3_gguf_tensors())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("missing tensor blk.0.attn_q.bias"), "{e}");
}
