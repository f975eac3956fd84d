//! (f) A device fault in the middle of decoding (emulated only: the emulated driver makes
//! the next kernel fault, as an illegal address would; the fault is sticky, so the test
//! runs in a child process): every stream ends `response.failed` with the device error and
//! passes the stream checker, the engine is poisoned (stats say why, submits are refused
//! with EnginePoisoned), and dropping the engine afterwards returns without a panic (cuBLAS
//! refuses to destroy its handle on a faulted context).

#![cfg(feature = "kernel-emu")]

use rill::ffi::status::RillStatus;
use rill::responses::check::check_stream;
use rill::{EngineConfig, Sink};
use serde_json::json;

use super::{gpu_harness, model_dir, run_streams_with, TestResult};

/// The child: three greedy streams on "cuda"; the next kernel faults once the first has
/// two text deltas.
pub fn a_device_fault_fails_every_stream_and_poisons_the_engine() -> TestResult {
    // SAFETY: `void rill_fake_cuda_fail_next_launch(int)`.
    let fail_next_launch =
        unsafe { gpu_harness::fake_control::<i32>("rill_fake_cuda_fail_next_launch") }?;
    let dir = model_dir("qwen3-tiny")?;
    let c = json!({"model": dir, "device": "cuda", "max_model_len": 256,
                   "reasoning_parser": "none", "tool_call_parser": "none"});
    let config = EngineConfig::from_json(&c.to_string()).map_err(|e| format!("config: {e}"))?;
    let e = rill::Engine::new(config).map_err(|e| format!("create: {e}"))?;
    let bodies: Vec<String> = ["Hello!", "Count to ten.", "Name a colour."]
        .iter()
        .map(|p| {
            json!({"input": p, "temperature": 0, "max_output_tokens": 100, "ignore_eos": true})
                .to_string()
        })
        .collect();
    let mut injected = false;
    let streams = run_streams_with(&e, &bodies, |i, deltas, _| {
        if i == 0 && deltas == 2 && !injected {
            injected = true;
            fail_next_launch(1);
        }
        Ok(())
    })?;
    if !injected {
        return Err("no stream reached two deltas; nothing was injected".into());
    }
    for (i, events) in streams.iter().enumerate() {
        check_stream(events).map_err(|m| format!("stream {i}: {m}"))?;
        let last = &events[events.len() - 1];
        let error = &last["response"]["error"];
        let message = error["message"].as_str().unwrap_or_default();
        if last["type"] != "response.failed"
            || error["code"] != "server_error"
            || !message.starts_with("the GPU failed during a step")
            || !message.contains("CUDA_ERROR_LAUNCH_FAILED")
        {
            return Err(format!("stream {i} ended {last}"));
        }
        if i == 0 {
            println!("  stream 0: {message}");
        }
    }
    let stats = e.stats();
    if !stats["poisoned"].is_string() {
        return Err(format!("the engine is not poisoned: stats {stats}"));
    }
    match e.submit(&bodies[0], Sink::Callback(Box::new(|_, _, _| {}))) {
        Err(err) if err.status() == RillStatus::EnginePoisoned => {
            println!("  a new request: {err}");
        }
        Err(err) => return Err(format!("a new request: {:?}: {err}", err.status())),
        Ok(_) => return Err("a new request was accepted on a faulted device".into()),
    }
    drop(e);
    Ok(())
}
