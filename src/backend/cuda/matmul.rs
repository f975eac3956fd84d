//! Which kernel runs each linear layer: cuBLAS ([`super::linear`]) or, for decode-sized
//! batches (1 to 8 tokens), our GEMV kernel ([`super::ops::gemv`]). A decode step reads
//! every weight once, so its products are bound by the weights' bytes; which kernel
//! streams them faster depends on the shape and the GPU, so [`Matmul::tune`] times both at
//! load, per weight shape, over all the layers' matrices of that shape (more bytes than
//! the L2 cache holds, as in a real step), at 1 and 8 tokens, each pass captured into a
//! CUDA graph as a decode step is (so host launch costs are not what is measured), the
//! best of 5 alternating rounds after a warm-up, and keeps GEMV only when it is faster by
//! 3%. With graphs off (`RILL_CUDA_GRAPHS=0`), or after a capture fails, the passes are
//! timed as eager launches, as decode steps then run; a failed capture never fails the
//! load. The times and choices are in the stats (`gpu.matmul`).
//!
//! `RILL_CUDA_GEMV`: `auto` (the default: tune), `off` (cuBLAS only), `on` (the GEMV
//! kernel wherever it fits, untimed: tests and comparisons).

use std::collections::HashMap;

use cudarc::driver::CudaGraph;
use half::bf16;
use serde_json::{json, Value};

use super::device::{device_error, Gpu};
use super::linear::{linear, linear_f32};
use super::ops::gemv::{gemv, gemv_fits, GemvOut, GEMV_MAX_TOKENS};
use super::ops::Dev;
use crate::error::{Error, Result};

/// A weight shape: `[n_out, n_in]`, and whether its output is f32 (the logits).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Shape {
    pub n_out: usize,
    pub n_in: usize,
    pub f32_out: bool,
}

/// `RILL_CUDA_GEMV`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Auto,
    Off,
    On,
}

impl Mode {
    /// Parses `RILL_CUDA_GEMV` (unset: auto).
    pub fn parse(v: Option<&str>) -> Result<Mode> {
        match v.map(str::trim) {
            None | Some("") | Some("auto") => Ok(Mode::Auto),
            Some("off") | Some("0") => Ok(Mode::Off),
            Some("on") | Some("1") => Ok(Mode::On),
            Some(other) => Err(Error::config(
                "RILL_CUDA_GEMV",
                format!("{other:?} is not auto, on or off"),
            )),
        }
    }

    /// From the environment.
    pub fn from_env() -> Result<Mode> {
        Mode::parse(std::env::var("RILL_CUDA_GEMV").ok().as_deref())
    }
}

/// One shape's timing: µs per product at 1 and at 8 tokens, cuBLAS and GEMV.
#[derive(Clone, Debug, PartialEq)]
pub struct Timing {
    pub shape: Shape,
    pub matrices: usize,
    pub cublas_us: [f64; 2],
    pub gemv_us: [f64; 2],
    /// Some pass of this shape was timed as eager launches (not as a CUDA graph).
    pub eager: bool,
}

impl Timing {
    /// The most tokens for which GEMV runs: 8 when it won at 1 and 8 tokens, 1 when only
    /// at 1, else 0 (cuBLAS always). Winning means faster by [`MARGIN`]; 2 to 7 tokens
    /// follow the result at 8.
    pub fn gemv_up_to(&self) -> usize {
        let won = |i: usize| self.gemv_us[i] < self.cublas_us[i] * (1.0 - MARGIN);
        match (won(0), won(1)) {
            (true, true) => GEMV_MAX_TOKENS,
            (true, false) => 1,
            _ => 0,
        }
    }
}

