//! The architectures rill runs (`llama`: Llama 2/3, SmolLM2; `qwen2`: Qwen2/2.5;
//! `qwen3`) and their hyperparameters, read from GGUF metadata (the keys of llama.cpp's
//! `src/llama-arch.cpp`, `{arch}.block_count` ...) or from a Hugging Face `config.json`
//! (the fields of transformers' `LlamaConfig` / `Qwen2Config` / `Qwen3Config`). RoPE
//! scaling: linear (both sources), Llama 3 (GGUF: the `rope_freqs.weight` tensor, read by
//! the loader; config.json: `rope_scaling.rope_type = "llama3"`, turned into the same
//! per-pair factors here, as `convert_hf_to_gguf.py` does from transformers'
//! `_compute_llama3_parameters`). Anything else is refused with its name.
//! Public operations: [`Arch`], [`ModelConfig`] (`from_gguf`, `from_hf_config`).

use std::path::Path;

use serde_json::{Map, Value};

use super::gguf::GgufFile;
use crate::error::{Error, Result};

/// A decoder architecture: which optional parts its layers have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    Llama,
    Qwen2,
    Qwen3,
}

impl Arch {
    /// The architecture named `name` (GGUF `general.architecture` or config.json
    /// `model_type`), or an error naming it.
    pub fn parse(path: &Path, name: &str) -> Result<Arch> {
        match name {
            "llama" => Ok(Arch::Llama),
            "qwen2" => Ok(Arch::Qwen2),
            "qwen3" => Ok(Arch::Qwen3),
            _ => Err(Error::model(
                path,
                format!("unsupported architecture {name:?} (rill runs llama, qwen2, qwen3)"),
            )),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Qwen2 => "qwen2",
            Arch::Qwen3 => "qwen3",
        }
    }

    /// Whether Q/K/V projections carry a bias (Qwen2: always).
    pub fn qkv_bias(self) -> bool {
        self == Arch::Qwen2
    }

    /// Whether Q and K are RMS-normed per head before RoPE (Qwen3).
    pub fn qk_norm(self) -> bool {
        self == Arch::Qwen3
    }

    /// Whether llama.cpp ropes this architecture's GGUF weights in the NeoX layout
    /// (`llama_model_rope_type`); Llama GGUF Q/K rows are permuted by the converter for
    /// the normal layout.
    pub fn gguf_neox(self) -> bool {
        self != Arch::Llama
    }
}

/// Hyperparameters of a decoder-only transformer.
#[derive(Clone, Debug)]
pub struct ModelConfig {
    pub arch: String,
    pub kind: Arch,
    pub name: String,
    pub n_layers: usize,
    pub dim: usize,
    pub ffn_dim: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub vocab_size: usize,
    pub context_length: usize,
    pub rms_eps: f32,
    pub rope_base: f32,
    pub rope_freq_scale: f32,
    pub n_rot: usize,
    /// RoPE pair layout: NeoX (`x[i], x[i + n_rot/2]`) or adjacent pairs.
    pub rope_neox: bool,
    /// Per-pair angle divisors (Llama 3 scaling) computed from config.json; GGUF files
    /// carry them as the `rope_freqs.weight` tensor instead.
    pub rope_freq_factors: Option<Vec<f32>>,
    /// Whether the output matrix is the token embedding (config.json
    /// `tie_word_embeddings`; GGUF: no `output.weight`).
    pub tied_output: bool,
}

impl ModelConfig {
    pub fn kv_dim(&self) -> usize {
        self.n_kv_heads * self.head_dim
    }

    pub fn q_dim(&self) -> usize {
        self.n_heads * self.head_dim
    }

