//! Chat templates: the Jinja template shipped with the model (GGUF `tokenizer.chat_template`,
//! or `chat_template.jinja` / `tokenizer_config.json` next to a Hugging Face checkpoint)
//! rendered as transformers' `apply_chat_template` renders it with Jinja2: the same
//! environment (see [`hf_env`]) and the same inputs (`messages`, `tools`, `documents`,
//! `add_generation_prompt`, then the kwargs: `bos_token`, `eos_token`, `enable_thinking`
//! and others only when set). `tests/chat_templates.rs` compares the output byte for byte
//! with Jinja2's on real templates (fixture from `scripts/models/template_reference.py`).
//!
//! Public operations: [`ChatTemplate::new`], [`ChatTemplate::render`],
//! [`hf_template_source`]; the inputs [`ChatMessage`], [`ToolCall`], [`RenderOptions`].

mod hf_env;
mod pyfmt;

use std::collections::BTreeMap;
use std::path::Path;

use minijinja::{Environment, Value};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// One chat message as templates see it (the OpenAI chat message shape that Hugging Face
/// templates read). Absent optional fields are *undefined* in the template, not none,
/// because templates test `message.reasoning_content is defined`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ChatMessage {
    pub role: String,
    /// The text; absent for assistant turns that only call tools.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// An assistant turn's reasoning (what Qwen3 wraps in `<think>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
    /// An assistant turn's tool calls; an empty list is left out of the message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// For `tool` messages: the call this result answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// For `tool` messages: the function's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl ChatMessage {
    /// A plain text message.
    pub fn text(role: impl Into<String>, content: impl Into<String>) -> Self {
        ChatMessage {
            role: role.into(),
            content: Some(content.into()),
            ..Default::default()
        }
    }
}

/// One tool call of an assistant turn: `{"id"?, "type": "function", "function": {...}}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ToolCall {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Always `"function"` today.
    #[serde(rename = "type", default = "function_type")]
    pub kind: String,
    pub function: FunctionCall,
}

fn function_type() -> String {
    "function".to_owned()
}

/// The function a tool call names, with its arguments as a JSON object (templates write
/// `arguments | tojson` or iterate it; a JSON string is passed through as a string).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FunctionCall {
    pub name: String,
    pub arguments: serde_json::Value,
}

/// A compiled chat template.
pub struct ChatTemplate {
    env: Environment<'static>,
    bos_token: String,
    eos_token: String,
}

/// Extra template inputs from the request.
#[derive(Default, Clone, Copy)]
pub struct RenderOptions<'a> {
    pub add_generation_prompt: bool,
    /// Passed as `reasoning_effort` only when set.
    pub reasoning_effort: Option<&'a str>,
    /// Tool schemas as Hugging Face passes them (`[{"type": "function", "function":
    /// {...}}]`); `tools` is none in the template when this is `None`.
    pub tools: Option<&'a serde_json::Value>,
    /// Passed as `enable_thinking` only when set (Qwen3 tests `is defined`).
    pub enable_thinking: Option<bool>,
    /// More template kwargs (`chat_template_kwargs`); the named options above win over
    /// these, and `messages`, `tools`, `documents`, `add_generation_prompt` cannot be set.
    pub kwargs: Option<&'a serde_json::Map<String, serde_json::Value>>,
}

impl ChatTemplate {
    /// Compiles `source`.
    pub fn new(source: &str, bos_token: &str, eos_token: &str) -> Result<Self> {
        let mut env = hf_env::environment();
        env.add_template_owned("chat", hf_env::rewrite_generation_tags(source).into_owned())
            .map_err(|e| Error::Template(format!("{e:#}")))?;
        Ok(ChatTemplate {
            env,
            bos_token: bos_token.to_owned(),
            eos_token: eos_token.to_owned(),
        })
    }

    /// Renders `messages` into the prompt text.
    pub fn render(&self, messages: &[ChatMessage], opts: &RenderOptions) -> Result<String> {
        let tmpl = self
            .env
            .get_template("chat")
            .map_err(|e| Error::Template(e.to_string()))?;
        let mut ctx: BTreeMap<String, Value> = BTreeMap::new();
        for (k, v) in opts.kwargs.into_iter().flatten() {
            ctx.insert(k.clone(), Value::from_serialize(v));
        }
        ctx.insert("bos_token".into(), Value::from(self.bos_token.as_str()));
        ctx.insert("eos_token".into(), Value::from(self.eos_token.as_str()));
        if let Some(effort) = opts.reasoning_effort {
            ctx.insert("reasoning_effort".into(), Value::from(effort));
        }
        if let Some(t) = opts.enable_thinking {
            ctx.insert("enable_thinking".into(), Value::from(t));
        }
        ctx.insert("messages".into(), Value::from_serialize(messages));
        ctx.insert(
            "tools".into(),
            opts.tools
                .map(Value::from_serialize)
                .unwrap_or(Value::from(())),
        );
        ctx.insert("documents".into(), Value::from(()));
        ctx.insert(
            "add_generation_prompt".into(),
            Value::from(opts.add_generation_prompt),
        );
        tmpl.render(Value::from(ctx))
            .map_err(|e| Error::Template(format!("{e:#}")))
    }
}

