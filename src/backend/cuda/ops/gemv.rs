//! The wrapper of the decode GEMV kernels (gemv.cu): `out[m, n_out] = x[m, n_in] ·
//! w[n_out, n_in]ᵀ` for 1 to [`GEMV_MAX_TOKENS`] tokens ([`gemv`], bf16 or f32 out). `linear` in `super::super::linear` decides per weight shape whether
//! these or cuBLAS run.

use half::bf16;

use super::dev::Dev;
use super::launch::{ceil_div, Check, Launch, Launcher};
use crate::error::Result;

/// Threads of a block: exactly this (`THREADS`; other sizes trap).
pub const GEMV_THREADS: usize = 256;
/// Output rows per block (`WARPS`: a warp per row).
pub const GEMV_ROWS: usize = 8;
/// The most tokens one launch takes (`MAX_M`).
pub const GEMV_MAX_TOKENS: usize = 8;

/// Whether the GEMV kernels take this product: 1..=8 tokens, `n_in` a multiple of 8, and
/// 16-byte aligned operands (the kernel's 16-byte loads).
pub fn gemv_fits(x: Dev<bf16>, w: Dev<bf16>, tokens: usize, n_in: usize) -> bool {
    (1..=GEMV_MAX_TOKENS).contains(&tokens)
        && n_in.is_multiple_of(8)
        && x.ptr().is_multiple_of(16)
        && w.ptr().is_multiple_of(16)
}

/// An output element type of the GEMV kernels: bf16 (`gemv_kernel`) or f32
/// (`gemv_f32_kernel`, the logits).
pub trait GemvOut: Copy {
    const KERNEL: &'static str;
}

impl GemvOut for bf16 {
    const KERNEL: &'static str = "gemv_kernel";
}

impl GemvOut for f32 {
    const KERNEL: &'static str = "gemv_f32_kernel";
}

/// `out = x · wᵀ`, out bf16 or f32.
pub fn gemv<T: GemvOut>(
    gpu: &dyn Launcher,
    out: Dev<T>,
    x: Dev<bf16>,
    w: Dev<bf16>,
    tokens: usize,
    n_in: usize,
    n_out: usize,
) -> Result<()> {
    let out = (out.ptr(), out.len(), std::mem::size_of::<T>());
    gpu.launch(&plan_gemv(T::KERNEL, out, x, w, (tokens, n_in, n_out))?)
}

pub(super) fn plan_gemv(
    kernel: &'static str,
    (out_ptr, out_len, out_bytes): (u64, usize, usize),
    x: Dev<bf16>,
    w: Dev<bf16>,
    (tokens, n_in, n_out): (usize, usize, usize),
) -> Result<Vec<Launch>> {
    if tokens == 0 || n_out == 0 {
        return Ok(vec![]);
    }
    let c = Check(kernel);
    c.require(tokens <= GEMV_MAX_TOKENS, || {
        format!("{tokens} tokens are over {GEMV_MAX_TOKENS}")
    })?;
    c.require(n_in > 0 && n_in.is_multiple_of(8), || {
        format!("n_in {n_in} is not a positive multiple of 8")
    })?;
    c.aligned("x", x, 16)?;
    c.aligned("w", w, 16)?;
    let n_out_all = c.product("out", &[tokens, n_out])?;
    super::check_len(kernel, "out", out_len, n_out_all)?;
    let nx = c.product("x", &[tokens, n_in])?;
    // out may not overlap x (`__restrict__`).
    let (o0, o1) = (out_ptr, out_ptr + (n_out_all * out_bytes) as u64);
    let (x0, x1) = (x.ptr(), x.ptr() + (nx * 2) as u64);
    c.require(o1 <= x0 || x1 <= o0, || "out and x overlap".into())?;
    let args = vec![
        super::launch::Arg::Ptr(out_ptr),
        c.buf("x", x, nx)?,
        c.buf("w", w, c.product("w", &[n_out, n_in])?)?,
        c.int("m", tokens)?,
        c.int("n_out", n_out)?,
        c.int("n_in", n_in)?,
    ];
    let grid = (ceil_div(n_out, GEMV_ROWS), 1, 1);
    Ok(vec![Launch::new(kernel, grid, GEMV_THREADS, args)?])
}