    /// Hyperparameters from GGUF metadata (vocab size from `token_embd.weight`).
    pub fn from_gguf(gguf: &GgufFile) -> Result<Self> {
        let path = &gguf.path;
        let arch = gguf.req_str("general.architecture")?.to_owned();
        let kind = Arch::parse(path, &arch)?;
        let key = |k: &str| format!("{arch}.{k}");
        let opt_u64 = |k: &str| gguf.get(&key(k)).and_then(|v| v.as_u64());
        let opt_f64 = |k: &str| gguf.get(&key(k)).and_then(|v| v.as_f64());
        let n_heads = gguf.req_u64(&key("attention.head_count"))? as usize;
        let dim = gguf.req_u64(&key("embedding_length"))? as usize;
        let head_dim = match opt_u64("attention.key_length") {
            Some(v) => v as usize,
            None if n_heads > 0 => dim / n_heads,
            None => 0,
        };
        if let Some(v) = opt_u64("attention.value_length") {
            if v as usize != head_dim {
                let msg = format!(
                    "{}: value heads of {v} differ from key heads of {head_dim} (unsupported)",
                    key("attention.value_length")
                );
                return Err(Error::model(path, msg));
            }
        }
        let rope_freq_scale = match gguf.get(&key("rope.scaling.type")).and_then(|v| v.as_str()) {
            None | Some("none") => 1.0,
            Some("linear") => linear_scale(opt_f64("rope.scaling.factor").unwrap_or(1.0)),
            Some(other) => {
                let msg = format!(
                    "{}: rope scaling {other:?} is not supported",
                    key("rope.scaling.type")
                );
                return Err(Error::model(path, msg));
            }
        };
        let tok = gguf.tensor("token_embd.weight")?;
        let vocab_size = match tok.dims[..] {
            [_, v] if v > 0 => v as usize,
            _ => {
                let msg = format!(
                    "tensor token_embd.weight: shape {:?} is not [dim, vocab]",
                    tok.dims
                );
                return Err(Error::model(path, msg));
            }
        };
        let name = gguf
            .get("general.name")
            .and_then(|v| v.as_str())
            .map(str::to_owned)
            .unwrap_or_else(|| stem(path));
        let c = ModelConfig {
            arch: arch.clone(),
            kind,
            name,
            n_layers: gguf.req_u64(&key("block_count"))? as usize,
            dim,
            ffn_dim: gguf.req_u64(&key("feed_forward_length"))? as usize,
            n_heads,
            n_kv_heads: opt_u64("attention.head_count_kv").unwrap_or(n_heads as u64) as usize,
            head_dim,
            vocab_size,
            context_length: opt_u64("context_length").unwrap_or(2048) as usize,
            rms_eps: opt_f64("attention.layer_norm_rms_epsilon").unwrap_or(1e-5) as f32,
            rope_base: opt_f64("rope.freq_base").unwrap_or(10000.0) as f32,
            rope_freq_scale,
            n_rot: opt_u64("rope.dimension_count").map_or(head_dim, |v| v as usize),
            rope_neox: kind.gguf_neox(),
            rope_freq_factors: None,
            tied_output: !gguf.tensors.contains_key("output.weight"),
        };
        c.validate(path)?;
        Ok(c)
    }

