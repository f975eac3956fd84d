//! The GPU side of rill-bench: which CUDA device an engine `device` string names, the
//! device's copy bandwidth (measured before the engine is created, with
//! `rill::backend::cuda::bandwidth`, in builds with the `cuda` feature), the weight bytes a
//! decode step reads, and the single-stream roofline: tokens/s <= bandwidth / weight bytes
//! per token (every weight byte is read once per decoded token at batch 1). Also the
//! transformers baseline (`scripts/gpu/hf_baseline.py`'s JSON) as a report column.
//! Public operations: [`cuda_ordinal`], [`Bandwidth`], [`measure_bandwidth`],
//! [`hf_weight_bytes`], [`Roofline`], [`baseline_report`].

use serde_json::{json, Value};

use crate::stats::Latency;
use crate::workloads::{Decode, Level, Prefill, Report};

/// The CUDA ordinal an engine `device` value names: `"cuda"` 0, `"cuda:N"` N, `"auto"` 0
/// (the device auto picks when there is one); `None` for `"cpu"` and anything else.
pub fn cuda_ordinal(device: &str) -> Option<usize> {
    match device {
        "cuda" | "auto" => Some(0),
        d => d.strip_prefix("cuda:").and_then(|n| n.parse().ok()),
    }
}

/// A copy-bandwidth measurement (see `rill::backend::cuda::bandwidth`).
#[derive(Debug, Clone, PartialEq)]
pub struct Bandwidth {
    pub device_name: String,
    pub bytes_per_copy: usize,
    pub copies: usize,
    pub median_ms: f64,
    /// Bytes read plus bytes written per second.
    pub bytes_per_s: f64,
}

impl Bandwidth {
    pub fn to_json(&self) -> Value {
        json!({"device_name": self.device_name, "bytes_per_copy": self.bytes_per_copy,
               "copies": self.copies, "median_ms": self.median_ms,
               "bytes_per_s": self.bytes_per_s,
               "counts": "bytes read + bytes written (2 x the buffer) per copy"})
    }
}

/// Measures the copy bandwidth of the device `device` names with `copies` copies of
/// `mib` MiB; `None` when it names no CUDA device (or this build has no CUDA backend and
/// the device is `"auto"`), `Some(Err)` when the measurement failed.
pub fn measure_bandwidth(
    device: &str,
    mib: usize,
    copies: usize,
) -> Option<Result<Bandwidth, String>> {
    let ordinal = cuda_ordinal(device)?;
    if mib == 0 {
        return None;
    }
    #[cfg(feature = "cuda")]
    {
        use rill::backend::cuda::{bandwidth, probe};
        if device == "auto" && probe::probe().map_or(true, |d| d.devices.is_empty()) {
            return None;
        }
        Some(
            bandwidth::device_copy_bandwidth(ordinal, mib << 20, copies)
                .map(|b| Bandwidth {
                    device_name: b.device_name,
                    bytes_per_copy: b.bytes_per_copy,
                    copies: b.samples_ms.len(),
                    median_ms: b.median_ms,
                    bytes_per_s: b.bytes_per_s,
                })
                .map_err(|e| e.to_string()),
        )
    }
    #[cfg(not(feature = "cuda"))]
    {
        let _ = (ordinal, copies);
        (device != "auto")
            .then(|| Err("this rill-bench was built without the `cuda` feature".into()))
    }
}

/// Bytes of weights one decode step reads, from a Hugging Face `config.json`: per layer the
/// q, k, v, o, gate, up and down matrices, plus the output matrix (`lm_head`, or the tied
/// embedding once); the input embedding is a gather of one row and is not counted. Element
/// size from `torch_dtype` / `dtype` (bf16/f16 2, f32 4; 2 when absent). `None` when a key
/// is missing.
pub fn hf_weight_bytes(config: &Value) -> Option<u64> {
    let u = |k: &str| config.get(k).and_then(Value::as_u64);
    let h = u("hidden_size")?;
    let heads = u("num_attention_heads")?;
    let kv_heads = u("num_key_value_heads").unwrap_or(heads);
    let head_dim = u("head_dim").unwrap_or(h / heads.max(1));
    let (q, kv) = (heads * head_dim, kv_heads * head_dim);
    let ffn = u("intermediate_size")?;
    let layers = u("num_hidden_layers")?;
    let vocab = u("vocab_size")?;
    let dtype = config
        .get("torch_dtype")
        .or_else(|| config.get("dtype"))
        .and_then(Value::as_str)
        .unwrap_or("bfloat16");
    let elem = if dtype == "float32" { 4 } else { 2 };
    let per_layer = h * q + 2 * h * kv + q * h + 3 * h * ffn;
    Some(elem * (layers * per_layer + vocab * h))
}

