//! A checker for the stream invariants of `shared/spec/responses.md` (1-11) over the
//! events of one response. The tests run every stream they produce through it; hosts may
//! use it to validate recorded streams. It covers message, reasoning and function_call
//! items (texts, arguments, logprobs, usage, markers) and the generic rules (sequence
//! numbers, indexes, ids, one terminal event) for every item type.

use std::collections::{HashMap, HashSet};

use serde_json::Value;

/// Checks `events` (one response, in delivery order); returns the first violation.
pub fn check_stream(events: &[Value]) -> Result<(), String> {
    let ty = |e: &Value| e["type"].as_str().unwrap_or("").to_owned();
    if events.is_empty() {
        return Err("no events".into());
    }
    // 1. sequence numbers 0, 1, 2, ...
    for (i, e) in events.iter().enumerate() {
        if e["sequence_number"].as_u64() != Some(i as u64) {
            return Err(format!(
                "event {i} ({}) has sequence_number {}",
                ty(e),
                e["sequence_number"]
            ));
        }
    }
    if ty(&events[0]) != "response.created"
        || events.get(1).map(ty).as_deref() != Some("response.in_progress")
    {
        return Err("stream must start with response.created, response.in_progress".into());
    }
    // 8. exactly one terminal event, last.
    let terminal = [
        "response.completed",
        "response.incomplete",
        "response.failed",
    ];
    let n_term = events
        .iter()
        .filter(|e| terminal.contains(&ty(e).as_str()))
        .count();
    let last = events.last().map(ty).unwrap_or_default();
    if n_term != 1 || !terminal.contains(&last.as_str()) {
        return Err(format!("{n_term} terminal events; last event is {last}"));
    }
    let resp = &events[events.len() - 1]["response"];
    let status = resp["status"].as_str().unwrap_or("");
    let ok_status = match last.as_str() {
        "response.completed" => status == "completed",
        "response.incomplete" => status == "incomplete" || status == "cancelled",
        _ => status == "failed",
    };
    if !ok_status {
        return Err(format!("terminal {last} with status {status}"));
    }
    // 2-7. items.
    let mut added: Vec<Value> = Vec::new();
    let mut done: HashMap<usize, Value> = HashMap::new();
    let mut texts: HashMap<(usize, u64), String> = HashMap::new();
    // 10. logprob entries per output_text part, and whether some delta had none.
    let mut logprobs: HashMap<(usize, u64), (Vec<Value>, bool)> = HashMap::new();
    let top_n = resp["top_logprobs"].as_u64().unwrap_or(0) as usize;
    let mut ids = HashSet::new();
    let mut open: Option<usize> = None;
    // Function-call arguments streamed per item.
    let mut args: HashMap<usize, String> = HashMap::new();
    let mut reasoning_text = false;
    for e in events {
        let t = ty(e);
        let idx = e["output_index"].as_u64().map(|v| v as usize);
        match t.as_str() {
            "response.output_item.added" => {
                let idx = idx.ok_or("added without output_index")?;
                if idx != added.len() {
                    return Err(format!(
                        "item added with output_index {idx}, expected {}",
                        added.len()
                    ));
                }
                if open.is_some() {
                    return Err("item added while another is open".into());
                }
                let id = e["item"]["id"].as_str().unwrap_or("");
                if id.len() < 5 || !id.contains('_') || !ids.insert(id.to_owned()) {
                    return Err(format!("bad or duplicate item id {id:?}"));
                }
                if e["item"]["status"] != "in_progress" {
                    return Err("item not in_progress when added".into());
                }
                added.push(e["item"].clone());
                open = Some(idx);
            }
            "response.output_item.done" => {
                let idx = idx.ok_or("done without output_index")?;
                if open != Some(idx) || done.contains_key(&idx) {
                    return Err(format!(
                        "output_item.done for {idx} which is not the open item"
                    ));
                }
                if e["item"]["id"] != added[idx]["id"] {
                    return Err("output_item.done id differs from added".into());
                }
                let st = e["item"]["status"].as_str().unwrap_or("");
                let want = if status == "completed" {
                    "completed"
                } else {
                    st
                };
                if st != want || !(st == "completed" || st == "incomplete") {
                    return Err(format!("item done with status {st} in a {status} response"));
                }
                done.insert(idx, e["item"].clone());
                open = None;
            }
            _ if idx.is_some() => {
                let idx = idx.unwrap_or(0);
                if open != Some(idx) {
                    return Err(format!("{t} for output_index {idx} which is not open"));
                }
                if e["item_id"] != added[idx]["id"] {
                    return Err(format!(
                        "{t} carries item_id {} not {}",
                        e["item_id"], added[idx]["id"]
                    ));
                }
                let ci = e["content_index"].as_u64().unwrap_or(0);
                for field in ["delta", "text", "arguments"] {
                    if let Some(m) = e[field].as_str().and_then(marker_in) {
                        return Err(format!("{t} {field} contains the marker {m}"));
                    }
                }
                match t.as_str() {
                    "response.function_call_arguments.delta" => {
                        let d = e["delta"].as_str().ok_or("arguments delta not a string")?;
                        args.entry(idx).or_default().push_str(d);
                    }
                    "response.function_call_arguments.done" => {
                        let got = args.get(&idx).map(String::as_str).unwrap_or("");
                        if e["arguments"].as_str() != Some(got) {
                            return Err(
                                "function_call_arguments.done differs from the deltas".into()
                            );
                        }
                        if e["name"] != added[idx]["name"] {
                            return Err(
                                "function_call_arguments.done names another function".into()
                            );
                        }
                    }
                    "response.output_text.delta" | "response.reasoning_text.delta" => {
                        let d = e["delta"].as_str().ok_or("delta not a string")?;
                        reasoning_text |= t == "response.reasoning_text.delta" && !d.is_empty();
                        texts.entry((idx, ci)).or_default().push_str(d);
                        if t == "response.output_text.delta" {
                            let lp = e["logprobs"]
                                .as_array()
                                .ok_or("output_text.delta without a logprobs list")?;
                            check_entries(lp, top_n, false)?;
                            let tokens: String =
                                lp.iter().filter_map(|x| x["token"].as_str()).collect();
                            if !lp.is_empty() && tokens != d {
                                return Err(format!(
                                    "logprob tokens {tokens:?} do not concatenate to the delta {d:?}"
                                ));
                            }
                            let acc = logprobs.entry((idx, ci)).or_default();
                            acc.0.extend(lp.iter().cloned());
                            acc.1 |= lp.is_empty();
                            if acc.1 && !acc.0.is_empty() {
                                return Err("some deltas of a part have logprobs, some not".into());
                            }
                        }
                    }
                    "response.output_text.done" | "response.reasoning_text.done" => {
                        let got = texts.get(&(idx, ci)).cloned().unwrap_or_default();
                        if e["text"].as_str() != Some(got.as_str()) {
                            return Err(format!("{t} text differs from the concatenated deltas"));
                        }
                        if t == "response.output_text.done" {
                            let want = logprobs.get(&(idx, ci)).map(|x| &x.0[..]).unwrap_or(&[]);
                            if e["logprobs"].as_array().map(|a| &a[..]) != Some(want) {
                                return Err(
                                    "output_text.done logprobs differ from the deltas' entries"
                                        .into(),
                                );
                            }
                        }
                    }
                    "response.content_part.done" => {
                        let got = texts.get(&(idx, ci)).cloned().unwrap_or_default();
                        if e["part"]["text"].as_str() != Some(got.as_str()) {
                            return Err("content_part.done text differs from the deltas".into());
                        }
                        if e["part"]["type"] == "output_text" {
                            let want = logprobs.get(&(idx, ci)).map(|x| &x.0[..]).unwrap_or(&[]);
                            let lp = e["part"]["logprobs"]
                                .as_array()
                                .ok_or("output_text part without a logprobs list")?;
                            check_entries(lp, top_n, true)?;
                            let stripped: Vec<Value> = lp.iter().map(without_bytes).collect();
                            if stripped != want {
                                return Err(
                                    "content_part.done logprobs differ from the deltas' entries"
                                        .into(),
                                );
                            }
                        }
                    }
                    "response.content_part.added" => {
                        let expect = added[idx]["content"]
                            .as_array()
                            .map(|a| a.len())
                            .unwrap_or(0) as u64
                            + texts.keys().filter(|(i, _)| *i == idx).count() as u64;
                        if ci != expect {
                            return Err(format!("content_index {ci}, expected {expect}"));
                        }
                        texts.entry((idx, ci)).or_default();
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
    if open.is_some() {
        return Err("an item is still open at the end".into());
    }
    let output = resp["output"]
        .as_array()
        .ok_or("terminal response has no output array")?;
    if output.len() != added.len() {
        return Err(format!(
            "output has {} items, {} were streamed",
            output.len(),
            added.len()
        ));
    }
    for (i, item) in output.iter().enumerate() {
        if done.get(&i) != Some(item) {
            return Err(format!("output[{i}] differs from the streamed item"));
        }
        if item["type"] == "function_call" {
            let got = args.get(&i).map(String::as_str).unwrap_or("");
            if item["arguments"].as_str() != Some(got) || added[i]["call_id"] != item["call_id"] {
                return Err(format!(
                    "output[{i}] arguments or call_id differ from the stream"
                ));
            }
            let call_id = item["call_id"].as_str().unwrap_or("");
            if !call_id.starts_with("call_") || !ids.insert(call_id.to_owned()) {
                return Err(format!("bad or duplicate call_id {call_id:?}"));
            }
        }
        for (j, part) in item["content"].as_array().into_iter().flatten().enumerate() {
            if let Some(t) = texts.get(&(i, j as u64)) {
                if part["text"].as_str() != Some(t.as_str()) {
                    return Err(format!(
                        "output[{i}].content[{j}] text differs from the deltas"
                    ));
                }
            }
        }
    }
    // 9. usage.
    let u = &resp["usage"];
    let (inp, out, tot) = (
        u["input_tokens"].as_u64(),
        u["output_tokens"].as_u64(),
        u["total_tokens"].as_u64(),
    );
    match (inp, out, tot) {
        (Some(i), Some(o), Some(t)) if i + o == t => {
            let r = u["output_tokens_details"]["reasoning_tokens"]
                .as_u64()
                .ok_or("no reasoning_tokens")?;
            let c = u["input_tokens_details"]["cached_tokens"]
                .as_u64()
                .ok_or("no cached_tokens")?;
            u["input_tokens_details"]["cache_write_tokens"]
                .as_u64()
                .ok_or("no cache_write_tokens")?;
            if r > o || c > i {
                return Err(
                    "reasoning_tokens > output_tokens or cached_tokens > input_tokens".into(),
                );
            }
            if reasoning_text && r == 0 {
                return Err("reasoning text was streamed but reasoning_tokens is 0".into());
            }
        }
        _ => return Err(format!("bad usage {u}")),
    }
    Ok(())
}

/// Marker and control-token texts that must never appear in output text (invariant 11).
const MARKERS: &[&str] = &[
    "<think>",
    "</think>",
    "<tool_call>",
    "</tool_call>",
    "<|im_end|>",
    "<|im_start|>",
];

fn marker_in(text: &str) -> Option<&'static str> {
    MARKERS.iter().copied().find(|m| text.contains(m))
}

/// Checks the shape of logprob entries: `token` and finite `logprob`; `top_logprobs` with
/// exactly `top_n` alternatives, best first; with `bytes` on the final part (the entry's
/// bytes are its token's UTF-8, an alternative's are its raw bytes).
fn check_entries(entries: &[Value], top_n: usize, with_bytes: bool) -> Result<(), String> {
    let check_bytes = |x: &Value, own: bool| -> Result<(), String> {
        let token = x["token"].as_str().unwrap_or("");
        let bytes: Option<Vec<u8>> = x["bytes"].as_array().and_then(|a| {
            a.iter()
                .map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()))
                .collect()
        });
        let Some(bytes) = bytes else {
            return Err(format!("logprob entry {x} has no byte list"));
        };
        let fits = match std::str::from_utf8(&bytes) {
            Ok(s) => s == token,
            Err(_) => !own,
        };
        if !fits {
            return Err(format!("logprob entry {x}: bytes are not its token"));
        }
        Ok(())
    };
    for x in entries {
        if !x["token"].is_string() || !x["logprob"].as_f64().is_some_and(|l| l <= 0.0) {
            return Err(format!("bad logprob entry {x}"));
        }
        let top = x["top_logprobs"]
            .as_array()
            .ok_or_else(|| format!("logprob entry {x} without top_logprobs"))?;
        if top.len() != top_n {
            return Err(format!(
                "{} top_logprobs where the response asked for {top_n}",
                top.len()
            ));
        }
        let lps: Vec<f64> = top.iter().filter_map(|t| t["logprob"].as_f64()).collect();
        if lps.len() != top.len() || lps.windows(2).any(|w| w[0] < w[1]) {
            return Err(format!("top_logprobs of {x} not sorted best first"));
        }
        if with_bytes {
            check_bytes(x, true)?;
            for t in top {
                check_bytes(t, false)?;
            }
        }
    }
    Ok(())
}

/// A final-part entry as the text events carry it (no `bytes`).
fn without_bytes(x: &Value) -> Value {
    let mut x = x.clone();
    if let Some(o) = x.as_object_mut() {
        o.remove("bytes");
        if let Some(top) = o.get_mut("top_logprobs").and_then(Value::as_array_mut) {
            for t in top.iter_mut().filter_map(Value::as_object_mut) {
                t.remove("bytes");
            }
        }
    }
    x
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::responses::stream::{
        Finish, LogprobEntry, ResponseMeta, ResponseStream, TopLogprob, Usage,
    };

    fn entry(token: &str, logprob: f32, top: &[(&[u8], f32)]) -> LogprobEntry {
        LogprobEntry {
            token: token.into(),
            logprob,
            top: top
                .iter()
                .map(|&(b, lp)| TopLogprob {
                    token: String::from_utf8_lossy(b).into_owned(),
                    bytes: b.to_vec(),
                    logprob: lp,
                })
                .collect(),
        }
    }

    fn meta(top_logprobs: usize) -> ResponseMeta {
        ResponseMeta {
            model: "m".into(),
            instructions: None,
            max_output_tokens: None,
            temperature: 1.0,
            top_p: 1.0,
            top_logprobs,
            metadata: Default::default(),
            user: None,
            parallel_tool_calls: true,
            max_tool_calls: None,
            reasoning_effort: None,
            tools: Vec::new(),
            tool_choice: "auto".into(),
        }
    }

    fn stream(deltas: Vec<(&str, Vec<LogprobEntry>)>, top_logprobs: usize) -> Vec<Value> {
        let meta = meta(top_logprobs);
        let mut s = ResponseStream::new(&meta, 0);
        let mut evs = s.start();
        for (d, lp) in deltas {
            evs.extend(s.text_delta(d, lp));
        }
        let usage = Usage {
            input_tokens: 3,
            output_tokens: 3,
            ..Usage::default()
        };
        evs.extend(s.finish(&Finish::Completed, usage));
        evs
    }

    #[test]
    fn logprob_entries_must_concatenate_to_their_delta() {
        let alt: &[(&[u8], f32)] = &[(b"He", -0.1), (b"\xe4", -2.0)];
        let good = stream(
            vec![
                ("He", vec![entry("He", -0.1, alt)]),
                (
                    "llo 世",
                    vec![
                        entry("llo ", -0.5, alt),
                        entry("", -0.2, alt),
                        entry("世", -0.3, alt),
                    ],
                ),
            ],
            2,
        );
        check_stream(&good).unwrap();
        let part = &good.last().unwrap()["response"]["output"][0]["content"][0];
        assert_eq!(
            part["logprobs"][3]["bytes"],
            serde_json::json!([228, 184, 150])
        );
        assert_eq!(
            part["logprobs"][0]["top_logprobs"][1]["bytes"],
            serde_json::json!([228])
        );
        // Not asked: every list empty, and that is valid too.
        check_stream(&stream(vec![("Hi", vec![])], 0)).unwrap();
        // Tokens that do not spell the delta.
        let bad = stream(vec![("Hello", vec![entry("Hel", -0.1, &[])])], 0);
        assert!(check_stream(&bad).unwrap_err().contains("concatenate"));
        // A delta without entries in a part that has them.
        let bad = stream(vec![("a", vec![entry("a", -0.1, &[])]), ("b", vec![])], 0);
        assert!(check_stream(&bad).is_err());
        // Fewer alternatives than the response's top_logprobs.
        let bad = stream(vec![("a", vec![entry("a", -0.1, &[])])], 1);
        assert!(check_stream(&bad).unwrap_err().contains("top_logprobs"));
        // The done event must carry the whole list.
        let mut bad = good.clone();
        for e in bad.iter_mut() {
            if e["type"] == "response.output_text.done" {
                e["logprobs"].as_array_mut().unwrap().pop();
            }
        }
        assert!(check_stream(&bad).unwrap_err().contains("done"));
    }

    #[test]
    fn reasoning_and_call_items_check_and_their_breakage_is_caught() {
        let meta = meta(0);
        let build = |reasoning_tokens| {
            let mut s = ResponseStream::new(&meta, 0);
            let mut evs = s.start();
            evs.extend(s.reasoning_delta("think"));
            evs.extend(s.reasoning_end());
            evs.extend(s.call_start("f"));
            evs.extend(s.call_args("{\"a\""));
            evs.extend(s.call_args(": 1}"));
            evs.extend(s.call_end(true));
            evs.extend(s.text_delta("ok", vec![]));
            let usage = Usage {
                input_tokens: 3,
                output_tokens: 9,
                reasoning_tokens,
                ..Usage::default()
            };
            evs.extend(s.finish(&Finish::Completed, usage));
            evs
        };
        let good = build(3);
        check_stream(&good).unwrap();
        let out = &good.last().unwrap()["response"]["output"];
        assert_eq!(out[0]["type"], "reasoning");
        assert_eq!(out[1]["arguments"], "{\"a\": 1}");
        assert_eq!(out[2]["content"][0]["text"], "ok");
        assert!(check_stream(&build(0))
            .unwrap_err()
            .contains("reasoning_tokens"));
        let mut bad = good.clone();
        for e in bad.iter_mut() {
            if e["type"] == "response.function_call_arguments.done" {
                e["arguments"] = "{}".into();
            }
        }
        assert!(check_stream(&bad).unwrap_err().contains("arguments"));
        let mut bad = good.clone();
        for e in bad.iter_mut() {
            if e["type"] == "response.output_text.delta" {
                e["delta"] = "<tool_call>".into();
            }
        }
        assert!(check_stream(&bad).unwrap_err().contains("marker"));
    }
}
