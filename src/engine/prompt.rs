//! From a parsed request to prompt token ids and an output parser: the chat template
//! renders the conversation with the request's tools and `enable_thinking`; user strings
//! (messages, tool-call arguments, tool schemas) are escaped so they cannot become
//! control tokens; `tool_choice: "required"` or a named function appends the start of a
//! call to the prompt (the model continues it; there is no schema-constrained decoding).
//! The generation prompt (what `add_generation_prompt` adds) decides where the output
//! parser starts: inside `<think>` for templates that open it, inside a call when one was
//! forced. Which markers a model uses is detected once, at create, from its tokenizer
//! and template ([`detect_parsers`]). Public operations: [`detect_parsers`],
//! `Engine::render_prompt`, `Engine::build_prompt`.

use serde_json::Value;

use super::Engine;
use crate::chat_template::{ChatMessage, RenderOptions};
use crate::config::ParserChoice;
use crate::error::{Error, Result};
use crate::responses::output_parser::{Marker, ParserConfig};
use crate::responses::request::ParsedRequest;
use crate::responses::tools::ToolChoice;
use crate::tokenizer::Tokenizer;

/// A rendered request.
pub struct Prompt {
    /// The prompt as text (escape marks removed), for display and tests.
    pub text: String,
    pub ids: Vec<u32>,
    /// Where generation starts: the generation prompt plus any forced call start.
    pub tail: String,
    /// The markers this request's output is parsed with.
    pub parser: ParserConfig,
}

/// The markers a model uses, from its tokenizer and chat template, under the engine
/// config's overrides. A marker is matched by id when the vocabulary has it as one token.
pub fn detect_parsers(
    tok: &Tokenizer,
    template: &str,
    reasoning: ParserChoice,
    tool_calls: ParserChoice,
) -> ParserConfig {
    let marker = |text: &str| Marker {
        text: text.to_owned(),
        id: tok.token_id(text),
    };
    // Auto: the template writes the marker and the vocabulary has it as a token.
    let use_pair = |choice: ParserChoice, start: &str, end: &str| match choice {
        ParserChoice::Off => None,
        ParserChoice::On => Some((marker(start), marker(end))),
        ParserChoice::Auto => (template.contains(start) && tok.token_id(start).is_some())
            .then(|| (marker(start), marker(end))),
    };
    ParserConfig {
        reasoning: use_pair(reasoning, "<think>", "</think>"),
        tool_calls: use_pair(tool_calls, "<tool_call>", "</tool_call>"),
        calls_enabled: true,
    }
}

impl Engine {
    /// The prompt text and token ids a request renders to (the first steps of submit).
    pub fn render_prompt(&self, req: &ParsedRequest) -> Result<(String, Vec<u32>)> {
        let p = self.build_prompt(req)?;
        Ok((p.text, p.ids))
    }

