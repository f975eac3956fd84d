//! Hugging Face checkpoint directories: `config.json` (hyperparameters, `arch`),
//! `model.safetensors` or a sharded `model.safetensors.index.json` + its shards (memory
//! mapped by `safetensors`), and `generation_config.json` (the model's default sampling
//! and extra end-of-sequence ids, as transformers' `GenerationConfig` / vLLM's
//! `generation_config="auto"` read it). Tensor names map to llama.cpp's by the table
//! `convert_hf_to_gguf.py` uses for Llama/Qwen2/Qwen3 (`model.layers.{i}.self_attn.q_proj`
//! -> `blk.{i}.attn_q`, ...). Every shard name is checked to stay inside the directory,
//! and every index entry to exist in its shard.
//! Public operations: [`HfWeights::open`], [`HfWeights::find`], [`GenerationConfig`]
//! (`read`), [`hf_name`].

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::safetensors::{SafetensorsFile, StTensor};
use crate::error::{Error, Result};

/// The safetensors files of a checkpoint, indexed by Hugging Face tensor name.
pub struct HfWeights {
    pub dir: PathBuf,
    pub files: Vec<SafetensorsFile>,
    /// Tensor name -> index into `files`.
    index: HashMap<String, usize>,
    /// The file that lists the tensors (index JSON or the single safetensors file).
    listing: PathBuf,
}

/// Reads and parses a JSON file of the checkpoint; `None` when it does not exist.
pub fn read_json(path: &Path) -> Result<Option<Value>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(Error::Io {
                path: path.to_owned(),
                source: e,
            })
        }
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| Error::model(path, format!("not valid JSON: {e}")))
}

impl HfWeights {
    /// Opens `dir/model.safetensors`, or the shards listed by
    /// `dir/model.safetensors.index.json`.
    pub fn open(dir: &Path) -> Result<Self> {
        let index_path = dir.join("model.safetensors.index.json");
        let (listing, shard_names) = match read_json(&index_path)? {
            Some(v) => (index_path.clone(), shards_of(&index_path, &v)?),
            None => {
                let single = dir.join("model.safetensors");
                if !single.is_file() {
                    let msg = "neither model.safetensors nor model.safetensors.index.json exists";
                    return Err(Error::model(dir, msg));
                }
                (single, Vec::new())
            }
        };
        let mut files = Vec::new();
        let mut index = HashMap::new();
        if shard_names.is_empty() {
            files.push(SafetensorsFile::open(&listing)?);
        } else {
            let distinct: BTreeSet<&str> = shard_names.iter().map(|(_, f)| f.as_str()).collect();
            let mut file_of = HashMap::new();
            for f in distinct {
                file_of.insert(f.to_owned(), files.len());
                files.push(SafetensorsFile::open(&dir.join(f))?);
            }
            for (tensor, f) in &shard_names {
                let fi = file_of[f];
                if files[fi].tensor(tensor).is_none() {
                    let msg = format!(
                        "tensor {tensor}: listed in {} but absent from the shard",
                        index_path.display()
                    );
                    return Err(Error::model(&files[fi].path, msg));
                }
            }
        }
        for (fi, f) in files.iter().enumerate() {
            for name in f.tensors.keys() {
                if let Some(prev) = index.insert(name.clone(), fi) {
                    let msg = format!(
                        "tensor {name} is in both {} and this file",
                        files[prev].path.display()
                    );
                    return Err(Error::model(&f.path, msg));
                }
            }
        }
        Ok(HfWeights {
            dir: dir.to_owned(),
            files,
            index,
            listing,
        })
    }

    /// The tensor llama.cpp calls `gguf_name`: its file, its Hugging Face name, its entry.
    pub fn find(&self, gguf_name: &str) -> Option<(&SafetensorsFile, String, &StTensor)> {
        let name = hf_name(gguf_name)?;
        let file = &self.files[*self.index.get(&name)?];
        let t = file.tensor(&name)?;
        Some((file, name, t))
    }

    /// The error for a required tensor that is not there.
    pub fn missing(&self, gguf_name: &str) -> Error {
        let name = hf_name(gguf_name).unwrap_or_else(|| gguf_name.to_owned());
        Error::model(
            &self.listing,
            format!("missing tensor {name} (llama.cpp's {gguf_name})"),
        )
    }

    /// Bytes of all mapped files.
    pub fn file_bytes(&self) -> usize {
        self.files.iter().map(|f| f.mapping().len()).sum()
    }
}

