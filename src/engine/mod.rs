//! The engine: loads a model, validates and tokenizes requests at submit, and runs two
//! threads, the engine thread (`core`: scheduling and the forward pass) and the delivery
//! thread (`delivery`: detokenization, events, callbacks), joined by channels. This is the
//! safe Rust API that the C API (`ffi`) wraps one to one.

pub mod core;
pub mod delivery;
pub mod executor;
pub mod generate;
pub mod kv_budget;
pub mod poll_queue;
pub mod prompt;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Sender};
use parking_lot::Mutex;
use serde_json::json;

use crate::backend::cpu::kv::PagedKv;
use crate::backend::StepCounters;
use crate::chat_template::{self, ChatTemplate};
use crate::config::{EngineConfig, GenerationDefaults};
use crate::error::{Error, Result};
use crate::model::{self, GenerationConfig, ModelConfig, ModelSource};
use crate::responses::ids::unix_now;
use crate::responses::output_parser::{OutputParser, ParserConfig, Piece};
use crate::responses::request::parse;
use crate::responses::stream::{Finish, ResponseMeta, ResponseStream, Usage};
use crate::sampling::rng::splitmix64;
use crate::sampling::stop::StopStrings;
use crate::sampling::TokenLogprobs;
use crate::tokenizer::Tokenizer;
use core::{Command, EngineCore, SeqRequest};
use poll_queue::{PollQueue, PolledEvent};

/// A request's event callback: (request id, event JSON, is_last), on the delivery thread.
pub type EventCallback = Box<dyn FnMut(u64, &str, bool) + Send>;

/// Where a request's events go.
pub enum Sink {
    /// Called on the delivery thread for every event.
    Callback(EventCallback),
    /// Queued for `Engine::poll` / `Engine::poll_request`.
    Poll,
}

/// Messages from submit and the engine thread to the delivery thread.
pub enum Output {
    Start {
        id: u64,
        stream: Box<ResponseStream>,
        sink: Sink,
        /// The request's stop strings, matched on the answer text by the delivery thread.
        stop: StopStrings,
        /// Splits the output into reasoning, answer text and calls.
        parser: Box<OutputParser<Option<TokenLogprobs>>>,
        /// What the prompt's tail already implies (a forced call's start).
        initial: Vec<Piece<Option<TokenLogprobs>>>,
        /// End the response after its first complete call (`parallel_tool_calls: false`).
        stop_after_call: bool,
    },
    /// One generated token (never an end-of-generation token that ends the request).
    Token {
        id: u64,
        token: u32,
        /// When the request asked for logprobs.
        logprobs: Option<TokenLogprobs>,
    },
    Finish {
        id: u64,
        finish: Finish,
        usage: Usage,
    },
}

impl Output {
    fn id(&self) -> u64 {
        match self {
            Output::Start { id, .. } | Output::Token { id, .. } | Output::Finish { id, .. } => *id,
        }
    }
}

/// Counters reported by `Engine::stats`.
#[derive(Default)]
pub struct Stats {
    pub submitted: AtomicU64,
    pub completed: AtomicU64,
    pub incomplete: AtomicU64,
    pub cancelled: AtomicU64,
    pub failed: AtomicU64,
    pub prompt_tokens: AtomicU64,
    pub generated_tokens: AtomicU64,
    pub steps: AtomicU64,
    pub running: AtomicU64,
    pub waiting: AtomicU64,
    pub preemptions: AtomicU64,
    pub kv_blocks_free: AtomicU64,
    pub kv_blocks_cached: AtomicU64,
    pub cached_prompt_tokens: AtomicU64,
    /// Engine-thread time per phase of a step, ns in all: scheduling and building the
    /// batch, the backend's step, and appending the tokens.
    pub schedule_ns: AtomicU64,
    pub backend_ns: AtomicU64,
    pub update_ns: AtomicU64,
}

/// State shared by the host-facing calls and both threads.
pub struct Shared {
    pub tokenizer: Arc<Tokenizer>,
    pub poll: PollQueue,
    pub poisoned: Mutex<Option<String>>,
    pub stats: Stats,
    /// The backend's step counters (CUDA graphs); `None` on the CPU.
    pub backend: Option<Arc<StepCounters>>,
}

/// A running engine. Dropping it cancels what is in flight, delivers the terminal events
/// and joins its threads.
pub struct Engine {
    shared: Arc<Shared>,
    template: ChatTemplate,
    /// The reasoning and tool-call markers of this model.
    parsers: ParserConfig,
    model_config: ModelConfig,
    model_names: Vec<String>,
    max_model_len: usize,
    seed: u64,
    generation: GenerationDefaults,
    next_id: AtomicU64,
    commands: Option<Sender<Command>>,
    outputs: Option<Sender<Output>>,
    engine_thread: Option<JoinHandle<()>>,
    delivery_thread: Option<JoinHandle<()>>,
    info: serde_json::Value,
}