/// An output type of the linear layers: the GEMV kernel's, and its cuBLAS call.
pub trait MatmulOut: GemvOut {
    /// f32 out (the logits): a shape of its own.
    const F32: bool;
    /// The cuBLAS product (`linear` / `linear_f32`).
    #[allow(clippy::too_many_arguments)]
    fn cublas(
        gpu: &Gpu,
        out: Dev<Self>,
        x: Dev<bf16>,
        w: Dev<bf16>,
        tokens: usize,
        n_in: usize,
        n_out: usize,
    ) -> Result<()>;
}

impl MatmulOut for bf16 {
    const F32: bool = false;
    fn cublas(
        gpu: &Gpu,
        out: Dev<bf16>,
        x: Dev<bf16>,
        w: Dev<bf16>,
        t: usize,
        i: usize,
        o: usize,
    ) -> Result<()> {
        linear(gpu, out, x, w, t, i, o)
    }
}

impl MatmulOut for f32 {
    const F32: bool = true;
    fn cublas(
        gpu: &Gpu,
        out: Dev<f32>,
        x: Dev<bf16>,
        w: Dev<bf16>,
        t: usize,
        i: usize,
        o: usize,
    ) -> Result<()> {
        linear_f32(gpu, out, x, w, t, i, o)
    }
}

/// One product through GEMV or cuBLAS.
fn product<T: MatmulOut>(
    gpu: &Gpu,
    use_gemv: bool,
    out: Dev<T>,
    x: Dev<bf16>,
    w: Dev<bf16>,
    (tokens, n_in, n_out): (usize, usize, usize),
) -> Result<()> {
    if use_gemv {
        gemv(gpu, out, x, w, tokens, n_in, n_out)
    } else {
        T::cublas(gpu, out, x, w, tokens, n_in, n_out)
    }
}

/// The per-shape choice between cuBLAS and GEMV.
pub struct Matmul {
    mode: Mode,
    /// Shape -> the most tokens that use GEMV (absent: 0).
    up_to: HashMap<Shape, usize>,
    timings: Vec<Timing>,
    /// How the passes were timed: `None` as CUDA graphs, else why as eager launches.
    eager: Option<String>,
}

impl Matmul {
    /// cuBLAS for everything.
    pub fn cublas_only() -> Matmul {
        Matmul {
            mode: Mode::Off,
            up_to: HashMap::new(),
            timings: Vec::new(),
            eager: None,
        }
    }

    /// Chooses per shape of `groups` (each shape with the device matrices of that shape)
    /// as `mode` says, timing both kernels for [`Mode::Auto`]: as CUDA graphs when
    /// `graphs` (decode steps replay graphs), else as eager launches.
    pub fn tune(
        gpu: &Gpu,
        groups: &[(Shape, Vec<Dev<bf16>>)],
        mode: Mode,
        graphs: bool,
    ) -> Result<Matmul> {
        let mut m = Matmul {
            mode,
            up_to: HashMap::new(),
            timings: Vec::new(),
            eager: (!graphs).then(|| "CUDA graphs are off".to_owned()),
        };
        match mode {
            Mode::Off => {}
            Mode::On => {
                for (shape, _) in groups {
                    m.up_to.insert(*shape, GEMV_MAX_TOKENS);
                }
            }
            Mode::Auto => {
                let bench = Bench::new(gpu, groups)?;
                let mut warm = false;
                for (shape, mats) in groups {
                    let t = bench.time(gpu, *shape, mats, &mut warm, &mut m.eager)?;
                    m.up_to.insert(*shape, t.gemv_up_to());
                    m.timings.push(t);
                }
            }
        }
        Ok(m)
    }

    /// `out[tokens, n_out] = x · wᵀ`, out bf16 (activations) or f32 (logits), through the
    /// kernel chosen for this shape and token count.
    #[allow(clippy::too_many_arguments)]
    pub fn linear<T: MatmulOut>(
        &self,
        gpu: &Gpu,
        out: Dev<T>,
        x: Dev<bf16>,
        w: Dev<bf16>,
        tokens: usize,
        n_in: usize,
        n_out: usize,
    ) -> Result<()> {
        let use_gemv = self.gemv_for(n_out, n_in, T::F32, x, w, tokens);
        product(gpu, use_gemv, out, x, w, (tokens, n_in, n_out))
    }

