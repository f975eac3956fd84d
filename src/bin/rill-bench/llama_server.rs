//! The llama-server backend of rill-bench: starts llama.cpp's `llama-server` on loopback
//! (a free port, the same GGUF, `-t THREADS -np SLOTS -c SLOTS*CTX_PER_SLOT`, everything
//! else default: continuous batching and prompt cache on), waits for `GET /health`, and
//! runs the workloads through its OpenAI-compatible `POST /v1/chat/completions` with
//! `stream: true`, `ignore_eos`, `temperature: 0`, `cache_prompt: true`, one connection
//! and thread per stream. TTFT and inter-token gaps come from SSE chunk arrival times;
//! token counts from the final `usage` (`prompt_tokens_details.cached_tokens`, else
//! `timings.cache_n`). The server is restarted whenever the slot count changes and killed
//! on drop (error paths included); it also gets SIGTERM if rill-bench dies
//! (`PR_SET_PDEATHSIG`), so Ctrl-C never leaves it running. Its peak RSS (`VmHWM`) is read
//! before each kill. Public operations: [`ServerConfig`], [`LlamaServer`] (a [`Backend`]),
//! [`parse_chunk`].

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::http;
use crate::stats::Stream;
use crate::workloads::{Backend, Req};

/// How to start llama-server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub bin: PathBuf,
    pub model: String,
    pub threads: usize,
    /// Context per slot; the server gets `-c slots * ctx_per_slot`.
    pub ctx_per_slot: usize,
    /// Longest wait for startup, or for the next bytes of a response.
    pub timeout: Duration,
}

/// A running server process; killed (and reaped) on drop.
struct Running {
    child: Child,
    addr: SocketAddr,
    slots: usize,
    log: PathBuf,
}

