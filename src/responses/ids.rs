//! Item and response ids: a prefix (`resp`, `msg`, ...) and 32 hex digits, unique within
//! the process (a counter mixed with the process id and start time).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::sampling::rng::splitmix64;

/// A new unique id such as `msg_5f0c...`.
pub fn new_id(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    static BASE: OnceLock<u64> = OnceLock::new();
    let base = *BASE.get_or_init(|| {
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        t ^ ((std::process::id() as u64) << 32)
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut a = base ^ n;
    let mut b = base.rotate_left(17) ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    format!(
        "{prefix}_{:016x}{:016x}",
        splitmix64(&mut a),
        splitmix64(&mut b)
    )
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