    fn gemv_for(
        &self,
        n_out: usize,
        n_in: usize,
        f32_out: bool,
        x: Dev<bf16>,
        w: Dev<bf16>,
        tokens: usize,
    ) -> bool {
        let shape = Shape {
            n_out,
            n_in,
            f32_out,
        };
        tokens <= self.up_to.get(&shape).copied().unwrap_or(0) && gemv_fits(x, w, tokens, n_in)
    }

    /// The stats' `gpu.matmul`: the mode, and per tuned shape the times and the choice.
    pub fn to_json(&self) -> Value {
        let mode = match self.mode {
            Mode::Auto => "auto",
            Mode::Off => "off",
            Mode::On => "on",
        };
        let shapes: Vec<Value> = self
            .timings
            .iter()
            .map(|t| {
                json!({
                    "n_out": t.shape.n_out, "n_in": t.shape.n_in, "f32_out": t.shape.f32_out,
                    "matrices": t.matrices,
                    "cublas_us": [round2(t.cublas_us[0]), round2(t.cublas_us[1])],
                    "gemv_us": [round2(t.gemv_us[0]), round2(t.gemv_us[1])],
                    "gemv_up_to_tokens": t.gemv_up_to(),
                    "timed_as": if t.eager { "eager launches" } else { "CUDA graphs" },
                })
            })
            .collect();
        let timed_as = match &self.eager {
            None => "CUDA graphs".to_owned(),
            Some(why) => format!("eager launches ({why})"),
        };
        json!({"gemv": mode, "timed_at_tokens": [1, GEMV_MAX_TOKENS], "timed_as": timed_as,
               "shapes": shapes})
    }
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// Scratch input and outputs for timing (freed after tuning).
struct Bench {
    x: cudarc::driver::CudaSlice<bf16>,
    out: cudarc::driver::CudaSlice<bf16>,
    out_f32: cudarc::driver::CudaSlice<f32>,
}

/// Graph launches per measurement (one pass over a shape's matrices each), and
/// measurements per kernel (alternating cuBLAS and GEMV; the fastest counts).
const PASSES: usize = 3;
const ROUNDS: usize = 5;
/// How long the GPU is kept busy before the first measurement (clocks ramp up).
const WARM_UP_MS: f64 = 50.0;
/// GEMV must beat cuBLAS by this fraction to be chosen (noise must not flip a choice
/// between runs: the two round differently).
const MARGIN: f64 = 0.03;

impl Bench {
    fn new(gpu: &Gpu, groups: &[(Shape, Vec<Dev<bf16>>)]) -> Result<Bench> {
        let max_in = groups.iter().map(|g| g.0.n_in).max().unwrap_or(1);
        let max_out = groups.iter().map(|g| g.0.n_out).max().unwrap_or(1);
        // Small non-zero inputs (zeros can make tensor cores draw less power).
        let x: Vec<bf16> = (0..GEMV_MAX_TOKENS * max_in)
            .map(|i| bf16::from_f32(((i % 17) as f32 - 8.0) / 64.0))
            .collect();
        Ok(Bench {
            x: gpu.upload(&x, "matmul tuning input")?,
            out: gpu.zeros(GEMV_MAX_TOKENS * max_out, "matmul tuning output")?,
            out_f32: gpu.zeros(GEMV_MAX_TOKENS * max_out, "matmul tuning output (f32)")?,
        })
    }

