//! The parity tests' shared helpers: the device ([`gpu`], [`up`], [`down`], from the
//! crate root's `device` module), a seeded [`Rng`], output buffers ([`Out`]: uploaded
//! poisoned or with given contents, then downloaded and checked), and the comparisons ([`close_scaled`], [`Tol`]) that name the kernel,
//! the shape, the worst error and the first bad index.

use cudarc::driver::DeviceRepr;
use half::{bf16, f16};
use rill::backend::cuda::ops::Dev;

/// The device the tests run on: the GPU (tests/cuda_kernels.rs) or the CPU kernel
/// emulator (tests/kernel_emu.rs), whichever crate root this module tree is part of.
pub use crate::device::{attn_scratch, dev, down, gpu, up, Buf};

/// `r.map_err(to string, prefixed by what)`.
pub trait Ctx<T> {
    fn ctx(self, what: &str) -> Result<T, String>;
}

impl<T> Ctx<T> for rill::Result<T> {
    fn ctx(self, what: &str) -> Result<T, String> {
        self.map_err(|e| format!("{what}: {e}"))
    }
}

/// Test data from rill's seeded generator (xoshiro256**), with the draws the tests need.
pub struct Rng(rill::sampling::rng::Rng);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(rill::sampling::rng::Rng::new(seed))
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        self.0.next_f64()
    }

    /// Uniform in [lo, hi).
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }

    /// Uniform in 0..n.
    pub fn below(&mut self, n: usize) -> usize {
        (self.unit() * n as f64) as usize % n.max(1)
    }

    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            v.swap(i, self.below(i + 1));
        }
    }

    /// `n` bf16 values uniform in [-amp, amp) (an exact zero is as likely as any value).
    pub fn bf16s(&mut self, n: usize, amp: f64) -> Vec<bf16> {
        (0..n)
            .map(|_| bf16::from_f64(self.range(-amp, amp)))
            .collect()
    }

    /// `n` f16 values uniform in [-amp, amp).
    pub fn f16s(&mut self, n: usize, amp: f64) -> Vec<f16> {
        (0..n)
            .map(|_| f16::from_f64(self.range(-amp, amp)))
            .collect()
    }

    /// `n` f32 values uniform in [lo, hi).
    pub fn f32s(&mut self, n: usize, lo: f64, hi: f64) -> Vec<f32> {
        (0..n).map(|_| self.range(lo, hi) as f32).collect()
    }
}

/// An element type of a kernel's buffers: its value for comparisons, its bits, and the
/// poison that fills an output before a launch (a NaN for floats; something no kernel
/// writes for integers).
pub trait Val: Copy + DeviceRepr + 'static {
    const POISON: Self;
    fn f64(self) -> f64;
    fn bits(self) -> u64;
}

impl Val for bf16 {
    const POISON: Self = bf16::from_bits(0xFFFF);
    fn f64(self) -> f64 {
        self.to_f64()
    }
    fn bits(self) -> u64 {
        self.to_bits() as u64
    }
}

impl Val for f16 {
    const POISON: Self = f16::from_bits(0xFFFF);
    fn f64(self) -> f64 {
        self.to_f64()
    }
    fn bits(self) -> u64 {
        self.to_bits() as u64
    }
}

impl Val for f32 {
    const POISON: Self = f32::from_bits(0xFFFF_FFFF);
    fn f64(self) -> f64 {
        self as f64
    }
    fn bits(self) -> u64 {
        self.to_bits() as u64
    }
}

impl Val for i32 {
    const POISON: Self = -0x5A5A_5A5A;
    fn f64(self) -> f64 {
        self as f64
    }
    fn bits(self) -> u64 {
        self as u32 as u64
    }
}

/// An output buffer: its device copy and its contents before the launch.
pub struct Out<T> {
    pub buf: Buf<T>,
    pub before: Vec<T>,
}

impl<T: Val> Out<T> {
    /// `n` elements of poison.
    pub fn poisoned(n: usize) -> Result<Out<T>, String> {
        Out::with(vec![T::POISON; n])
    }

    /// An in-place buffer starting as `contents`.
    pub fn with(contents: Vec<T>) -> Result<Out<T>, String> {
        Ok(Out {
            buf: up(&contents)?,
            before: contents,
        })
    }

    pub fn dev(&self) -> Dev<T> {
        dev(&self.buf)
    }

    /// Downloads the buffer and checks the elements at `written` (in order) against `want`
    /// within `tol`, and that every other element is bit for bit what it was.
    pub fn check(
        &self,
        what: &str,
        written: &[usize],
        want: &[f64],
        tol: Tol,
    ) -> Result<(), String> {
        self.check_scaled(what, written, want, None, tol)
    }