/// `(tensor, shard file)` pairs of an index's `weight_map`; shard names must be plain file
/// names (no directories, so nothing outside the checkpoint is opened).
fn shards_of(path: &Path, v: &Value) -> Result<Vec<(String, String)>> {
    let Some(map) = v.get("weight_map").and_then(Value::as_object) else {
        return Err(Error::model(
            path,
            "key \"weight_map\" is missing or not an object",
        ));
    };
    let mut out = Vec::new();
    for (tensor, file) in map {
        let Some(f) = file.as_str() else {
            let msg = format!("weight_map entry {tensor:?} is not a file name");
            return Err(Error::model(path, msg));
        };
        let plain = Path::new(f).file_name().is_some_and(|n| n == f) && f != ".." && f != ".";
        if !plain {
            let msg = format!("weight_map entry {tensor:?}: shard {f:?} is not a plain file name");
            return Err(Error::model(path, msg));
        }
        out.push((tensor.clone(), f.to_owned()));
    }
    if out.is_empty() {
        return Err(Error::model(path, "weight_map lists no tensors"));
    }
    Ok(out)
}

/// The Hugging Face name of llama.cpp's tensor `gguf_name` (Llama/Qwen2/Qwen3 layout).
pub fn hf_name(gguf_name: &str) -> Option<String> {
    let fixed = match gguf_name {
        "token_embd.weight" => Some("model.embed_tokens.weight"),
        "output_norm.weight" => Some("model.norm.weight"),
        "output.weight" => Some("lm_head.weight"),
        _ => None,
    };
    if let Some(f) = fixed {
        return Some(f.to_owned());
    }
    let rest = gguf_name.strip_prefix("blk.")?;
    let (layer, part) = rest.split_once('.')?;
    let (base, suffix) = part.rsplit_once('.')?;
    let hf = match base {
        "attn_norm" => "input_layernorm",
        "attn_q" => "self_attn.q_proj",
        "attn_k" => "self_attn.k_proj",
        "attn_v" => "self_attn.v_proj",
        "attn_output" => "self_attn.o_proj",
        "attn_q_norm" => "self_attn.q_norm",
        "attn_k_norm" => "self_attn.k_norm",
        "ffn_norm" => "post_attention_layernorm",
        "ffn_gate" => "mlp.gate_proj",
        "ffn_up" => "mlp.up_proj",
        "ffn_down" => "mlp.down_proj",
        _ => return None,
    };
    Some(format!("model.layers.{layer}.{hf}.{suffix}"))
}

/// A checkpoint's recommended generation settings (`generation_config.json`); every field
/// absent from the file is `None` / empty. `do_sample = false` means greedy in
/// transformers, whatever the temperature says.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GenerationConfig {
    pub do_sample: Option<bool>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: Option<u32>,
    pub min_p: Option<f32>,
    pub repetition_penalty: Option<f32>,
    pub bos_token_id: Option<u32>,
    /// End-of-sequence ids (`eos_token_id`, a number or a list).
    pub eos_token_ids: Vec<u32>,
    pub max_new_tokens: Option<usize>,
}

impl GenerationConfig {
    /// Reads `dir/generation_config.json` (the default when the file is absent).
    pub fn read(dir: &Path) -> Result<Self> {
        let path = dir.join("generation_config.json");
        match read_json(&path)? {
            None => Ok(GenerationConfig::default()),
            Some(v) => Self::from_json(&path, &v),
        }
    }

    /// Parses a generation config; a key of the wrong type is an error naming it.
    pub fn from_json(path: &Path, v: &Value) -> Result<Self> {
        let Some(map) = v.as_object() else {
            return Err(Error::model(
                path,
                "generation_config.json is not a JSON object",
            ));
        };
        let err = |k: &str, what: &str| {
            Error::model(
                path,
                format!("generation_config.json key {k:?}: is not {what}"),
            )
        };
        let get = |k: &str| map.get(k).filter(|v| !v.is_null());
        let num = |k: &str| -> Result<Option<f32>> {
            get(k)
                .map(|v| {
                    v.as_f64()
                        .map(|f| f as f32)
                        .ok_or_else(|| err(k, "a number"))
                })
                .transpose()
        };
        let uint = |k: &str| -> Result<Option<u64>> {
            get(k)
                .map(|v| v.as_u64().ok_or_else(|| err(k, "a non-negative integer")))
                .transpose()
        };
        let id = |v: &Value, k: &str| -> Result<u32> {
            v.as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| err(k, "a token id"))
        };
        let eos_token_ids = match get("eos_token_id") {
            None => Vec::new(),
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| id(v, "eos_token_id"))
                .collect::<Result<_>>()?,
            Some(v) => vec![id(v, "eos_token_id")?],
        };
        Ok(GenerationConfig {
            do_sample: get("do_sample")
                .map(|v| v.as_bool().ok_or_else(|| err("do_sample", "a boolean")))
                .transpose()?,
            temperature: num("temperature")?,
            top_p: num("top_p")?,
            top_k: uint("top_k")?.map(|k| k.min(u32::MAX as u64) as u32),
            min_p: num("min_p")?,
            repetition_penalty: num("repetition_penalty")?,
            bos_token_id: get("bos_token_id")
                .map(|v| id(v, "bos_token_id"))
                .transpose()?,
            eos_token_ids,
            max_new_tokens: uint("max_new_tokens")?.map(|n| n as usize),
        })
    }
}

#[cfg(test)]
mod tests;
