//! Tests run in a child process (the test binary again, with `--child=NAME`): those that
//! change what a process keeps for its whole life, such as the driver probe (cached) or a
//! device fault (sticky), or that want an environment of their own. The child loads its
//! emulated libraries ([`super::Child`]) when the parent runs on the emulated driver
//! (`RILL_GPU_TESTS=emulated` is inherited) and runs with `RILL_CUDA_GEMV=off`:
//! cuBLAS for every product, since the GEMV timing at engine create takes minutes on the
//! emulator.

use std::io::Read;
use std::process::{Command, ExitCode, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The longest a child may run.
const LIMIT: Duration = Duration::from_secs(500);

const ARG: &str = "--child=";

/// When this process is the child of one of `children`: runs it, prints `NAME: ok` or
/// `NAME: FAILED: ...`, and returns its exit code.
pub fn run_if_child(children: &[super::Child]) -> Option<ExitCode> {
    let name = std::env::args().find_map(|a| a.strip_prefix(ARG).map(str::to_owned))?;
    let outcome = match children.iter().find(|c| c.name == name) {
        None => Err(format!("no child test {name:?}")),
        Some(c) if super::emulated() => {
            super::load_emulated(c.libraries).and_then(|()| super::run_caught(c.body))
        }
        Some(c) => super::run_caught(c.body),
    };
    Some(match outcome {
        Ok(()) => {
            println!("{name}: ok");
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("{name}: FAILED: {e}");
            ExitCode::FAILURE
        }
    })
}

/// Runs the child test `name`: fails when the child fails, does not report `NAME: ok`,
/// runs past [`LIMIT`] (it is killed), or panicked anywhere (a panic prints to stderr even
/// when it was caught, as in a thread or a drop).
pub fn run(name: &str) -> Result<(), String> {
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let mut child = Command::new(&exe)
        .arg(format!("{ARG}{name}"))
        .env("RILL_CUDA_GEMV", "off")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("running {} as the child {name}: {e}", exe.display()))?;
    // Both pipes are read while the child runs, so a chatty child cannot block on one.
    let out = drain(child.stdout.take());
    let err = drain(child.stderr.take());
    let t0 = Instant::now();
    let waited = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Ok(status),
            Ok(None) if t0.elapsed() > LIMIT => break Err(format!("ran past {LIMIT:?} (a hang?)")),
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => break Err(format!("waiting for it: {e}")),
        }
    };
    if waited.is_err() {
        let _ = child.kill();
        let _ = child.wait();
    }
    // The pipes close when the child is gone.
    let out = out.join().unwrap_or_default();
    let err = err.join().unwrap_or_default();
    print!("{out}");
    let failure = match waited {
        Err(why) => Some(why),
        Ok(status) if !status.success() || !out.contains(&format!("{name}: ok")) => {
            Some(format!("failed ({status})"))
        }
        Ok(_) if err.contains("panicked") => Some("panicked".to_owned()),
        Ok(_) => None,
    };
    match failure {
        None => Ok(()),
        Some(why) => Err(format!("the child {why}:\n{}", err.trim_end())),
    }
}

/// Reads `pipe` to its end on a thread of its own.
fn drain(pipe: Option<impl Read + Send + 'static>) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(mut p) = pipe {
            let _ = p.read_to_string(&mut s);
        }
        s
    })
}