    /// [`Out::check`] with `tol.atol` scaled per element by `scale`.
    pub fn check_scaled(
        &self,
        what: &str,
        written: &[usize],
        want: &[f64],
        scale: Option<&[f64]>,
        tol: Tol,
    ) -> Result<(), String> {
        let got = down(&self.buf)?;
        let mut inside = vec![false; got.len()];
        for &i in written {
            inside[i] = true;
        }
        if let Some(i) =
            (0..got.len()).find(|&i| !inside[i] && got[i].bits() != self.before[i].bits())
        {
            return Err(format!(
                "{what}: element {i} outside the output was written: {:#x} -> {:#x}",
                self.before[i].bits(),
                got[i].bits()
            ));
        }
        let vals: Vec<f64> = written.iter().map(|&i| got[i].f64()).collect();
        close_scaled(what, &vals, want, scale, tol).map_err(|m| {
            let poisoned = written
                .iter()
                .filter(|&&i| got[i].bits() == T::POISON.bits())
                .count();
            if poisoned > 0 {
                format!("{m}; {poisoned} elements still hold the poison (not written)")
            } else {
                m
            }
        })
    }
}

/// Indices of `count` rows of `width` elements, `stride` apart, from `offset`.
pub fn rows(offset: usize, count: usize, stride: usize, width: usize) -> Vec<usize> {
    (0..count)
        .flat_map(|r| (0..width).map(move |j| offset + r * stride + j))
        .collect()
}

/// Element bound `atol * scale_i + rtol * |want_i|`; `norm` bounds ‖got − want‖ / ‖want‖.
#[derive(Clone, Copy, Debug)]
pub struct Tol {
    pub rtol: f64,
    pub atol: f64,
    pub norm: f64,
}

/// Bit-exact results (compared as values: ids, copies, exact conversions).
pub const EXACT: Tol = Tol {
    rtol: 0.0,
    atol: 0.0,
    norm: 0.0,
};

/// One rounding of an f32 result to bf16 (at most 2^-8 relative), plus f32-vs-f64
/// arithmetic (1e-5 relative; 1e-6 absolute for results near zero).
pub const BF16: Tol = Tol {
    rtol: 1.0 / 256.0 + 1e-5,
    atol: 1e-6,
    norm: 1.0 / 256.0 + 1e-5,
};

/// `got` against `want` (see [`Tol`], `atol` scaled per element by `scale`); NaN in
/// `got` never passes, infinities must match.
pub fn close_scaled(
    what: &str,
    got: &[f64],
    want: &[f64],
    scale: Option<&[f64]>,
    tol: Tol,
) -> Result<(), String> {
    if got.len() != want.len() {
        return Err(format!(
            "{what}: {} results, {} expected",
            got.len(),
            want.len()
        ));
    }
    let (mut bad, mut first) = (0usize, None);
    let (mut num, mut den, mut worst, mut worst_at) = (0.0f64, 0.0f64, 0.0f64, 0usize);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = (g - w).abs();
        let bound = tol.atol * scale.map_or(1.0, |s| s[i]) + tol.rtol * w.abs();
        // Infinities must match exactly (an infinite bound would pass anything).
        let ok = g == w || (!g.is_nan() && w.is_finite() && err <= bound);
        if !ok {
            bad += 1;
            first.get_or_insert(i);
        }
        if err.is_finite() {
            num += err * err;
            den += w * w;
            if err > worst {
                (worst, worst_at) = (err, i);
            }
        }
    }
    let rel = if den > 0.0 {
        (num / den).sqrt()
    } else {
        num.sqrt()
    };
    if bad == 0 && rel <= tol.norm {
        return Ok(());
    }
    let first = first.map_or(String::new(), |i| {
        format!("; first bad at {i}: got {} want {}", got[i], want[i])
    });
    Err(format!(
        "{what}: {bad} of {} elements out of tolerance (rtol {:e}, atol {:e}){first}; \
         max abs error {worst:e} at {worst_at} (got {} want {}); relative error norm \
         {rel:e} (bound {:e})",
        got.len(),
        tol.rtol,
        tol.atol,
        got.get(worst_at).copied().unwrap_or(f64::NAN),
        want.get(worst_at).copied().unwrap_or(f64::NAN),
        tol.norm
    ))
}

/// bf16/f16/f32 slices as f32.
pub fn f32s<T: Val>(v: &[T]) -> Vec<f32> {
    v.iter().map(|x| x.f64() as f32).collect()
}