/// The ChatML template used when a model file carries none (llama.cpp does the same).
const CHATML: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

impl Engine {
    /// Loads the model named by `config` and starts the engine's threads.
    ///
    /// The device is resolved first ([`crate::backend::select`]): `"auto"` without a usable
    /// CUDA device runs on the CPU and says why in the stats (`"device_note"`); a named
    /// CUDA device that is missing fails with [`Error::Config`] on `device`. On a GPU the
    /// weights are uploaded (bf16) and the KV cache sized from the GPU's free memory; an
    /// allocation that does not fit fails with [`Error::Device`] naming it.
    pub fn new(config: EngineConfig) -> Result<Engine> {
        let t0 = Instant::now();
        let selection = crate::backend::select(config.device)?;
        let loaded = model::load(&config.model)?;
        let (load_ms, mapped_bytes) = (loaded.load_time.as_millis() as u64, loaded.mapped_bytes);
        let model = loaded.model;
        let (tokenizer, template_source, model_generation) = match &loaded.source {
            ModelSource::Gguf(g) => {
                let source = g
                    .get("tokenizer.chat_template")
                    .and_then(|v| v.as_str())
                    .map(str::to_owned);
                (
                    Tokenizer::from_gguf(g)?,
                    source,
                    GenerationDefaults::default(),
                )
            }
            ModelSource::Hf { dir, generation } => {
                let mut tk = Tokenizer::from_hf_dir(dir)?;
                for &id in &generation.eos_token_ids {
                    if (id as usize) < tk.vocab_size() && !tk.eog_ids.contains(&id) {
                        tk.eog_ids.push(id);
                    }
                }
                let source = chat_template::hf_template_source(dir)?;
                (tk, source, generation_defaults(generation))
            }
        };
        let generation = model_generation.overlay(config.generation_overrides.as_ref())?;
        let tokenizer = Arc::new(tokenizer);
        let mc = model.config.clone();
        if tokenizer.vocab_size() > mc.vocab_size {
            return Err(Error::model(
                &config.model,
                format!(
                    "the tokenizer has {} tokens but the output layer only {} rows",
                    tokenizer.vocab_size(),
                    mc.vocab_size
                ),
            ));
        }
        let tok_text = |id: Option<u32>| {
            id.and_then(|i| tokenizer.token_text(i))
                .unwrap_or("")
                .to_owned()
        };
        let template_text = template_source.as_deref().unwrap_or(CHATML);
        let template = ChatTemplate::new(
            template_text,
            &tok_text(tokenizer.bos_id),
            &tok_text(tokenizer.eos_id),
        )?;
        let parsers = prompt::detect_parsers(
            &tokenizer,
            template_text,
            config.reasoning_parser,
            config.tool_call_parser,
        );
        let max_model_len = match config.max_model_len {
            Some(n) if n > mc.context_length => {
                return Err(Error::config(
                    "max_model_len",
                    format!(
                        "{n} exceeds the model's context length {}",
                        mc.context_length
                    ),
                ))
            }
            Some(n) => n,
            None => mc.context_length,
        };
        // A file is named by its stem, a checkpoint directory by its whole name
        // ("Qwen2.5-0.5B", whose "stem" would be "Qwen2").
        let stem = if config.model.is_dir() {
            config.model.file_name()
        } else {
            config.model.file_stem()
        }
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
        let model_names = vec![stem, mc.name.clone()];
        let weight_bytes = model.weight_bytes();
        let limits = config.limits(selection.cuda_ordinal.is_some());
        let backend = executor::create(&selection, model, &config, limits, max_model_len)?;
        let layout = backend.layout;
        let kv_bytes = layout.num_blocks
            * layout.block_size
            * PagedKv::bytes_per_token(mc.n_layers, mc.kv_dim());
        let mut info = json!({
            "model": model_names[0],
            "model_name": mc.name,
            "architecture": mc.arch,
            "device": selection.device,
            "max_num_seqs": limits.max_num_seqs,
            "max_model_len": max_model_len,
            "max_num_batched_tokens": limits.max_num_batched_tokens,
            "weight_bytes": weight_bytes,
            "kv_cache": {
                "bytes": kv_bytes,
                "num_blocks": layout.num_blocks,
                "block_size": layout.block_size,
                "max_tokens": layout.num_blocks * layout.block_size,
                "prefix_caching": layout.prefix_caching,
            },
            "load_ms": t0.elapsed().as_millis() as u64,
            "model_load_ms": load_ms,
            "reasoning_parser": if parsers.reasoning.is_some() { "think" } else { "none" },
            "tool_call_parser": if parsers.tool_calls.is_some() { "hermes" } else { "none" },
            "mapped_weight_bytes": mapped_bytes,
        });
        if let Some(note) = selection.note {
            info["device_note"] = json!(note);
        }
        if let (Some(info), serde_json::Value::Object(extra)) = (info.as_object_mut(), backend.info)
        {
            info.extend(extra);
        }
        let shared = Arc::new(Shared {
            tokenizer: Arc::clone(&tokenizer),
            poll: PollQueue::default(),
            poisoned: Mutex::new(None),
            stats: Stats::default(),
            backend: backend.exec.counters(),
        });
        let (cmd_tx, cmd_rx) = unbounded();
        let (out_tx, out_rx) = unbounded();
        let core = EngineCore::new(
            backend.exec,
            layout,
            limits.max_num_seqs,
            limits.max_num_batched_tokens,
            tokenizer.eog_ids.clone(),
            Arc::clone(&shared),
            out_tx.clone(),
        );
        let spawn_err =
            |e: std::io::Error| Error::Internal(format!("cannot start engine threads: {e}"));
        let delivery_shared = Arc::clone(&shared);
        // The delivery thread tells the engine thread about matched stop strings.
        let delivery_cmds = cmd_tx.clone();
        let delivery_thread = std::thread::Builder::new()
            .name("rill-delivery".into())
            .spawn(move || delivery::run(delivery_shared, out_rx, delivery_cmds))
            .map_err(spawn_err)?;
        let engine_thread = std::thread::Builder::new()
            .name("rill-engine".into())
            .spawn(move || core.run(cmd_rx))
            .map_err(spawn_err)?;
        Ok(Engine {
            shared,
            template,
            parsers,
            model_config: mc,
            model_names,
            max_model_len,
            seed: config.seed,
            generation,
            next_id: AtomicU64::new(1),
            commands: Some(cmd_tx),
            outputs: Some(out_tx),
            engine_thread: Some(engine_thread),
            delivery_thread: Some(delivery_thread),
            info,
        })
    }

