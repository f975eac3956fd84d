//! Parses an OpenAI Responses API request body into what the engine needs. Validation is
//! strict and fails fast at submit: every refusal names the field (`param`) the way
//! OpenAI's 400 `invalid_request_error` does. Fields rill cannot honour yet are refused
//! by name, never silently ignored. Sampling fields follow vLLM's ranges (penalties,
//! `stop`); logprobs follow OpenAI (`include: ["message.output_text.logprobs"]` asks for
//! them, `top_logprobs` 0..=20 sets the alternatives per token).

use serde_json::{Map, Value};

use super::sampling_fields::{parse_sampling, SamplingFields};
use super::tools::{parse_tool_choice, parse_tools, Conversation, FunctionTool, ToolChoice};
use crate::chat_template::ChatMessage;
use crate::config::{json_type, GenerationDefaults};
use crate::error::{Error, Result};
use crate::sampling::SamplingParams;

/// A validated request.
#[derive(Debug, Clone)]
pub struct ParsedRequest {
    pub model: Option<String>,
    /// The conversation to render, `instructions` first as a system message.
    pub messages: Vec<ChatMessage>,
    pub instructions: Option<String>,
    pub max_output_tokens: Option<usize>,
    pub sampling: SamplingParams,
    /// Up to 4 non-empty stop strings.
    pub stop: Vec<String>,
    /// The `top_logprobs` to echo (alternatives per token when logprobs are included).
    pub top_logprobs: usize,
    pub ignore_eos: bool,
    pub metadata: Map<String, Value>,
    pub reasoning_effort: Option<String>,
    pub user: Option<String>,
    pub parallel_tool_calls: bool,
    /// Echoed. OpenAI's limit applies to built-in tools (web and file search, ...), which
    /// rill does not have; function calls are not counted against it.
    pub max_tool_calls: Option<u64>,
    /// Function tools the model may call.
    pub tools: Vec<FunctionTool>,
    pub tool_choice: ToolChoice,
    /// Extension: the template's `enable_thinking` (Qwen3). `reasoning.effort: "none"`
    /// implies `false` when this is not given.
    pub enable_thinking: Option<bool>,
}

const FIELDS: &[&str] = &[
    "model",
    "input",
    "instructions",
    "max_output_tokens",
    "temperature",
    "top_p",
    "top_logprobs",
    "include",
    "reasoning",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "text",
    "metadata",
    "user",
    "store",
    "truncation",
    "previous_response_id",
    "background",
    "stream",
    "service_tier",
    "max_tool_calls",
    "prompt_cache_key",
    "safety_identifier",
    "top_k",
    "min_p",
    "seed",
    "stop",
    "repetition_penalty",
    "frequency_penalty",
    "presence_penalty",
    "ignore_eos",
    "enable_thinking",
];