    /// Hyperparameters from a Hugging Face `config.json` (already parsed; `path` names it
    /// in errors). Weights are unpermuted, so every architecture ropes in the NeoX layout.
    pub fn from_hf_config(path: &Path, json: &Value) -> Result<Self> {
        let Some(map) = json.as_object() else {
            return Err(Error::model(path, "config.json is not a JSON object"));
        };
        let cfg = HfKeys { path, map };
        let arch = match (cfg.opt_str("model_type")?, map.get("architectures")) {
            (Some(t), _) => t.to_owned(),
            (None, Some(Value::Array(a))) => match a.first().and_then(Value::as_str) {
                Some("LlamaForCausalLM") => "llama".into(),
                Some("Qwen2ForCausalLM") => "qwen2".into(),
                Some("Qwen3ForCausalLM") => "qwen3".into(),
                Some(other) => other.to_owned(),
                None => return Err(cfg.err("architectures", "is not a list of names")),
            },
            (None, _) => return Err(cfg.err("model_type", "is missing")),
        };
        let kind = Arch::parse(path, &arch)?;
        if let Some(act) = cfg.opt_str("hidden_act")? {
            if act != "silu" {
                return Err(cfg.err("hidden_act", &format!("{act:?} is not supported (silu is)")));
            }
        }
        if cfg.opt_bool("mlp_bias")? == Some(true) {
            return Err(cfg.err("mlp_bias", "MLP biases are not supported"));
        }
        if cfg.opt_bool("use_sliding_window")? == Some(true) {
            return Err(cfg.err(
                "use_sliding_window",
                "sliding-window attention is not supported",
            ));
        }
        let dim = cfg.req_usize("hidden_size")?;
        let n_heads = cfg.req_usize("num_attention_heads")?;
        let head_dim = match cfg.opt_usize("head_dim")? {
            Some(h) => h,
            None if n_heads > 0 => dim / n_heads,
            None => 0,
        };
        // transformers >= 4.56 moves RoPE settings into `rope_parameters`.
        let rope_params = match map.get("rope_parameters") {
            Some(Value::Object(m)) => Some(m),
            None | Some(Value::Null) => None,
            Some(_) => return Err(cfg.err("rope_parameters", "is not an object")),
        };
        let rope_base = match rope_params.and_then(|m| m.get("rope_theta")) {
            Some(v) => v
                .as_f64()
                .ok_or_else(|| cfg.err("rope_parameters.rope_theta", "is not a number"))?,
            None => cfg.opt_f64("rope_theta")?.unwrap_or(10000.0),
        };
        let scaling = match map.get("rope_scaling") {
            Some(Value::Object(m)) => Some(("rope_scaling", m)),
            None | Some(Value::Null) => rope_params.map(|m| ("rope_parameters", m)),
            Some(_) => return Err(cfg.err("rope_scaling", "is not an object or null")),
        };
        let (rope_freq_scale, rope_freq_factors) = match scaling {
            None => (1.0, None),
            Some((k, m)) => rope_scaling(&cfg, k, m, rope_base, head_dim)?,
        };
        let c = ModelConfig {
            arch,
            kind,
            name: stem(path.parent().unwrap_or(path)),
            n_layers: cfg.req_usize("num_hidden_layers")?,
            dim,
            ffn_dim: cfg.req_usize("intermediate_size")?,
            n_heads,
            n_kv_heads: cfg.opt_usize("num_key_value_heads")?.unwrap_or(n_heads),
            head_dim,
            vocab_size: cfg.req_usize("vocab_size")?,
            context_length: cfg.opt_usize("max_position_embeddings")?.unwrap_or(2048),
            rms_eps: cfg.opt_f64("rms_norm_eps")?.unwrap_or(1e-6) as f32,
            rope_base: rope_base as f32,
            rope_freq_scale,
            n_rot: head_dim,
            rope_neox: true,
            rope_freq_factors,
            tied_output: cfg.opt_bool("tie_word_embeddings")?.unwrap_or(false),
        };
        c.validate(path)?;
        Ok(c)
    }

    /// Refuses shapes the forward pass cannot run.
    fn validate(&self, path: &Path) -> Result<()> {
        let (h, kv) = (self.n_heads, self.n_kv_heads);
        if self.n_layers == 0 || self.dim == 0 || self.ffn_dim == 0 || self.vocab_size == 0 {
            return Err(Error::model(
                path,
                "zero layers, width, FFN width or vocabulary",
            ));
        }
        if h == 0 || kv == 0 || !h.is_multiple_of(kv) {
            let msg = format!("bad head counts: {h} heads, {kv} KV heads (GQA needs a divisor)");
            return Err(Error::model(path, msg));
        }
        let (hd, r) = (self.head_dim, self.n_rot);
        if hd == 0 || hd > 512 || !hd.is_multiple_of(32) || !r.is_multiple_of(2) || r > hd {
            let msg = format!("unsupported head_dim {hd} / rope dims {r} (head_dim must be a multiple of 32, at most 512)");
            return Err(Error::model(path, msg));
        }
        if !self.dim.is_multiple_of(32) || !self.ffn_dim.is_multiple_of(32) {
            let msg = format!(
                "widths {} / {} are not multiples of 32",
                self.dim, self.ffn_dim
            );
            return Err(Error::model(path, msg));
        }
        Ok(())
    }
}

fn linear_scale(factor: f64) -> f32 {
    if factor > 0.0 {
        (1.0 / factor) as f32
    } else {
        1.0
    }
}

