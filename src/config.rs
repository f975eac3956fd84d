//! Engine configuration, parsed from the JSON a host passes to `rill_engine_create`.
//! Parsing is strict: unknown keys, wrong types, out-of-range values and missing files are
//! refused with an error naming the key (and the path), never ignored.

use std::path::PathBuf;

use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::sampling::SamplingParams;

/// Which backend the config asks for (`device`). `Auto` and `Cuda` are resolved at create
/// by [`crate::backend::select`], which reports what was chosen and why in the stats.
///
/// `"cuda"` / `"cuda:N"` parse only in builds with the `cuda` feature; elsewhere they are
/// refused naming the feature. The CUDA forward pass is not written yet: a build with the
/// feature probes the driver and devices, but creating an engine on a CUDA device fails
/// with an error that says so (it never falls back to the CPU silently).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    Cpu,
    /// GPU 0 when the build has CUDA and a driver and a device are present, else the CPU.
    Auto,
    /// The CUDA device with this ordinal (`"cuda"` is `cuda:0`).
    Cuda(usize),
}

/// The highest `cuda:N` ordinal accepted (far above any real machine).
const MAX_CUDA_ORDINAL: usize = 1023;

impl Device {
    /// Parses a `device` value: `"cpu"`, `"auto"`, `"cuda"`, `"cuda:N"`. Errors name the
    /// `device` key.
    pub fn parse(s: &str) -> Result<Device> {
        let cuda = match s {
            "cpu" => return Ok(Device::Cpu),
            "auto" => return Ok(Device::Auto),
            "cuda" => Device::Cuda(0),
            _ => match s.strip_prefix("cuda:") {
                Some(n) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
                    match n.parse::<usize>() {
                        Ok(i) if i <= MAX_CUDA_ORDINAL => Device::Cuda(i),
                        _ => {
                            return Err(Error::config(
                                "device",
                                format!(
                                    "device ordinal in {s:?} is out of range \
                                     (0..={MAX_CUDA_ORDINAL})"
                                ),
                            ))
                        }
                    }
                }
                Some(_) => {
                    return Err(Error::config(
                        "device",
                        format!(
                            "{s:?} is not a device: write \"cuda\" or \"cuda:N\" with N a \
                             device ordinal (0, 1, ...)"
                        ),
                    ))
                }
                None => {
                    return Err(Error::config(
                        "device",
                        format!(
                            "unsupported device {s:?} (known: \"cpu\", \"auto\", \"cuda\", \
                             \"cuda:N\")"
                        ),
                    ))
                }
            },
        };
        if cfg!(feature = "cuda") {
            Ok(cuda)
        } else {
            Err(Error::config(
                "device",
                format!(
                    "{s:?} needs CUDA, and this build of rill lacks the `cuda` feature \
                     (rebuild with `cargo build --features cuda`); this build supports \
                     \"cpu\" and \"auto\" (= cpu)"
                ),
            ))
        }
    }

    /// The config spelling (`"cpu"`, `"auto"`, `"cuda:N"`).
    pub fn config_name(self) -> String {
        match self {
            Device::Cpu => "cpu".into(),
            Device::Auto => "auto".into(),
            Device::Cuda(i) => format!("cuda:{i}"),
        }
    }
}

/// Sampling defaults for requests that omit the field (vLLM's generation config): the
/// model's recommended settings, or a host's. Request fields always win.
/// The default value is OpenAI's: `SamplingParams::default()` and no output cap.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct GenerationDefaults {
    /// Default temperature, top_p, top_k, min_p (`seed` stays per request).
    pub sampling: SamplingParams,
    pub max_output_tokens: Option<usize>,
}

const GENERATION_KEYS: &[&str] = &[
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "repetition_penalty",
    "max_output_tokens",
];

impl GenerationDefaults {
    fn from_value(v: Option<&Value>) -> Result<Self> {
        GenerationDefaults::default().overlay(v)
    }

