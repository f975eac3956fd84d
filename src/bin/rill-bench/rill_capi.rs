//! The rill backend of rill-bench, driven through the C API exactly as a host drives it:
//! `rill_engine_create`, `rill_engine_submit` with an event callback, `rill_engine_cancel`,
//! `rill_engine_stats`, `rill_engine_destroy` (`include/rill.h`), called from Rust as the
//! crate's `extern "C"` functions. The callback only timestamps and copies each event onto
//! a channel; events are parsed after the run, so parsing costs nothing while the engine
//! works. Public operations: [`RillCapi::new`], the [`Backend`] impl, [`parse_event`].

use std::collections::HashMap;
use std::ffi::{c_char, c_void, CStr, CString};
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver, RecvTimeoutError, Sender};
use rill::ffi::status::RillStatus;
use rill::ffi::{
    rill_engine_cancel, rill_engine_create, rill_engine_destroy, rill_engine_stats,
    rill_engine_submit, rill_last_error, rill_string_free, RillEngine,
};
use serde_json::{json, Map, Value};

use crate::stats::Stream;
use crate::workloads::{Backend, Req, TIMED_OUT};

/// One event as the callback saw it.
struct Event {
    id: u64,
    at: Instant,
    json: String,
    last: bool,
}

/// An engine created through the C API, destroyed on drop.
pub struct RillCapi {
    engine: *mut RillEngine,
    /// The callbacks' `user_data`: boxed so its address is stable; it outlives the engine
    /// (fields drop in declaration order, and `Drop` destroys the engine first).
    tx: Box<Sender<Event>>,
    rx: Receiver<Event>,
    /// Longest wait for the next event before the run is cancelled and fails.
    timeout: Duration,
    /// The engine config JSON, for the report.
    config: Value,
}

/// The message of the last failed rill call on this thread.
fn last_error(status: RillStatus) -> String {
    // SAFETY: rill_last_error returns a valid NUL-terminated thread-local string, valid
    // until the next failing rill call on this thread; it is copied at once.
    let msg = unsafe { CStr::from_ptr(rill_last_error()) };
    format!("{status:?}: {}", msg.to_string_lossy())
}

/// The event callback registered with every request.
///
/// # Safety
/// Called by rill with `user_data` = the `&Sender<Event>` of a live [`RillCapi`] and
/// `event_json` pointing to `event_len` bytes valid for the call.
unsafe extern "C" fn on_event(
    user_data: *mut c_void,
    request_id: u64,
    event_json: *const c_char,
    event_len: usize,
    is_last: bool,
) {
    let at = Instant::now();
    // SAFETY: per this function's contract `user_data` is the boxed Sender, which lives
    // until after `rill_engine_destroy` (which delivers every pending callback) returns.
    let tx = unsafe { &*(user_data as *const Sender<Event>) };
    // SAFETY: rill passes `event_len` readable bytes at `event_json` for the call.
    let bytes = unsafe { std::slice::from_raw_parts(event_json.cast::<u8>(), event_len) };
    // A send fails only when the receiver is gone, i.e. the bench is shutting down.
    let _ = tx.send(Event {
        id: request_id,
        at,
        json: String::from_utf8_lossy(bytes).into_owned(),
        last: is_last,
    });
}

impl RillCapi {
    /// Creates the engine: `max_num_seqs` = the largest concurrency level, and
    /// `max_model_len` = llama-server's per-slot context, so both hold the same KV budget;
    /// on `device`, with the keys of `extra` merged over these.
    pub fn new(
        model: &str,
        threads: usize,
        max_num_seqs: usize,
        max_model_len: usize,
        timeout: Duration,
        device: &str,
        extra: &Map<String, Value>,
    ) -> Result<Self, String> {
        let cfg = engine_config(model, threads, max_num_seqs, max_model_len, device, extra);
        let config = cfg.clone();
        let cfg = CString::new(cfg.to_string()).map_err(|e| e.to_string())?;
        let mut engine: *mut RillEngine = std::ptr::null_mut();
        // SAFETY: `cfg` is NUL-terminated and outlives the call; `engine` is writable.
        let st = unsafe { rill_engine_create(cfg.as_ptr(), &mut engine) };
        if st != RillStatus::Ok || engine.is_null() {
            return Err(format!("rill_engine_create: {}", last_error(st)));
        }
        let (tx, rx) = unbounded();
        Ok(RillCapi {
            engine,
            tx: Box::new(tx),
            rx,
            timeout,
            config,
        })
    }

