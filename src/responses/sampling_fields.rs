//! The sampling fields of a Responses request: OpenAI's `temperature`, `top_p`,
//! `top_logprobs` and `include` (logprobs are returned when `include` has
//! `message.output_text.logprobs`; `top_logprobs` 0..=20 sets the alternatives per token),
//! and vLLM's extensions with vLLM's ranges: `top_k`, `min_p`, `seed`, `stop` (a string or
//! up to 4 non-empty strings), `repetition_penalty` (> 0), `frequency_penalty` and
//! `presence_penalty` (-2..2). Every refusal names its field. Operation: [`parse_sampling`].

use serde_json::{Map, Value};

use super::request::{opt_num, type_err};
use crate::config::GenerationDefaults;
use crate::error::{Error, Result};
use crate::sampling::SamplingParams;

/// What the sampling fields of a request resolve to.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingFields {
    pub sampling: SamplingParams,
    /// Up to 4 non-empty stop strings.
    pub stop: Vec<String>,
    /// The `top_logprobs` to echo.
    pub top_logprobs: usize,
}

/// Parses the sampling fields of request object `m`; omitted ones take `defaults`.
pub fn parse_sampling(
    m: &Map<String, Value>,
    defaults: &GenerationDefaults,
) -> Result<SamplingFields> {
    let top_logprobs = match m.get("top_logprobs") {
        None | Some(Value::Null) => 0,
        Some(Value::Number(n)) => {
            n.as_u64()
                .filter(|&k| k <= MAX_TOP_LOGPROBS)
                .ok_or_else(|| {
                    Error::request(
                        "top_logprobs",
                        format!("must be an integer in [0, {MAX_TOP_LOGPROBS}], got {n}"),
                    )
                })? as usize
        }
        Some(other) => return Err(type_err("top_logprobs", "an integer", other)),
    };
    let penalty = |k: &str, default: f32| -> Result<f32> {
        Ok(opt_num(m, k, -2.0, 2.0)?.map_or(default, |v| v as f32))
    };
    let sampling = SamplingParams {
        temperature: opt_num(m, "temperature", 0.0, 2.0)?
            .map_or(defaults.sampling.temperature, |v| v as f32),
        top_p: opt_num(m, "top_p", 0.0, 1.0)?.map_or(defaults.sampling.top_p, |v| v as f32),
        top_k: match m.get("top_k") {
            None | Some(Value::Null) => defaults.sampling.top_k,
            Some(Value::Number(n)) if n.as_i64() == Some(-1) => 0,
            Some(Value::Number(n)) => n.as_u64().filter(|&k| k <= 1_000_000).ok_or_else(|| {
                Error::request("top_k", "must be -1, 0 (disabled) or a positive integer")
            })? as usize,
            Some(other) => return Err(type_err("top_k", "an integer", other)),
        },
        min_p: opt_num(m, "min_p", 0.0, 1.0)?.map_or(defaults.sampling.min_p, |v| v as f32),
        seed: match m.get("seed") {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => Some(
                n.as_u64()
                    .or_else(|| n.as_i64().map(|v| v as u64))
                    .ok_or_else(|| Error::request("seed", "must be an integer"))?,
            ),
            Some(other) => return Err(type_err("seed", "an integer", other)),
        },
        repetition_penalty: match m.get("repetition_penalty") {
            None | Some(Value::Null) => defaults.sampling.repetition_penalty,
            Some(Value::Number(n)) => n
                .as_f64()
                .map(|v| v as f32)
                .filter(|&v| v > 0.0 && v.is_finite())
                .ok_or_else(|| {
                    Error::request(
                        "repetition_penalty",
                        format!("must be a number > 0 (1 disables it), got {n}"),
                    )
                })?,
            Some(other) => return Err(type_err("repetition_penalty", "a number", other)),
        },
        frequency_penalty: penalty("frequency_penalty", defaults.sampling.frequency_penalty)?,
        presence_penalty: penalty("presence_penalty", defaults.sampling.presence_penalty)?,
        logprobs: include_logprobs(m)?.then_some(top_logprobs),
    };
    Ok(SamplingFields {
        sampling,
        stop: parse_stop(m)?,
        top_logprobs,
    })
}

/// Most alternatives per token (OpenAI's limit).
const MAX_TOP_LOGPROBS: u64 = 20;

/// The one `include` value rill honours.
const INCLUDE_LOGPROBS: &str = "message.output_text.logprobs";