fn stem(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// RoPE scaling from config.json: `(freq_scale, freq_factors)`.
fn rope_scaling(
    cfg: &HfKeys,
    key: &str,
    m: &Map<String, Value>,
    base: f64,
    head_dim: usize,
) -> Result<(f32, Option<Vec<f32>>)> {
    let ty = match m.get("rope_type").or_else(|| m.get("type")) {
        None => "default",
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return Err(cfg.err(&format!("{key}.rope_type"), "is not a string")),
    };
    let num = |k: &str| -> Result<f64> {
        m.get(k)
            .and_then(Value::as_f64)
            .ok_or_else(|| cfg.err(&format!("{key}.{k}"), "is missing or not a number"))
    };
    match ty {
        "default" => Ok((1.0, None)),
        "linear" => Ok((linear_scale(num("factor")?), None)),
        "llama3" => {
            let factor = num("factor")? as f32;
            let low = num("low_freq_factor")? as f32;
            let high = num("high_freq_factor")? as f32;
            let orig = num("original_max_position_embeddings")? as f32;
            if high <= low {
                let msg = "high_freq_factor must exceed low_freq_factor";
                return Err(cfg.err(&format!("{key}.high_freq_factor"), msg));
            }
            Ok((
                1.0,
                Some(llama3_factors(
                    base as f32,
                    head_dim,
                    factor,
                    low,
                    high,
                    orig,
                )),
            ))
        }
        other => Err(cfg.err(
            &format!("{key}.rope_type"),
            &format!("rope scaling {other:?} is not supported (default, linear, llama3 are)"),
        )),
    }
}

/// Llama 3 RoPE factors, per pair: transformers' `_compute_llama3_parameters` divides
/// `inv_freq` by `factor` for long wavelengths, keeps short ones, and blends in between;
/// as a divisor of the angle (what llama.cpp's `rope_freqs` holds) that is 1, `factor`, or
/// `1 / ((1 - s) / factor + s)`. Computed in f32 like torch does.
pub fn llama3_factors(
    base: f32,
    dim: usize,
    factor: f32,
    low: f32,
    high: f32,
    orig: f32,
) -> Vec<f32> {
    let (low_wavelen, high_wavelen) = (orig / low, orig / high);
    (0..dim / 2)
        .map(|i| {
            let inv_freq = 1.0 / base.powf((2 * i) as f32 / dim as f32);
            let wavelen = 2.0 * std::f32::consts::PI / inv_freq;
            if wavelen < high_wavelen {
                1.0
            } else if wavelen > low_wavelen {
                factor
            } else {
                let s = (orig / wavelen - low) / (high - low);
                1.0 / ((1.0 - s) / factor + s)
            }
        })
        .collect()
}

/// Typed access to config.json keys; errors name the key and the file.
struct HfKeys<'a> {
    path: &'a Path,
    map: &'a Map<String, Value>,
}

impl HfKeys<'_> {
    fn err(&self, key: &str, msg: &str) -> Error {
        Error::model(self.path, format!("config.json key {key:?}: {msg}"))
    }

    fn present(&self, key: &str) -> Option<&Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    fn opt_usize(&self, key: &str) -> Result<Option<usize>> {
        self.present(key)
            .map(|v| {
                v.as_u64()
                    .and_then(|n| usize::try_from(n).ok())
                    .ok_or_else(|| self.err(key, &format!("{v} is not a non-negative integer")))
            })
            .transpose()
    }

    fn req_usize(&self, key: &str) -> Result<usize> {
        self.opt_usize(key)?
            .ok_or_else(|| self.err(key, "is missing"))
    }

    fn opt_f64(&self, key: &str) -> Result<Option<f64>> {
        self.present(key)
            .map(|v| {
                v.as_f64()
                    .ok_or_else(|| self.err(key, &format!("{v} is not a number")))
            })
            .transpose()
    }

    fn opt_bool(&self, key: &str) -> Result<Option<bool>> {
        self.present(key)
            .map(|v| {
                v.as_bool()
                    .ok_or_else(|| self.err(key, &format!("{v} is not a boolean")))
            })
            .transpose()
    }

    fn opt_str(&self, key: &str) -> Result<Option<&str>> {
        self.present(key)
            .map(|v| {
                v.as_str()
                    .ok_or_else(|| self.err(key, &format!("{v} is not a string")))
            })
            .transpose()
    }
}

#[cfg(test)]
mod tests;
