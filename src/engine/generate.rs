//! Non-streaming generation: `Engine::generate` submits a request exactly like
//! `Engine::submit` (same validation, same refusals, nothing queued on refusal) with an
//! internal callback sink that keeps only the terminal event, blocks until it arrives and
//! returns its `response` object as JSON (what an OpenAI server answers for
//! `stream: false`). The two halves, `Engine::submit_generate` and
//! `PendingResponse::wait`, are public so that the C API can wait without borrowing the
//! engine (see `rill_engine_generate` and `rill_engine_destroy`).

use std::time::Duration;

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError};

use super::delivery::on_delivery_thread;
use super::{Engine, Sink};
use crate::error::{Error, Result};

/// A request submitted by `Engine::submit_generate`: its id and the channel that receives
/// its final Response JSON.
pub struct PendingResponse {
    id: u64,
    rx: Receiver<Result<String>>,
}

impl Engine {
    /// Runs a request to its end and returns the final Response object (the `response`
    /// member of the terminal event, serialized exactly as in the stream) as JSON.
    ///
    /// The request is validated like `submit`: a refusal is an `Err` and queues nothing.
    /// A response that ends `incomplete`, `cancelled` or `failed` is still `Ok`: its
    /// `status` tells. When `timeout` passes first, the request is cancelled and this
    /// still waits for its terminal event (within about one engine step) and returns that
    /// response, whose status is then `cancelled` (or the status it reached meanwhile).
    /// Called from an event callback (rill's delivery thread, which produces the events
    /// this would wait for) it returns `Error::WrongThread` instead of deadlocking.
    pub fn generate(&self, request_json: &str, timeout: Option<Duration>) -> Result<String> {
        self.submit_generate(request_json)?.wait(timeout, |id| {
            let _ = self.cancel(id);
        })
    }

    /// The submitting half of `generate`: validates and queues the request with a sink
    /// that keeps only its final Response. Refused on the delivery thread.
    pub fn submit_generate(&self, request_json: &str) -> Result<PendingResponse> {
        if on_delivery_thread() {
            return Err(Error::WrongThread(
                "generate must not be called from an event callback (it would wait for the thread it runs on)",
            ));
        }
        let (tx, rx) = bounded(1);
        let sink = Sink::Callback(Box::new(move |_id, json: &str, last| {
            if last {
                let _ = tx.try_send(response_of(json));
            }
        }));
        let id = self.submit(request_json, sink)?;
        Ok(PendingResponse { id, rx })
    }
}

impl PendingResponse {
    /// The request id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Blocks until the final Response arrives. When `timeout` passes first, calls
    /// `cancel(id)` once and keeps waiting for the terminal event that the cancel brings.
    pub fn wait(self, timeout: Option<Duration>, cancel: impl FnOnce(u64)) -> Result<String> {
        let lost = || {
            Error::Internal(format!(
                "request {} ended without a terminal event",
                self.id
            ))
        };
        if let Some(t) = timeout {
            match self.rx.recv_timeout(t) {
                Ok(r) => return r,
                Err(RecvTimeoutError::Disconnected) => return Err(lost()),
                Err(RecvTimeoutError::Timeout) => cancel(self.id),
            }
        }
        self.rx.recv().map_err(|_| lost())?
    }
}

/// The `response` member of a terminal event, serialized as it appears in the event.
fn response_of(event_json: &str) -> Result<String> {
    let mut ev: serde_json::Value = serde_json::from_str(event_json)
        .map_err(|e| Error::Internal(format!("terminal event is not JSON: {e}")))?;
    match ev.get_mut("response").map(serde_json::Value::take) {
        Some(r @ serde_json::Value::Object(_)) => Ok(r.to_string()),
        _ => Err(Error::Internal(
            "terminal event without a response object".into(),
        )),
    }
}