    /// These defaults with the keys a host set in its `generation_config` replacing them
    /// (the engine starts from the model's `generation_config.json`; the host wins).
    pub fn overlay(self, v: Option<&Value>) -> Result<Self> {
        let mut d = self;
        let map = match v {
            None | Some(Value::Null) => return Ok(d),
            Some(Value::Object(m)) => m,
            Some(other) => return Err(wrong_type("generation_config", "an object", other)),
        };
        if let Some(k) = map.keys().find(|k| !GENERATION_KEYS.contains(&k.as_str())) {
            return Err(Error::config(
                format!("generation_config.{k}"),
                format!("unknown key (known keys: {})", GENERATION_KEYS.join(", ")),
            ));
        }
        let num = |k: &str, lo: f64, hi: f64| -> Result<Option<f64>> {
            match map.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Number(n)) => match n.as_f64() {
                    Some(x) if (lo..=hi).contains(&x) => Ok(Some(x)),
                    _ => Err(Error::config(
                        format!("generation_config.{k}"),
                        format!("must be in [{lo}, {hi}]"),
                    )),
                },
                Some(other) => Err(wrong_type(
                    &format!("generation_config.{k}"),
                    "a number",
                    other,
                )),
            }
        };
        if let Some(x) = num("temperature", 0.0, 2.0)? {
            d.sampling.temperature = x as f32;
        }
        if let Some(x) = num("top_p", 0.0, 1.0)? {
            d.sampling.top_p = x as f32;
        }
        if let Some(x) = num("min_p", 0.0, 1.0)? {
            d.sampling.min_p = x as f32;
        }
        if let Some(x) = num("repetition_penalty", f64::MIN_POSITIVE, 100.0)? {
            d.sampling.repetition_penalty = x as f32;
        }
        let top_k = get_uint(map, "top_k", 0, 1_000_000)
            .map_err(|_| Error::config("generation_config.top_k", "must be an integer >= 0"))?;
        if let Some(k) = top_k {
            d.sampling.top_k = k as usize;
        }
        let max_out = get_uint(map, "max_output_tokens", 1, 1 << 24).map_err(|_| {
            Error::config(
                "generation_config.max_output_tokens",
                "must be a positive integer",
            )
        })?;
        if let Some(n) = max_out {
            d.max_output_tokens = Some(n as usize);
        }
        Ok(d)
    }
}

/// A validated engine configuration. Optional limits are resolved against the model at
/// load time (`None` means "use the model's value").
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// A `.gguf` model file or a Hugging Face checkpoint directory (`config.json` +
    /// safetensors).
    pub model: PathBuf,
    /// Backend as asked for (`"cpu"`, the default; `"auto"`; `"cuda"`, `"cuda:N"` with the
    /// `cuda` feature); [`crate::backend::select`] resolves it at create.
    pub device: Device,
    /// CPU worker threads for the forward pass (the engine thread included).
    pub num_threads: usize,
    /// Most sequences in one step; `None`: the backend's default ([`EngineConfig::limits`]).
    pub max_num_seqs: Option<usize>,
    /// Most tokens (prompt + output) per sequence; defaults to the model's context length.
    pub max_model_len: Option<usize>,
    /// Most tokens in one forward pass (prefill is chunked to fit); `None`: the backend's
    /// default.
    pub max_num_batched_tokens: Option<usize>,
    /// Seed for requests that do not give their own.
    pub seed: u64,
    /// Sampling defaults for requests that omit a field (the host's `generation_config`
    /// over OpenAI's defaults).
    pub generation: GenerationDefaults,
    /// The host's `generation_config` object as given (validated), laid over the model's
    /// own `generation_config.json` at create.
    pub generation_overrides: Option<Value>,
    /// Tokens per KV block.
    pub block_size: usize,
    /// How much memory the KV cache gets.
    pub kv_cache: KvCacheSize,
    /// Reuse the KV of shared prompt prefixes across requests.
    pub enable_prefix_caching: bool,
    /// Which reasoning parser splits `<think>` blocks off: `"auto"` (chosen from the
    /// tokenizer and template), `"none"`, or `"think"` (`<think>` … `</think>`, Qwen3 and
    /// DeepSeek-R1 style).
    pub reasoning_parser: ParserChoice,
    /// Which tool-call parser reads calls: `"auto"`, `"none"` or `"hermes"`
    /// (`<tool_call>{json}</tool_call>`, Qwen2.5/Qwen3).
    pub tool_call_parser: ParserChoice,
}

