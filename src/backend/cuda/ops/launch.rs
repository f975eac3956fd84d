//! The plumbing every wrapper of [`super`] shares: a [`Launch`] (entry point, grid, block
//! and the arguments in the kernel's parameter order, decided and checked on the host by
//! a `plan_*` function without touching the GPU, so unit tests can inspect it), the
//! [`Check`]s that build its arguments (lengths, `int` ranges, overlaps, alignment, each
//! failure an [`Error::Internal`] naming the kernel and the argument), and [`run`], the one
//! place that launches.

use cudarc::driver::{LaunchConfig, PushKernelArg};

use super::dev::Dev;
use crate::backend::cuda::device::{device_error, Gpu};
use crate::error::{Error, Result};

/// Largest `gridDim.x` (2^31 - 1).
pub const MAX_GRID_X: usize = i32::MAX as usize;
/// Largest `gridDim.y` and `gridDim.z`.
pub const MAX_GRID_YZ: usize = 65_535;
/// Largest block (threads).
pub const MAX_BLOCK: usize = 1024;

/// One kernel argument, with the C type of its parameter.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Arg {
    /// Any pointer parameter (a `CUdeviceptr`, 8 bytes).
    Ptr(u64),
    /// `int`.
    Int(i32),
    /// `long long`.
    Long(i64),
    /// `float`.
    Float(f32),
}

/// A checked launch of one entry point. Built only by [`Launch::new`] from arguments made
/// by a [`Check`], in a `plan_*` function of this module that checked every extent the
/// kernel touches.
#[derive(Clone, Debug, PartialEq)]
pub struct Launch {
    pub kernel: &'static str,
    pub grid: (u32, u32, u32),
    pub block: u32,
    pub args: Vec<Arg>,
}

impl Launch {
    /// A launch of `kernel` over `grid` blocks of `block` threads (1-D blocks, no dynamic
    /// shared memory: every kernel of `kernels/` uses static shared memory only). Refuses
    /// an empty or too large grid and a block that is not a multiple of 32 up to 1024.
    pub fn new(
        kernel: &'static str,
        grid: (usize, usize, usize),
        block: usize,
        args: Vec<Arg>,
    ) -> Result<Launch> {
        let c = Check(kernel);
        let dim = |name: &str, v: usize, max: usize| -> Result<u32> {
            if v == 0 || v > max {
                return Err(c.error(format!("{name} = {v} is outside 1..={max}")));
            }
            Ok(v as u32)
        };
        let grid = (
            dim("gridDim.x", grid.0, MAX_GRID_X)?,
            dim("gridDim.y", grid.1, MAX_GRID_YZ)?,
            dim("gridDim.z", grid.2, MAX_GRID_YZ)?,
        );
        let block = dim("blockDim.x", block, MAX_BLOCK)?;
        if !block.is_multiple_of(32) {
            return Err(c.error(format!("blockDim.x = {block} is not a multiple of 32")));
        }
        Ok(Launch {
            kernel,
            grid,
            block,
            args,
        })
    }
}

/// What runs [`Launch`]es: the [`Gpu`] (queued on its stream), or the CPU kernel
/// emulator of the tests (`super::super::emu`, feature `kernel-emu`). Every wrapper of
/// [`super`] takes one.
pub trait Launcher {
    /// Runs `launches` in order.
    fn launch(&self, launches: &[Launch]) -> Result<()>;
}

impl Launcher for Gpu {
    fn launch(&self, launches: &[Launch]) -> Result<()> {
        run(self, launches)
    }
}

/// Queues `launches` on the GPU's stream, in order.
fn run(gpu: &Gpu, launches: &[Launch]) -> Result<()> {
    for l in launches {
        let mut b = gpu.stream.launch_builder(gpu.function(l.kernel)?);
        for a in &l.args {
            match a {
                Arg::Ptr(v) => b.arg(v),
                Arg::Int(v) => b.arg(v),
                Arg::Long(v) => b.arg(v),
                Arg::Float(v) => b.arg(v),
            };
        }
        let cfg = LaunchConfig {
            grid_dim: l.grid,
            block_dim: (l.block, 1, 1),
            shared_mem_bytes: 0,
        };
        // SAFETY: `l` was built by a `plan_*` function of this module: its arguments are
        // in the order and of the C types of the entry point's parameter list (u64 for a
        // pointer, i32 for int, i64 for long long, f32 for float; the unit test
        // `launch_arguments_match_the_kernel_signatures` checks every plan against the
        // `.cu` sources), and every pointer argument came from a `Check` that verified the
        // buffer holds every element the kernel reads or writes for that shape (the
        // kernel's documented layout), that outputs do not overlap inputs where the kernel
        // forbids it, and alignment where it loads pairs (one exception, documented on
        // `prefill_attention`: its q/out rows past `max_q_len` are bounded by
        // `cu_seqlens_q`, which is on the device; the runner's staging builds both from
        // one batch and checks them against the buffers). The grid and block are within
        // the device limits and the kernel's documented launch shape (`Launch::new`). The
        // buffers outlive the work by `Dev`'s contract (stream-ordered frees).
        unsafe { b.launch(cfg) }.map_err(|e| device_error(format!("launch of {}", l.kernel), e))?;
    }
    Ok(())
}