    /// Renders `req`, tokenizes it and picks its output parser. Refuses tools on a model
    /// whose template has no tool-call format rill can parse.
    pub fn build_prompt(&self, req: &ParsedRequest) -> Result<Prompt> {
        let tok = &self.shared.tokenizer;
        let mut parser = self.parsers.clone();
        let tools_on = !req.tools.is_empty() && req.tool_choice != ToolChoice::None;
        if tools_on && parser.tool_calls.is_none() {
            return Err(Error::request(
                "tools",
                "this model's chat template has no tool-call format rill can parse \
                 (rill reads Hermes-style <tool_call> blocks, as Qwen2.5/Qwen3 write them)",
            ));
        }
        parser.calls_enabled = tools_on;
        // User-supplied strings must not become control tokens: escape them for the
        // template; encode_prompt then splits only at the template's own control tokens.
        let mut messages = req.messages.clone();
        for m in &mut messages {
            escape_message(tok, m);
        }
        let mut tools = Value::Array(req.tools.iter().map(|t| t.for_template()).collect());
        escape_json_strings(&mut tools, &|s| escape(tok, s));
        let mut opts = RenderOptions {
            add_generation_prompt: true,
            reasoning_effort: req.reasoning_effort.as_deref(),
            tools: tools_on.then_some(&tools),
            enable_thinking: req.enable_thinking,
            ..Default::default()
        };
        let mut text = self.template.render(&messages, &opts)?;
        // The generation prompt (what rendering without it leaves off) decides where the
        // parser starts; a model without markers needs no second render. A template that
        // cannot render without it (it raises) leaves the whole prompt as the tail: the
        // parser then starts after the last marker in it, which is what the generation
        // prompt would have said for every template seen so far.
        let tail_from = if parser.reasoning.is_some() || parser.tool_calls.is_some() {
            opts.add_generation_prompt = false;
            let without = self.template.render(&messages, &opts).unwrap_or_default();
            text.char_indices()
                .zip(without.chars())
                .find(|((_, a), b)| a != b)
                .map_or(without.len().min(text.len()), |((i, _), _)| i)
        } else {
            text.len()
        };
        let mut tail = text[tail_from..].to_owned();
        if let Some(forced) = forced_call(&parser, &req.tool_choice, &tail) {
            text.push_str(&forced);
            tail.push_str(&forced);
        }
        let mut ids = Vec::new();
        let body = tok.encode_prompt(&text)?;
        // A template that writes `{{ bos_token }}` itself (Llama 3) already starts with
        // BOS; adding another would change the prompt (llama.cpp warns about it).
        if tok.add_bos && tok.bos_id.is_some() && body.first().copied() != tok.bos_id {
            ids.extend(tok.bos_id);
        }
        ids.extend(body);
        Ok(Prompt {
            text: tok.unescape_specials(&text).into_owned(),
            ids,
            tail,
            parser,
        })
    }
}

/// The start of a call that `tool_choice` forces, after a closed reasoning block for
/// thinking models.
fn forced_call(parser: &ParserConfig, choice: &ToolChoice, tail: &str) -> Option<String> {
    let (start, _) = parser.tool_calls.as_ref()?;
    let mut s = String::new();
    // A thinking model answers after its reasoning block: close the block the
    // generation prompt opened, or write an empty one (what Qwen3's template writes with
    // thinking off), so the forced call is where the model would put a call.
    if let Some((open, close)) = &parser.reasoning {
        let (o, c) = (tail.rfind(&open.text), tail.rfind(&close.text));
        if o.is_some() && c < o {
            s.push_str(&format!("{}\n\n", close.text));
        } else if o.is_none() {
            s.push_str(&format!("{}\n\n{}\n\n", open.text, close.text));
        }
    }
    match choice {
        ToolChoice::Required => s.push_str(&format!("{}\n", start.text)),
        ToolChoice::Function(name) => s.push_str(&format!(
            "{}\n{{\"name\": {}, \"arguments\":",
            start.text,
            Value::String(name.clone())
        )),
        ToolChoice::None | ToolChoice::Auto => return None,
    }
    Some(s)
}

fn escape(tok: &Tokenizer, s: &mut String) {
    if let std::borrow::Cow::Owned(e) = tok.escape_specials(s) {
        *s = e;
    }
}

/// Escapes every user-supplied string of `m` (content, reasoning, tool-call arguments and
/// names) so that control-token look-alikes in them stay text (see `Tokenizer::escape_specials`).
fn escape_message(tok: &Tokenizer, m: &mut ChatMessage) {
    let esc = |s: &mut String| escape(tok, s);
    for s in [&mut m.content, &mut m.reasoning_content, &mut m.name]
        .into_iter()
        .flatten()
    {
        esc(s);
    }
    for call in &mut m.tool_calls {
        esc(&mut call.function.name);
        escape_json_strings(&mut call.function.arguments, &esc);
    }
}

fn escape_json_strings(v: &mut Value, esc: &impl Fn(&mut String)) {
    match v {
        Value::String(s) => esc(s),
        Value::Array(a) => a.iter_mut().for_each(|x| escape_json_strings(x, esc)),
        Value::Object(o) => {
            // Keys too: a tool schema's property names are the user's text.
            for (mut k, mut x) in std::mem::take(o) {
                esc(&mut k);
                escape_json_strings(&mut x, esc);
                o.insert(k, x);
            }
        }
        _ => {}
    }
}