/// Parses and validates a request body; fields it omits take `defaults`.
pub fn parse(text: &str, defaults: &GenerationDefaults) -> Result<ParsedRequest> {
    let v: Value = serde_json::from_str(text).map_err(|e| Error::InvalidJson {
        what: "request",
        message: e.to_string(),
    })?;
    let Value::Object(m) = v else {
        return Err(Error::request(
            "<body>",
            "the request body must be a JSON object",
        ));
    };
    if let Some(k) = m.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(Error::request(k.clone(), "unknown parameter"));
    }
    refuse_unsupported(&m)?;
    let instructions = opt_str(&m, "instructions")?;
    let mut conv = Conversation::default();
    if let Some(i) = &instructions {
        conv.push_message(ChatMessage::text("system", i.clone()));
    }
    match m.get("input") {
        None | Some(Value::Null) => return Err(Error::request("input", "is required")),
        Some(Value::String(s)) if s.is_empty() => {
            return Err(Error::request("input", "must not be empty"))
        }
        Some(Value::String(s)) => conv.push_message(ChatMessage::text("user", s.clone())),
        Some(Value::Array(items)) if items.is_empty() => {
            return Err(Error::request("input", "must contain at least one item"))
        }
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                parse_item(&mut conv, item, &format!("input[{i}]"))?;
            }
        }
        Some(other) => return Err(type_err("input", "a string or an array of items", other)),
    }
    let SamplingFields {
        sampling,
        stop,
        top_logprobs,
    } = parse_sampling(&m, defaults)?;
    let max_output_tokens = match m.get("max_output_tokens") {
        None | Some(Value::Null) => defaults.max_output_tokens,
        Some(Value::Number(n)) => Some(
            n.as_u64()
                .filter(|v| (1..=1 << 24).contains(v))
                .ok_or_else(|| {
                    Error::request(
                        "max_output_tokens",
                        format!("must be a positive integer, got {n}"),
                    )
                })? as usize,
        ),
        Some(other) => return Err(type_err("max_output_tokens", "an integer", other)),
    };
    let metadata = match m.get("metadata") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(md)) => {
            if md.len() > 16 {
                return Err(Error::request("metadata", "at most 16 key-value pairs"));
            }
            if let Some((k, _)) = md.iter().find(|(_, v)| !v.is_string()) {
                return Err(Error::request(
                    format!("metadata.{k}"),
                    "values must be strings",
                ));
            }
            md.clone()
        }
        Some(other) => return Err(type_err("metadata", "an object", other)),
    };
    let reasoning_effort = match m.get("reasoning") {
        None | Some(Value::Null) => None,
        Some(Value::Object(r)) => {
            if let Some(k) = r
                .keys()
                .find(|k| !["effort", "summary", "generate_summary"].contains(&k.as_str()))
            {
                return Err(Error::request(
                    format!("reasoning.{k}"),
                    "unknown parameter",
                ));
            }
            match r.get("effort") {
                None | Some(Value::Null) => None,
                Some(Value::String(e))
                    if ["minimal", "low", "medium", "high", "none"].contains(&e.as_str()) =>
                {
                    Some(e.clone())
                }
                Some(_) => {
                    return Err(Error::request(
                        "reasoning.effort",
                        "must be one of none, minimal, low, medium, high",
                    ))
                }
            }
        }
        Some(other) => return Err(type_err("reasoning", "an object", other)),
    };
    let tools = parse_tools(m.get("tools"))?;
    let tool_choice = parse_tool_choice(m.get("tool_choice"), &tools)?;
    let enable_thinking = opt_bool(&m, "enable_thinking")?
        .or((reasoning_effort.as_deref() == Some("none")).then_some(false));
    Ok(ParsedRequest {
        model: opt_str(&m, "model")?,
        messages: conv.finish(),
        instructions,
        max_output_tokens,
        sampling,
        stop,
        top_logprobs,
        ignore_eos: opt_bool(&m, "ignore_eos")?.unwrap_or(false),
        metadata,
        reasoning_effort,
        user: opt_str(&m, "user")?,
        parallel_tool_calls: opt_bool(&m, "parallel_tool_calls")?.unwrap_or(true),
        max_tool_calls: m.get("max_tool_calls").and_then(Value::as_u64),
        tools,
        tool_choice,
        enable_thinking,
    })
}

/// Fields rill understands but cannot honour in this version: refused by name.
fn refuse_unsupported(m: &Map<String, Value>) -> Result<()> {
    let not_yet = |param: &str, what: &str| {
        Err(Error::request(
            param,
            format!("{what} is not supported yet"),
        ))
    };
    if let Some(v) = m.get("previous_response_id").filter(|v| !v.is_null()) {
        let _ = v;
        return not_yet(
            "previous_response_id",
            "continuing a stored response (rill stores no responses)",
        );
    }
    if opt_bool(m, "background")? == Some(true) {
        return not_yet("background", "background mode");
    }
    match m.get("text") {
        None | Some(Value::Null) => {}
        Some(Value::Object(t)) => {
            if let Some(k) = t
                .keys()
                .find(|k| !["format", "verbosity"].contains(&k.as_str()))
            {
                return Err(Error::request(format!("text.{k}"), "unknown parameter"));
            }
            match t.get("format") {
                None | Some(Value::Null) => {}
                Some(f) if f.get("type").and_then(Value::as_str) == Some("text") => {}
                Some(_) => {
                    return not_yet(
                        "text.format",
                        "structured output (json_object, json_schema)",
                    )
                }
            }
        }
        Some(other) => return Err(type_err("text", "an object", other)),
    }
    match m.get("truncation") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) if s == "disabled" => {}
        Some(Value::String(s)) if s == "auto" => {
            return not_yet("truncation", "truncation \"auto\"")
        }
        Some(_) => {
            return Err(Error::request(
                "truncation",
                "must be \"auto\" or \"disabled\"",
            ))
        }
    }
    for k in ["stream", "store"] {
        opt_bool(m, k)?;
    }
    match m.get("max_tool_calls") {
        None | Some(Value::Null) => {}
        Some(Value::Number(n)) if n.as_u64().is_some() => {}
        Some(other) => return Err(type_err("max_tool_calls", "a non-negative integer", other)),
    }
    for k in ["service_tier", "prompt_cache_key", "safety_identifier"] {
        opt_str(m, k)?;
    }
    Ok(())
}

