//! rill's architectures against llama.cpp on the seeded tiny models (llama with Llama 3
//! RoPE scaling and an untied output, qwen2 with Q/K/V bias, qwen3 with per-head Q/K norm
//! and head_dim != hidden/heads), made by `scripts/tiny_models.sh` (cached; the test fails
//! with the script's error if it cannot make them). Every model is evaluated teacher-forced
//! on the stored token ids (~300) in one prefill, and compared with llama.cpp's logits:
//! - GGUF F32 / F16: `max |rill - ref| / max |ref|`, both maxima over all entries of the
//!   full logit rows llama.cpp stored (8 positions x vocab), must be <= 1e-3;
//! - every other GGUF type (quantized, BF16): rill's argmax equals llama.cpp's top-1 on
//!   at least 99% of all positions (no position excluded, near-ties included), and its full
//!   rows differ from llama.cpp's by at most `NOISE_FACTOR` times what llama.cpp's own
//!   rows move when only its KV cache goes from f16 to f32 (the generator stores that
//!   floor per file, and refuses models whose top-1 llama.cpp itself cannot hold);
//! - HF f32 directories (single file and sharded): the same logits as rill on F32.gguf,
//!   `max |hf - gguf| / max |gguf|` <= 1e-4 at the stored positions (they differ only in
//!   summation order and RoPE factor rounding: HF Q/K rows are unpermuted and roped in the
//!   NeoX layout, Llama 3 factors come from config.json instead of `rope_freqs.weight`);
//! - the HF bf16 directory: loads and matches llama.cpp's BF16.gguf top-1 on >= 99%.
//!
//! Each test walks every file the generator made, prints one line per file, and fails at
//! the end listing every file that failed (a type the CPU matmul does not support yet
//! fails loudly). To run a subset, `RILL_MODEL_TYPES=F32,F16,Q8_0` (the HF bf16 dir counts
//! as BF16); filtered-out files are printed as NOT RUN. `RILL_TINY_MODELS=DIR` uses an
//! already generated directory instead of running the script.
//! Run: `cargo test --test models` (the dev profile is optimized).

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Instant;

use rill::backend::cpu::kv::PagedKv;
use rill::backend::cpu::pool::ThreadPool;
use rill::model::{self, Decoder, StepBatch};
use serde_json::Value;

/// Quantized and BF16 files: rill's full logit rows may differ from llama.cpp's by at most
/// this many times the amount llama.cpp's own rows move when only its KV cache precision
/// changes. With activations rounded to 8 bits (Q8_0/Q8_K/bf16) any perturbation, a
/// different summation order included, moves a random model's logits by ~1% of their
/// range; a wrong block layout or scale moves them by far more.
const NOISE_FACTOR: f32 = 3.0;

/// The generated directory (runs the generator once per test binary).
fn tiny_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        common::generated_dir(
            "RILL_TINY_MODELS",
            "scripts/tiny_models.sh",
            "manifest.json",
        )
    })
}

fn read_json(p: &Path) -> Value {
    let text = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn manifest() -> Value {
    read_json(&tiny_dir().join("manifest.json"))
}

/// Whether `RILL_MODEL_TYPES` lets type `ty` run (printed when it does not).
fn selected(ty: &str, what: &str) -> bool {
    let Ok(list) = std::env::var("RILL_MODEL_TYPES") else {
        return true;
    };
    let on = list.split(',').any(|t| t.trim() == ty);
    if !on {
        println!("{what}: NOT RUN (RILL_MODEL_TYPES={list})");
    }
    on
}

/// The stored token ids of `arch`.
fn token_ids(arch: &str) -> Vec<u32> {
    let t = read_json(&tiny_dir().join(arch).join("reference/tokens.json"));
    t["ids"]
        .as_array()
        .expect("tokens.json ids")
        .iter()
        .map(|v| v.as_u64().expect("id") as u32)
        .collect()
}

/// Teacher-forced logits of `ids` in one prefill at positions `rows` (all when `None`),
/// row after row.
fn eval(model: &Decoder, ids: &[u32], rows: Option<&[usize]>) -> Vec<f32> {
    const BLOCK: usize = 16;
    let n = ids.len();
    let blocks = n.div_ceil(BLOCK);
    let c = &model.config;
    let mut kv = PagedKv::new(c.n_layers, c.kv_dim(), BLOCK, blocks).expect("kv cache");
    let pool = ThreadPool::new(2).expect("pool");
    let batch = StepBatch::one_sequence(ids, 0, blocks, BLOCK);
    match rows {
        Some(rows) => model.forward_rows(&pool, &mut kv, &batch, rows),
        None => model.forward_all(&pool, &mut kv, &batch),
    }
}

fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best
}