#[cfg(test)]
mod tests {
    use super::super::launch::tests::{assert_signature, define, fake};
    use super::super::launch::Arg;
    use super::*;

    #[test]
    fn plans_follow_the_kernel_signature_and_defines() {
        assert_eq!(define("gemv.cu", "THREADS"), GEMV_THREADS);
        assert_eq!(define("gemv.cu", "MAX_M"), GEMV_MAX_TOKENS);
        assert_eq!(define("gemv.cu", "THREADS") / 32, GEMV_ROWS);
        let x = fake::<bf16>(0x1000, 3 * 1024);
        let w = fake::<bf16>(0x10_0000, 4097 * 1024);
        for (k, bytes) in [
            (<bf16 as GemvOut>::KERNEL, 2),
            (<f32 as GemvOut>::KERNEL, 4),
        ] {
            let p = plan_gemv(k, (0x100_0000, 3 * 4097, bytes), x, w, (3, 1024, 4097)).unwrap();
            assert_signature(&p);
            assert_eq!((p[0].grid, p[0].block), ((513, 1, 1), 256));
            assert_eq!(
                p[0].args[3..],
                [Arg::Int(3), Arg::Int(4097), Arg::Int(1024)]
            );
        }
        let none = plan_gemv("gemv_kernel", (0x100_0000, 0, 2), x, w, (0, 1024, 4097));
        assert!(none.unwrap().is_empty());
        assert!(gemv_fits(x, w, 1, 1024) && gemv_fits(x, w, 8, 1024));
        assert!(!gemv_fits(x, w, 9, 1024) && !gemv_fits(x, w, 0, 1024));
        assert!(!gemv_fits(x, w, 1, 1020));
        assert!(!gemv_fits(fake::<bf16>(0x1002, 1024), w, 1, 1024));
    }

    #[test]
    fn bad_shapes_and_buffers_are_refused() {
        let err = |r: Result<Vec<Launch>>| r.unwrap_err().to_string();
        let x = fake::<bf16>(0x1000, 9 * 1024);
        let w = fake::<bf16>(0x10_0000, 64 * 1024);
        let out = (0x100_0000, 9 * 64, 2);
        let m = err(plan_gemv("gemv_kernel", out, x, w, (9, 1024, 64)));
        assert!(m.contains("gemv_kernel: 9 tokens are over 8"), "{m}");
        let m = err(plan_gemv("gemv_kernel", out, x, w, (2, 1020, 64)));
        assert!(
            m.contains("n_in 1020 is not a positive multiple of 8"),
            "{m}"
        );
        let m = err(plan_gemv("gemv_kernel", out, x, w, (2, 1024, 65)));
        assert!(m.contains("argument `w`"), "{m}");
        let m = err(plan_gemv(
            "gemv_f32_kernel",
            (0x100_0000, 127, 4),
            x,
            w,
            (2, 1024, 64),
        ));
        assert!(m.contains("argument `out`"), "{m}");
        let odd = fake::<bf16>(0x1008, 2 * 1024);
        let m = err(plan_gemv("gemv_kernel", out, odd, w, (2, 1024, 64)));
        assert!(m.contains("not 16-byte aligned"), "{m}");
        let m = err(plan_gemv(
            "gemv_kernel",
            (0x1000, 128, 2),
            x,
            w,
            (2, 1024, 64),
        ));
        assert!(m.contains("out and x overlap"), "{m}");
        // Just below x: 128 bf16 outputs end at x, 128 f32 ones reach into it.
        let below = (0x1000 - 256, 128, 2);
        assert!(plan_gemv("gemv_kernel", below, x, w, (2, 1024, 64)).is_ok());
        let m = err(plan_gemv(
            "gemv_f32_kernel",
            (0x1000 - 256, 128, 4),
            x,
            w,
            (2, 1024, 64),
        ));
        assert!(m.contains("out and x overlap"), "{m}");
    }
}