/// Adds one input item to the conversation.
fn parse_item(conv: &mut Conversation, item: &Value, at: &str) -> Result<()> {
    let Value::Object(o) = item else {
        return Err(type_err(at, "an object", item));
    };
    match o.get("type").and_then(Value::as_str) {
        None | Some("message") => {}
        Some(t @ ("function_call" | "function_call_output" | "reasoning")) => {
            return conv.push_item(t, o, at)
        }
        Some(t) => {
            return Err(Error::request(
                format!("{at}.type"),
                format!("unknown item type {t:?}"),
            ))
        }
    }
    if let Some(k) = o
        .keys()
        .find(|k| !["type", "role", "content", "id", "status"].contains(&k.as_str()))
    {
        return Err(Error::request(format!("{at}.{k}"), "unknown parameter"));
    }
    let role = match o.get("role") {
        Some(Value::String(r)) => match r.as_str() {
            "user" | "system" | "assistant" => r.clone(),
            "developer" => "system".to_owned(),
            _ => {
                return Err(Error::request(
                    format!("{at}.role"),
                    format!("unknown role {r:?} (user, system, developer, assistant)"),
                ))
            }
        },
        Some(other) => return Err(type_err(&format!("{at}.role"), "a string", other)),
        None => return Err(Error::request(format!("{at}.role"), "is required")),
    };
    let content = content_text(
        o.get("content"),
        &format!("{at}.content"),
        &["input_text", "output_text"],
    )?;
    conv.push_message(ChatMessage::text(role, content));
    Ok(())
}

/// The text of a string or of an array of text parts (`allowed` types, each with a
/// `text`), as message `content` and `function_call_output` `output` carry it. Image,
/// file and audio parts are refused as unsupported, other types as unknown.
pub(super) fn content_text(v: Option<&Value>, at: &str, allowed: &[&str]) -> Result<String> {
    let parts = match v {
        Some(Value::String(s)) => return Ok(s.clone()),
        Some(Value::Array(parts)) => parts,
        Some(other) => return Err(type_err(at, "a string or an array of parts", other)),
        None => return Err(Error::request(at, "is required")),
    };
    let mut text = String::new();
    for (j, p) in parts.iter().enumerate() {
        let pat = format!("{at}[{j}]");
        match p.get("type").and_then(Value::as_str) {
            Some(t) if allowed.contains(&t) => match p.get("text") {
                Some(Value::String(t)) => text.push_str(t),
                Some(other) => return Err(type_err(&format!("{pat}.text"), "a string", other)),
                None => return Err(Error::request(format!("{pat}.text"), "is required")),
            },
            Some(t @ ("input_image" | "input_file" | "input_audio")) => {
                return Err(Error::request(
                    format!("{pat}.type"),
                    format!("{t} content is not supported"),
                ))
            }
            Some(t) => {
                return Err(Error::request(
                    format!("{pat}.type"),
                    format!(
                        "unknown content type {t:?} (expected {})",
                        allowed.join(" or ")
                    ),
                ))
            }
            None => return Err(Error::request(format!("{pat}.type"), "is required")),
        }
    }
    Ok(text)
}

pub(super) fn type_err(param: &str, expected: &str, got: &Value) -> Error {
    Error::request(param, format!("must be {expected}, got {}", json_type(got)))
}

fn opt_str(m: &Map<String, Value>, k: &str) -> Result<Option<String>> {
    match m.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(type_err(k, "a string", other)),
    }
}