/// llama.cpp's reference for one file: top-1 per position, full rows at some positions.
struct Reference {
    top1: Vec<usize>,
    /// llama.cpp's top-1 minus top-2 logit per position.
    margin: Vec<f32>,
    full_positions: Vec<usize>,
    full: Vec<f32>,
    /// How far llama.cpp's own full rows move when only its KV cache goes from f16 to f32
    /// (`max |diff| / max |ref|`): the noise floor of this type.
    kv_noise: f32,
}

fn reference(arch: &str, ty: &str) -> Reference {
    let dir = tiny_dir().join(arch).join("reference");
    let j = read_json(&dir.join(format!("{ty}.json")));
    let nums = |k: &str| -> Vec<usize> {
        j[k].as_array()
            .unwrap_or_else(|| panic!("{ty}.json: {k}"))
            .iter()
            .map(|v| v.as_u64().expect("index") as usize)
            .collect()
    };
    let file = dir.join(j["logits_file"].as_str().expect("logits_file"));
    let bytes = std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    Reference {
        top1: nums("top1"),
        margin: j["margin"]
            .as_array()
            .unwrap_or_else(|| panic!("{ty}.json: margin"))
            .iter()
            .map(|v| v.as_f64().expect("margin") as f32)
            .collect(),
        full_positions: nums("full_positions"),
        kv_noise: j["kv_f32"]["rel_err_full"]
            .as_f64()
            .unwrap_or_else(|| panic!("{ty}.json: kv_f32.rel_err_full")) as f32,
        full: bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
    }
}

/// Fraction of positions whose argmax is the reference's top-1.
fn top1_agreement(logits: &[f32], vocab: usize, top1: &[usize]) -> (usize, usize) {
    let rows: Vec<&[f32]> = logits.chunks_exact(vocab).collect();
    assert_eq!(rows.len(), top1.len(), "positions: rill vs reference");
    let agree = rows
        .iter()
        .zip(top1)
        .filter(|(r, &t)| argmax(r) == t)
        .count();
    (agree, top1.len())
}

/// `max |a - b| / max |b|` over equally long blocks of logit rows.
fn rel_err(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "logit rows: rill vs reference");
    let (mut num, mut den) = (0f32, 0f32);
    for (&u, &v) in a.iter().zip(b) {
        num = num.max((u - v).abs());
        den = den.max(v.abs());
    }
    num / den
}

/// The rows at `positions` of all-position logits.
fn rows_at(all: &[f32], vocab: usize, positions: &[usize]) -> Vec<f32> {
    positions
        .iter()
        .flat_map(|&p| all[p * vocab..(p + 1) * vocab].iter().copied())
        .collect()
}

/// The GGUF types the generator made, in manifest order.
fn gguf_types() -> Vec<String> {
    let m = manifest();
    let types = m["types"].as_object().expect("manifest types");
    types.keys().cloned().collect()
}

/// Loads `path` and evaluates the arch's tokens at `rows` (all when `None`); `Err` names
/// what failed.
fn run_file(path: &Path, ids: &[u32], rows: Option<&[usize]>) -> Result<(Vec<f32>, usize), String> {
    let t = Instant::now();
    let loaded = model::load(path).map_err(|e| format!("load: {e}"))?;
    let vocab = loaded.model.config.vocab_size;
    let logits = eval(&loaded.model, ids, rows);
    println!("  {} evaluated in {:.2?}", path.display(), t.elapsed());
    Ok((logits, vocab))
}

/// Records a check's outcome: prints it, keeps the failures.
fn record(failures: &mut Vec<String>, ok: bool, line: String) {
    println!("{line}{}", if ok { "" } else { "  <-- FAILED" });
    if !ok {
        failures.push(line);
    }
}