    /// The loaded model's hyperparameters.
    pub fn model_config(&self) -> &ModelConfig {
        &self.model_config
    }

    /// The tokenizer (for tools and tests).
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.shared.tokenizer
    }

    /// Validates `request_json`, queues it and returns its id. Its events go to `sink`.
    /// Nothing is queued when this fails.
    pub fn submit(&self, request_json: &str, sink: Sink) -> Result<u64> {
        if let Some(m) = self.shared.poisoned.lock().clone() {
            return Err(Error::Poisoned(m));
        }
        let req = parse(request_json, &self.generation)?;
        if let Some(m) = &req.model {
            if !self.model_names.iter().any(|n| n == m) {
                return Err(Error::request(
                    "model",
                    format!(
                        "model {m:?} is not loaded (this engine serves {:?})",
                        self.model_names[0]
                    ),
                ));
            }
        }
        let rendered = self.build_prompt(&req)?;
        let prompt = rendered.ids;
        if prompt.len() >= self.max_model_len {
            return Err(Error::ContextLength {
                prompt_tokens: prompt.len(),
                max_model_len: self.max_model_len,
            });
        }
        let room = self.max_model_len - prompt.len();
        let max_tokens = req.max_output_tokens.map_or(room, |m| m.min(room));
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let meta = ResponseMeta {
            model: req
                .model
                .clone()
                .unwrap_or_else(|| self.model_names[0].clone()),
            instructions: req.instructions.clone(),
            max_output_tokens: req.max_output_tokens,
            temperature: req.sampling.temperature,
            top_p: req.sampling.top_p,
            top_logprobs: req.top_logprobs,
            metadata: req.metadata.clone(),
            user: req.user.clone(),
            parallel_tool_calls: req.parallel_tool_calls,
            max_tool_calls: req.max_tool_calls,
            reasoning_effort: req.reasoning_effort.clone(),
            tools: req.tools.iter().map(|t| t.echo()).collect(),
            tool_choice: req.tool_choice.echo(),
        };
        let (parser, initial) = OutputParser::new(rendered.parser, &rendered.tail);
        if matches!(sink, Sink::Poll) {
            self.shared.poll.register(id);
        }
        let stream = ResponseStream::new(&meta, unix_now());
        let mut mix = self.seed ^ id.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let seq = SeqRequest {
            id,
            prompt,
            max_tokens,
            sampling: req.sampling,
            seed: splitmix64(&mut mix),
            ignore_eos: req.ignore_eos,
        };
        let (Some(out), Some(cmd)) = (&self.outputs, &self.commands) else {
            return Err(Error::Internal("engine is shut down".into()));
        };
        self.shared.stats.submitted.fetch_add(1, Ordering::Relaxed);
        self.shared
            .stats
            .prompt_tokens
            .fetch_add(seq.prompt.len() as u64, Ordering::Relaxed);
        // Start goes to the delivery thread before the engine thread can produce tokens.
        let start = Output::Start {
            id,
            stream: Box::new(stream),
            sink,
            stop: StopStrings::new(req.stop),
            parser: Box::new(parser),
            initial,
            stop_after_call: !req.parallel_tool_calls,
        };
        out.send(start)
            .map_err(|_| Error::Internal("delivery thread is gone".into()))?;
        cmd.send(Command::Add(seq))
            .map_err(|_| Error::Internal("engine thread is gone".into()))?;
        Ok(id)
    }

    /// Cancels request `id`: its stream ends with a terminal event (`response.incomplete`,
    /// status `cancelled`). Cancelling a request that already finished is a no-op.
    pub fn cancel(&self, id: u64) -> Result<()> {
        if id == 0 || id >= self.next_id.load(Ordering::Relaxed) {
            return Err(Error::UnknownRequest(id));
        }
        if let Some(cmd) = &self.commands {
            let _ = cmd.send(Command::Cancel(id));
        }
        Ok(())
    }

    /// The next event of any request submitted without a callback.
    pub fn poll(&self, timeout: Option<Duration>) -> Option<PolledEvent> {
        self.shared.poll.pop_any(timeout)
    }

    /// The next event of request `id` (submitted without a callback).
    pub fn poll_request(
        &self,
        id: u64,
        timeout: Option<Duration>,
    ) -> Result<Option<(String, bool)>> {
        self.shared.poll.pop_request(id, timeout)
    }

    /// Marks the engine as failed: new submits are refused with the message.
    pub fn poison(&self, msg: &str) {
        self.shared
            .poisoned
            .lock()
            .get_or_insert_with(|| msg.to_owned());
    }

    /// Engine information and counters as JSON.
    pub fn stats(&self) -> serde_json::Value {
        let s = &self.shared.stats;
        let mut v = self.info.clone();
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        v["requests"] = json!({
            "submitted": get(&s.submitted), "completed": get(&s.completed), "incomplete": get(&s.incomplete),
            "cancelled": get(&s.cancelled), "failed": get(&s.failed),
            "running": get(&s.running), "waiting": get(&s.waiting),
        });
        v["tokens"] =
            json!({"prompt": get(&s.prompt_tokens), "generated": get(&s.generated_tokens)});
        v["steps"] = json!(get(&s.steps));
        v["step_time_ms"] = json!({
            "schedule": crate::backend::ms(get(&s.schedule_ns)),
            "backend": crate::backend::ms(get(&s.backend_ns)),
            "update": crate::backend::ms(get(&s.update_ns)),
        });
        v["tokens"]["cached_prompt"] = json!(get(&s.cached_prompt_tokens));
        v["preemptions"] = json!(get(&s.preemptions));
        v["kv_cache"]["free_blocks"] = json!(get(&s.kv_blocks_free));
        v["kv_cache"]["cached_blocks"] = json!(get(&s.kv_blocks_cached));
        v["poisoned"] = json!(self.shared.poisoned.lock().clone());
        if let Some(b) = &self.shared.backend {
            v["backend"] = b.to_json();
        }
        v
    }

    /// Stops the engine: cancels everything in flight, delivers the terminal events and
    /// joins both threads. Called by `Drop`; calling it twice is harmless.
    pub fn shutdown(&mut self) {
        if let Some(cmd) = self.commands.take() {
            let _ = cmd.send(Command::Shutdown);
        }
        if let Some(t) = self.engine_thread.take() {
            let _ = t.join();
        }
        self.outputs = None;
        if let Some(t) = self.delivery_thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Request defaults from a checkpoint's `generation_config.json` (vLLM's
/// `--generation-config auto`): temperature, top_p, top_k, min_p, repetition_penalty and
/// max_new_tokens; `do_sample: false` means greedy, as in transformers.
fn generation_defaults(g: &GenerationConfig) -> GenerationDefaults {
    let mut d = GenerationDefaults::default();
    let s = &mut d.sampling;
    if let Some(t) = g.temperature.filter(|t| (0.0..=2.0).contains(t)) {
        s.temperature = t;
    }
    if g.do_sample == Some(false) {
        s.temperature = 0.0;
    }
    if let Some(p) = g.top_p.filter(|p| *p > 0.0 && *p <= 1.0) {
        s.top_p = p;
    }
    if let Some(k) = g.top_k {
        s.top_k = k as usize;
    }
    if let Some(p) = g.min_p.filter(|p| (0.0..=1.0).contains(p)) {
        s.min_p = p;
    }
    if let Some(r) = g.repetition_penalty.filter(|r| *r > 0.0) {
        s.repetition_penalty = r;
    }
    d.max_output_tokens = g.max_new_tokens.filter(|&n| n > 0);
    d
}
