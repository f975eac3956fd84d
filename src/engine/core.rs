//! The engine thread (vLLM's `EngineCore`): owns the model, the paged KV memory, the
//! scheduler and the CPU pool, and runs the step loop: take commands (add, cancel) between
//! steps, schedule one step over the token budget, build the flat batch, execute the
//! forward pass, sample, and update. It hands token ids and finish reasons to the delivery
//! thread; it never builds events or calls host code.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender};

use super::executor::Executor;
use super::{Output, Shared};
use crate::backend::add_elapsed;
use crate::error::Error;
use crate::kv_cache::KvCacheManager;
use crate::responses::stream::{Finish, Usage};
use crate::runner;
use crate::sampling::{Sampler, SamplingParams};
use crate::scheduler::{Request, Scheduler};

/// A request as the engine thread sees it.
pub struct SeqRequest {
    pub id: u64,
    pub prompt: Vec<u32>,
    /// Most tokens to generate (already capped by the context).
    pub max_tokens: usize,
    pub sampling: SamplingParams,
    pub seed: u64,
    pub ignore_eos: bool,
}

/// Messages to the engine thread.
pub enum Command {
    Add(SeqRequest),
    Cancel(u64),
    /// A stop string matched (seen by the delivery thread): end like a cancel, but as
    /// `Finish::Completed`. Ignored when the request already finished.
    Stop(u64),
    Shutdown,
}

/// Per-request engine state carried by the scheduler.
pub struct SeqState {
    sampler: Sampler,
    max_tokens: usize,
    ignore_eos: bool,
}

type Seq = Request<SeqState>;

fn usage(r: &Seq) -> Usage {
    Usage {
        input_tokens: r.num_prompt_tokens,
        cached_tokens: r.num_cached_tokens.unwrap_or(0),
        output_tokens: r.num_output_tokens(),
        ..Usage::default()
    }
}

/// KV cache geometry chosen at create.
pub struct KvLayout {
    pub block_size: usize,
    pub num_blocks: usize,
    pub prefix_caching: bool,
}

/// Engine thread state.
pub struct EngineCore {
    exec: Executor,
    sched: Scheduler<SeqState>,
    layout: KvLayout,
    eog_ids: Vec<u32>,
    shared: Arc<Shared>,
    out: Sender<Output>,
}

impl EngineCore {
    /// The engine thread's state around `exec` (which holds the KV memory).
    pub fn new(
        exec: Executor,
        layout: KvLayout,
        max_num_seqs: usize,
        max_num_batched_tokens: usize,
        eog_ids: Vec<u32>,
        shared: Arc<Shared>,
        out: Sender<Output>,
    ) -> Self {
        let manager =
            KvCacheManager::new(layout.num_blocks, layout.block_size, layout.prefix_caching);
        EngineCore {
            exec,
            sched: Scheduler::new(max_num_seqs, max_num_batched_tokens, manager),
            layout,
            eog_ids,
            shared,
            out,
        }
    }

    /// The loop; returns on `Command::Shutdown` or when every sender is gone.
    pub fn run(mut self, commands: Receiver<Command>) {
        loop {
            if self.sched.is_idle() {
                match commands.recv() {
                    Ok(c) => {
                        if !self.handle(c) {
                            break;
                        }
                    }
                    Err(_) => break,
                }
            }
            let mut stop = false;
            while let Ok(c) = commands.try_recv() {
                if !self.handle(c) {
                    stop = true;
                    break;
                }
            }
            if stop {
                break;
            }
            if self.sched.is_idle() {
                continue;
            }
            if let Err(panic) = catch_unwind(AssertUnwindSafe(|| self.step())) {
                self.poison(panic_message(&panic));
            }
            self.publish_gauges();
        }
        // Shutdown: every request in flight ends with a terminal event.
        for id in self.sched.ids() {
            self.cancel(id, Finish::Cancelled);
        }
        self.publish_gauges();
    }

    /// Applies one command; false on shutdown.
    fn handle(&mut self, c: Command) -> bool {
        match c {
            Command::Add(req) => {
                if let Some(msg) = self.shared.poisoned.lock().clone() {
                    let usage = Usage {
                        input_tokens: req.prompt.len(),
                        ..Usage::default()
                    };
                    self.finish_request(
                        req.id,
                        Finish::Failed {
                            code: "server_error",
                            message: msg,
                        },
                        usage,
                    );
                } else {
                    let state = SeqState {
                        sampler: Sampler::new(req.sampling, &req.prompt, req.seed),
                        max_tokens: req.max_tokens,
                        ignore_eos: req.ignore_eos,
                    };
                    self.sched.add(Request::new(req.id, req.prompt, state));
                }
                true
            }
            Command::Cancel(id) => {
                self.cancel(id, Finish::Cancelled);
                true
            }
            Command::Stop(id) => {
                self.cancel(id, Finish::Completed);
                true
            }
            Command::Shutdown => false,
        }
    }

