//! Helpers shared by the integration tests: locating the default model (fetched by
//! `scripts/fetch_model.sh`; a missing model is a failure with instructions, never a skip)
//! and collecting a request's events through the Rust API.

#![allow(dead_code)]

use std::path::PathBuf;

/// Path of the default model, or a panic telling how to fetch it.
pub fn default_model() -> PathBuf {
    let p = match std::env::var_os("RILL_MODEL") {
        Some(p) => PathBuf::from(p),
        None => {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/SmolLM2-135M-Instruct.Q4_1.gguf")
        }
    };
    assert!(
        p.is_file(),
        "default model missing at {}: run scripts/fetch_model.sh",
        p.display()
    );
    p
}

/// The directory a cached test-model generator prints (`scripts/tiny_models.sh`,
/// `scripts/designed_model.sh`): `env_var` names an already generated directory,
/// otherwise the script runs (a no-op when cached). Panics with instructions when the
/// directory lacks `marker` or the script fails.
pub fn generated_dir(env_var: &str, script: &str, marker: &str) -> PathBuf {
    let dir = match std::env::var_os(env_var) {
        Some(d) => PathBuf::from(d),
        None => {
            let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(script);
            let out = std::process::Command::new("bash")
                .arg(&script)
                .output()
                .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
            assert!(
                out.status.success(),
                "{} failed ({}); it needs python3 with tests/requirements-models.txt and \
                 the tokenizers of scripts/fetch_tokenizers.sh:\n{}",
                script.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
            let stdout = String::from_utf8_lossy(&out.stdout);
            PathBuf::from(stdout.lines().last().unwrap_or("").trim())
        }
    };
    assert!(
        dir.join(marker).is_file(),
        "{} has no {marker}: generate it with {script} (it prints the directory) or set \
         {env_var} to one that has",
        dir.display()
    );
    dir
}

/// A config JSON for the default model with extra keys merged in.
pub fn config_json(extra: serde_json::Value) -> String {
    let mut c = serde_json::json!({"model": default_model(), "num_threads": 2, "seed": 1});
    if let (Some(c), Some(e)) = (c.as_object_mut(), extra.as_object()) {
        c.extend(e.clone());
    }
    c.to_string()
}

use std::time::Duration;

use crossbeam_channel::{unbounded, Receiver};
use rill::{Engine, EngineConfig, Sink};
use serde_json::Value;

/// An engine on the default model.
pub fn engine(extra: serde_json::Value) -> Engine {
    Engine::new(EngineConfig::from_json(&config_json(extra)).expect("config")).expect("engine")
}

/// Submits with a callback sink; returns the id and a receiver of parsed events.
pub fn submit(engine: &Engine, body: &str) -> rill::Result<(u64, Receiver<Value>)> {
    let (tx, rx) = unbounded();
    let id = engine.submit(
        body,
        Sink::Callback(Box::new(move |_, ev, _| {
            let _ = tx.send(serde_json::from_str(ev).expect("event is JSON"));
        })),
    )?;
    Ok((id, rx))
}

/// Collects events until the terminal one (panics after 120 s).
pub fn collect(rx: &Receiver<Value>) -> Vec<Value> {
    let mut out = Vec::new();
    loop {
        let ev = rx
            .recv_timeout(Duration::from_secs(120))
            .expect("event within 120 s");
        let ty = ev["type"].as_str().unwrap_or("").to_owned();
        out.push(ev);
        if matches!(
            ty.as_str(),
            "response.completed" | "response.incomplete" | "response.failed"
        ) {
            return out;
        }
    }
}

/// The concatenated output text of a stream.
pub fn text_of(events: &[Value]) -> String {
    events
        .iter()
        .filter(|e| e["type"] == "response.output_text.delta")
        .map(|e| e["delta"].as_str().unwrap_or(""))
        .collect()
}