    /// `rill_engine_stats` as JSON.
    pub fn stats(&self) -> Result<Value, String> {
        let mut out: *mut c_char = std::ptr::null_mut();
        // SAFETY: the engine is live; `out` is writable.
        let st = unsafe { rill_engine_stats(self.engine, &mut out) };
        if st != RillStatus::Ok || out.is_null() {
            return Err(format!("rill_engine_stats: {}", last_error(st)));
        }
        // SAFETY: on OK `out` is a NUL-terminated string from rill, freed right after copying.
        let text = unsafe { CStr::from_ptr(out) }
            .to_string_lossy()
            .into_owned();
        // SAFETY: `out` came from rill and is freed once.
        unsafe { rill_string_free(out) };
        serde_json::from_str(&text).map_err(|e| format!("rill_engine_stats JSON: {e}"))
    }

    fn submit(&self, body: &str) -> Result<u64, String> {
        let body = CString::new(body).map_err(|e| e.to_string())?;
        let ud = (&*self.tx as *const Sender<Event>)
            .cast_mut()
            .cast::<c_void>();
        let mut id = 0u64;
        // SAFETY: the engine is live; `body` is NUL-terminated; `ud` stays valid until
        // every callback has run (see `tx`); `id` is writable.
        let st =
            unsafe { rill_engine_submit(self.engine, body.as_ptr(), Some(on_event), ud, &mut id) };
        if st != RillStatus::Ok {
            return Err(format!("rill_engine_submit: {}", last_error(st)));
        }
        Ok(id)
    }

    /// Cancels `ids` and waits (bounded) for their terminal events, so no callback of this
    /// run leaks into the next.
    fn abort(&self, ids: &[u64], done: &mut HashMap<u64, bool>) {
        for &id in ids {
            // SAFETY: the engine is live. The status is irrelevant: a finished request is a no-op.
            let _ = unsafe { rill_engine_cancel(self.engine, id) };
        }
        let deadline = Instant::now() + self.timeout;
        while done.values().any(|d| !d) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(ev) if ev.last => {
                    done.insert(ev.id, true);
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
    }
}

/// The engine config JSON rill-bench creates its engine with.
pub fn engine_config(
    model: &str,
    threads: usize,
    max_num_seqs: usize,
    max_model_len: usize,
    device: &str,
    extra: &Map<String, Value>,
) -> Value {
    let mut cfg = json!({"model": model, "num_threads": threads, "max_num_seqs": max_num_seqs,
                         "max_model_len": max_model_len, "device": device});
    if let Some(m) = cfg.as_object_mut() {
        m.extend(extra.clone());
    }
    cfg
}

impl Drop for RillCapi {
    fn drop(&mut self) {
        // SAFETY: the engine is live, used by no other thread, and destroyed once; it
        // delivers every outstanding terminal event (to `tx`, still alive) before returning.
        let _ = unsafe { rill_engine_destroy(self.engine) };
    }
}

/// What a rill event means to the benchmark.
#[derive(Debug, PartialEq)]
pub enum Parsed {
    /// A `response.output_text.delta`; whether its text is non-empty.
    Delta(bool),
    /// `response.completed` / `response.incomplete` (not cancelled): usage.
    Done {
        input: u64,
        cached: u64,
        output: u64,
    },
    /// `response.failed`, a cancelled response, or an `error` event.
    Failed(String),
    Other,
}

/// Classifies one event JSON.
pub fn parse_event(text: &str) -> Result<Parsed, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("event is not JSON: {e}"))?;
    let resp = &v["response"];
    Ok(match v["type"].as_str() {
        Some("response.output_text.delta") => {
            Parsed::Delta(v["delta"].as_str().is_some_and(|d| !d.is_empty()))
        }
        Some("response.completed" | "response.incomplete")
            if resp["status"].as_str() != Some("cancelled") =>
        {
            let u = &resp["usage"];
            let n = |x: &Value, what: &str| {
                x.as_u64()
                    .ok_or_else(|| format!("terminal event without usage.{what}"))
            };
            Parsed::Done {
                input: n(&u["input_tokens"], "input_tokens")?,
                cached: n(&u["input_tokens_details"]["cached_tokens"], "cached_tokens")?,
                output: n(&u["output_tokens"], "output_tokens")?,
            }
        }
        Some("response.completed" | "response.incomplete") => {
            Parsed::Failed("request was cancelled".into())
        }
        Some("response.failed") => Parsed::Failed(resp["error"].to_string()),
        Some("error") => Parsed::Failed(v["message"].to_string()),
        Some(_) => Parsed::Other,
        None => return Err("event without a type".into()),
    })
}