/// Whether `include` asks for output logprobs; any other value is refused by name.
fn include_logprobs(m: &Map<String, Value>) -> Result<bool> {
    let items = match m.get("include") {
        None | Some(Value::Null) => return Ok(false),
        Some(Value::Array(a)) => a,
        Some(other) => return Err(type_err("include", "an array of strings", other)),
    };
    let mut logprobs = false;
    for (i, v) in items.iter().enumerate() {
        match v.as_str() {
            Some(INCLUDE_LOGPROBS) => logprobs = true,
            Some(other) => {
                return Err(Error::request(
                    format!("include[{i}]"),
                    format!("{other:?} is not supported (rill supports {INCLUDE_LOGPROBS:?})"),
                ))
            }
            None => return Err(type_err(&format!("include[{i}]"), "a string", v)),
        }
    }
    Ok(logprobs)
}

/// `stop`: a string or a list of up to 4 strings, none empty.
fn parse_stop(m: &Map<String, Value>) -> Result<Vec<String>> {
    let nonempty = |s: &str, at: String| {
        if s.is_empty() {
            Err(Error::request(at, "stop strings must not be empty"))
        } else {
            Ok(s.to_owned())
        }
    };
    match m.get("stop") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![nonempty(s, "stop".into())?]),
        Some(Value::Array(a)) if a.len() > 4 => Err(Error::request(
            "stop",
            format!("at most 4 stop strings, got {}", a.len()),
        )),
        Some(Value::Array(a)) => a
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::String(s) => nonempty(s, format!("stop[{i}]")),
                other => Err(type_err(&format!("stop[{i}]"), "a string", other)),
            })
            .collect(),
        Some(other) => Err(type_err("stop", "a string or an array of strings", other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::responses::request::ParsedRequest;

    fn parse(body: &str) -> Result<ParsedRequest> {
        crate::responses::request::parse(body, &GenerationDefaults::default())
    }

    #[test]
    fn parses_penalties_stop_strings_and_logprobs() {
        let r = parse(r#"{"input":"x","stop":"END","repetition_penalty":1.3,"frequency_penalty":-0.5,"presence_penalty":2,"top_logprobs":5,"include":["message.output_text.logprobs"]}"#)
            .unwrap();
        assert_eq!(r.stop, ["END"]);
        let s = &r.sampling;
        assert_eq!(
            (
                s.repetition_penalty,
                s.frequency_penalty,
                s.presence_penalty
            ),
            (1.3, -0.5, 2.0)
        );
        assert_eq!((s.logprobs, r.top_logprobs), (Some(5), 5));
        // top_logprobs alone sets the number but, as OpenAI, returns no logprobs.
        let r = parse(r#"{"input":"x","top_logprobs":3,"stop":["a","b"],"include":[]}"#).unwrap();
        assert_eq!((r.sampling.logprobs, r.top_logprobs), (None, 3));
        assert_eq!(r.stop, ["a", "b"]);
        // include alone: only the chosen token's logprob.
        let r = parse(r#"{"input":"x","include":["message.output_text.logprobs"]}"#).unwrap();
        assert_eq!(r.sampling.logprobs, Some(0));
        let r = parse(r#"{"input":"x"}"#).unwrap();
        assert_eq!(r.sampling, SamplingParams::default());
        assert!(r.stop.is_empty());
    }

    #[test]
    fn every_refusal_names_its_field() {
        let cases = [
            (
                r#"{"input":"x","include":["reasoning.encrypted_content"]}"#,
                "include[0]",
            ),
            (r#"{"input":"x","include":"all"}"#, "include"),
            (
                r#"{"input":"x","include":["message.output_text.logprobs",3]}"#,
                "include[1]",
            ),
            (r#"{"input":"x","top_logprobs":21}"#, "top_logprobs"),
            (r#"{"input":"x","top_logprobs":-1}"#, "top_logprobs"),
            (r#"{"input":"x","top_logprobs":"5"}"#, "top_logprobs"),
            (r#"{"input":"x","stop":""}"#, "stop"),
            (r#"{"input":"x","stop":["a",""]}"#, "stop[1]"),
            (r#"{"input":"x","stop":["a",1]}"#, "stop[1]"),
            (r#"{"input":"x","stop":["a","b","c","d","e"]}"#, "stop"),
            (r#"{"input":"x","stop":5}"#, "stop"),
            (
                r#"{"input":"x","presence_penalty":2.5}"#,
                "presence_penalty",
            ),
            (
                r#"{"input":"x","frequency_penalty":-3}"#,
                "frequency_penalty",
            ),
            (
                r#"{"input":"x","frequency_penalty":"high"}"#,
                "frequency_penalty",
            ),
            (
                r#"{"input":"x","repetition_penalty":0}"#,
                "repetition_penalty",
            ),
            (
                r#"{"input":"x","repetition_penalty":-1.2}"#,
                "repetition_penalty",
            ),
        ];
        for (body, want) in cases {
            match parse(body) {
                Err(Error::InvalidRequest { param, .. }) => assert_eq!(param, want, "{body}"),
                other => panic!("{body}: {other:?}"),
            }
        }
    }
}
