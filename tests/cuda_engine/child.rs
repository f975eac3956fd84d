//! Tests that run in a child process (the test binary again, with one argument naming
//! the child): those that change what a process keeps for its whole life, such as the
//! driver probe (cached) or a device fault (sticky), or that set the environment.
//! Emulated driver only (`RILL_GPU_TESTS=emulated`).

#![cfg(feature = "kernel-emu")]

use std::io::Read;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use super::TestResult;

/// A child: the argument that selects it, and its body.
pub type Child = (&'static str, fn() -> TestResult);

/// Runs the child `arg` names, if the process was started as one: prints `<arg>: ok` or
/// `<arg>: FAILED: ...` and returns its exit code.
pub fn main_of(children: &[Child]) -> Option<ExitCode> {
    let (arg, body) = children
        .iter()
        .find(|(arg, _)| std::env::args().any(|a| a == *arg))?;
    Some(match body() {
        Ok(()) => {
            println!("{arg}: ok");
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("{arg}: FAILED: {e}");
            ExitCode::FAILURE
        }
    })
}

/// Runs this binary as the child `arg` with `env` added, for at most `limit`: fails
/// when it fails, does not report `<arg>: ok`, runs past the limit, or panicked anywhere
/// (a panic prints to stderr even when it was caught, as in a thread or a drop).
pub fn run(arg: &str, env: &[(&str, &str)], limit: Duration) -> TestResult {
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let mut child = Command::new(&exe)
        .arg(arg)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("running {} {arg}: {e}", exe.display()))?;
    // Read both pipes while waiting, so a chatty child cannot block on a full pipe.
    let mut pipes = (child.stdout.take(), child.stderr.take());
    let drain = |p: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            if let Some(mut p) = p {
                let _ = p.read_to_string(&mut s);
            }
            s
        })
    };
    let out = drain(pipes.0.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let err = drain(pipes.1.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let t0 = Instant::now();
    let outcome = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Ok(s),
            Ok(None) if t0.elapsed() > limit => {
                break Err(format!("the child {arg} ran past {limit:?} (a hang?)"))
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => break Err(format!("waiting for the child {arg}: {e}")),
        }
    };
    if outcome.is_err() {
        let _ = child.kill();
        let _ = child.wait();
    }
    // The pipes close when the child is gone.
    let out = out.join().unwrap_or_default();
    let err = err.join().unwrap_or_default();
    print!("{out}");
    let status = outcome.map_err(|m| format!("{m}\n{}\n{}", out.trim_end(), err.trim_end()))?;
    if !status.success() || !out.contains(&format!("{arg}: ok")) {
        return Err(format!(
            "the child {arg} failed ({status}):\n{}\n{}",
            out.trim_end(),
            err.trim_end()
        ));
    }
    if err.contains("panicked") {
        return Err(format!("the child {arg} panicked:\n{}", err.trim_end()));
    }
    Ok(())
}