fn opt_bool(m: &Map<String, Value>, k: &str) -> Result<Option<bool>> {
    match m.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => Err(type_err(k, "a boolean", other)),
    }
}

pub(super) fn opt_num(m: &Map<String, Value>, k: &str, lo: f64, hi: f64) -> Result<Option<f64>> {
    match m.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match n.as_f64() {
            Some(v) if (lo..=hi).contains(&v) => Ok(Some(v)),
            _ => Err(Error::request(
                k,
                format!("must be a number in [{lo}, {hi}], got {n}"),
            )),
        },
        Some(other) => Err(type_err(k, "a number", other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<ParsedRequest> {
        super::parse(body, &GenerationDefaults::default())
    }

    fn param_of(body: &str) -> String {
        match parse(body) {
            Err(Error::InvalidRequest { param, .. }) => param,
            Err(e) => format!("<{e}>"),
            Ok(_) => "<accepted>".into(),
        }
    }

    #[test]
    fn parses_strings_items_and_instructions() {
        let r = parse(r#"{"input":"hi","instructions":"be brief","temperature":0,"max_output_tokens":5,"metadata":{"a":"b"}}"#)
            .unwrap();
        assert_eq!(r.messages.len(), 2);
        assert_eq!(r.messages[0].role, "system");
        assert_eq!(r.sampling.temperature, 0.0);
        assert_eq!(r.max_output_tokens, Some(5));
        let r = parse(r#"{"input":[{"role":"developer","content":[{"type":"input_text","text":"a"},{"type":"input_text","text":"b"}]},{"type":"message","role":"assistant","content":[{"type":"output_text","text":"ok","annotations":[]}]}]}"#).unwrap();
        assert_eq!(r.messages[0], ChatMessage::text("system", "ab"));
        assert_eq!(r.messages[1].content.as_deref(), Some("ok"));
        let sampling = SamplingParams {
            temperature: 0.3,
            top_k: 7,
            ..Default::default()
        };
        let d = GenerationDefaults {
            sampling,
            max_output_tokens: Some(11),
        };
        let r = super::parse(r#"{"input":"x","top_k":2}"#, &d).unwrap();
        assert_eq!(
            (
                r.sampling.temperature,
                r.sampling.top_k,
                r.max_output_tokens
            ),
            (0.3, 2, Some(11))
        );
    }

    #[test]
    fn tool_traffic_and_reasoning_become_template_messages() {
        let r = parse(
            r#"{"input":[
                {"role":"user","content":"weather?"},
                {"type":"reasoning","id":"rs_1","summary":[],"content":[{"type":"reasoning_text","text":"call it"}]},
                {"type":"function_call","call_id":"call_1","name":"get_weather","arguments":"{\"city\": \"Paris\"}"},
                {"type":"function_call","call_id":"call_2","name":"get_time","arguments":"not json"},
                {"type":"function_call_output","call_id":"call_1","output":"sunny"},
                {"type":"function_call_output","call_id":"call_2","output":[{"type":"input_text","text":"14:05"}]}
            ],
            "tools":[{"type":"function","name":"get_weather","parameters":{"type":"object"}},
                     {"type":"function","name":"get_time","description":"now"}],
            "tool_choice":{"type":"function","name":"get_time"},
            "reasoning":{"effort":"none"}}"#,
        )
        .unwrap();
        let roles: Vec<&str> = r.messages.iter().map(|m| m.role.as_str()).collect();
        assert_eq!(roles, ["user", "assistant", "tool", "tool"]);
        let a = &r.messages[1];
        assert_eq!(a.reasoning_content.as_deref(), Some("call it"));
        assert_eq!(a.content.as_deref(), Some(""));
        assert_eq!(a.tool_calls.len(), 2, "both calls in one assistant turn");
        assert_eq!(
            a.tool_calls[0].function.arguments,
            serde_json::json!({"city": "Paris"})
        );
        assert_eq!(a.tool_calls[1].function.arguments, "not json");
        assert_eq!(r.messages[3].name.as_deref(), Some("get_time"));
        assert_eq!(r.messages[3].tool_call_id.as_deref(), Some("call_2"));
        assert_eq!(r.messages[3].content.as_deref(), Some("14:05"));
        assert_eq!(
            r.tool_choice,
            super::super::tools::ToolChoice::Function("get_time".into())
        );
        assert_eq!(
            r.enable_thinking,
            Some(false),
            "effort none turns thinking off"
        );
        assert_eq!(r.tools[1].echo()["strict"], false);
    }

    #[test]
    fn every_refusal_names_its_field() {
        let cases = [
            (r#"{}"#, "input"),
            (r#"{"input":""}"#, "input"),
            (r#"{"input":[]}"#, "input"),
            (r#"{"input":5}"#, "input"),
            (r#"{"input":"x","bogus":1}"#, "bogus"),
            (r#"{"input":"x","temperature":3}"#, "temperature"),
            (r#"{"input":"x","temperature":"hot"}"#, "temperature"),
            (r#"{"input":"x","top_p":1.5}"#, "top_p"),
            (
                r#"{"input":"x","max_output_tokens":0}"#,
                "max_output_tokens",
            ),
            (
                r#"{"input":"x","max_output_tokens":-3}"#,
                "max_output_tokens",
            ),
            (r#"{"input":"x","top_k":-5}"#, "top_k"),
            (r#"{"input":"x","metadata":{"a":1}}"#, "metadata.a"),
            (
                r#"{"input":[{"role":"robot","content":"x"}]}"#,
                "input[0].role",
            ),
            (r#"{"input":[{"role":"user"}]}"#, "input[0].content"),
            (
                r#"{"input":[{"role":"user","content":[{"type":"input_image","image_url":"x"}]}]}"#,
                "input[0].content[0].type",
            ),
            (
                r#"{"input":[{"type":"function_call","name":"f","arguments":"{}"}]}"#,
                "input[0].call_id",
            ),
            (
                r#"{"input":[{"type":"function_call_output","call_id":"c"}]}"#,
                "input[0].output",
            ),
            (
                r#"{"input":[{"type":"reasoning","summary":[],"encrypted_content":"x"}]}"#,
                "input[0].encrypted_content",
            ),
            (
                r#"{"input":[{"type":"web_search_call","id":"x"}]}"#,
                "input[0].type",
            ),
            (
                r#"{"input":"x","tools":[{"type":"web_search"}]}"#,
                "tools[0].type",
            ),
            (
                r#"{"input":"x","tools":[{"type":"function","name":"a b"}]}"#,
                "tools[0].name",
            ),
            (
                r#"{"input":"x","tools":[{"type":"function","name":"f","strict":true}]}"#,
                "tools[0].strict",
            ),
            (
                r#"{"input":"x","tools":[{"type":"function","name":"f","parameters":"{}"}]}"#,
                "tools[0].parameters",
            ),
            (
                r#"{"input":"x","tools":[{"type":"function","name":"f"},{"type":"function","name":"f"}]}"#,
                "tools[1].name",
            ),
            (r#"{"input":"x","tool_choice":"required"}"#, "tool_choice"),
            (r#"{"input":"x","tool_choice":"always"}"#, "tool_choice"),
            (
                r#"{"input":"x","tools":[{"type":"function","name":"f"}],"tool_choice":{"type":"function","name":"g"}}"#,
                "tool_choice.name",
            ),
            (
                r#"{"input":"x","tool_choice":{"type":"allowed_tools"}}"#,
                "tool_choice.type",
            ),
            (r#"{"input":"x","enable_thinking":"no"}"#, "enable_thinking"),
            (
                r#"{"input":"x","previous_response_id":"resp_1"}"#,
                "previous_response_id",
            ),
            (r#"{"input":"x","background":true}"#, "background"),
            (
                r#"{"input":"x","text":{"format":{"type":"json_object"}}}"#,
                "text.format",
            ),
            (r#"{"input":"x","truncation":"auto"}"#, "truncation"),
            (r#"{"input":"x","stream":"yes"}"#, "stream"),
            (r#"{"input":"x","max_tool_calls":"many"}"#, "max_tool_calls"),
            (
                r#"{"input":"x","reasoning":{"effort":"max"}}"#,
                "reasoning.effort",
            ),
        ];
        for (body, want) in cases {
            assert_eq!(param_of(body), want, "{body}");
        }
        assert!(matches!(parse("{not json"), Err(Error::InvalidJson { .. })));
        assert_eq!(param_of("[1]"), "<body>");
    }
}