/// The single-stream decode roofline.
#[derive(Debug, Clone, PartialEq)]
pub struct Roofline {
    pub weight_bytes_per_token: u64,
    /// bandwidth / weight bytes: the most tokens/s a batch-1 decode can reach.
    pub limit_tokens_per_s: f64,
    pub decode_tokens_per_s: f64,
    /// decode / limit.
    pub fraction: f64,
}

impl Roofline {
    pub fn new(
        bytes_per_s: f64,
        weight_bytes_per_token: u64,
        decode_tokens_per_s: f64,
    ) -> Roofline {
        let limit = bytes_per_s / weight_bytes_per_token.max(1) as f64;
        Roofline {
            weight_bytes_per_token,
            limit_tokens_per_s: limit,
            decode_tokens_per_s,
            fraction: decode_tokens_per_s / limit,
        }
    }

    pub fn to_json(&self) -> Value {
        let num = |x: f64| if x.is_finite() { json!(x) } else { Value::Null };
        json!({"weight_bytes_per_token": self.weight_bytes_per_token,
               "limit_tokens_per_s": num(self.limit_tokens_per_s),
               "decode_tokens_per_s": num(self.decode_tokens_per_s),
               "fraction_of_limit": num(self.fraction)})
    }
}

/// The transformers baseline JSON (`scripts/gpu/hf_baseline.py`) as a report column:
/// prefill and decode from its batch-1 level, one level per batch size with the batch's
/// TTFT as both TTFT percentiles (a static batch: every request's first token comes at
/// once) and the mean step time as the ITL p50 (p99 unknown); a level that failed
/// carries its error.
pub fn baseline_report(v: &Value) -> Result<Report, String> {
    if v["tool"] != "transformers" {
        return Err("not a hf_baseline.py JSON (no \"tool\": \"transformers\")".into());
    }
    let f = |x: &Value, k: &str| x[k].as_f64().unwrap_or(f64::NAN);
    let mut r = Report {
        info: json!({"tool": "transformers", "gpu": v["gpu"], "torch": v["torch"],
                     "transformers": v["transformers"], "dtype": v["dtype"],
                     "attn_implementation": v["attn_implementation"], "cache": v["cache"]}),
        ..Report::default()
    };
    if v["prefill"].is_object() {
        let p = &v["prefill"];
        r.prefill = Some(Prefill {
            prompt_tokens: p["prompt_tokens"].as_u64().unwrap_or(0),
            cached_tokens: 0,
            ttft_ms: f(p, "ttft_ms"),
            tokens_per_s: f(p, "tokens_per_s"),
        });
    }
    if v["decode"].is_object() {
        let d = &v["decode"];
        r.decode = Some(Decode {
            output_tokens: d["output_tokens"].as_u64().unwrap_or(0),
            tokens_per_s: f(d, "tokens_per_s"),
            step_us: None,
        });
    }
    let levels = v["concurrency"]
        .as_array()
        .ok_or("baseline JSON without a \"concurrency\" list")?;
    for l in levels {
        let ttft = f(l, "ttft_ms");
        let itl = f(l, "itl_mean_ms");
        r.levels.push(Level {
            streams: l["streams"]
                .as_u64()
                .ok_or("baseline level without streams")? as usize,
            input_tokens: l["input_tokens"].as_u64().unwrap_or(0),
            output_tokens: l["output_tokens"].as_u64().unwrap_or(0),
            wall_s: f(l, "wall_s"),
            tokens_per_s: f(l, "aggregate_tokens_per_s"),
            ttft: ttft.is_finite().then_some(Latency {
                p50_ms: ttft,
                p99_ms: ttft,
            }),
            itl: itl.is_finite().then_some(Latency {
                p50_ms: itl,
                p99_ms: f64::NAN,
            }),
            decode_tps: f(l, "decode_tokens_per_s"),
            error: l["error"].as_str().map(str::to_owned),
            step_us: None,
        });
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_strings_name_ordinals() {
        assert_eq!(cuda_ordinal("cuda"), Some(0));
        assert_eq!(cuda_ordinal("cuda:3"), Some(3));
        assert_eq!(cuda_ordinal("auto"), Some(0));
        assert_eq!(cuda_ordinal("cpu"), None);
        assert_eq!(cuda_ordinal("cuda:x"), None);
        assert!(measure_bandwidth("cpu", 1024, 3).is_none());
        assert!(measure_bandwidth("cuda", 0, 3).is_none());
    }

    #[test]
    fn weight_bytes_of_the_benchmark_shapes() {
        // The numbers scripts/gpu/make_models.py's weight_bytes_per_token gives.
        let llama3_8b = json!({"hidden_size": 4096, "num_attention_heads": 32,
            "num_key_value_heads": 8, "intermediate_size": 14336, "num_hidden_layers": 32,
            "vocab_size": 128256, "torch_dtype": "bfloat16", "tie_word_embeddings": false});
        assert_eq!(hf_weight_bytes(&llama3_8b), Some(15_009_316_864));
        let qwen3_06b = json!({"hidden_size": 1024, "num_attention_heads": 16,
            "num_key_value_heads": 8, "head_dim": 128, "intermediate_size": 3072,
            "num_hidden_layers": 28, "vocab_size": 151936, "tie_word_embeddings": true});
        assert_eq!(hf_weight_bytes(&qwen3_06b), Some(1_191_968_768));
        let mut f32 = qwen3_06b.clone();
        f32["torch_dtype"] = json!("float32");
        assert_eq!(hf_weight_bytes(&f32), Some(2 * 1_191_968_768));
        assert_eq!(hf_weight_bytes(&json!({"hidden_size": 8})), None);
    }

    #[test]
    fn roofline_fraction() {
        let r = Roofline::new(3.0e12, 15_000_000_000, 150.0);
        assert!((r.limit_tokens_per_s - 200.0).abs() < 1e-9);
        assert!((r.fraction - 0.75).abs() < 1e-12);
        assert_eq!(r.to_json()["fraction_of_limit"], json!(0.75));
    }

    #[test]
    fn reads_the_baseline_json() {
        let v = json!({"tool": "transformers", "gpu": "NVIDIA H100", "torch": "2.11",
            "transformers": "5.17", "dtype": "bfloat16", "attn_implementation": "sdpa",
            "cache": "dynamic",
            "prefill": {"prompt_tokens": 1000, "ttft_ms": 50.0, "tokens_per_s": 20000.0},
            "decode": {"prompt_tokens": 1000, "output_tokens": 200, "tokens_per_s": 30.0},
            "concurrency": [
                {"streams": 1, "input_tokens": 1000, "output_tokens": 200, "wall_s": 6.7,
                 "aggregate_tokens_per_s": 29.8, "ttft_ms": 50.0, "itl_mean_ms": 33.3,
                 "decode_tokens_per_s": 30.0, "error": null},
                {"streams": 256, "input_tokens": 256000, "output_tokens": null, "wall_s": null,
                 "aggregate_tokens_per_s": null, "ttft_ms": null, "itl_mean_ms": null,
                 "decode_tokens_per_s": null, "error": "out of memory: CUDA out of memory"}],
            "errors": []});
        let r = baseline_report(&v).expect("baseline");
        assert_eq!(r.decode.as_ref().map(|d| d.tokens_per_s), Some(30.0));
        assert_eq!(r.prefill.as_ref().map(|p| p.prompt_tokens), Some(1000));
        assert_eq!(r.levels.len(), 2);
        assert_eq!(r.levels[0].ttft.map(|t| t.p99_ms), Some(50.0));
        assert!(r.levels[1].tokens_per_s.is_nan());
        assert!(r.levels[1]
            .error
            .as_deref()
            .is_some_and(|e| e.starts_with("out of memory")));
        assert!(baseline_report(&json!({"tool": "vllm"})).is_err());
        assert!(baseline_report(&json!({"tool": "transformers"})).is_err());
    }
}