/// An output-parser setting: detect, off, or on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ParserChoice {
    #[default]
    Auto,
    Off,
    On,
}

fn parser_choice(map: &Map<String, Value>, key: &str, on: &str) -> Result<ParserChoice> {
    match map.get(key) {
        None => Ok(ParserChoice::Auto),
        Some(Value::String(s)) if s == "auto" => Ok(ParserChoice::Auto),
        Some(Value::String(s)) if s == "none" => Ok(ParserChoice::Off),
        Some(Value::String(s)) if s == on => Ok(ParserChoice::On),
        Some(Value::String(s)) => Err(Error::config(
            key,
            format!("unknown parser {s:?} (auto, none, {on})"),
        )),
        Some(other) => Err(wrong_type(key, "a string", other)),
    }
}

/// The KV cache budget: explicit bytes, or a fraction of the memory available at create.
/// The default is the smaller of what `max_num_seqs` sequences of `max_model_len` tokens
/// need and a quarter of the available memory.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum KvCacheSize {
    Auto,
    Bytes(u64),
    MemoryFraction(f64),
}

const KEYS: &[&str] = &[
    "model",
    "device",
    "num_threads",
    "max_num_seqs",
    "max_model_len",
    "max_num_batched_tokens",
    "seed",
    "generation_config",
    "block_size",
    "kv_cache_bytes",
    "kv_cache_memory_fraction",
    "enable_prefix_caching",
    "reasoning_parser",
    "tool_call_parser",
];

/// The scheduler's limits on one backend: `max_num_seqs` and `max_num_batched_tokens`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StepLimits {
    pub max_num_seqs: usize,
    pub max_num_batched_tokens: usize,
}

