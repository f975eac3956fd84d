//! Events of requests submitted without a callback wait here for `rill_engine_poll_event`
//! (any request, in arrival order) or `rill_engine_poll_request` (one request's next
//! event). A request's queue exists from submit until its terminal event is taken.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::error::{Error, Result};

/// One delivered event: request id, event JSON, whether it is the request's last.
pub type PolledEvent = (u64, String, bool);

#[derive(Default)]
struct State {
    queues: HashMap<u64, VecDeque<(String, bool)>>,
    /// One entry per queued event, in arrival order.
    order: VecDeque<u64>,
}

/// The poll queue of one engine.
#[derive(Default)]
pub struct PollQueue {
    state: Mutex<State>,
    ready: Condvar,
}

impl PollQueue {
    /// Announces a polled request (before its first event).
    pub fn register(&self, id: u64) {
        self.state.lock().queues.insert(id, VecDeque::new());
    }

    pub fn push(&self, id: u64, event: String, last: bool) {
        let mut s = self.state.lock();
        if let Some(q) = s.queues.get_mut(&id) {
            q.push_back((event, last));
            s.order.push_back(id);
            drop(s);
            self.ready.notify_all();
        }
    }

    /// The next event of any polled request, waiting up to `timeout` (`None`: forever).
    pub fn pop_any(&self, timeout: Option<Duration>) -> Option<PolledEvent> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut s = self.state.lock();
        loop {
            if let Some(id) = s.order.pop_front() {
                let (ev, last) = take(&mut s, id)?;
                return Some((id, ev, last));
            }
            if !wait(&self.ready, &mut s, deadline) {
                return None;
            }
        }
    }

    /// The next event of request `id`, waiting up to `timeout`. Errors if `id` is not a
    /// polled request in flight (never submitted, submitted with a callback, or finished
    /// and fully consumed).
    pub fn pop_request(
        &self,
        id: u64,
        timeout: Option<Duration>,
    ) -> Result<Option<(String, bool)>> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut s = self.state.lock();
        loop {
            match s.queues.get(&id) {
                None => return Err(Error::UnknownRequest(id)),
                Some(q) if !q.is_empty() => {
                    if let Some(pos) = s.order.iter().position(|&x| x == id) {
                        s.order.remove(pos);
                    }
                    return Ok(take(&mut s, id));
                }
                Some(_) => {}
            }
            if !wait(&self.ready, &mut s, deadline) {
                return Ok(None);
            }
        }
    }
}

fn take(s: &mut State, id: u64) -> Option<(String, bool)> {
    let q = s.queues.get_mut(&id)?;
    let item = q.pop_front()?;
    if item.1 {
        s.queues.remove(&id);
    }
    Some(item)
}

/// Waits for a push; false when the deadline passed.
fn wait(
    cv: &Condvar,
    guard: &mut parking_lot::MutexGuard<'_, State>,
    deadline: Option<Instant>,
) -> bool {
    match deadline {
        None => {
            cv.wait(guard);
            true
        }
        Some(d) => {
            let now = Instant::now();
            if now >= d {
                return false;
            }
            cv.wait_for(guard, d - now);
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_request_and_any_order() {
        let q = PollQueue::default();
        q.register(1);
        q.register(2);
        q.push(1, "a".into(), false);
        q.push(2, "b".into(), false);
        q.push(1, "c".into(), true);
        assert_eq!(
            q.pop_request(1, Some(Duration::ZERO)).unwrap(),
            Some(("a".into(), false))
        );
        assert_eq!(
            q.pop_any(Some(Duration::ZERO)),
            Some((2, "b".into(), false))
        );
        assert_eq!(q.pop_any(Some(Duration::ZERO)), Some((1, "c".into(), true)));
        assert!(
            q.pop_request(1, Some(Duration::ZERO)).is_err(),
            "finished request is gone"
        );
        assert_eq!(q.pop_any(Some(Duration::from_millis(5))), None);
        assert!(q.pop_request(9, None).is_err());
    }

    #[test]
    fn waiting_poll_wakes_on_push() {
        let q = std::sync::Arc::new(PollQueue::default());
        q.register(3);
        let q2 = q.clone();
        let t = std::thread::spawn(move || q2.pop_any(Some(Duration::from_secs(10))));
        std::thread::sleep(Duration::from_millis(20));
        q.push(3, "x".into(), true);
        assert_eq!(t.join().unwrap(), Some((3, "x".into(), true)));
    }
}