/// Every GGUF file of `arch` against llama.cpp. F32/F16 are evaluated at the stored
/// full-row positions only (the unvectorized f32/f16 output matmul over a 151669-token
/// vocabulary at all positions would take tens of seconds); the rest at every position.
fn gguf_vs_llama_cpp(arch: &str) {
    let ids = token_ids(arch);
    let mut failures = Vec::new();
    for ty in gguf_types() {
        let what = format!("{arch}/{ty}.gguf");
        if !selected(&ty, &what) {
            continue;
        }
        let r = reference(arch, &ty);
        let exact = ty == "F32" || ty == "F16";
        let path = tiny_dir().join(arch).join(format!("gguf/{ty}.gguf"));
        let rows = exact.then_some(&r.full_positions[..]);
        let (logits, vocab) = match run_file(&path, &ids, rows) {
            Ok(out) => out,
            Err(e) => {
                record(&mut failures, false, format!("{what}: {e}"));
                continue;
            }
        };
        let full = if exact {
            logits.clone()
        } else {
            rows_at(&logits, vocab, &r.full_positions)
        };
        let err = rel_err(&full, &r.full);
        let stored = format!(
            "max|diff|/max|ref| = {err:.2e} at positions {:?}",
            r.full_positions
        );
        if exact {
            let top: Vec<usize> = r.full_positions.iter().map(|&p| r.top1[p]).collect();
            let (agree, n) = top1_agreement(&logits, vocab, &top);
            let line = format!("{what}: {stored} (limit 1e-3); top-1 equal at {agree}/{n} of them");
            record(&mut failures, err <= 1e-3, line);
        } else {
            // Where rill disagrees: llama.cpp's top-1 margin, and how far rill puts
            // llama.cpp's top-1 below its own (diagnostics; nothing is excluded).
            for (p, row) in logits.chunks_exact(vocab).enumerate() {
                let a = argmax(row);
                if a != r.top1[p] {
                    let (m, gap) = (r.margin[p], row[a] - row[r.top1[p]]);
                    println!("  position {p}: rill {a} vs llama.cpp {} (llama.cpp margin {m:.3}, rill gap {gap:.3})", r.top1[p]);
                }
            }
            let (agree, n) = top1_agreement(&logits, vocab, &r.top1);
            let pct = 100.0 * agree as f64 / n as f64;
            let limit = NOISE_FACTOR * r.kv_noise;
            let line = format!(
                "{what}: top-1 agrees with llama.cpp at {agree}/{n} positions ({pct:.2}%, limit 99%); \
                 {stored} (limit {NOISE_FACTOR} x llama.cpp's own f16/f32-KV difference {:.2e} = {limit:.2e})",
                r.kv_noise
            );
            record(&mut failures, pct >= 99.0 && err <= limit, line);
        }
    }
    assert!(
        failures.is_empty(),
        "{} file(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The HF directories of `arch`: f32 (single, sharded) against rill on F32.gguf at the
/// stored positions; bf16 against llama.cpp on BF16.gguf (top-1 at every position).
fn hf_dirs(arch: &str) {
    let ids = token_ids(arch);
    let positions = reference(arch, "F32").full_positions;
    let mut failures = Vec::new();
    let dir = |d: &str| tiny_dir().join(arch).join(d);
    if selected("F32", &format!("{arch}/hf, {arch}/hf-sharded")) {
        match run_file(&dir("gguf/F32.gguf"), &ids, Some(&positions)) {
            Err(e) => record(&mut failures, false, format!("{arch}/F32.gguf: {e}")),
            Ok((gguf, _)) => {
                for d in ["hf", "hf-sharded"] {
                    let what = format!("{arch}/{d}");
                    match run_file(&dir(d), &ids, Some(&positions)) {
                        Ok((logits, _)) => {
                            let err = rel_err(&logits, &gguf);
                            let line = format!("{what}: max|hf - F32.gguf|/max|F32.gguf| = {err:.2e} at positions {positions:?} (limit 1e-4)");
                            record(&mut failures, err <= 1e-4, line);
                        }
                        Err(e) => record(&mut failures, false, format!("{what}: {e}")),
                    }
                }
            }
        }
    }
    let what = format!("{arch}/hf-bf16");
    if selected("BF16", &what) {
        match run_file(&dir("hf-bf16"), &ids, None) {
            Ok((logits, vocab)) => {
                let (agree, n) = top1_agreement(&logits, vocab, &reference(arch, "BF16").top1);
                let line = format!("{what}: top-1 agrees with llama.cpp BF16.gguf at {agree}/{n} positions (limit 99%)");
                record(&mut failures, agree as f64 >= 0.99 * n as f64, line);
            }
            Err(e) => record(&mut failures, false, format!("{what}: {e}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} check(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn llama_gguf_matches_llama_cpp() {
    gguf_vs_llama_cpp("llama");
}

#[test]
fn qwen2_gguf_matches_llama_cpp() {
    gguf_vs_llama_cpp("qwen2");
}

#[test]
fn qwen3_gguf_matches_llama_cpp() {
    gguf_vs_llama_cpp("qwen3");
}

#[test]
fn llama_hf_dirs_match_gguf() {
    hf_dirs("llama");
}

#[test]
fn qwen2_hf_dirs_match_gguf() {
    hf_dirs("qwen2");
}

#[test]
fn qwen3_hf_dirs_match_gguf() {
    hf_dirs("qwen3");
}

#[test]
fn every_arch_in_the_manifest_is_tested() {
    let m = manifest();
    let archs: Vec<&String> = m["archs"].as_object().expect("archs").keys().collect();
    assert_eq!(
        archs,
        ["llama", "qwen2", "qwen3"],
        "a new arch needs its tests here"
    );
}

/// An engine on `model` (a GGUF file or an HF directory).
fn tiny_engine(model: &Path, extra: Value) -> rill::Engine {
    let mut c =
        serde_json::json!({"model": model, "num_threads": 2, "seed": 1, "max_model_len": 512});
    if let (Some(c), Some(e)) = (c.as_object_mut(), extra.as_object()) {
        c.extend(e.clone());
    }
    let cfg = rill::EngineConfig::from_json(&c.to_string()).unwrap();
    rill::Engine::new(cfg).unwrap_or_else(|e| panic!("{}: {e}", model.display()))
}

/// Greedy output text and the terminal response of one request.
fn greedy(engine: &rill::Engine, body: Value) -> (String, Value) {
    let (_, rx) = common::submit(engine, &body.to_string()).unwrap();
    let events = common::collect(&rx);
    let last = events.last().unwrap()["response"].clone();
    (common::text_of(&events), last)
}

/// The engine serves an HF directory end to end (tokenizer.json, the chat template from
/// tokenizer_config.json, generation_config.json defaults and EOS ids) and gives the
/// same prompt tokens and greedy text as the F32 GGUF of the same weights, whose
/// tokenizer and template came from the GGUF metadata instead.
#[test]
fn qwen3_hf_dir_serves_like_its_gguf() {
    let arch = tiny_dir().join("qwen3");
    let hf = tiny_engine(&arch.join("hf"), Value::Null);
    let gguf = tiny_engine(&arch.join("gguf/F32.gguf"), Value::Null);
    let body = serde_json::json!({
        "input": "Write a haiku about <|im_start|> tokens.",
        "instructions": "You are terse.",
        "temperature": 0,
        "max_output_tokens": 12,
    });
    let (hf_text, hf_resp) = greedy(&hf, body.clone());
    let (gg_text, gg_resp) = greedy(&gguf, body);
    assert_eq!(
        hf_resp["usage"]["input_tokens"],
        gg_resp["usage"]["input_tokens"]
    );
    assert_eq!(hf_resp["usage"]["output_tokens"], 12);
    assert!(!hf_text.is_empty());
    assert_eq!(hf_text, gg_text, "HF dir and F32.gguf disagree");
    // The user's "<|im_start|>" stays text: both render the same ids, and the prompt holds
    // exactly the template's control tokens.
    let parsed = rill::responses::request::parse(
        r#"{"input": "a <|im_start|> b"}"#,
        &rill::config::GenerationDefaults::default(),
    )
    .unwrap();
    let (_, ids) = hf.render_prompt(&parsed).unwrap();
    let (_, gg_ids) = gguf.render_prompt(&parsed).unwrap();
    assert_eq!(ids, gg_ids);
    assert_eq!(ids.iter().filter(|&&t| t == 151644).count(), 2, "{ids:?}");
    // generation_config.json's defaults apply to requests that omit the field; a host's
    // generation_config wins over them.
    let (_, r) = greedy(
        &hf,
        serde_json::json!({"input": "hi", "max_output_tokens": 1}),
    );
    assert!(
        (r["temperature"].as_f64().unwrap() - 0.6).abs() < 1e-6,
        "{r}"
    );
    assert!((r["top_p"].as_f64().unwrap() - 0.95).abs() < 1e-6, "{r}");
    let host = tiny_engine(
        &arch.join("hf"),
        serde_json::json!({"generation_config": {"temperature": 0.3}}),
    );
    let (_, r) = greedy(
        &host,
        serde_json::json!({"input": "hi", "max_output_tokens": 1}),
    );
    assert!(
        (r["temperature"].as_f64().unwrap() - 0.3).abs() < 1e-6,
        "{r}"
    );
    assert!((r["top_p"].as_f64().unwrap() - 0.95).abs() < 1e-6, "{r}");
    // Both EOS ids of generation_config.json end generation.
    for id in [151645, 151643] {
        assert!(
            hf.tokenizer().eog_ids.contains(&id),
            "{id} is not an EOG id"
        );
    }
    let stats = hf.stats();
    assert_eq!(stats["architecture"], "qwen3", "{stats}");
    assert_eq!(stats["model"], "hf", "{stats}");
}

/// A checkpoint whose output layer has fewer rows than its tokenizer has tokens is
/// refused at create, naming both sizes (a tokenizer smaller than the output layer, as
/// Qwen's padded vocabularies are, is fine).
#[test]
fn a_tokenizer_larger_than_the_output_layer_is_refused() {
    let (dim, ffn, vocab) = (64usize, 64usize, 1000usize);
    let d = std::env::temp_dir().join(format!("rill-vocab-mismatch-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    let config = serde_json::json!({"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3",
        "hidden_size": dim, "intermediate_size": ffn, "num_hidden_layers": 1,
        "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 32,
        "vocab_size": vocab, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
        "max_position_embeddings": 512, "tie_word_embeddings": true});
    std::fs::write(d.join("config.json"), config.to_string()).unwrap();
    let l = |s: &str| format!("model.layers.0.{s}");
    let shapes: Vec<(String, Vec<usize>)> = vec![
        ("model.embed_tokens.weight".into(), vec![vocab, dim]),
        ("model.norm.weight".into(), vec![dim]),
        (l("input_layernorm.weight"), vec![dim]),
        (l("self_attn.q_proj.weight"), vec![64, dim]),
        (l("self_attn.k_proj.weight"), vec![32, dim]),
        (l("self_attn.v_proj.weight"), vec![32, dim]),
        (l("self_attn.q_norm.weight"), vec![32]),
        (l("self_attn.k_norm.weight"), vec![32]),
        (l("self_attn.o_proj.weight"), vec![dim, 64]),
        (l("post_attention_layernorm.weight"), vec![dim]),
        (l("mlp.gate_proj.weight"), vec![ffn, dim]),
        (l("mlp.up_proj.weight"), vec![ffn, dim]),
        (l("mlp.down_proj.weight"), vec![dim, ffn]),
    ];
    let data: Vec<Vec<u8>> = shapes
        .iter()
        .map(|(_, s)| vec![0u8; 4 * s.iter().product::<usize>()])
        .collect();
    let refs: Vec<(&str, &str, &[usize], &[u8])> = shapes
        .iter()
        .zip(&data)
        .map(|((n, s), b)| (n.as_str(), "F32", s.as_slice(), b.as_slice()))
        .collect();
    std::fs::write(
        d.join("model.safetensors"),
        rill::model::safetensors::serialize(&refs),
    )
    .unwrap();
    let hf = tiny_dir().join("qwen3/hf");
    for f in ["tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(hf.join(f), d.join(f)).unwrap();
    }
    let cfg = rill::EngineConfig::from_json(
        &serde_json::json!({"model": d, "num_threads": 1}).to_string(),
    )
    .unwrap();
    let err = match rill::Engine::new(cfg) {
        Ok(_) => panic!("an output layer of {vocab} rows served a 151669-token tokenizer"),
        Err(e) => e.to_string(),
    };
    std::fs::remove_dir_all(&d).unwrap();
    assert!(
        err.contains("151669") && err.contains("1000") && err.contains("rill-vocab-mismatch"),
        "{err}"
    );
}