impl EngineConfig {
    /// The limits the config gives, with the backend's defaults for those it omits: on the
    /// CPU 16 sequences and 512 tokens per step (its steps are slow: small batches keep
    /// the latency of each request low); on a GPU vLLM's 256 and 8192 (a GPU step costs
    /// about the same for 1 or 256 decodes).
    pub fn limits(&self, gpu: bool) -> StepLimits {
        let (seqs, tokens) = if gpu { (256, 8192) } else { (16, 512) };
        StepLimits {
            max_num_seqs: self.max_num_seqs.unwrap_or(seqs),
            max_num_batched_tokens: self.max_num_batched_tokens.unwrap_or(tokens),
        }
    }

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
            None => {
                return Err(Error::config(
                    "model",
                    "is required (a .gguf file or a Hugging Face checkpoint directory)",
                ))
            }
        };
        match std::fs::metadata(&model) {
            Ok(m) if m.is_file() => {}
            Ok(m) if m.is_dir() && model.join("config.json").is_file() => {}
            Ok(_) => {
                return Err(Error::config(
                    "model",
                    format!(
                        "{} is neither a file (a .gguf model) nor a directory with a \
                         config.json (a Hugging Face checkpoint)",
                        model.display()
                    ),
                ))
            }
            Err(e) => return Err(Error::config("model", format!("{}: {e}", model.display()))),
        }
        let device = match map.get("device") {
            None => Device::Cpu,
            Some(Value::String(s)) => Device::parse(s)?,
            Some(other) => return Err(wrong_type("device", "a string", other)),
        };
        let default_threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let kv_cache = match (
            get_uint(map, "kv_cache_bytes", 1 << 16, u64::MAX)?,
            map.get("kv_cache_memory_fraction"),
        ) {
            (Some(_), Some(_)) => {
                return Err(Error::config(
                    "kv_cache_memory_fraction",
                    "give either kv_cache_bytes or kv_cache_memory_fraction, not both",
                ))
            }
            (Some(b), None) => KvCacheSize::Bytes(b),
            (None, None) => KvCacheSize::Auto,
            (None, Some(v)) => match v.as_f64() {
                Some(f) if f > 0.0 && f <= 0.95 => KvCacheSize::MemoryFraction(f),
                Some(_) => {
                    return Err(Error::config(
                        "kv_cache_memory_fraction",
                        "must be a number in (0, 0.95]",
                    ))
                }
                None => return Err(wrong_type("kv_cache_memory_fraction", "a number", v)),
            },
        };
        let enable_prefix_caching = match map.get("enable_prefix_caching") {
            None => true,
            Some(Value::Bool(b)) => *b,
            Some(other) => return Err(wrong_type("enable_prefix_caching", "a boolean", other)),
        };
        Ok(EngineConfig {
            reasoning_parser: parser_choice(map, "reasoning_parser", "think")?,
            tool_call_parser: parser_choice(map, "tool_call_parser", "hermes")?,
            block_size: get_uint(map, "block_size", 1, 1024)?.unwrap_or(16) as usize,
            kv_cache,
            enable_prefix_caching,
            model,
            device,
            num_threads: get_uint(map, "num_threads", 1, 1024)?.unwrap_or(default_threads as u64)
                as usize,
            max_num_seqs: get_uint(map, "max_num_seqs", 1, 4096)?.map(|v| v as usize),
            max_model_len: get_uint(map, "max_model_len", 2, 1 << 24)?.map(|v| v as usize),
            max_num_batched_tokens: get_uint(map, "max_num_batched_tokens", 16, 1 << 20)?
                .map(|v| v as usize),
            seed: get_uint(map, "seed", 0, u64::MAX)?.unwrap_or(0),
            generation: GenerationDefaults::from_value(map.get("generation_config"))?,
            generation_overrides: map.get("generation_config").cloned(),
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
        // A directory must hold a config.json (a Hugging Face checkpoint).
        let dir = exe.parent().unwrap().to_str().unwrap();
        let e = err(&format!(r#"{{"model": "{dir}"}}"#));
        assert!(e.contains("`model`") && e.contains("config.json"), "{e}");
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
        let gen = |g: &str| {
            err(&format!(
                r#"{{"model": "{model}", "generation_config": {g}}}"#
            ))
        };
        assert!(gen(r#"{"temperature": 5}"#).contains("`generation_config.temperature`"));
        assert!(gen(r#"{"tmp": 1}"#).contains("`generation_config.tmp`"));
        assert!(gen(r#"{"top_k": -1}"#).contains("`generation_config.top_k`"));
        assert!(gen("[]").contains("`generation_config`"));
        let cfg = |extra: &str| err(&format!(r#"{{"model": "{model}", {extra}}}"#));
        assert!(cfg(r#""block_size": 0"#).contains("`block_size`"));
        assert!(cfg(r#""kv_cache_bytes": 10"#).contains("`kv_cache_bytes`"));
        assert!(cfg(r#""kv_cache_memory_fraction": 1.5"#).contains("`kv_cache_memory_fraction`"));
        assert!(
            cfg(r#""kv_cache_bytes": 100000, "kv_cache_memory_fraction": 0.5"#)
                .contains("not both")
        );
        assert!(cfg(r#""enable_prefix_caching": 1"#).contains("`enable_prefix_caching`"));
        assert!(cfg(r#""reasoning_parser": "deepseek""#).contains("`reasoning_parser`"));
        assert!(cfg(r#""tool_call_parser": true"#).contains("`tool_call_parser`"));
        let p = EngineConfig::from_json(&format!(
            r#"{{"model": "{model}", "reasoning_parser": "none", "tool_call_parser": "hermes"}}"#
        ))
        .unwrap();
        assert_eq!(
            (p.reasoning_parser, p.tool_call_parser),
            (ParserChoice::Off, ParserChoice::On)
        );
        let g = EngineConfig::from_json(&format!(
            r#"{{"model": "{model}", "generation_config": {{"temperature": 0.8, "top_k": 40, "max_output_tokens": 9}}}}"#
        ))
        .unwrap()
        .generation;
        assert_eq!(
            (
                g.sampling.temperature,
                g.sampling.top_k,
                g.sampling.top_p,
                g.max_output_tokens
            ),
            (0.8, 40, 1.0, Some(9))
        );
        let ok = EngineConfig::from_json(&format!(
            r#"{{"model": "{model}", "num_threads": 2, "seed": 7}}"#
        ))
        .unwrap();
        assert_eq!((ok.num_threads, ok.seed, ok.device), (2, 7, Device::Cpu));
    }

    #[test]
    fn step_limits_default_per_backend_and_keep_what_the_config_gives() {
        let c = |extra: &str| {
            // The model must be an existing file; the test binary is one.
            let exe = std::env::current_exe().unwrap();
            let json = format!(r#"{{"model": "{}"{extra}}}"#, exe.to_str().unwrap());
            EngineConfig::from_json(&json).unwrap()
        };
        let none = c("");
        assert_eq!(
            (
                none.limits(false).max_num_seqs,
                none.limits(false).max_num_batched_tokens
            ),
            (16, 512)
        );
        assert_eq!(
            (
                none.limits(true).max_num_seqs,
                none.limits(true).max_num_batched_tokens
            ),
            (256, 8192)
        );
        let given = c(r#", "max_num_seqs": 3, "max_num_batched_tokens": 64"#);
        for gpu in [false, true] {
            assert_eq!(
                given.limits(gpu),
                StepLimits {
                    max_num_seqs: 3,
                    max_num_batched_tokens: 64
                }
            );
        }
    }

    #[test]
    fn device_strings() {
        assert_eq!(Device::parse("cpu").unwrap(), Device::Cpu);
        assert_eq!(Device::parse("auto").unwrap(), Device::Auto);
        for bad in [
            "tpu", "CPU", "gpu", "", "cuda0", "cuda:", "cuda:x", "cuda:-1", "cuda:+1",
        ] {
            let e = Device::parse(bad).unwrap_err();
            assert!(e.to_string().contains("`device`"), "{bad:?}: {e}");
            assert_eq!(e.status(), crate::ffi::status::RillStatus::InvalidConfig);
        }
        assert!(Device::parse("cuda:0 ").is_err());
        let far = Device::parse("cuda:99999999999999999999").unwrap_err();
        assert!(far.to_string().contains("out of range"), "{far}");
        let cases = [
            ("cuda", 0),
            ("cuda:0", 0),
            ("cuda:1", 1),
            ("cuda:7", 7),
            ("cuda:1023", 1023),
        ];
        for (s, n) in cases {
            if cfg!(feature = "cuda") {
                assert_eq!(Device::parse(s).unwrap(), Device::Cuda(n), "{s}");
                assert_eq!(Device::Cuda(n).config_name(), format!("cuda:{n}"));
            } else {
                let e = Device::parse(s).unwrap_err().to_string();
                assert!(
                    e.contains("`device`") && e.contains("`cuda` feature"),
                    "{e}"
                );
            }
        }
        assert!(Device::parse("cuda:1024").is_err());
        // Through the whole config: the key is named.
        let exe = std::env::current_exe().unwrap();
        let model = exe.to_str().unwrap();
        let c = |d: &str| {
            EngineConfig::from_json(&format!(r#"{{"model": "{model}", "device": "{d}"}}"#))
        };
        assert_eq!(c("auto").unwrap().device, Device::Auto);
        assert_eq!(c("cuda:2").is_ok(), cfg!(feature = "cuda"));
        let e = err(&format!(r#"{{"model": "{model}", "device": 0}}"#));
        assert!(e.contains("`device`") && e.contains("a string"), "{e}");
    }
}