    /// Ends request `id` with `finish` (a cancel, or a stop string seen by the delivery
    /// thread); a request that already finished is ignored.
    fn cancel(&mut self, id: u64, finish: Finish) {
        if let Some(r) = self.sched.finish(id) {
            self.finish_request(id, finish, usage(&r));
        }
    }

    /// One forward pass: schedule, execute, sample, update.
    fn step(&mut self) {
        let start = Instant::now();
        let plan = self.sched.schedule();
        let st = &self.shared.stats;
        st.preemptions
            .fetch_add(plan.preempted.len() as u64, Ordering::Relaxed);
        if plan.scheduled.is_empty() {
            return;
        }
        let batch = runner::build(&self.sched, &plan);
        // The requests that get a token this step, in batch order, and their samplers.
        let sampled_idx: Vec<usize> = plan
            .scheduled
            .iter()
            .zip(&batch.seqs)
            .filter(|(_, meta)| meta.want_logits)
            .map(|(sc, _)| sc.index)
            .collect();
        let (result, updating) = {
            let Some(mut reqs) = self.sched.running_many_mut(&sampled_idx) else {
                self.poison("the step's sequences are not distinct running requests".into());
                return;
            };
            let mut samplers: Vec<&mut Sampler> =
                reqs.iter_mut().map(|r| &mut r.payload.sampler).collect();
            let backend = add_elapsed(&st.schedule_ns, start);
            let result = self.exec.step(&batch, &mut samplers);
            (result, add_elapsed(&st.backend_ns, backend))
        };
        let sampled = match result {
            Ok(s) if s.len() == sampled_idx.len() => s,
            Ok(s) => {
                let msg = format!(
                    "{} tokens sampled for {} sequences",
                    s.len(),
                    sampled_idx.len()
                );
                return self.poison(msg);
            }
            Err(e @ Error::Device { .. }) => {
                return self.poison_with("the GPU failed", e.to_string())
            }
            Err(e) => return self.poison(e.to_string()),
        };
        st.steps.fetch_add(1, Ordering::Relaxed);
        self.sched.advance(&plan);
        // Update: append the sampled tokens; collect finished requests.
        let mut finished: Vec<(u64, Finish)> = Vec::new();
        for (&index, sampled) in sampled_idx.iter().zip(sampled) {
            let r = self.sched.running_mut(index);
            if r.num_output_tokens() == 0 {
                st.cached_prompt_tokens
                    .fetch_add(r.num_cached_tokens.unwrap_or(0) as u64, Ordering::Relaxed);
            }
            let tok = sampled.token;
            r.tokens.push(tok);
            st.generated_tokens.fetch_add(1, Ordering::Relaxed);
            if !r.payload.ignore_eos && self.eog_ids.contains(&tok) {
                finished.push((r.id, Finish::Completed));
                continue;
            }
            let _ = self.out.send(Output::Token {
                id: r.id,
                token: tok,
                logprobs: sampled.logprobs,
            });
            if r.num_output_tokens() >= r.payload.max_tokens {
                finished.push((r.id, Finish::MaxOutputTokens));
            }
        }
        for (id, finish) in finished {
            if let Some(r) = self.sched.finish(id) {
                self.finish_request(id, finish, usage(&r));
            }
        }
        add_elapsed(&st.update_ns, updating);
    }

    /// Sends a request's finish, after updating the gauges so that a host that sees the
    /// terminal event also sees stats without it.
    fn finish_request(&self, id: u64, finish: Finish, usage: Usage) {
        self.publish_gauges();
        let _ = self.out.send(Output::Finish { id, finish, usage });
    }

    /// After a panic inside a step the KV state is unknown: fail everything in flight and
    /// refuse new work.
    fn poison(&mut self, msg: String) {
        self.poison_with("internal error", msg)
    }

    /// [`Self::poison`] with what went wrong named: "the GPU failed" (a device error).
    fn poison_with(&mut self, what: &str, msg: String) {
        let msg = format!("{what} during a step: {msg}");
        *self.shared.poisoned.lock() = Some(msg.clone());
        let failed = Finish::Failed {
            code: "server_error",
            message: msg,
        };
        // The block tables may be half-updated: drop them with a fresh manager instead
        // of freeing through them.
        let l = &self.layout;
        let fresh = KvCacheManager::new(l.num_blocks, l.block_size, l.prefix_caching);
        for r in self.sched.drain(fresh) {
            self.finish_request(r.id, failed.clone(), usage(&r));
        }
    }

    fn publish_gauges(&self) {
        let st = &self.shared.stats;
        let kv = &self.sched.kv;
        st.running
            .store(self.sched.num_running() as u64, Ordering::Relaxed);
        st.waiting
            .store(self.sched.num_waiting() as u64, Ordering::Relaxed);
        st.kv_blocks_free
            .store(kv.num_free_blocks() as u64, Ordering::Relaxed);
        st.kv_blocks_cached
            .store(kv.num_cached_blocks() as u64, Ordering::Relaxed);
    }
}

/// The text of a caught panic.
pub fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic".to_owned()
    }
}
