//! The engine thread: owns the model, the KV store and the CPU pool, and runs the step
//! loop (vLLM's `EngineCore`): take commands, admit waiting requests, schedule one step
//! over a token budget (decodes first, then prefill chunks), execute the forward pass,
//! sample, and hand token ids and finish reasons to the delivery thread. It sees token ids
//! and KV slots only; it never builds events or calls host code.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};

use super::{Output, Shared};
use crate::backend::cpu::kv::KvStore;
use crate::backend::cpu::pool::ThreadPool;
use crate::model::llama::Llama;
use crate::model::BatchEntry;
use crate::responses::stream::{Finish, Usage};
use crate::sampling::{Sampler, SamplingParams};

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

struct Seq {
    req: SeqRequest,
    sampler: Sampler,
    /// Prompt followed by the generated tokens.
    tokens: Vec<u32>,
    num_computed_tokens: usize,
    slot: usize,
}

impl Seq {
    fn n_output(&self) -> usize {
        self.tokens.len() - self.req.prompt.len()
    }
    fn usage(&self) -> Usage {
        Usage {
            input_tokens: self.req.prompt.len(),
            output_tokens: self.n_output(),
            ..Usage::default()
        }
    }
}

/// Engine thread state.
pub struct EngineCore {
    pub model: Llama,
    pub pool: ThreadPool,
    pub kv: KvStore,
    pub max_num_seqs: usize,
    pub max_num_batched_tokens: usize,
    pub eog_ids: Vec<u32>,
    pub shared: Arc<Shared>,
    pub out: Sender<Output>,
    waiting: VecDeque<SeqRequest>,
    running: Vec<Seq>,
}

impl EngineCore {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        model: Llama,
        pool: ThreadPool,
        max_num_seqs: usize,
        max_num_batched_tokens: usize,
        eog_ids: Vec<u32>,
        shared: Arc<Shared>,
        out: Sender<Output>,
    ) -> Self {
        let kv = KvStore::new(model.config.n_layers, model.config.kv_dim());
        EngineCore {
            model,
            pool,
            kv,
            max_num_seqs,
            max_num_batched_tokens,
            eog_ids,
            shared,
            out,
            waiting: VecDeque::new(),
            running: Vec::new(),
        }
    }

    /// The loop; returns on `Command::Shutdown` or when every sender is gone.
    pub fn run(mut self, commands: Receiver<Command>) {
        loop {
            if self.running.is_empty() && self.waiting.is_empty() {
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
            self.admit();
            if self.running.is_empty() {
                continue;
            }
            if let Err(panic) = catch_unwind(AssertUnwindSafe(|| self.step())) {
                self.poison(panic_message(&panic));
            }
            self.publish_gauges();
        }
        // Shutdown: every request in flight ends with a terminal event.
        let ids: Vec<u64> = self
            .running
            .iter()
            .map(|s| s.req.id)
            .chain(self.waiting.iter().map(|r| r.id))
            .collect();
        for id in ids {
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
                    self.waiting.push_back(req);
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

    fn cancel(&mut self, id: u64, finish: Finish) {
        if let Some(pos) = self.waiting.iter().position(|r| r.id == id) {
            if let Some(r) = self.waiting.remove(pos) {
                let usage = Usage {
                    input_tokens: r.prompt.len(),
                    ..Usage::default()
                };
                self.finish_request(id, finish, usage);
            }
        } else if let Some(pos) = self.running.iter().position(|s| s.req.id == id) {
            let s = self.running.remove(pos);
            self.kv.free(s.slot);
            self.finish_request(id, finish, s.usage());
        }
    }

    fn admit(&mut self) {
        while self.running.len() < self.max_num_seqs {
            let Some(req) = self.waiting.pop_front() else {
                break;
            };
            let slot = self.kv.alloc();
            let sampler = Sampler::new(req.sampling.clone(), &req.prompt, req.seed);
            let tokens = req.prompt.clone();
            self.running.push(Seq {
                req,
                sampler,
                tokens,
                num_computed_tokens: 0,
                slot,
            });
        }
    }

    /// One forward pass: schedule, execute, sample, update.
    fn step(&mut self) {
        // Schedule: decodes first (one token each), then prefill chunks, within the budget.
        let mut budget = self.max_num_batched_tokens;
        let mut order: Vec<usize> = (0..self.running.len()).collect();
        order.sort_by_key(|&i| {
            self.running[i].tokens.len() - self.running[i].num_computed_tokens > 1
        });
        let mut plan: Vec<(usize, usize)> = Vec::new();
        for i in order {
            let s = &self.running[i];
            let n = (s.tokens.len() - s.num_computed_tokens).min(budget);
            if n == 0 {
                continue;
            }
            budget -= n;
            plan.push((i, n));
        }
        let batch: Vec<BatchEntry> = plan
            .iter()
            .map(|&(i, n)| {
                let s = &self.running[i];
                let start = s.num_computed_tokens;
                BatchEntry {
                    slot: s.slot,
                    tokens: &s.tokens[start..start + n],
                    start_pos: start,
                    want_logits: start + n == s.tokens.len(),
                }
            })
            .collect();
        let logits = self.model.forward(&self.pool, &mut self.kv, &batch);
        let wants: Vec<bool> = batch.iter().map(|e| e.want_logits).collect();
        drop(batch);
        self.shared.stats.steps.fetch_add(1, Ordering::Relaxed);
        // Update: sample where logits came back; collect finished requests.
        let mut logits = logits.into_iter();
        let mut finished: Vec<(usize, Finish)> = Vec::new();
        for (&(i, n), want) in plan.iter().zip(wants) {
            let s = &mut self.running[i];
            s.num_computed_tokens += n;
            if !want {
                continue;
            }
            let Some(l) = logits.next() else { break };
            let sampled = s.sampler.sample(&l);
            let tok = sampled.token;
            s.tokens.push(tok);
            self.shared
                .stats
                .generated_tokens
                .fetch_add(1, Ordering::Relaxed);
            if !s.req.ignore_eos && self.eog_ids.contains(&tok) {
                finished.push((i, Finish::Completed));
                continue;
            }
            let _ = self.out.send(Output::Token {
                id: s.req.id,
                token: tok,
                logprobs: sampled.logprobs,
            });
            if s.n_output() >= s.req.max_tokens {
                finished.push((i, Finish::MaxOutputTokens));
            }
        }
        finished.sort_by_key(|f| std::cmp::Reverse(f.0));
        for (i, finish) in finished {
            let s = self.running.remove(i);
            self.kv.free(s.slot);
            self.finish_request(s.req.id, finish, s.usage());
        }
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
        let msg = format!("internal error during a step: {msg}");
        *self.shared.poisoned.lock() = Some(msg.clone());
        let failed = Finish::Failed {
            code: "server_error",
            message: msg,
        };
        for s in std::mem::take(&mut self.running) {
            self.finish_request(s.req.id, failed.clone(), s.usage());
        }
        for r in std::mem::take(&mut self.waiting) {
            let usage = Usage {
                input_tokens: r.prompt.len(),
                ..Usage::default()
            };
            self.finish_request(r.id, failed.clone(), usage);
        }
        self.kv = KvStore::new(self.model.config.n_layers, self.model.config.kv_dim());
    }

    fn publish_gauges(&self) {
        let st = &self.shared.stats;
        st.running
            .store(self.running.len() as u64, Ordering::Relaxed);
        st.waiting
            .store(self.waiting.len() as u64, Ordering::Relaxed);
        st.kv_bytes.store(self.kv.bytes() as u64, Ordering::Relaxed);
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
