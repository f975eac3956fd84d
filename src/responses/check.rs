//! A checker for the stream invariants of `shared/spec/responses.md` (1-9) over the events
//! of one response. The tests run every stream they produce through it; hosts may use it
//! to validate recorded streams. It checks shapes rill emits today (message items) and the
//! generic rules (sequence numbers, indexes, ids, one terminal event) for every item type.

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
    let mut ids = HashSet::new();
    let mut open: Option<usize> = None;
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
                match t.as_str() {
                    "response.output_text.delta" | "response.reasoning_text.delta" => {
                        let d = e["delta"].as_str().ok_or("delta not a string")?;
                        texts.entry((idx, ci)).or_default().push_str(d);
                    }
                    "response.output_text.done" | "response.reasoning_text.done" => {
                        let got = texts.get(&(idx, ci)).cloned().unwrap_or_default();
                        if e["text"].as_str() != Some(got.as_str()) {
                            return Err(format!("{t} text differs from the concatenated deltas"));
                        }
                    }
                    "response.content_part.done" => {
                        let got = texts.get(&(idx, ci)).cloned().unwrap_or_default();
                        if e["part"]["text"].as_str() != Some(got.as_str()) {
                            return Err("content_part.done text differs from the deltas".into());
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
        }
        _ => return Err(format!("bad usage {u}")),
    }
    Ok(())
}