    /// Queues one pass of `shape`'s products over `mats` with cuBLAS or GEMV.
    fn pass(
        &self,
        gpu: &Gpu,
        shape: Shape,
        mats: &[Dev<bf16>],
        tokens: usize,
        use_gemv: bool,
    ) -> Result<()> {
        let x = Dev::of(&self.x);
        let dims = (tokens, shape.n_in, shape.n_out);
        for &w in mats {
            if shape.f32_out {
                product(gpu, use_gemv, Dev::of(&self.out_f32), x, w, dims)?;
            } else {
                product(gpu, use_gemv, Dev::of(&self.out), x, w, dims)?;
            }
        }
        Ok(())
    }

    /// µs per product of `shape` with cuBLAS and GEMV at 1 and 8 tokens. Each pass is
    /// captured into a CUDA graph and the graph is what is timed, so the GPU runs the
    /// products back to back as in a decode step's graph; host launch costs (several µs
    /// per cuBLAS call, as long as a small matrix takes) are not measured. With `eager`
    /// set (graphs off, or a capture failed: then it is set here, saying why) the passes
    /// are timed as eager launches instead.
    fn time(
        &self,
        gpu: &Gpu,
        shape: Shape,
        mats: &[Dev<bf16>],
        warm: &mut bool,
        eager: &mut Option<String>,
    ) -> Result<Timing> {
        let mut t = Timing {
            shape,
            matrices: mats.len(),
            cublas_us: [f64::INFINITY; 2],
            gemv_us: [f64::INFINITY; 2],
            eager: false,
        };
        if mats.is_empty() {
            return Ok(t);
        }
        let x = Dev::of(&self.x);
        for (i, tokens) in [1, GEMV_MAX_TOKENS].into_iter().enumerate() {
            let fits = mats.iter().all(|&w| gemv_fits(x, w, tokens, shape.n_in));
            // Eager passes first: cuBLAS picks and loads its kernels, and GEMV is
            // launched once, outside any capture.
            self.pass(gpu, shape, mats, tokens, false)?;
            if fits {
                self.pass(gpu, shape, mats, tokens, true)?;
            }
            let (cublas, gemv) = self.prepare(gpu, shape, mats, tokens, fits, eager);
            t.eager |= cublas.is_none();
            let run = |g: &Option<CudaGraph>, use_gemv: bool| {
                timed(gpu, g, || self.pass(gpu, shape, mats, tokens, use_gemv))
            };
            if !*warm {
                warm_up(|| run(&cublas, false))?;
                *warm = true;
            }
            for _ in 0..ROUNDS {
                let per = |ms: f64| ms * 1e3 / (PASSES * mats.len()) as f64;
                t.cublas_us[i] = t.cublas_us[i].min(per(run(&cublas, false)?));
                if fits {
                    t.gemv_us[i] = t.gemv_us[i].min(per(run(&gemv, true)?));
                } // else stays infinite: never chosen
            }
        }
        Ok(t)
    }