impl Running {
    fn start(cfg: &ServerConfig, slots: usize) -> Result<(Running, String), String> {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("finding a free loopback port: {e}"))?
            .port();
        let args: Vec<String> = vec![
            "-m".into(),
            cfg.model.clone(),
            "-t".into(),
            cfg.threads.to_string(),
            "-np".into(),
            slots.to_string(),
            "-c".into(),
            (slots * cfg.ctx_per_slot).to_string(),
            "--host".into(),
            "127.0.0.1".into(),
            "--port".into(),
            port.to_string(),
        ];
        let cmdline = format!("{} {}", cfg.bin.display(), args.join(" "));
        let log = std::env::temp_dir().join(format!(
            "rill-bench-llama-server-{}-np{slots}.log",
            std::process::id()
        ));
        let out = File::create(&log).map_err(|e| format!("creating {}: {e}", log.display()))?;
        let err = out
            .try_clone()
            .map_err(|e| format!("opening {}: {e}", log.display()))?;
        let mut cmd = Command::new(&cfg.bin);
        cmd.args(&args).stdin(Stdio::null()).stdout(out).stderr(err);
        // SAFETY: the closure runs in the forked child before exec and only calls prctl,
        // which is async-signal-safe; it allocates nothing and touches no locks.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("starting {}: {e}", cfg.bin.display()))?;
        let mut r = Running {
            child,
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            slots,
            log,
        };
        r.wait_healthy(cfg.timeout)?;
        Ok((r, cmdline))
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    fn wait_healthy(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "llama-server exited during startup ({status}); log {}:\n{}",
                    self.log.display(),
                    self.log_tail()
                ));
            }
            if let Ok((200, _)) = http::get(self.addr, "/health", Duration::from_secs(2)) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "llama-server not healthy after {timeout:?}; log {}:\n{}",
                    self.log.display(),
                    self.log_tail()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn hwm_kib(&self) -> Option<u64> {
        crate::vm_hwm_kib(&format!("/proc/{}/status", self.child.id()))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // Errors mean it already exited; nothing else to do.
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// llama-server as a benchmark backend.
pub struct LlamaServer {
    cfg: ServerConfig,
    running: Option<Running>,
    /// Highest `VmHWM` of the server processes stopped so far.
    peak_kib: Option<u64>,
    /// The command lines used, for the report.
    pub commands: Vec<String>,
}

impl LlamaServer {
    pub fn new(cfg: ServerConfig) -> Result<Self, String> {
        if !cfg.bin.is_file() {
            return Err(format!(
                "llama-server binary {} not found (build it with scripts/build_llamacpp.sh, or pass --llama-server-bin)",
                cfg.bin.display()
            ));
        }
        Ok(LlamaServer {
            cfg,
            running: None,
            peak_kib: None,
            commands: Vec::new(),
        })
    }

    fn stop(&mut self) {
        if let Some(r) = self.running.take() {
            self.peak_kib = self.peak_kib.max(r.hwm_kib());
        }
    }
}

impl Drop for LlamaServer {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Backend for LlamaServer {
    fn name(&self) -> &'static str {
        "llama-server"
    }

    fn prepare(&mut self, streams: usize) -> Result<(), String> {
        if self.running.as_ref().is_some_and(|r| r.slots == streams) {
            return Ok(());
        }
        self.stop();
        let (r, cmdline) = Running::start(&self.cfg, streams.max(1))?;
        self.running = Some(r);
        self.commands.push(cmdline);
        Ok(())
    }

    fn run(&mut self, reqs: &[Req]) -> Result<Vec<Stream>, String> {
        let r = self.running.as_ref().ok_or("llama-server is not running")?;
        if reqs.len() > r.slots {
            return Err(format!(
                "{} concurrent requests for {} slots",
                reqs.len(),
                r.slots
            ));
        }
        let (addr, timeout) = (r.addr, self.cfg.timeout);
        let barrier = Barrier::new(reqs.len());
        let results: Vec<Result<Stream, String>> = std::thread::scope(|s| {
            let handles: Vec<_> = reqs
                .iter()
                .map(|req| {
                    let barrier = &barrier;
                    s.spawn(move || {
                        barrier.wait();
                        one_stream(addr, req, timeout)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err("client thread panicked".into()))
                })
                .collect()
        });
        results.into_iter().collect()
    }

    fn peak_rss_kib(&mut self) -> Option<u64> {
        self.peak_kib
            .max(self.running.as_ref().and_then(Running::hwm_kib))
    }

    fn info(&self) -> Value {
        json!({"api": "POST /v1/chat/completions, stream: true (SSE)",
               "restarted_per_level": "yes: -np = the level's stream count",
               "commands": self.commands})
    }
}

/// The chat completion body for one request.
pub fn request_body(req: &Req) -> String {
    let mut messages = Vec::new();
    if let Some(sys) = &req.instructions {
        messages.push(json!({"role": "system", "content": sys}));
    }
    messages.push(json!({"role": "user", "content": req.input}));
    json!({
        "messages": messages, "max_tokens": req.max_tokens, "stream": true,
        "stream_options": {"include_usage": true}, "ignore_eos": true,
        "temperature": 0, "cache_prompt": true,
    })
    .to_string()
}

/// Token counts from a final chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub prompt: u64,
    pub cached: u64,
    pub completion: u64,
}

/// What one SSE data payload means to the benchmark.
#[derive(Debug, PartialEq)]
pub enum Chunk {
    /// `data: [DONE]`.
    Done,
    /// A `chat.completion.chunk`: whether it carries text, and usage if it is the last.
    Data { text: bool, usage: Option<Usage> },
    /// An error object in the stream.
    Error(String),
}

pub fn parse_chunk(data: &str) -> Result<Chunk, String> {
    if data.trim() == "[DONE]" {
        return Ok(Chunk::Done);
    }
    let v: Value = serde_json::from_str(data).map_err(|e| format!("SSE data is not JSON: {e}"))?;
    if !v["error"].is_null() {
        return Ok(Chunk::Error(v["error"].to_string()));
    }
    let delta = &v["choices"][0]["delta"];
    let nonempty = |k: &str| delta[k].as_str().is_some_and(|s| !s.is_empty());
    let text = nonempty("content") || nonempty("reasoning_content");
    let usage = match &v["usage"] {
        Value::Null => None,
        u => {
            let n =
                |x: &Value, what: &str| x.as_u64().ok_or_else(|| format!("usage without {what}"));
            let cached = u["prompt_tokens_details"]["cached_tokens"]
                .as_u64()
                .or_else(|| v["timings"]["cache_n"].as_u64())
                .unwrap_or(0);
            Some(Usage {
                prompt: n(&u["prompt_tokens"], "prompt_tokens")?,
                cached,
                completion: n(&u["completion_tokens"], "completion_tokens")?,
            })
        }
    };
    Ok(Chunk::Data { text, usage })
}

/// Runs one streamed request; times every SSE event on arrival and parses afterwards.
fn one_stream(addr: SocketAddr, req: &Req, timeout: Duration) -> Result<Stream, String> {
    let body = request_body(req);
    let submitted = Instant::now();
    let mut resp = http::post(addr, "/v1/chat/completions", &body, timeout)?;
    if resp.status != 200 {
        let status = resp.status;
        return Err(format!(
            "llama-server answered {status}: {}",
            resp.text().unwrap_or_default()
        ));
    }
    let mut sse = http::SseParser::default();
    let mut events: Vec<(Instant, String)> = Vec::new();
    while let Some(line) = resp.next_line()? {
        if let Some(data) = sse.line(&line) {
            let done = data.trim() == "[DONE]";
            events.push((Instant::now(), data));
            if done {
                break;
            }
        }
    }
    if let Some(data) = sse.flush() {
        events.push((Instant::now(), data));
    }
    let (mut deltas, mut usage, mut ended) = (Vec::new(), None, None);
    for (at, data) in &events {
        match parse_chunk(data)? {
            Chunk::Data { text, usage: u } => {
                if text {
                    deltas.push(*at);
                }
                if u.is_some() {
                    usage = u;
                    ended = Some(*at);
                }
            }
            Chunk::Done => {
                ended.get_or_insert(*at);
            }
            Chunk::Error(e) => return Err(format!("llama-server stream error: {e}")),
        }
    }
    let u = usage.ok_or("llama-server stream ended without usage")?;
    Ok(Stream {
        submitted,
        deltas,
        ended: ended.unwrap_or_else(Instant::now),
        input_tokens: u.prompt,
        cached_tokens: u.cached,
        output_tokens: u.completion,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_chunks() {
        assert_eq!(parse_chunk("[DONE]"), Ok(Chunk::Done));
        let first = r#"{"choices":[{"finish_reason":null,"index":0,"delta":{"role":"assistant","content":null}}],"object":"chat.completion.chunk"}"#;
        assert_eq!(
            parse_chunk(first),
            Ok(Chunk::Data {
                text: false,
                usage: None
            })
        );
        let tok = r#"{"choices":[{"finish_reason":null,"index":0,"delta":{"content":" the"}}],"object":"chat.completion.chunk"}"#;
        assert_eq!(
            parse_chunk(tok),
            Ok(Chunk::Data {
                text: true,
                usage: None
            })
        );
        let last = r#"{"choices":[],"object":"chat.completion.chunk","usage":{"completion_tokens":16,
            "prompt_tokens":70,"total_tokens":86,"prompt_tokens_details":{"cached_tokens":12}},
            "timings":{"cache_n":12,"prompt_n":58}}"#;
        let usage = Some(Usage {
            prompt: 70,
            cached: 12,
            completion: 16,
        });
        assert_eq!(parse_chunk(last), Ok(Chunk::Data { text: false, usage }));
        // Cached tokens fall back to timings.cache_n.
        let older = r#"{"choices":[],"usage":{"completion_tokens":1,"prompt_tokens":9},"timings":{"cache_n":4}}"#;
        let usage = Some(Usage {
            prompt: 9,
            cached: 4,
            completion: 1,
        });
        assert_eq!(parse_chunk(older), Ok(Chunk::Data { text: false, usage }));
        let err = r#"{"error":{"code":500,"message":"context full"}}"#;
        assert!(matches!(parse_chunk(err), Ok(Chunk::Error(m)) if m.contains("context full")));
        assert!(parse_chunk(r#"{"choices":[],"usage":{"prompt_tokens":9}}"#).is_err());
        assert!(parse_chunk("{oops").is_err());
    }

    #[test]
    fn request_body_has_the_benchmark_settings() {
        let req = Req {
            instructions: Some("sys".into()),
            input: "hi".into(),
            max_tokens: 7,
        };
        let v: Value = serde_json::from_str(&request_body(&req)).unwrap_or_default();
        assert_eq!(
            v["messages"][0],
            json!({"role": "system", "content": "sys"})
        );
        assert_eq!(v["messages"][1], json!({"role": "user", "content": "hi"}));
        assert_eq!(v["max_tokens"], 7);
        assert_eq!(v["stream"], true);
        assert_eq!(v["ignore_eos"], true);
        assert_eq!(v["cache_prompt"], true);
        assert_eq!(v["temperature"], 0);
        assert_eq!(v["stream_options"]["include_usage"], true);
    }
}
