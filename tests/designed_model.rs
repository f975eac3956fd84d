//! The designed Qwen3 model (constructed weights, `scripts/designed_model.sh`, made by
//! `scripts/models/designed_model.py`, which verified it with its own numpy forward pass)
//! through rill's real loader and forward pass:
//! - greedy decoding from every scenario's stored prompt ids reproduces the designed output
//!   ids token for token (reasoning in `<think>`, Hermes `<tool_call>` JSON, plain answers),
//!   each step with a top-1 margin of at least `MIN_MARGIN` logits;
//! - rill renders the same prompts: every scenario's request (messages, tools, template
//!   kwargs) through `rill::chat_template` with the template of the model directory, then
//!   the engine's tokenizer (`encode_prompt`), gives the stored text and ids, and so does
//!   `Engine::render_prompt` on the same conversation written as a Responses request
//!   (messages, `function_call` / `function_call_output` items, function tools,
//!   `enable_thinking`). The engine's tokenizer also encodes and decodes the designed
//!   outputs as the generator did.
//!
//! The model is found as the tiny models are (tests/models.rs): `RILL_DESIGNED_MODEL=DIR`
//! names an already generated directory, otherwise the test runs the (cached) script and
//! fails with its error. Run: `cargo test --test designed_model`.

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use rill::backend::cpu::kv::PagedKv;
use rill::backend::cpu::pool::ThreadPool;
use rill::chat_template::{hf_template_source, ChatMessage, ChatTemplate, RenderOptions};
use rill::model::{self, StepBatch};
use serde_json::Value;

/// The generator guarantees a margin of 4 in its numpy check (12 at the time of writing);
/// rill's f32 math with an f16 KV cache may differ from it only by rounding.
const MIN_MARGIN: f32 = 4.0;
const BLOCK: usize = 16;

/// The generated directory (runs the generator once per test binary).
fn designed_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        common::generated_dir(
            "RILL_DESIGNED_MODEL",
            "scripts/designed_model.sh",
            "designed.json",
        )
    })
}

