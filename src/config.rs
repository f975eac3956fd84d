//! Engine configuration, parsed from the JSON a host passes to `rill_engine_create`.
//! Parsing is strict: unknown keys, wrong types, out-of-range values and missing files are
//! refused with an error naming the key (and the path), never ignored.

use std::path::PathBuf;

use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// Which backend runs the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    Cpu,
}

impl Device {
    /// The name reported in stats.
    pub fn name(self) -> &'static str {
        match self {
            Device::Cpu => "cpu",
        }
    }
}

/// A validated engine configuration. Optional limits are resolved against the model at
/// load time (`None` means "use the model's value").
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Path to a `.gguf` model file.
    pub model: PathBuf,
    /// Backend; `"auto"` resolves to the CPU in builds without CUDA.
    pub device: Device,
    /// CPU worker threads for the forward pass (the engine thread included).
    pub num_threads: usize,
    /// Most sequences in one step.
    pub max_num_seqs: usize,
    /// Most tokens (prompt + output) per sequence; defaults to the model's context length.
    pub max_model_len: Option<usize>,
    /// Most tokens in one forward pass (prefill is chunked to fit).
    pub max_num_batched_tokens: usize,
    /// Seed for requests that do not give their own.
    pub seed: u64,
}

const KEYS: &[&str] = &[
    "model",
    "device",
    "num_threads",
    "max_num_seqs",
    "max_model_len",
    "max_num_batched_tokens",
    "seed",
];

impl EngineConfig {
    /// Parses and validates a JSON config document.
    pub fn from_json(text: &str) -> Result<Self> {
        let value: Value = serde_json::from_str(text).map_err(|e| Error::InvalidJson {
            what: "engine config",
            message: e.to_string(),
        })?;
        let Value::Object(map) = value else {
            return Err(Error::config("<root>", "the config must be a JSON object"));
        };
        Self::from_map(&map)
    }

    fn from_map(map: &Map<String, Value>) -> Result<Self> {
        if let Some(key) = map.keys().find(|k| !KEYS.contains(&k.as_str())) {
            return Err(Error::config(
                key.clone(),
                format!("unknown key (known keys: {})", KEYS.join(", ")),
            ));
        }
        let model = match map.get("model") {
            Some(Value::String(s)) if !s.is_empty() => PathBuf::from(s),
            Some(Value::String(_)) => return Err(Error::config("model", "must not be empty")),
            Some(other) => return Err(wrong_type("model", "a string path", other)),
            None => return Err(Error::config("model", "is required (path to a .gguf file)")),
        };
        match std::fs::metadata(&model) {
            Ok(m) if m.is_file() => {}
            Ok(_) => {
                return Err(Error::config(
                    "model",
                    format!(
                        "{} is not a file (a .gguf file is expected)",
                        model.display()
                    ),
                ))
            }
            Err(e) => return Err(Error::config("model", format!("{}: {e}", model.display()))),
        }
        let device = match map.get("device") {
            None => Device::Cpu,
            Some(Value::String(s)) => match s.as_str() {
                "cpu" | "auto" => Device::Cpu,
                other => {
                    return Err(Error::config(
                        "device",
                        format!(
                        "unsupported device {other:?} (this build supports \"cpu\" and \"auto\")"
                    ),
                    ))
                }
            },
            Some(other) => return Err(wrong_type("device", "a string", other)),
        };
        let default_threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        Ok(EngineConfig {
            model,
            device,
            num_threads: get_uint(map, "num_threads", 1, 1024)?.unwrap_or(default_threads as u64)
                as usize,
            max_num_seqs: get_uint(map, "max_num_seqs", 1, 4096)?.unwrap_or(16) as usize,
            max_model_len: get_uint(map, "max_model_len", 2, 1 << 24)?.map(|v| v as usize),
            max_num_batched_tokens: get_uint(map, "max_num_batched_tokens", 16, 1 << 20)?
                .unwrap_or(512) as usize,
            seed: get_uint(map, "seed", 0, u64::MAX)?.unwrap_or(0),
        })
    }
}

fn wrong_type(key: &str, expected: &str, got: &Value) -> Error {
    Error::config(key, format!("must be {expected}, got {}", json_type(got)))
}

/// The JSON type name of a value, for error messages.
pub fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn get_uint(map: &Map<String, Value>, key: &str, min: u64, max: u64) -> Result<Option<u64>> {
    match map.get(key) {
        None => Ok(None),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(v) if (min..=max).contains(&v) => Ok(Some(v)),
            _ => Err(Error::config(
                key,
                format!("must be an integer in {min}..={max}, got {n}"),
            )),
        },
        Some(other) => Err(wrong_type(key, "an integer", other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(json: &str) -> String {
        EngineConfig::from_json(json).unwrap_err().to_string()
    }

    #[test]
    fn refuses_bad_configs_naming_the_key() {
        let exe = std::env::current_exe().unwrap();
        let model = exe.to_str().unwrap();
        assert!(err("not json").contains("not valid JSON"));
        assert!(err("[]").contains("JSON object"));
        assert!(err("{}").contains("`model`"));
        assert!(err(r#"{"model": "/nonexistent/x.gguf"}"#).contains("/nonexistent/x.gguf"));
        assert!(err(&format!(r#"{{"model": "{model}", "bogus": 1}}"#)).contains("`bogus`"));
        assert!(
            err(&format!(r#"{{"model": "{model}", "num_threads": "4"}}"#))
                .contains("`num_threads`")
        );
        assert!(
            err(&format!(r#"{{"model": "{model}", "max_num_seqs": 0}}"#))
                .contains("`max_num_seqs`")
        );
        assert!(err(&format!(r#"{{"model": "{model}", "device": "tpu"}}"#)).contains("`device`"));
        assert!(err(&format!(r#"{{"model": "{model}", "seed": -1}}"#)).contains("`seed`"));
        let ok = EngineConfig::from_json(&format!(
            r#"{{"model": "{model}", "num_threads": 2, "seed": 7}}"#
        ))
        .unwrap();
        assert_eq!((ok.num_threads, ok.seed, ok.device), (2, 7, Device::Cpu));
    }
}