/// Builds one stream from its events (in order).
fn stream_of(submitted: Instant, events: &[(Instant, String)]) -> Result<Stream, String> {
    let mut deltas = Vec::new();
    for (at, text) in events {
        match parse_event(text)? {
            Parsed::Delta(true) => deltas.push(*at),
            Parsed::Done {
                input,
                cached,
                output,
            } => {
                return Ok(Stream {
                    submitted,
                    deltas,
                    ended: *at,
                    input_tokens: input,
                    cached_tokens: cached,
                    output_tokens: output,
                })
            }
            Parsed::Failed(msg) => return Err(format!("request failed: {msg}")),
            Parsed::Delta(false) | Parsed::Other => {}
        }
    }
    Err("stream ended without a terminal event".into())
}

impl Backend for RillCapi {
    fn name(&self) -> &'static str {
        "rill"
    }

    fn prepare(&mut self, _streams: usize) -> Result<(), String> {
        Ok(())
    }

    fn run(&mut self, reqs: &[Req]) -> Result<Vec<Stream>, String> {
        let mut ids = Vec::with_capacity(reqs.len());
        let mut submitted = Vec::with_capacity(reqs.len());
        let mut done: HashMap<u64, bool> = HashMap::new();
        for r in reqs {
            let mut body = json!({"input": r.input, "max_output_tokens": r.max_tokens,
                                  "ignore_eos": true, "temperature": 0});
            if let Some(sys) = &r.instructions {
                body["instructions"] = json!(sys);
            }
            let at = Instant::now();
            match self.submit(&body.to_string()) {
                Ok(id) => {
                    ids.push(id);
                    submitted.push(at);
                    done.insert(id, false);
                }
                Err(e) => {
                    self.abort(&ids, &mut done);
                    return Err(e);
                }
            }
        }
        let mut events: HashMap<u64, Vec<(Instant, String)>> = HashMap::new();
        while done.values().any(|d| !d) {
            match self.rx.recv_timeout(self.timeout) {
                Ok(ev) => {
                    if ev.last {
                        done.insert(ev.id, true);
                    }
                    events.entry(ev.id).or_default().push((ev.at, ev.json));
                }
                Err(RecvTimeoutError::Timeout) => {
                    self.abort(&ids, &mut done);
                    return Err(format!(
                        "{TIMED_OUT} no event for {:?}; requests cancelled",
                        self.timeout
                    ));
                }
                Err(RecvTimeoutError::Disconnected) => return Err("event channel closed".into()),
            }
        }
        ids.iter()
            .zip(submitted)
            .map(|(id, at)| stream_of(at, events.get(id).map_or(&[][..], Vec::as_slice)))
            .collect()
    }

    fn peak_rss_kib(&mut self) -> Option<u64> {
        crate::vm_hwm_kib("/proc/self/status")
    }

    fn counters(&self) -> Option<Value> {
        self.stats().ok()
    }

    fn info(&self) -> Value {
        let stats = self.stats().unwrap_or_else(|e| json!(e));
        json!({"api": "C API: rill_engine_create / rill_engine_submit (callback) / rill_engine_cancel / rill_engine_destroy",
               "config": self.config, "model": stats["model"], "device": stats["device"],
               "device_note": stats["device_note"], "kernels": stats["kernels"],
               "stats_weight_bytes": stats["weight_bytes"],
               "gpu_matrix_bytes_per_token": stats["gpu"]["matrix_bytes_per_token"],
               "gpu_matmul": stats["gpu"]["matmul"],
               "kv_cache": stats["kv_cache"],
               "max_num_batched_tokens": stats["max_num_batched_tokens"],
               "preemptions": stats["preemptions"]})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_config_merges_extra_keys() {
        let mut extra = Map::new();
        extra.insert("max_num_seqs".into(), json!(300));
        extra.insert("kv_cache_bytes".into(), json!(1 << 30));
        let c = engine_config("m", 2, 256, 1280, "cuda:0", &extra);
        assert_eq!(c["device"], "cuda:0");
        assert_eq!(c["max_num_seqs"], 300);
        assert_eq!(c["kv_cache_bytes"], 1 << 30);
        assert_eq!(c["max_model_len"], 1280);
        assert_eq!(
            engine_config("m", 2, 4, 64, "cpu", &Map::new())["device"],
            "cpu"
        );
    }

    #[test]
    fn classifies_events() {
        let delta = r#"{"type":"response.output_text.delta","sequence_number":5,"delta":"Hi","logprobs":[]}"#;
        assert_eq!(parse_event(delta), Ok(Parsed::Delta(true)));
        let empty = r#"{"type":"response.output_text.delta","delta":""}"#;
        assert_eq!(parse_event(empty), Ok(Parsed::Delta(false)));
        let done = r#"{"type":"response.incomplete","response":{"status":"incomplete",
            "usage":{"input_tokens":70,"input_tokens_details":{"cached_tokens":32,"cache_write_tokens":0},
            "output_tokens":128,"total_tokens":198}}}"#;
        assert_eq!(
            parse_event(done),
            Ok(Parsed::Done {
                input: 70,
                cached: 32,
                output: 128
            })
        );
        let cancelled =
            r#"{"type":"response.incomplete","response":{"status":"cancelled","usage":{}}}"#;
        assert!(matches!(parse_event(cancelled), Ok(Parsed::Failed(_))));
        let failed = r#"{"type":"response.failed","response":{"error":{"code":"server_error","message":"boom"}}}"#;
        assert!(matches!(parse_event(failed), Ok(Parsed::Failed(m)) if m.contains("boom")));
        assert_eq!(
            parse_event(r#"{"type":"response.created"}"#),
            Ok(Parsed::Other)
        );
        assert!(
            parse_event(r#"{"type":"response.completed","response":{"status":"completed"}}"#)
                .is_err()
        );
        assert!(parse_event("{}").is_err());
        assert!(parse_event("not json").is_err());
    }

    #[test]
    fn builds_a_stream_from_events() {
        let t0 = Instant::now();
        let ev = |ms: u64, s: &str| (t0 + Duration::from_millis(ms), s.to_string());
        let events = [
            ev(1, r#"{"type":"response.created"}"#),
            ev(10, r#"{"type":"response.output_text.delta","delta":"a"}"#),
            ev(15, r#"{"type":"response.output_text.delta","delta":""}"#),
            ev(20, r#"{"type":"response.output_text.delta","delta":"b"}"#),
            ev(
                21,
                r#"{"type":"response.completed","response":{"status":"completed","usage":{"input_tokens":3,"input_tokens_details":{"cached_tokens":0},"output_tokens":2}}}"#,
            ),
        ];
        let s = stream_of(t0, &events).map_err(|e| e.to_string());
        let s = s
            .as_ref()
            .map(|s| (s.deltas.len(), s.output_tokens, s.input_tokens));
        assert_eq!(s, Ok((2, 2, 3)));
        assert!(stream_of(t0, &events[..4]).is_err());
    }
}