    /// The cuBLAS and GEMV passes captured as graphs, or `None`s (timed as eager launches)
    /// when `eager` is set or a capture fails (which sets it): both the same way, so the
    /// comparison is fair.
    fn prepare(
        &self,
        gpu: &Gpu,
        shape: Shape,
        mats: &[Dev<bf16>],
        tokens: usize,
        fits: bool,
        eager: &mut Option<String>,
    ) -> (Option<CudaGraph>, Option<CudaGraph>) {
        if eager.is_some() {
            return (None, None);
        }
        let capture = |use_gemv: bool| {
            gpu.capture("matmul tuning", || {
                self.pass(gpu, shape, mats, tokens, use_gemv)
            })
        };
        let captured = capture(false).and_then(|c| {
            let g = if fits { Some(capture(true)?) } else { None };
            Ok((c, g))
        });
        match captured {
            Ok((c, g)) => (Some(c), g),
            Err(e) => {
                *eager = Some(format!("a capture failed: {e}"));
                (None, None)
            }
        }
    }
}

/// Keeps the GPU busy with `run` (one measurement) for about [`WARM_UP_MS`] (clocks
/// ramp up under load).
fn warm_up(mut run: impl FnMut() -> Result<f64>) -> Result<()> {
    let mut spent = 0.0;
    for _ in 0..10_000 {
        spent += run()?;
        if spent >= WARM_UP_MS {
            break;
        }
    }
    Ok(())
}

/// Milliseconds [`PASSES`] launches of `graph` take on the device (events around them),
/// or of `eager` passes without a graph.
fn timed(gpu: &Gpu, graph: &Option<CudaGraph>, eager: impl Fn() -> Result<()>) -> Result<f64> {
    let flags = Some(cudarc::driver::sys::CUevent_flags::CU_EVENT_DEFAULT);
    let event = || {
        gpu.stream
            .record_event(flags)
            .map_err(|e| device_error("cuEventRecord (matmul tuning)", e))
    };
    let start = event()?;
    for _ in 0..PASSES {
        match graph {
            Some(g) => g
                .launch()
                .map_err(|e| device_error("cuGraphLaunch (matmul tuning)", e))?,
            None => eager()?,
        }
    }
    let end = event()?;
    let ms = start
        .elapsed_ms(&end)
        .map_err(|e| device_error("cuEventElapsedTime (matmul tuning)", e))?;
    Ok(f64::from(ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timing(cublas: [f64; 2], gemv: [f64; 2]) -> Timing {
        Timing {
            shape: Shape {
                n_out: 4096,
                n_in: 1024,
                f32_out: false,
            },
            matrices: 28,
            cublas_us: cublas,
            gemv_us: gemv,
            eager: false,
        }
    }

    #[test]
    fn the_faster_kernel_is_kept_per_token_count() {
        assert_eq!(timing([5.0, 9.0], [4.0, 8.0]).gemv_up_to(), 8);
        assert_eq!(timing([5.0, 9.0], [4.0, 10.0]).gemv_up_to(), 1);
        assert_eq!(timing([5.0, 9.0], [6.0, 8.0]).gemv_up_to(), 0);
        // Within the 3% margin cuBLAS stays.
        assert_eq!(timing([5.0, 9.0], [4.9, 8.9]).gemv_up_to(), 0);
        // A shape GEMV cannot take stays infinite and loses.
        let never = [f64::INFINITY; 2];
        assert_eq!(timing([5.0, 9.0], never).gemv_up_to(), 0);
    }

    #[test]
    fn modes_parse_and_bad_values_name_the_variable() {
        assert_eq!(Mode::parse(None).unwrap(), Mode::Auto);
        assert_eq!(Mode::parse(Some("auto")).unwrap(), Mode::Auto);
        assert_eq!(Mode::parse(Some("0")).unwrap(), Mode::Off);
        assert_eq!(Mode::parse(Some("on")).unwrap(), Mode::On);
        let e = Mode::parse(Some("fast")).unwrap_err().to_string();
        assert!(
            e.contains("RILL_CUDA_GEMV") && e.contains("\"fast\""),
            "{e}"
        );
    }

    #[test]
    fn choices_follow_the_table() {
        let shape = Shape {
            n_out: 4096,
            n_in: 1024,
            f32_out: false,
        };
        let mut m = Matmul::cublas_only();
        m.up_to.insert(shape, 1);
        let x = crate::backend::cuda::ops::launch::tests::fake::<bf16>(0x1000, 8 * 1024);
        let w = crate::backend::cuda::ops::launch::tests::fake::<bf16>(0x10_0000, 4096 * 1024);
        assert!(m.gemv_for(4096, 1024, false, x, w, 1));
        assert!(!m.gemv_for(4096, 1024, false, x, w, 2));
        assert!(!m.gemv_for(4096, 1024, true, x, w, 1)); // another shape
        assert!(!Matmul::cublas_only().gemv_for(4096, 1024, false, x, w, 1));
        let j = m.to_json();
        assert_eq!(j["gemv"], "off");
        assert_eq!(j["timed_at_tokens"], json!([1, 8]));
    }
}
