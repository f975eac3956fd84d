//! Tests run in a child process (the test binary again, with `--child=NAME`): those that
//! change what a process keeps for its whole life, such as the driver probe (cached) or a
//! device fault (sticky), or that want an environment of their own. The child loads the
//! emulated driver (and cuBLAS, unless its name says `without_cublas`) when the parent
//! runs on it (`RILL_GPU_TESTS=emulated` is inherited) and runs with `RILL_CUDA_GEMV=off`:
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
pub fn run_if_child(children: &[super::Test]) -> Option<ExitCode> {
    let name = std::env::args().find_map(|a| a.strip_prefix(ARG).map(str::to_owned))?;
    let outcome = match children.iter().find(|(n, _)| *n == name) {
        None => Err(format!("no child test {name:?}")),
        Some(&(_, body)) if super::emulated() => {
            super::load_emulated(emulated_libraries(&name)).and_then(|()| super::run_caught(body))
        }
        Some(&(_, body)) => super::run_caught(body),
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

/// The emulated libraries child `name` loads: the driver and cuBLAS, or the driver alone
/// for a child named `..._without_cublas_...` (a machine with a driver and no CUDA
/// libraries).
fn emulated_libraries(name: &str) -> &'static [&'static str] {
    if name.contains("without_cublas") {
        &["libcuda.so.1"]
    } else {
        &["libcuda.so.1", "libcublas.so.1"]
    }
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