/// The chat template of a Hugging Face checkpoint directory, as transformers finds it:
/// `chat_template.jinja` if present, else `tokenizer_config.json`'s `chat_template` (a
/// string, or a list of `{name, template}` of which the one named `default` is used),
/// else `None`.
pub fn hf_template_source(dir: &Path) -> Result<Option<String>> {
    let read = |path: &Path| {
        std::fs::read_to_string(path).map_err(|e| Error::Io {
            path: path.to_owned(),
            source: e,
        })
    };
    let jinja = dir.join("chat_template.jinja");
    if jinja.is_file() {
        return read(&jinja).map(Some);
    }
    let config = dir.join("tokenizer_config.json");
    if !config.is_file() {
        return Ok(None);
    }
    let json: serde_json::Value = serde_json::from_str(&read(&config)?)
        .map_err(|e| Error::model(&config, format!("not valid JSON: {e}")))?;
    match json.get("chat_template") {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
        Some(serde_json::Value::Array(list)) => {
            let default = list
                .iter()
                .find(|t| t.get("name").and_then(|n| n.as_str()) == Some("default"));
            match default.map(|t| t.get("template").and_then(|s| s.as_str())) {
                Some(Some(s)) => Ok(Some(s.to_owned())),
                Some(None) => Err(Error::model(
                    &config,
                    "chat_template: the entry named \"default\" has no string \"template\"",
                )),
                None => Err(Error::model(
                    &config,
                    "chat_template: a list of templates with none named \"default\"",
                )),
            }
        }
        Some(_) => Err(Error::model(
            &config,
            "chat_template: neither a string nor a list of {name, template}",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHATML: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are helpful.<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    #[test]
    fn renders_chatml() {
        let t = ChatTemplate::new(CHATML, "<s>", "</s>").unwrap();
        let msgs = vec![ChatMessage::text("user", "Hi")];
        let out = t
            .render(
                &msgs,
                &RenderOptions {
                    add_generation_prompt: true,
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!(out, "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
    }

    #[test]
    fn raise_exception_and_python_methods() {
        let t = ChatTemplate::new("{{ messages[0].content.strip().upper() }}{% if messages|length > 1 %}{{ raise_exception('too many') }}{% endif %}", "", "").unwrap();
        let one = vec![ChatMessage::text("user", "  hi ")];
        assert_eq!(t.render(&one, &RenderOptions::default()).unwrap(), "HI");
        let two = vec![one[0].clone(), one[0].clone()];
        assert!(t
            .render(&two, &RenderOptions::default())
            .unwrap_err()
            .to_string()
            .contains("too many"));
        let t = ChatTemplate::new("{{ strftime_now('%Y') }}", "", "").unwrap();
        assert_eq!(t.render(&one, &RenderOptions::default()).unwrap().len(), 4);
    }

    #[test]
    fn absent_fields_are_undefined_and_options_reach_the_template() {
        let t = ChatTemplate::new(
            "{{ messages[0].content is defined }} {{ messages[0].tool_calls[0].function.arguments | tojson }} {{ messages[1].name }} {{ tools | length }} {{ enable_thinking is defined }} {{ reasoning_effort is defined }} {{ custom }}",
            "",
            "",
        )
        .unwrap();
        let msgs: Vec<ChatMessage> = serde_json::from_str(
            r#"[{"role":"assistant","tool_calls":[{"type":"function","function":{"name":"f","arguments":{"b":"<&>","a":1}}}]},
                {"role":"tool","content":"r","tool_call_id":"c","name":"f"}]"#,
        )
        .unwrap();
        let tools = serde_json::json!([{"type": "function", "function": {"name": "f"}}]);
        let kwargs = serde_json::json!({"custom": "x", "enable_thinking": true});
        let out = t
            .render(
                &msgs,
                &RenderOptions {
                    tools: Some(&tools),
                    enable_thinking: Some(false),
                    kwargs: kwargs.as_object(),
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!(out, r#"False {"b": "<&>", "a": 1} f 1 True False x"#);
        let out = t.render(&msgs, &RenderOptions::default()).unwrap_err();
        assert!(out.to_string().contains("chat template"), "{out}");
    }

    #[test]
    fn hf_template_source_finds_the_template() {
        let dir = std::env::temp_dir().join(format!("rill-hf-tmpl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cfg = dir.join("tokenizer_config.json");
        assert_eq!(hf_template_source(&dir).unwrap(), None);
        std::fs::write(&cfg, r#"{"bos_token": "<s>"}"#).unwrap();
        assert_eq!(hf_template_source(&dir).unwrap(), None);
        std::fs::write(&cfg, r#"{"chat_template": "A"}"#).unwrap();
        assert_eq!(hf_template_source(&dir).unwrap().as_deref(), Some("A"));
        std::fs::write(
            &cfg,
            r#"{"chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}]}"#,
        )
        .unwrap();
        assert_eq!(hf_template_source(&dir).unwrap().as_deref(), Some("D"));
        std::fs::write(
            &cfg,
            r#"{"chat_template": [{"name": "rag", "template": "R"}]}"#,
        )
        .unwrap();
        let e = hf_template_source(&dir).unwrap_err().to_string();
        assert!(
            e.contains("tokenizer_config.json") && e.contains("default"),
            "{e}"
        );
        std::fs::write(&cfg, "{not json").unwrap();
        assert!(hf_template_source(&dir)
            .unwrap_err()
            .to_string()
            .contains("not valid JSON"));
        std::fs::write(dir.join("chat_template.jinja"), "J").unwrap();
        assert_eq!(hf_template_source(&dir).unwrap().as_deref(), Some("J"));
        std::fs::remove_dir_all(&dir).ok();
    }
}
