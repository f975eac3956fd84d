//! Tokenizers against their references, case by case over the committed corpus
//! (tests/fixtures/tokenizer_corpus.json):
//! - GGUF vocabularies (the default model's smollm BPE; Qwen3 and Llama 3 tokenizer.json
//!   converted to byte-level BPE GGUF, the Qwen3 one also under 26 other pre-tokenizer
//!   names, one per llama.cpp regex group; Llama 2's converted to SentencePiece GGUF, with
//!   convert_hf_to_gguf's scores and with SentencePiece-order scores) against llama.cpp;
//! - the three tokenizer.json files through `Tokenizer::from_hf_dir` against the Python
//!   `tokenizers` package.
//!
//! Expected ids: tests/fixtures/tokenizer_reference.json, written by
//! scripts/models/tokenizer_reference.py. The converted GGUF files are not committed:
//! scripts/models/make_vocab_ggufs.py writes them (cached); this test runs it and fails
//! with its error if it cannot (first run: ~160 MB of files, cached). Runs in about
//! 20 s (test profile = dev, opt-level 2).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use rill::model::gguf::GgufFile;
use rill::tokenizer::Tokenizer;
use serde_json::Value;

fn run_script(args: &[&str]) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = std::env::var("RILL_PYTHON").unwrap_or_else(|_| "python3".into());
    let (prog, rest) = if args[0].ends_with(".py") {
        (python.as_str(), args)
    } else {
        (args[0], &args[1..])
    };
    let out = Command::new(prog)
        .args(rest.iter().map(|a| root.join(a)))
        .output()
        .unwrap_or_else(|e| panic!("cannot run {prog} {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    PathBuf::from(
        stdout
            .trim()
            .lines()
            .last()
            .expect("script printed a directory"),
    )
}

fn reference() -> Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tokenizer_reference.json");
    serde_json::from_str(&std::fs::read_to_string(&p).expect("reference fixture")).expect("JSON")
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .expect("id list")
        .iter()
        .map(|x| x.as_u64().expect("id") as u32)
        .collect()
}

/// Compares every corpus case in both modes; returns the mismatches, described.
fn compare(name: &str, tok: &Tokenizer, expected: &Value, corpus: &[String]) -> Vec<String> {
    let mut bad = prompt_mismatches(name, tok, corpus);
    for (i, (text, want)) in corpus
        .iter()
        .zip(expected["decoded"].as_array().expect("decoded"))
        .enumerate()
    {
        let ids = ids(&expected["plain"][i]);
        let bytes: Vec<u8> = ids
            .iter()
            .flat_map(|&t| tok.token_bytes(t).to_vec())
            .collect();
        let (got, want) = match want.as_str().expect("decoded text") {
            // GGUF: llama.cpp's detokenize, as hex bytes.
            hex if name.starts_with("gguf") => (
                bytes.iter().map(|b| format!("{b:02x}")).collect(),
                hex.to_string(),
            ),
            // tokenizer.json: HF's decode; Llama 2's decoder strips one leading space
            // (`Strip` start 1), which our per-token bytes keep as llama.cpp does.
            s => {
                let got = String::from_utf8_lossy(&bytes).into_owned();
                let got = match got.strip_prefix(' ') {
                    Some(rest) if name == "hf llama2" => rest.to_string(),
                    _ => got,
                };
                (got, s.to_string())
            }
        };
        if got != want {
            bad.push(format!(
                "{name} decode {text:?}\n   want {want:?}\n   got  {got:?}"
            ));
        }
    }
    for (mode, parse_special) in [("plain", false), ("special", true)] {
        let cases = expected[mode].as_array().expect("cases");
        assert_eq!(cases.len(), corpus.len(), "{name} {mode}: case count");
        for (text, want) in corpus.iter().zip(cases) {
            let want = ids(want);
            let got = tok.encode(text, parse_special).expect("encode");
            if got != want {
                bad.push(format!(
                    "{name} {mode} {text:?}\n   want {want:?}\n   got  {got:?}"
                ));
            }
        }
    }
    bad
}

/// A rendered prompt `EOS + escape_specials(user) + EOS` must give the template's two
/// control tokens around exactly the plain (parse_special = false) tokens of the user's
/// text, whatever look-alikes it holds.
fn prompt_mismatches(name: &str, tok: &Tokenizer, corpus: &[String]) -> Vec<String> {
    let eos = tok.eos_id.expect("an EOS token");
    let ctrl = tok.token_text(eos).expect("EOS text").to_string();
    let mut bad = Vec::new();
    let extra = [
        "a\u{FDD0}b".to_string(),
        "\u{FDD0}<|im_start|>\u{FDD0}\u{FDD0}</s>".to_string(),
    ];
    for user in corpus.iter().chain(&extra) {
        let rendered = format!("{ctrl}{}{ctrl}", tok.escape_specials(user));
        let got = tok.encode_prompt(&rendered).expect("encode_prompt");
        let mut want = vec![eos];
        want.extend(tok.encode(user, false).expect("encode"));
        want.push(eos);
        if got != want {
            bad.push(format!(
                "{name} encode_prompt {user:?}\n   want {want:?}\n   got  {got:?}"
            ));
        }
    }
    bad
}

fn corpus(r: &Value) -> Vec<String> {
    r["corpus"]
        .as_array()
        .expect("corpus")
        .iter()
        .map(|s| s.as_str().expect("text").to_string())
        .collect()
}

