//! A persistent worker pool for the CPU backend: workers are started once per engine and
//! wait (spinning briefly, then parked on a condvar) for the next parallel operation, so
//! an operation costs an atomic bump and a wake-up, not a thread spawn. `run(n, f)` calls
//! `f(0..n)` spread over the workers and the calling thread, and returns when all are done.

use std::any::Any;
use std::cell::UnsafeCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::{Condvar, Mutex};

type TaskFn = dyn Fn(usize) + Sync;

/// Busy-wait iterations before a waiting thread starts yielding its core: covers the gap
/// between two operations of one forward pass without a syscall.
const SPIN_ITERS: u32 = 1 << 11;
/// `yield_now` rounds before a worker parks: when cores are oversubscribed (several
/// engines or test processes), the thread that has work gets the core.
const YIELD_ITERS: u32 = 1 << 7;

struct Job {
    f: *const TaskFn,
    n_tasks: usize,
}

/// A value on cache lines of its own, so that threads hammering one atomic do not
/// invalidate the line another thread is spinning on.
#[repr(align(128))]
struct Padded<T>(T);

impl<T> std::ops::Deref for Padded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

struct Shared {
    /// Bumped once per `run`; workers spin on it (with `shutdown` and `job`, read-mostly).
    epoch: AtomicU64,
    /// The next task index: every thread takes tasks from it.
    next: Padded<AtomicUsize>,
    /// Workers still inside the current job: the caller spins on it.
    pending: Padded<AtomicUsize>,
    shutdown: AtomicBool,
    panic: Mutex<Option<Box<dyn Any + Send>>>,
    lock: Mutex<()>,
    wake: Condvar,
    job: UnsafeCell<Job>,
}

// SAFETY: `job` is written only by the thread inside `ThreadPool::run` while no worker is
// running a task (all `pending` counts are zero), and read by workers only between the
// epoch bump (Release/Acquire) and their `pending` decrement; the pointer inside is only
// dereferenced while `run` holds the closure alive.
unsafe impl Sync for Shared {}
// SAFETY: see above; the raw pointer is only a borrowed closure shared under that protocol.
unsafe impl Send for Shared {}

/// The pool. Dropping it stops and joins the workers.
pub struct ThreadPool {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
}

impl ThreadPool {
    /// A pool that runs tasks on `n_threads` threads in all: the caller plus
    /// `n_threads - 1` workers.
    pub fn new(n_threads: usize) -> std::io::Result<Self> {
        let noop: &'static TaskFn = &|_| {};
        let shared = Arc::new(Shared {
            epoch: AtomicU64::new(0),
            next: Padded(AtomicUsize::new(0)),
            pending: Padded(AtomicUsize::new(0)),
            shutdown: AtomicBool::new(false),
            panic: Mutex::new(None),
            lock: Mutex::new(()),
            wake: Condvar::new(),
            job: UnsafeCell::new(Job {
                f: noop as *const TaskFn,
                n_tasks: 0,
            }),
        });
        let mut workers = Vec::new();
        for i in 1..n_threads.max(1) {
            let s = Arc::clone(&shared);
            let spawned = std::thread::Builder::new()
                .name(format!("rill-cpu-{i}"))
                .spawn(move || worker(&s));
            match spawned {
                Ok(h) => workers.push(h),
                Err(e) => {
                    let pool = ThreadPool { shared, workers };
                    drop(pool);
                    return Err(e);
                }
            }
        }
        Ok(ThreadPool { shared, workers })
    }

    /// Threads that run tasks (workers plus the caller).
    pub fn n_threads(&self) -> usize {
        self.workers.len() + 1
    }