fn designed() -> Value {
    let p = designed_dir().join("designed.json");
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn scenarios(d: &Value) -> &Vec<Value> {
    let s = d["scenarios"].as_array().expect("designed.json scenarios");
    assert!(s.len() >= 3, "designed.json has {} scenarios", s.len());
    s
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .expect("an id list")
        .iter()
        .map(|i| i.as_u64().expect("an id") as u32)
        .collect()
}

/// Index and margin (best minus second best) of the largest logit.
fn top1(row: &[f32]) -> (u32, f32) {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    let second = row
        .iter()
        .enumerate()
        .filter(|&(i, _)| i != best)
        .map(|(_, &v)| v)
        .fold(f32::NEG_INFINITY, f32::max);
    (best as u32, row[best] - second)
}

#[test]
fn greedy_decoding_follows_every_designed_sequence() {
    let dir = designed_dir();
    let d = designed();
    let loaded = model::load(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let m = &loaded.model;
    assert_eq!(m.config.vocab_size, 151669);
    let pool = ThreadPool::new(2).expect("pool");
    let mut failures = Vec::new();
    for sc in scenarios(&d) {
        let name = sc["name"].as_str().expect("name");
        let prompt = ids(&sc["prompt_ids"]);
        let want = ids(&sc["output_ids"]);
        let blocks = (prompt.len() + want.len()).div_ceil(BLOCK);
        let mut kv = PagedKv::new(m.config.n_layers, m.config.kv_dim(), BLOCK, blocks).expect("kv");
        let batch = StepBatch::one_sequence(&prompt, 0, blocks, BLOCK);
        let mut logits = m.forward(&pool, &mut kv, &batch).remove(0);
        let mut got = Vec::new();
        let mut min_margin = f32::INFINITY;
        loop {
            let (id, margin) = top1(&logits);
            got.push(id);
            min_margin = min_margin.min(margin);
            if got.len() == want.len() || id != want[got.len() - 1] {
                break;
            }
            let pos = prompt.len() + got.len() - 1;
            let batch = StepBatch::one_sequence(&[id], pos, blocks, BLOCK);
            logits = m.forward(&pool, &mut kv, &batch).remove(0);
        }
        let ok = got == want && min_margin >= MIN_MARGIN;
        println!(
            "{name}: {} prompt tokens, {}/{} designed tokens, min margin {min_margin:.3} \
             (generator: {}){}",
            prompt.len(),
            got.iter().zip(&want).take_while(|(a, b)| a == b).count(),
            want.len(),
            sc["min_margin"],
            if ok { "" } else { "  <-- FAILED" }
        );
        if !ok {
            failures.push(format!(
                "{name}: got {got:?}\n  want {want:?}\n  min margin {min_margin}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn rill_renders_and_tokenizes_the_designed_prompts() {
    let dir = designed_dir();
    let d = designed();
    let cfg = serde_json::json!({"model": dir, "num_threads": 1, "max_model_len": 1024});
    let engine =
        rill::Engine::new(rill::EngineConfig::from_json(&cfg.to_string()).expect("config"))
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let tok = engine.tokenizer();
    // The template as the engine compiles it: the directory's, with the tokenizer's
    // BOS/EOS texts.
    let source = hf_template_source(dir)
        .expect("template source")
        .expect("tokenizer_config.json has a chat template");
    let text_of = |id: Option<u32>| id.and_then(|i| tok.token_text(i)).unwrap_or("").to_owned();
    let template = ChatTemplate::new(&source, &text_of(tok.bos_id), &text_of(tok.eos_id))
        .expect("template compiles");
    let mut via_engine = 0;
    for sc in scenarios(&d) {
        let name = sc["name"].as_str().expect("name");
        let req = &sc["request"];
        let want_text = sc["prompt_text"].as_str().expect("prompt_text");
        let want_ids = ids(&sc["prompt_ids"]);
        let messages: Vec<ChatMessage> =
            serde_json::from_value(req["messages"].clone()).expect("messages");
        let tools = Some(&req["tools"]).filter(|t| !t.is_null());
        let kwargs = req["chat_template_kwargs"]
            .as_object()
            .expect("chat_template_kwargs");
        let enable_thinking = kwargs
            .get("enable_thinking")
            .map(|v| v.as_bool().expect("bool"));
        assert!(
            kwargs.keys().all(|k| k == "enable_thinking"),
            "{name}: a template kwarg this test does not pass: {kwargs:?}"
        );
        let text = template
            .render(
                &messages,
                &RenderOptions {
                    add_generation_prompt: req["add_generation_prompt"] == true,
                    tools,
                    enable_thinking,
                    ..Default::default()
                },
            )
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            text, want_text,
            "{name}: rendered prompt differs from jinja2's"
        );
        let got = tok.encode_prompt(&text).expect("encode_prompt");
        assert_eq!(got, want_ids, "{name}: prompt ids differ from tokenizers'");
        // What the engine itself renders from the same conversation as a Responses request.
        {
            let body = responses_body(req);
            let parsed = rill::responses::request::parse(
                &body,
                &rill::config::GenerationDefaults::default(),
            )
            .unwrap_or_else(|e| panic!("{name}: {e}"));
            let (text, ids) = engine
                .render_prompt(&parsed)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(text, want_text, "{name}: Engine::render_prompt text");
            assert_eq!(ids, want_ids, "{name}: Engine::render_prompt ids");
            via_engine += 1;
        }
        // The designed output: the same ids from its text, and back (`<|im_end|>` is a
        // control token: no text; `<think>`, `<tool_call>` and their ends are text).
        let out_ids = ids(&sc["output_ids"]);
        let out_text = sc["output_text"].as_str().expect("output_text");
        assert_eq!(
            tok.encode(out_text, true).expect("encode"),
            out_ids,
            "{name}"
        );
        assert_eq!(
            tok.decode(&out_ids),
            out_text
                .strip_suffix("<|im_end|>")
                .expect("ends with <|im_end|>"),
            "{name}"
        );
        println!(
            "{name}: prompt of {} tokens rendered and tokenized alike (template, and \
             Engine::render_prompt from a Responses request)",
            want_ids.len(),
        );
    }
    assert_eq!(
        via_engine,
        scenarios(&d).len(),
        "every scenario goes through Engine::render_prompt"
    );
}

/// A chat-template request (messages with tool calls and tool results, tools,
/// `enable_thinking`) as a Responses API request body.
fn responses_body(req: &Value) -> String {
    use serde_json::json;
    let mut input = Vec::new();
    let mut call_ids = std::collections::VecDeque::new();
    for m in req["messages"].as_array().expect("messages") {
        if m["role"] == "tool" {
            let call_id = call_ids.pop_front().expect("a call for each tool result");
            input.push(json!({"type": "function_call_output", "call_id": call_id,
                              "output": m["content"]}));
            continue;
        }
        if m["content"].as_str().is_some_and(|c| !c.is_empty()) {
            input.push(json!({"role": m["role"], "content": m["content"]}));
        }
        for call in m["tool_calls"].as_array().into_iter().flatten() {
            let f = &call["function"];
            let call_id = format!("call_{}", input.len());
            call_ids.push_back(call_id.clone());
            input.push(
                json!({"type": "function_call", "call_id": call_id, "name": f["name"],
                              "arguments": f["arguments"].to_string()}),
            );
        }
    }
    let mut body = json!({"input": input});
    if let Some(tools) = req["tools"].as_array() {
        let tools: Vec<Value> = tools
            .iter()
            .map(|t| {
                let f = &t["function"];
                json!({"type": "function", "name": f["name"], "description": f["description"],
                       "parameters": f["parameters"]})
            })
            .collect();
        body["tools"] = tools.into();
    }
    if let Some(b) = req["chat_template_kwargs"]["enable_thinking"].as_bool() {
        body["enable_thinking"] = b.into();
    }
    body.to_string()
}
