//! Statistics for rill-bench: percentiles (linear interpolation between closest ranks, as
//! numpy's default `percentile`), medians, and the per-stream timing record every backend
//! fills in, with the derived latencies (TTFT, inter-token gaps) the report uses.
//! Public operations: [`percentile`], [`median`], [`Stream`] and its accessors,
//! [`Latency`].

use std::time::Instant;

/// The `p`-th percentile (0..=100) of `values`, interpolating linearly between the two
/// closest ranks; `None` for an empty slice. NaNs sort last.
pub fn percentile(values: &[f64], p: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = (p.clamp(0.0, 100.0) / 100.0) * (v.len() - 1) as f64;
    let lo = rank.floor() as usize;
    let hi = rank.ceil() as usize;
    Some(v[lo] + (v[hi] - v[lo]) * (rank - lo as f64))
}

/// The median (50th percentile).
pub fn median(values: &[f64]) -> Option<f64> {
    percentile(values, 50.0)
}

/// p50 and p99 of a latency sample, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Latency {
    pub p50_ms: f64,
    pub p99_ms: f64,
}

impl Latency {
    /// From samples in seconds; `None` when there are none.
    pub fn of_secs(samples: &[f64]) -> Option<Latency> {
        Some(Latency {
            p50_ms: percentile(samples, 50.0)? * 1e3,
            p99_ms: percentile(samples, 99.0)? * 1e3,
        })
    }
}

/// What one request's stream looked like to the client.
#[derive(Debug, Clone)]
pub struct Stream {
    /// When the request was handed to the backend.
    pub submitted: Instant,
    /// Arrival times of the stream's output text deltas (non-empty text), in order.
    pub deltas: Vec<Instant>,
    /// When the terminal event (or end of the SSE stream) arrived.
    pub ended: Instant,
    /// Prompt tokens as the backend reports them.
    pub input_tokens: u64,
    /// Of those, tokens served from the backend's prefix/prompt cache.
    pub cached_tokens: u64,
    /// Generated tokens as the backend reports them.
    pub output_tokens: u64,
}

impl Stream {
    /// Time to first token, seconds: to the first text delta, or to the end of the stream
    /// when no text delta came (a single token can arrive only with the final chunk).
    pub fn ttft(&self) -> f64 {
        let first = self.deltas.first().copied().unwrap_or(self.ended);
        first
            .saturating_duration_since(self.submitted)
            .as_secs_f64()
    }

    /// Gaps between consecutive text deltas, seconds.
    pub fn itl(&self) -> Vec<f64> {
        self.deltas
            .windows(2)
            .map(|w| w[1].saturating_duration_since(w[0]).as_secs_f64())
            .collect()
    }

    /// Decode rate: output tokens after the first over the time from the first to the last
    /// delta; `None` with fewer than two deltas or tokens.
    pub fn decode_tps(&self) -> Option<f64> {
        let (first, last) = (self.deltas.first()?, self.deltas.last()?);
        let span = last.saturating_duration_since(*first).as_secs_f64();
        (self.output_tokens >= 2 && span > 0.0).then(|| (self.output_tokens - 1) as f64 / span)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn percentile_interpolates_between_ranks() {
        let v = [4.0, 1.0, 3.0, 2.0];
        assert_eq!(percentile(&v, 0.0), Some(1.0));
        assert_eq!(percentile(&v, 100.0), Some(4.0));
        assert_eq!(percentile(&v, 50.0), Some(2.5));
        // rank 0.99 * 3 = 2.97 -> 3 + 0.97 * (4 - 3)
        let p99 = percentile(&v, 99.0).unwrap_or(f64::NAN);
        assert!((p99 - 3.97).abs() < 1e-12, "{p99}");
        assert_eq!(median(&[5.0, 1.0, 9.0]), Some(5.0));
        assert_eq!(percentile(&[7.0], 99.0), Some(7.0));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn latency_is_in_milliseconds() {
        let l = Latency::of_secs(&[0.010, 0.020, 0.030]);
        let l = l.unwrap_or(Latency {
            p50_ms: 0.0,
            p99_ms: 0.0,
        });
        assert!((l.p50_ms - 20.0).abs() < 1e-9);
        assert!((l.p99_ms - 29.8).abs() < 1e-9);
        assert!(Latency::of_secs(&[]).is_none());
    }

    #[test]
    fn stream_timings() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let s = Stream {
            submitted: t0,
            deltas: vec![ms(100), ms(110), ms(130)],
            ended: ms(140),
            input_tokens: 10,
            cached_tokens: 0,
            output_tokens: 3,
        };
        assert!((s.ttft() - 0.100).abs() < 1e-9);
        let itl = s.itl();
        assert_eq!(itl.len(), 2);
        assert!((itl[0] - 0.010).abs() < 1e-9 && (itl[1] - 0.020).abs() < 1e-9);
        assert!((s.decode_tps().unwrap_or(0.0) - 2.0 / 0.030).abs() < 1e-6);
        // No delta: TTFT is the end of the stream, no decode rate.
        let s = Stream {
            deltas: vec![],
            ..s
        };
        assert!((s.ttft() - 0.140).abs() < 1e-9);
        assert!(s.decode_tps().is_none());
    }
}