/// The checks of one kernel's arguments: each failure is an [`Error::Internal`] that
/// starts with the kernel's name.
#[derive(Clone, Copy)]
pub struct Check(pub &'static str);

impl Check {
    pub fn error(self, message: impl std::fmt::Display) -> Error {
        Error::Internal(format!("{}: {message}", self.0))
    }

    /// Fails with `message` unless `ok`.
    pub fn require(self, ok: bool, message: impl FnOnce() -> String) -> Result<()> {
        if ok {
            Ok(())
        } else {
            Err(self.error(message()))
        }
    }

    /// `v` as a C `int` argument.
    pub fn int(self, arg: &str, v: usize) -> Result<Arg> {
        Ok(Arg::Int(self.fit_int(arg, v)?))
    }

    /// `v` as an i32 (the kernel indexes with `int`).
    pub fn fit_int(self, arg: &str, v: usize) -> Result<i32> {
        i32::try_from(v).map_err(|_| self.error(format!("{arg} = {v} does not fit a C int")))
    }

    /// `v` as a C `long long` argument.
    pub fn long(self, arg: &str, v: usize) -> Result<Arg> {
        i64::try_from(v)
            .map(Arg::Long)
            .map_err(|_| self.error(format!("{arg} = {v} does not fit a C long long")))
    }

    /// The product of `factors` (the size of `what`), refusing overflow and anything past
    /// `i64::MAX` (the kernels' widest index).
    pub fn product(self, what: &str, factors: &[usize]) -> Result<usize> {
        factors
            .iter()
            .try_fold(1usize, |acc, &f| acc.checked_mul(f))
            .filter(|&n| n <= i64::MAX as usize)
            .ok_or_else(|| self.error(format!("the size of {what} ({factors:?}) overflows")))
    }

    /// Elements spanned by `count` rows of `width` elements, `stride` apart:
    /// `(count - 1) * stride + width`, 0 when there are no rows or no columns. Rows may not
    /// overlap (`stride >= width` when there are two or more).
    pub fn rows(self, arg: &str, count: usize, stride: usize, width: usize) -> Result<usize> {
        if count == 0 || width == 0 {
            return Ok(0);
        }
        if count > 1 && stride < width {
            return Err(self.error(format!(
                "{arg}: row stride {stride} is less than the row width {width} (rows overlap)"
            )));
        }
        (count - 1)
            .checked_mul(stride)
            .and_then(|n| n.checked_add(width))
            .filter(|&n| n <= i64::MAX as usize)
            .ok_or_else(|| {
                self.error(format!(
                    "{arg}: {count} rows of stride {stride} and width {width} overflow"
                ))
            })
    }

    /// The pointer of `d` after checking that it holds `need` elements.
    pub fn buf<T>(self, arg: &str, d: Dev<T>, need: usize) -> Result<Arg> {
        check_len(self.0, arg, d.len(), need)?;
        Ok(Arg::Ptr(d.ptr()))
    }

    /// [`Check::buf`] for `count` rows of `width` elements `stride` apart.
    pub fn strided<T>(
        self,
        arg: &str,
        d: Dev<T>,
        count: usize,
        stride: usize,
        width: usize,
    ) -> Result<Arg> {
        let need = self.rows(arg, count, stride, width)?;
        self.buf(arg, d, need)
    }

    /// Fails when the first `na` elements of `a` and the first `nb` of `b` share a byte.
    pub fn disjoint<A, B>(
        self,
        (name_a, a, na): (&str, Dev<A>, usize),
        (name_b, b, nb): (&str, Dev<B>, usize),
    ) -> Result<()> {
        let (a0, a1) = a.byte_range(na);
        let (b0, b1) = b.byte_range(nb);
        let overlap = a0 < a1 && b0 < b1 && a0 < b1 && b0 < a1;
        self.require(!overlap, || {
            format!("{name_a} and {name_b} overlap, which the kernel does not allow")
        })
    }

    /// [`Check::disjoint`], except that the very same rows (same address, same stride)
    /// are allowed: kernels documented to work in place.
    pub fn same_or_disjoint<T>(
        self,
        (name_a, a, stride_a): (&str, Dev<T>, usize),
        (name_b, b, stride_b): (&str, Dev<T>, usize),
        (count, width): (usize, usize),
    ) -> Result<()> {
        if a.ptr() == b.ptr() && (stride_a == stride_b || count <= 1) {
            return Ok(());
        }
        let na = self.rows(name_a, count, stride_a, width)?;
        let nb = self.rows(name_b, count, stride_b, width)?;
        self.disjoint((name_a, a, na), (name_b, b, nb))
    }

    /// Fails unless `d`'s address is a multiple of `bytes`.
    pub fn aligned<T>(self, arg: &str, d: Dev<T>, bytes: u64) -> Result<()> {
        self.require(d.ptr().is_multiple_of(bytes), || {
            format!(
                "{arg} at {:#x} is not {bytes}-byte aligned (the kernel loads pairs)",
                d.ptr()
            )
        })
    }
}

/// Refuses a buffer of `have` elements where kernel `kernel` touches `need` of argument
/// `arg`.
pub fn check_len(kernel: &str, arg: &str, have: usize, need: usize) -> Result<()> {
    if have < need {
        return Err(Error::Internal(format!(
            "{kernel}: argument `{arg}` holds {have} elements, the launch touches {need}"
        )));
    }
    Ok(())
}

/// `ceil(a / b)` for b > 0.
pub fn ceil_div(a: usize, b: usize) -> usize {
    a.div_ceil(b)
}

/// The grid of a row kernel: one block per token along x, `ceil(n / per_block)` blocks
/// along y (capped at the limit: those kernels stride over the row with
/// `blockDim.x * gridDim.y`).
pub fn row_grid(tokens: usize, n: usize, per_block: usize) -> (usize, usize, usize) {
    (tokens, ceil_div(n, per_block).clamp(1, MAX_GRID_YZ), 1)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::backend::cuda::kernels;

    /// A fake buffer for plans that are never launched.
    pub fn fake<T>(ptr: u64, len: usize) -> Dev<T> {
        // SAFETY: test plans are inspected, never launched.
        unsafe { Dev::from_raw(ptr, len) }
    }

    /// The parameter types of entry point `kernel` in the embedded `.cu` sources.
    pub fn signature(kernel: &str) -> Vec<&'static str> {
        // The definition: `__global__ void [__launch_bounds__(..)] NAME(params)` (the
        // headers' comments also write `NAME(...)`).
        let params = |src: &'static str| -> Option<&'static str> {
            src.match_indices("__global__ void ").find_map(|(i, m)| {
                let mut rest = src[i + m.len()..].trim_start();
                if let Some(r) = rest.strip_prefix("__launch_bounds__(") {
                    rest = r[r.find(')')? + 1..].trim_start();
                }
                let r = rest.strip_prefix(kernel)?.strip_prefix('(')?;
                Some(&r[..r.find(')')?])
            })
        };
        let (file, params) = kernels::kernel_files()
            .find_map(|f| Some((f, params(kernels::source(f)?)?)))
            .unwrap_or_else(|| panic!("no source defines {kernel}"));
        params
            .split(',')
            .map(|p| {
                let p = p.split_whitespace().collect::<Vec<_>>().join(" ");
                if p.contains('*') {
                    "ptr"
                } else if p.starts_with("long long ") {
                    "long long"
                } else if p.starts_with("int ") {
                    "int"
                } else if p.starts_with("float ") {
                    "float"
                } else {
                    panic!("{file}: {kernel}: unknown parameter type in {p:?}")
                }
            })
            .collect()
    }

    /// Checks that every launch's arguments have the kernel's parameter types, in order.
    pub fn assert_signature(launches: &[Launch]) {
        for l in launches {
            let want = signature(l.kernel);
            let got: Vec<&str> = l
                .args
                .iter()
                .map(|a| match a {
                    Arg::Ptr(_) => "ptr",
                    Arg::Int(_) => "int",
                    Arg::Long(_) => "long long",
                    Arg::Float(_) => "float",
                })
                .collect();
            assert_eq!(got, want, "arguments of {}", l.kernel);
        }
    }

    /// `#define NAME value` of kernel file `file`.
    pub fn define(file: &str, name: &str) -> usize {
        let src = kernels::source(file).unwrap();
        src.lines()
            .find_map(|l| l.strip_prefix(&format!("#define {name} ")))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("{file}: no numeric #define {name}"))
    }

    #[test]
    fn short_buffers_are_refused_naming_kernel_and_argument() {
        let m = check_len("rms_norm_kernel", "x", 10, 12)
            .unwrap_err()
            .to_string();
        assert!(
            m.contains("rms_norm_kernel: argument `x` holds 10 elements, the launch touches 12"),
            "{m}"
        );
        assert!(check_len("k", "x", 12, 12).is_ok());
        let c = Check("k");
        assert!(c.buf("out", fake::<u16>(0x100, 5), 6).is_err());
        assert_eq!(
            c.buf("out", fake::<u16>(0x100, 6), 6).unwrap(),
            Arg::Ptr(0x100)
        );
        // A null optional argument passes when nothing is touched.
        assert_eq!(c.buf("ff", Dev::<f32>::null(), 0).unwrap(), Arg::Ptr(0));
    }

    #[test]
    fn row_extents_ints_and_products() {
        let c = Check("k");
        assert_eq!(c.rows("x", 3, 10, 4).unwrap(), 24);
        assert_eq!(c.rows("x", 1, 0, 4).unwrap(), 4);
        assert_eq!(c.rows("x", 0, 10, 4).unwrap(), 0);
        assert_eq!(c.rows("x", 5, 0, 0).unwrap(), 0);
        let m = c.rows("x", 2, 3, 4).unwrap_err().to_string();
        assert!(
            m.contains("k: x: row stride 3 is less than the row width 4"),
            "{m}"
        );
        assert!(c.rows("x", usize::MAX, 2, 1).is_err());
        assert_eq!(c.int("n", 7).unwrap(), Arg::Int(7));
        let m = c.int("n", 1 << 31).unwrap_err().to_string();
        assert!(m.contains("n = 2147483648 does not fit a C int"), "{m}");
        assert_eq!(c.long("s", 1 << 40).unwrap(), Arg::Long(1 << 40));
        assert_eq!(c.product("p", &[2, 3, 4]).unwrap(), 24);
        assert!(c.product("p", &[usize::MAX, 2]).is_err());
        assert!(c.product("p", &[1 << 62, 4]).is_err());
    }

    #[test]
    fn overlap_and_alignment() {
        let c = Check("k");
        let a = fake::<u16>(0x1000, 100);
        let b = fake::<u16>(0x1000 + 2 * 50, 50);
        assert!(c.disjoint(("a", a, 50), ("b", b, 50)).is_ok());
        let m = c
            .disjoint(("a", a, 51), ("b", b, 50))
            .unwrap_err()
            .to_string();
        assert!(m.contains("a and b overlap"), "{m}");
        // Empty ranges never overlap.
        assert!(c.disjoint(("a", a, 0), ("b", a, 10)).is_ok());
        assert!(c
            .same_or_disjoint(("out", a, 8), ("x", a, 8), (4, 8))
            .is_ok());
        assert!(c
            .same_or_disjoint(("out", a, 8), ("x", a, 16), (4, 8))
            .is_err());
        let shifted = a.at(1).unwrap();
        assert!(c
            .same_or_disjoint(("out", a, 8), ("x", shifted, 8), (4, 8))
            .is_err());
        assert!(c.aligned("kc", a, 4).is_ok());
        let m = c.aligned("kc", shifted, 4).unwrap_err().to_string();
        assert!(m.contains("kc at 0x1002 is not 4-byte aligned"), "{m}");
    }

    #[test]
    fn launch_shapes_are_within_the_limits() {
        let ok = Launch::new("k", (MAX_GRID_X, MAX_GRID_YZ, MAX_GRID_YZ), 1024, vec![]).unwrap();
        assert_eq!(ok.grid, (i32::MAX as u32, 65535, 65535));
        for (grid, block) in [
            ((0, 1, 1), 32),
            ((1, 0, 1), 32),
            ((1, 1, 65_536), 32),
            ((MAX_GRID_X + 1, 1, 1), 32),
            ((1, 1, 1), 0),
            ((1, 1, 1), 1056),
            ((1, 1, 1), 100),
        ] {
            let e = Launch::new("k", grid, block, vec![])
                .unwrap_err()
                .to_string();
            assert!(e.contains("internal error: k: "), "{e}");
        }
        assert_eq!(row_grid(7, 1000, 256), (7, 4, 1));
        assert_eq!(row_grid(7, 1, 256), (7, 1, 1));
        assert_eq!(row_grid(7, 256 * 70_000, 256), (7, MAX_GRID_YZ, 1));
    }

    #[test]
    fn signatures_are_read_from_the_sources() {
        assert_eq!(
            signature("silu_and_mul_kernel"),
            ["ptr", "ptr", "int", "int"]
        );
        assert_eq!(
            signature("argmax_kernel"),
            ["ptr", "ptr", "long long", "int", "int"]
        );
        // `__launch_bounds__(THREADS) prefill_attention_kernel(`: found after the macro.
        assert_eq!(signature("prefill_attention_kernel").len(), 17);
        assert_eq!(define("paged_attention.cu", "PARTITION_SIZE"), 512);
    }
}
