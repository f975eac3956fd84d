//! The tool-calling half of a Responses request: `tools` (function tools), `tool_choice`,
//! and the conversation items that carry tool traffic and reasoning back into the prompt
//! (`function_call`, `function_call_output`, `reasoning`), turned into the chat messages
//! Hugging Face templates expect (an assistant message with `tool_calls`, a `tool`
//! message with `tool_call_id`, `reasoning_content` on the assistant turn). Every refusal
//! names its field. Public operations: [`parse_tools`], [`parse_tool_choice`],
//! [`Conversation`].

use std::collections::HashMap;

use serde_json::{json, Map, Value};

use super::request::{content_text, type_err};
use crate::chat_template::{ChatMessage, FunctionCall, ToolCall};
use crate::error::{Error, Result};

/// A function tool the model may call.
#[derive(Debug, Clone, PartialEq)]
pub struct FunctionTool {
    pub name: String,
    pub description: Option<String>,
    /// JSON Schema of the arguments (`null` when the tool takes none).
    pub parameters: Value,
}

impl FunctionTool {
    /// The tool as the response echoes it (OpenAI's `FunctionTool`).
    pub fn echo(&self) -> Value {
        json!({"type": "function", "name": self.name, "description": self.description,
               "parameters": self.parameters, "strict": false})
    }

    /// The tool as chat templates take it (`{"type": "function", "function": {...}}`).
    pub fn for_template(&self) -> Value {
        let mut f = Map::new();
        f.insert("name".into(), self.name.clone().into());
        if let Some(d) = &self.description {
            f.insert("description".into(), d.clone().into());
        }
        let params = if self.parameters.is_null() {
            json!({"type": "object", "properties": {}})
        } else {
            self.parameters.clone()
        };
        f.insert("parameters".into(), params);
        json!({"type": "function", "function": f})
    }
}

/// What `tool_choice` asks for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ToolChoice {
    /// Never call a tool: tools are left out of the prompt and calls are not parsed.
    None,
    /// The model decides.
    #[default]
    Auto,
    /// The answer starts with a tool call.
    Required,
    /// The answer starts with a call of this function.
    Function(String),
}

impl ToolChoice {
    /// As the response echoes it.
    pub fn echo(&self) -> Value {
        match self {
            ToolChoice::None => "none".into(),
            ToolChoice::Auto => "auto".into(),
            ToolChoice::Required => "required".into(),
            ToolChoice::Function(n) => json!({"type": "function", "name": n}),
        }
    }
}

/// Parses `tools`: function tools only.
pub fn parse_tools(v: Option<&Value>) -> Result<Vec<FunctionTool>> {
    let items = match v {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(a)) => a,
        Some(other) => return Err(type_err("tools", "an array", other)),
    };
    let mut tools: Vec<FunctionTool> = Vec::new();
    for (i, t) in items.iter().enumerate() {
        let at = format!("tools[{i}]");
        let Value::Object(o) = t else {
            return Err(type_err(&at, "an object", t));
        };
        match o.get("type").and_then(Value::as_str) {
            Some("function") => {}
            Some(other) => {
                return Err(Error::request(
                    format!("{at}.type"),
                    format!("{other:?} tools are not supported (only \"function\")"),
                ))
            }
            None => return Err(Error::request(format!("{at}.type"), "is required")),
        }
        if let Some(k) = o.keys().find(|k| {
            !["type", "name", "description", "parameters", "strict"].contains(&k.as_str())
        }) {
            return Err(Error::request(format!("{at}.{k}"), "unknown parameter"));
        }
        let name = match o.get("name") {
            Some(Value::String(n)) if valid_name(n) => n.clone(),
            Some(Value::String(n)) => {
                return Err(Error::request(
                    format!("{at}.name"),
                    format!("{n:?} is not a valid function name (1-64 of a-z, A-Z, 0-9, _ and -)"),
                ))
            }
            Some(other) => return Err(type_err(&format!("{at}.name"), "a string", other)),
            None => return Err(Error::request(format!("{at}.name"), "is required")),
        };
        if tools.iter().any(|t| t.name == name) {
            return Err(Error::request(
                format!("{at}.name"),
                format!("duplicate function name {name:?}"),
            ));
        }
        let description = match o.get("description") {
            None | Some(Value::Null) => None,
            Some(Value::String(d)) => Some(d.clone()),
            Some(other) => return Err(type_err(&format!("{at}.description"), "a string", other)),
        };
        let parameters = match o.get("parameters") {
            None | Some(Value::Null) => Value::Null,
            Some(p @ Value::Object(_)) => p.clone(),
            Some(other) => {
                return Err(type_err(
                    &format!("{at}.parameters"),
                    "a JSON Schema object",
                    other,
                ))
            }
        };
        match o.get("strict") {
            None | Some(Value::Null) | Some(Value::Bool(false)) => {}
            Some(Value::Bool(true)) => {
                return Err(Error::request(
                    format!("{at}.strict"),
                    "schema-constrained arguments (strict: true) are not supported yet; \
                     omit it or set it to false",
                ))
            }
            Some(other) => return Err(type_err(&format!("{at}.strict"), "a boolean", other)),
        }
        tools.push(FunctionTool {
            name,
            description,
            parameters,
        });
    }
    Ok(tools)
}