    /// Calls `f(i)` for every `i` in `0..n_tasks`, in parallel, and waits for all of them.
    /// A panic in any task is re-raised here after every task has stopped.
    pub fn run(&self, n_tasks: usize, f: &(dyn Fn(usize) + Sync)) {
        if self.workers.is_empty() || n_tasks <= 1 {
            (0..n_tasks).for_each(f);
            return;
        }
        let s = &*self.shared;
        // SAFETY: no worker touches `job` now (pending is 0 since the last run returned).
        // The lifetime of `f` is erased; `run` does not return before every worker has
        // decremented `pending`, i.e. finished its last call of `f`.
        unsafe {
            let f_ptr: *const (dyn Fn(usize) + Sync + '_) = f;
            let f_static: *const TaskFn = std::mem::transmute(f_ptr);
            *s.job.get() = Job {
                f: f_static,
                n_tasks,
            };
        }
        s.next.store(0, Ordering::Relaxed);
        s.pending.store(self.workers.len(), Ordering::Relaxed);
        {
            let _g = s.lock.lock();
            s.epoch.fetch_add(1, Ordering::Release);
            s.wake.notify_all();
        }
        let caller = catch_unwind(AssertUnwindSafe(|| run_tasks(s, f, n_tasks)));
        let mut spins = 0u32;
        while s.pending.load(Ordering::Acquire) != 0 {
            if spins < SPIN_ITERS {
                spins += 1;
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        if let Err(p) = caller {
            std::panic::resume_unwind(p);
        }
        if let Some(p) = s.panic.lock().take() {
            std::panic::resume_unwind(p);
        }
    }
}

fn run_tasks(s: &Shared, f: &(dyn Fn(usize) + Sync + '_), n_tasks: usize) {
    loop {
        let i = s.next.fetch_add(1, Ordering::Relaxed);
        if i >= n_tasks {
            break;
        }
        f(i);
    }
}

fn worker(s: &Shared) {
    let mut seen = 0u64;
    loop {
        let mut spins = 0;
        loop {
            if s.shutdown.load(Ordering::Acquire) {
                return;
            }
            let e = s.epoch.load(Ordering::Acquire);
            if e != seen {
                seen = e;
                break;
            }
            if spins < SPIN_ITERS {
                spins += 1;
                std::hint::spin_loop();
            } else if spins < SPIN_ITERS + YIELD_ITERS {
                spins += 1;
                std::thread::yield_now();
            } else {
                let mut g = s.lock.lock();
                while s.epoch.load(Ordering::Acquire) == seen && !s.shutdown.load(Ordering::Acquire)
                {
                    s.wake.wait(&mut g);
                }
            }
        }
        // SAFETY: the epoch bump (Acquire above) publishes `job`; `run` keeps the closure
        // alive until `pending` reaches zero, which this worker signals only afterwards.
        let (f, n) = unsafe {
            let job = &*s.job.get();
            (&*job.f, job.n_tasks)
        };
        if let Err(p) = catch_unwind(AssertUnwindSafe(|| run_tasks(s, f, n))) {
            *s.panic.lock() = Some(p);
        }
        s.pending.fetch_sub(1, Ordering::Release);
    }
}

impl Drop for ThreadPool {
    fn drop(&mut self) {
        {
            let _g = self.shared.lock.lock();
            self.shared.shutdown.store(true, Ordering::Release);
            self.shared.wake.notify_all();
        }
        for h in self.workers.drain(..) {
            let _ = h.join();
        }
    }
}

/// A raw output pointer shared by parallel tasks that each write a disjoint range.
#[derive(Clone, Copy)]
pub struct SharedMut<T>(pub *mut T);

impl<T> SharedMut<T> {
    /// The pointer (a method, so closures capture the whole `Sync` wrapper).
    pub fn ptr(self) -> *mut T {
        self.0
    }
}

// SAFETY: tasks only write disjoint elements (each caller documents its partition).
unsafe impl<T: Send> Sync for SharedMut<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Send for SharedMut<T> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_every_task_once_and_reuses_workers() {
        let pool = ThreadPool::new(3).unwrap();
        for n in [0usize, 1, 2, 7, 1000] {
            let hits: Vec<AtomicUsize> = (0..n).map(|_| AtomicUsize::new(0)).collect();
            pool.run(n, &|i| {
                hits[i].fetch_add(1, Ordering::Relaxed);
            });
            assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1));
        }
    }

    #[test]
    fn a_task_panic_reaches_the_caller_and_the_pool_survives() {
        let pool = ThreadPool::new(2).unwrap();
        let r = catch_unwind(AssertUnwindSafe(|| {
            pool.run(64, &|i| assert!(i != 40, "boom"))
        }));
        assert!(r.is_err());
        let count = AtomicUsize::new(0);
        pool.run(64, &|_| {
            count.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(count.load(Ordering::Relaxed), 64);
    }
}