#[test]
fn gguf_vocabularies_match_llama_cpp() {
    let r = reference();
    let corpus = corpus(&r);
    let dir = run_script(&["scripts/models/make_vocab_ggufs.py"]);
    let mut bad = Vec::new();
    let mut vocabs = vec![
        ("smollm".to_string(), common::default_model()),
        ("qwen3".into(), dir.join("qwen3.gguf")),
        ("llama3".into(), dir.join("llama3.gguf")),
        ("llama2-spm".into(), dir.join("llama2-spm.gguf")),
        ("llama2-spm-order".into(), dir.join("llama2-spm-order.gguf")),
    ];
    // The Qwen3 vocab under one pre-tokenizer name of each llama.cpp regex group.
    for name in r["gguf"].as_object().expect("gguf").keys() {
        if name.starts_with("qwen3-pre-") {
            vocabs.push((name.clone(), dir.join(format!("{name}.gguf"))));
        }
    }
    assert!(
        vocabs.len() > 20,
        "pre-tokenizer variants missing from the fixture"
    );
    for (name, path) in vocabs {
        let name = name.as_str();
        let gguf = GgufFile::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let tok = Tokenizer::from_gguf(&gguf).unwrap_or_else(|e| panic!("{name}: {e}"));
        let exp = &r["gguf"][name];
        bad.extend(compare(&format!("gguf {name}"), &tok, exp, &corpus));
        // Special ids and flags as llama.cpp reads them.
        let meta = &exp["meta"];
        let opt = |v: &Value| v.as_u64().map(|i| i as u32);
        let mut eog = tok.eog_ids.clone();
        eog.sort_unstable();
        let got = (tok.bos_id, tok.eos_id, tok.add_bos, tok.add_eos, eog);
        let want = (
            opt(&meta["bos"]),
            opt(&meta["eos"]),
            meta["add_bos"].as_bool().expect("add_bos"),
            meta["add_eos"].as_bool().expect("add_eos"),
            ids(&meta["eog"]),
        );
        if got != want {
            bad.push(format!(
                "gguf {name} (bos, eos, add_bos, add_eos, eog)\n   want {want:?}\n   got  {got:?}"
            ));
        }
        // llama.cpp's tokenize("Hello", add_bos=True): BOS exactly when the vocab adds it.
        let mut with_bos: Vec<u32> = tok.bos_id.filter(|_| tok.add_bos).into_iter().collect();
        with_bos.extend(tok.encode("Hello", false).expect("encode"));
        assert_eq!(with_bos, ids(&exp["bos"]), "{name}: BOS rule");
    }
    assert!(
        bad.is_empty(),
        "{} mismatches:\n{}",
        bad.len(),
        bad.join("\n")
    );
}

#[test]
fn tokenizer_json_matches_hf_tokenizers() {
    let r = reference();
    let corpus = corpus(&r);
    let dir = run_script(&["bash", "scripts/fetch_tokenizers.sh"]);
    let mut bad = Vec::new();
    for name in ["qwen3", "llama3", "llama2"] {
        let tok = Tokenizer::from_hf_dir(&dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        bad.extend(compare(
            &format!("hf {name}"),
            &tok,
            &r["hf"][name],
            &corpus,
        ));
    }
    assert!(
        bad.is_empty(),
        "{} mismatches:\n{}",
        bad.len(),
        bad.join("\n")
    );
}

/// tokenizer_config.json read as transformers reads it (values from the files: see
/// shared/MODELS.md and the configs themselves).
#[test]
fn tokenizer_config_special_tokens() {
    let dir = run_script(&["bash", "scripts/fetch_tokenizers.sh"]);
    let load = |n: &str| Tokenizer::from_hf_dir(&dir.join(n)).expect("tokenizer");
    let info = |t: &Tokenizer| (t.vocab_size(), t.bos_id, t.eos_id, t.add_bos, t.add_eos);
    // Qwen3: no BOS, eos_token "<|im_end|>", add_bos_token false.
    let q = load("qwen3");
    assert_eq!(info(&q), (151669, None, Some(151645), false, false));
    assert!(q.eog_ids.contains(&151643) && q.eog_ids.contains(&151645));
    assert_eq!(q.token_text(151667), Some("<think>"));
    // <think> is a non-special added token: it matches even without parse_special and
    // decodes to its text; <|im_start|> is a control token and decodes to nothing.
    assert_eq!(q.encode("<think>", false).unwrap(), vec![151667]);
    assert_eq!(q.token_bytes(151667), b"<think>");
    assert!(q.token_bytes(151644).is_empty());
    // Llama 2: add_bos_token true, byte-fallback pieces decode to bytes and spaces.
    let l2 = load("llama2");
    assert_eq!(info(&l2), (32000, Some(1), Some(2), true, false));
    assert_eq!(l2.token_bytes(3 + 0x41), b"A");
    // Llama 3 (this copy): no add_bos_token key and a plain ByteLevel post-processor (no
    // template adding BOS), so transformers adds none either.
    let l3 = load("llama3");
    assert_eq!(
        info(&l3),
        (128256, Some(128000), Some(128001), false, false)
    );
    assert!(l3.eog_ids.contains(&128009), "<|eot_id|> ends generation");
}
