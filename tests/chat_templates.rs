//! Chat templates rendered by rill match Python's jinja2 byte for byte: every case of
//! `tests/fixtures/templates/conversations.json` through the real Qwen3, Llama 3 and
//! ChatML templates and a helpers template, against the renderings (or errors) that
//! `scripts/models/template_reference.py` recorded in `expected.json`. Runs in < 1 s.

use std::path::PathBuf;

use rill::chat_template::{ChatMessage, ChatTemplate, RenderOptions};
use serde::Deserialize;
use serde_json::Value;

#[derive(Deserialize)]
struct Case {
    name: String,
    messages: Vec<ChatMessage>,
    tools: Option<Value>,
    add_generation_prompt: bool,
    enable_thinking: Option<bool>,
}

fn load(name: &str) -> Value {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/templates")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap()
}

#[test]
fn renders_like_jinja2() {
    let cases: Vec<Case> =
        serde_json::from_value(load("conversations.json")["cases"].clone()).unwrap();
    let expected = load("expected.json");
    let results = expected["results"].as_array().unwrap();
    assert_eq!(
        results.len(),
        cases.len() * expected["templates"].as_object().unwrap().len()
    );
    let mut failures = Vec::new();
    let mut errors_seen = 0;
    for (name, t) in expected["templates"].as_object().unwrap() {
        let tmpl = ChatTemplate::new(
            t["source"].as_str().unwrap(),
            t["bos_token"].as_str().unwrap(),
            t["eos_token"].as_str().unwrap(),
        )
        .unwrap();
        for case in &cases {
            // Cases round-trip through ChatMessage: what the fixture says is what we render.
            let want = results
                .iter()
                .find(|r| r["template"] == name.as_str() && r["case"] == case.name.as_str())
                .unwrap_or_else(|| panic!("no expected result for {name}/{}", case.name));
            let got = tmpl.render(
                &case.messages,
                &RenderOptions {
                    add_generation_prompt: case.add_generation_prompt,
                    tools: case.tools.as_ref(),
                    enable_thinking: case.enable_thinking,
                    ..Default::default()
                },
            );
            match (&got, want.get("output").and_then(Value::as_str)) {
                (Ok(got), Some(want)) if got == want => {}
                (Ok(got), Some(want)) => failures.push(format!(
                    "{name}/{}: output differs\n--- jinja2\n{want}\n--- rill\n{got}\n",
                    case.name
                )),
                (Err(e), Some(_)) => {
                    failures.push(format!("{name}/{}: rill failed: {e}", case.name))
                }
                (Ok(got), None) => failures.push(format!(
                    "{name}/{}: jinja2 raised {} ({}) but rill rendered\n{got}",
                    case.name, want["error_type"], want["error"]
                )),
                (Err(e), None) => {
                    errors_seen += 1;
                    // raise_exception's message must come through.
                    if want["error_type"] == "TemplateError" {
                        let msg = want["error"].as_str().unwrap();
                        if !e.to_string().contains(msg) {
                            failures
                                .push(format!("{name}/{}: error `{e}` lacks `{msg}`", case.name));
                        }
                    }
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(errors_seen >= 3, "the fixture should exercise errors");
}

/// The message shape round-trips: fields absent in the JSON stay absent when rendered.
#[test]
fn messages_round_trip_through_serde() {
    let cases = load("conversations.json");
    for case in cases["cases"].as_array().unwrap() {
        let msgs: Vec<ChatMessage> = serde_json::from_value(case["messages"].clone()).unwrap();
        assert_eq!(
            serde_json::to_value(&msgs).unwrap(),
            case["messages"],
            "{}",
            case["name"]
        );
    }
}
