//! Book-keeping that lets `rill_engine_destroy` run while other threads are blocked in
//! `rill_engine_generate`: every generate call is counted from entry to return and its
//! request id recorded; destroy marks the engine as closing, cancels the recorded
//! requests (each call then returns with its cancelled Response) and waits until no call
//! is left before it frees the engine. The state lives behind an `Arc` that each call
//! holds, so a call's last unlock never touches freed memory.

use std::collections::HashSet;
use std::sync::Arc;

use parking_lot::{Condvar, Mutex};

use crate::error::{Error, Result};

#[derive(Default)]
struct State {
    closing: bool,
    calls: usize,
    ids: HashSet<u64>,
}

/// The generate calls in progress on one engine.
#[derive(Default)]
pub struct GenerateCalls {
    state: Mutex<State>,
    idle: Condvar,
}

/// One generate call in progress; leaving (drop) uncounts it.
pub struct Call {
    calls: Arc<GenerateCalls>,
    id: Option<u64>,
}

impl GenerateCalls {
    /// Counts a new call; refused once destroy has started.
    pub fn enter(self: &Arc<Self>) -> Result<Call> {
        let mut st = self.state.lock();
        if st.closing {
            return Err(Error::Internal("the engine is being destroyed".into()));
        }
        st.calls += 1;
        Ok(Call {
            calls: Arc::clone(self),
            id: None,
        })
    }

    /// Starts destroy: refuses new calls, passes the id of every request of a call in
    /// progress to `cancel`, and returns when no call is left.
    pub fn close(&self, cancel: impl Fn(u64)) {
        let ids: Vec<u64> = {
            let mut st = self.state.lock();
            st.closing = true;
            st.ids.iter().copied().collect()
        };
        for id in ids {
            cancel(id);
        }
        let mut st = self.state.lock();
        while st.calls > 0 {
            self.idle.wait(&mut st);
        }
    }
}

impl Call {
    /// Records the call's request. Returns true when destroy has already started (and so
    /// may have missed it): the caller then cancels the request itself.
    pub fn submitted(&mut self, id: u64) -> bool {
        let mut st = self.calls.state.lock();
        st.ids.insert(id);
        self.id = Some(id);
        st.closing
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        let mut st = self.calls.state.lock();
        if let Some(id) = self.id {
            st.ids.remove(&id);
        }
        st.calls -= 1;
        if st.calls == 0 {
            self.calls.idle.notify_all();
        }
    }
}
