use std::path::Path;

use serde_json::json;

use super::*;

fn qwen3() -> Value {
    json!({
        "architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "hidden_size": 256,
        "intermediate_size": 768, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2, "head_dim": 128, "vocab_size": 1000, "rms_norm_eps": 1e-6,
        "rope_theta": 1000000.0, "max_position_embeddings": 4096, "tie_word_embeddings": true,
        "hidden_act": "silu", "rope_scaling": null
    })
}

fn err(v: &Value) -> String {
    match ModelConfig::from_hf_config(Path::new("/m/config.json"), v) {
        Ok(_) => panic!("accepted {v}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn reads_a_qwen3_config() {
    let c = ModelConfig::from_hf_config(Path::new("/m/tiny/config.json"), &qwen3()).unwrap();
    assert_eq!(c.kind, Arch::Qwen3);
    assert_eq!(
        (c.dim, c.n_heads, c.n_kv_heads, c.head_dim, c.q_dim()),
        (256, 4, 2, 128, 512)
    );
    assert_eq!(
        (c.n_rot, c.rope_base, c.rope_neox, c.tied_output),
        (128, 1e6, true, true)
    );
    assert_eq!(
        (c.vocab_size, c.context_length, c.name.as_str()),
        (1000, 4096, "tiny")
    );
    assert!(c.rope_freq_factors.is_none());
}

#[test]
fn head_dim_defaults_to_hidden_over_heads_and_model_type_to_architectures() {
    let mut v = qwen3();
    let m = v.as_object_mut().unwrap();
    m.remove("head_dim");
    m.remove("model_type");
    m.insert("architectures".into(), json!(["Qwen2ForCausalLM"]));
    let c = ModelConfig::from_hf_config(Path::new("/m/config.json"), &v).unwrap();
    assert_eq!((c.kind, c.head_dim), (Arch::Qwen2, 64));
}

#[test]
fn refuses_missing_and_mistyped_keys_by_name() {
    let mut v = qwen3();
    v.as_object_mut().unwrap().remove("hidden_size");
    let e = err(&v);
    assert!(
        e.contains("\"hidden_size\"") && e.contains("missing") && e.contains("/m/config.json"),
        "{e}"
    );
    for (k, bad) in [
        ("num_attention_heads", json!("4")),
        ("rms_norm_eps", json!("tiny")),
        ("tie_word_embeddings", json!(1)),
        ("head_dim", json!(-1)),
        ("model_type", json!(3)),
    ] {
        let mut v = qwen3();
        v[k] = bad;
        let e = err(&v);
        assert!(e.contains(&format!("\"{k}\"")), "{k}: {e}");
    }
    assert!(err(&json!([1])).contains("not a JSON object"));
}

#[test]
fn refuses_unsupported_architectures_and_features_by_name() {
    let mut v = qwen3();
    v["model_type"] = json!("mistral");
    assert!(err(&v).contains("\"mistral\""));
    let mut v = qwen3();
    v["rope_scaling"] = json!({"rope_type": "yarn", "factor": 4.0});
    let e = err(&v);
    assert!(
        e.contains("yarn") && e.contains("rope_scaling.rope_type"),
        "{e}"
    );
    let mut v = qwen3();
    v["hidden_act"] = json!("gelu");
    assert!(err(&v).contains("hidden_act"));
    let mut v = qwen3();
    v["mlp_bias"] = json!(true);
    assert!(err(&v).contains("mlp_bias"));
    let mut v = qwen3();
    v["use_sliding_window"] = json!(true);
    assert!(err(&v).contains("use_sliding_window"));
    let mut v = qwen3();
    v["num_key_value_heads"] = json!(3);
    assert!(err(&v).contains("head counts"));
    let mut v = qwen3();
    v["rope_scaling"] = json!({"rope_type": "llama3", "factor": 8.0});
    assert!(err(&v).contains("rope_scaling.low_freq_factor"));
}

#[test]
fn linear_scaling_and_rope_parameters() {
    let mut v = qwen3();
    v["rope_scaling"] = json!({"type": "linear", "factor": 4.0});
    let c = ModelConfig::from_hf_config(Path::new("c"), &v).unwrap();
    assert_eq!(c.rope_freq_scale, 0.25);
    let mut v = qwen3();
    let m = v.as_object_mut().unwrap();
    m.remove("rope_theta");
    m.remove("rope_scaling");
    m.insert(
        "rope_parameters".into(),
        json!({"rope_type": "default", "rope_theta": 5e5}),
    );
    let c = ModelConfig::from_hf_config(Path::new("c"), &v).unwrap();
    assert_eq!((c.rope_base, c.rope_freq_scale), (5e5, 1.0));
}

#[test]
fn llama3_factors_follow_transformers() {
    // Llama 3.1's settings: short wavelengths kept, long ones divided by the factor, the
    // band in between blended (values from transformers' _compute_llama3_parameters:
    // inv_freq / inv_freq_llama).
    let f = llama3_factors(500000.0, 128, 8.0, 1.0, 4.0, 8192.0);
    assert_eq!(f.len(), 64);
    assert_eq!(f[0], 1.0);
    assert_eq!(f[63], 8.0);
    let (lo, hi) = (8192.0 / 1.0, 8192.0 / 4.0);
    for (i, &ff) in f.iter().enumerate() {
        let inv = 1.0 / 500000f32.powf((2 * i) as f32 / 128.0);
        let wl = 2.0 * std::f32::consts::PI / inv;
        if wl < hi {
            assert_eq!(ff, 1.0);
        } else if wl > lo {
            assert_eq!(ff, 8.0);
        } else {
            let s = (8192.0 / wl - 1.0) / 3.0;
            let blended = (1.0 - s) * inv / 8.0 + s * inv;
            assert!((inv / ff - blended).abs() <= 1e-6 * inv, "pair {i}");
            assert!(ff > 1.0 && ff < 8.0);
        }
    }
    let mut v = qwen3();
    v["rope_scaling"] = json!({"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
        "high_freq_factor": 4.0, "original_max_position_embeddings": 256});
    let c = ModelConfig::from_hf_config(Path::new("c"), &v).unwrap();
    assert_eq!(c.rope_freq_factors.as_ref().map(Vec::len), Some(64));
}