/// OpenAI's function-name rule.
fn valid_name(n: &str) -> bool {
    (1..=64).contains(&n.len())
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Parses `tool_choice` against the declared tools.
pub fn parse_tool_choice(v: Option<&Value>, tools: &[FunctionTool]) -> Result<ToolChoice> {
    let choice = match v {
        None | Some(Value::Null) => return Ok(ToolChoice::Auto),
        Some(Value::String(s)) => match s.as_str() {
            "none" => ToolChoice::None,
            "auto" => ToolChoice::Auto,
            "required" => ToolChoice::Required,
            _ => {
                return Err(Error::request(
                    "tool_choice",
                    format!("{s:?} is not one of none, auto, required"),
                ))
            }
        },
        Some(Value::Object(o)) => match o.get("type").and_then(Value::as_str) {
            Some("function") => match o.get("name") {
                Some(Value::String(n)) => ToolChoice::Function(n.clone()),
                _ => return Err(Error::request("tool_choice.name", "is required (a string)")),
            },
            Some(t) => {
                return Err(Error::request(
                    "tool_choice.type",
                    format!("{t:?} is not supported (only \"function\")"),
                ))
            }
            None => return Err(Error::request("tool_choice.type", "is required")),
        },
        Some(other) => {
            return Err(type_err(
                "tool_choice",
                "a string or a function choice object",
                other,
            ))
        }
    };
    match &choice {
        ToolChoice::Required if tools.is_empty() => Err(Error::request(
            "tool_choice",
            "\"required\" needs at least one tool in `tools`",
        )),
        ToolChoice::Function(n) if !tools.iter().any(|t| &t.name == n) => Err(Error::request(
            "tool_choice.name",
            format!("no function named {n:?} in `tools`"),
        )),
        _ => Ok(choice),
    }
}

/// Builds the chat messages from input items, pairing tool traffic the way templates
/// expect it.
#[derive(Debug, Default)]
pub struct Conversation {
    pub messages: Vec<ChatMessage>,
    /// Reasoning replayed before the assistant turn it belongs to.
    pending_reasoning: Option<String>,
    /// Function names by `call_id`, for the tool messages that answer them.
    call_names: HashMap<String, String>,
    /// Whether the last message is an assistant turn that later calls may join.
    assistant_open: bool,
}

impl Conversation {
    /// Appends a user/system/assistant message (from a `message` item or a string).
    pub fn push_message(&mut self, mut m: ChatMessage) {
        if m.role == "assistant" {
            m.reasoning_content = self.pending_reasoning.take();
            self.messages.push(m);
            self.assistant_open = true;
        } else {
            self.flush_reasoning();
            self.messages.push(m);
            self.assistant_open = false;
        }
    }

    /// Appends a `function_call`, `function_call_output` or `reasoning` item.
    pub fn push_item(&mut self, kind: &str, o: &Map<String, Value>, at: &str) -> Result<()> {
        let allowed: &[&str] = match kind {
            "function_call" => &["type", "id", "call_id", "name", "arguments", "status"],
            "function_call_output" => &["type", "id", "call_id", "output", "status"],
            _ => &[
                "type",
                "id",
                "summary",
                "content",
                "encrypted_content",
                "status",
            ],
        };
        if let Some(k) = o.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(Error::request(format!("{at}.{k}"), "unknown parameter"));
        }
        match kind {
            "function_call" => self.function_call(o, at),
            "function_call_output" => self.function_call_output(o, at),
            _ => self.reasoning(o, at),
        }
    }

    /// The messages, with reasoning that no assistant turn followed kept as its own turn.
    pub fn finish(mut self) -> Vec<ChatMessage> {
        self.flush_reasoning();
        self.messages
    }

    fn flush_reasoning(&mut self) {
        if let Some(r) = self.pending_reasoning.take() {
            let mut m = ChatMessage::text("assistant", "");
            m.reasoning_content = Some(r);
            self.messages.push(m);
        }
    }

    fn function_call(&mut self, o: &Map<String, Value>, at: &str) -> Result<()> {
        let call_id = req_str(o, "call_id", at)?;
        let name = req_str(o, "name", at)?;
        let raw = req_str(o, "arguments", at)?;
        // Templates print objects with `tojson`; text that is not JSON stays a string.
        let arguments = match serde_json::from_str::<Value>(&raw) {
            Ok(v @ Value::Object(_)) => v,
            _ => Value::String(raw),
        };
        self.call_names.insert(call_id.clone(), name.clone());
        let call = ToolCall {
            id: Some(call_id),
            kind: "function".into(),
            function: FunctionCall { name, arguments },
        };
        match self.messages.last_mut() {
            Some(m) if self.assistant_open && self.pending_reasoning.is_none() => {
                m.tool_calls.push(call)
            }
            _ => {
                // Content "" (not none): templates concatenate it (Qwen3 does).
                let mut m = ChatMessage::text("assistant", "");
                m.reasoning_content = self.pending_reasoning.take();
                m.tool_calls.push(call);
                self.messages.push(m);
                self.assistant_open = true;
            }
        }
        Ok(())
    }

    fn function_call_output(&mut self, o: &Map<String, Value>, at: &str) -> Result<()> {
        self.flush_reasoning();
        let call_id = req_str(o, "call_id", at)?;
        let output = content_text(o.get("output"), &format!("{at}.output"), &["input_text"])?;
        let mut m = ChatMessage::text("tool", output);
        m.name = self.call_names.get(&call_id).cloned();
        m.tool_call_id = Some(call_id);
        self.messages.push(m);
        self.assistant_open = false;
        Ok(())
    }

    fn reasoning(&mut self, o: &Map<String, Value>, at: &str) -> Result<()> {
        if o.get("encrypted_content").is_some_and(|v| !v.is_null()) {
            return Err(Error::request(
                format!("{at}.encrypted_content"),
                "encrypted reasoning cannot be replayed (rill never encrypts reasoning)",
            ));
        }
        let mut text = String::new();
        for field in ["content", "summary"] {
            match o.get(field) {
                None | Some(Value::Null) => {}
                Some(Value::Array(parts)) => {
                    for (j, p) in parts.iter().enumerate() {
                        match p.get("text") {
                            Some(Value::String(t)) if text.is_empty() || field == "content" => {
                                text.push_str(t)
                            }
                            Some(Value::String(_)) => {}
                            _ => {
                                return Err(Error::request(
                                    format!("{at}.{field}[{j}].text"),
                                    "is required (a string)",
                                ))
                            }
                        }
                    }
                }
                Some(other) => return Err(type_err(&format!("{at}.{field}"), "an array", other)),
            }
            if !text.is_empty() {
                break;
            }
        }
        self.flush_reasoning();
        self.pending_reasoning = Some(text);
        Ok(())
    }
}

fn req_str(o: &Map<String, Value>, k: &str, at: &str) -> Result<String> {
    match o.get(k) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(type_err(&format!("{at}.{k}"), "a string", other)),
        None => Err(Error::request(format!("{at}.{k}"), "is required")),
    }
}
