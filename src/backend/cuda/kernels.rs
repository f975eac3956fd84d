//! The kernel registry: every `kernels/*.cu` (and `*.cuh`) file, embedded at build time by
//! `build.rs`, and [`compile`], which builds a `.cu` file to PTX with NVRTC for one
//! compute capability.
//!
//! Options: `-std=c++17`, `--gpu-architecture=compute_XY`, and `-I` each CUDA header
//! folder found ([`cuda_include_dirs`]: `$RILL_CUDA_INCLUDE` (a `:`-separated list),
//! `$CUDA_HOME/include`, `/usr/local/cuda/include`). The embedded `*.cuh` files are given
//! to NVRTC in memory ([`nvrtc_program`]): nothing is written to disk but the PTX cache.
//!
//! PTX is cached under `${RILL_CACHE:-~/.cache/rill}/ptx/`, one file per (source hash,
//! arch, NVRTC version) ([`CacheKey`]), so a second start reads it instead of compiling.
//! The hash covers the `.cu` source, every embedded header and the options. The cache is
//! best effort: a file that cannot be read is compiled again, one that cannot be written
//! is reported in [`Compiled::cache_note`] and otherwise ignored.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use cudarc::nvrtc;

use super::nvrtc_program;
use super::probe::{guarded, ProbeError};
use crate::error::{Error, Result};

include!(concat!(env!("OUT_DIR"), "/cuda_kernels.rs"));

/// The embedded `.cu` files (names), the units [`compile`] takes.
pub fn kernel_files() -> impl Iterator<Item = &'static str> {
    KERNEL_SOURCES
        .iter()
        .map(|(name, _)| *name)
        .filter(|n| n.ends_with(".cu"))
}

/// The embedded source of `name` (`"rmsnorm.cu"`).
pub fn source(name: &str) -> Option<&'static str> {
    KERNEL_SOURCES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, s)| *s)
}

/// The C++ standard and other fixed NVRTC options (the arch and include folders are added
/// per compile).
const BASE_OPTIONS: &[&str] = &["-std=c++17"];

/// 64-bit FNV-1a: a stable hash (unlike `DefaultHasher`, fixed across Rust releases).
#[derive(Clone, Copy)]
struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    fn bytes(mut self, b: &[u8]) -> Self {
        for &x in b {
            self.0 ^= x as u64;
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
        self
    }
    /// A field with its length, so ("ab", "c") and ("a", "bc") differ.
    fn field(self, b: &[u8]) -> Self {
        self.bytes(&(b.len() as u64).to_le_bytes()).bytes(b)
    }
}

/// What a cached PTX file is for: the source (with the headers and options it was built
/// with), the architecture and the NVRTC version. Equal keys, equal PTX.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheKey {
    /// The `.cu` file's name without `.cu`, for people reading the cache folder.
    pub stem: String,
    /// FNV-1a of the source, every header (name and text) and the options.
    pub source_hash: u64,
    /// `compute_90`.
    pub arch: String,
    /// NVRTC (major, minor).
    pub nvrtc: (i32, i32),
}

impl CacheKey {
    pub fn new(
        name: &str,
        source: &str,
        headers: &[(&str, &str)],
        options: &[&str],
        arch: &str,
        nvrtc: (i32, i32),
    ) -> Self {
        let mut h = Fnv::new().field(source.as_bytes());
        for (n, text) in headers {
            h = h.field(n.as_bytes()).field(text.as_bytes());
        }
        for o in options {
            h = h.field(o.as_bytes());
        }
        CacheKey {
            stem: name.strip_suffix(".cu").unwrap_or(name).to_owned(),
            source_hash: h.0,
            arch: arch.to_owned(),
            nvrtc,
        }
    }

    /// `rmsnorm-0123456789abcdef-compute_90-nvrtc13.0.ptx`.
    pub fn file_name(&self) -> String {
        format!(
            "{}-{:016x}-{}-nvrtc{}.{}.ptx",
            self.stem, self.source_hash, self.arch, self.nvrtc.0, self.nvrtc.1
        )
    }
}

/// `${RILL_CACHE:-~/.cache/rill}/ptx`, from an environment lookup (`std::env::var_os`);
/// `None` when neither `RILL_CACHE` nor `HOME` is set.
pub fn ptx_cache_dir(env: impl Fn(&str) -> Option<OsString>) -> Option<PathBuf> {
    let root = match env("RILL_CACHE").filter(|v| !v.is_empty()) {
        Some(c) => PathBuf::from(c),
        None => PathBuf::from(env("HOME").filter(|v| !v.is_empty())?).join(".cache/rill"),
    };
    Some(root.join("ptx"))
}

/// The cached PTX for `key` in `dir`, if present and readable (anything else is a miss).
pub fn cache_read(dir: &Path, key: &CacheKey) -> Option<String> {
    std::fs::read_to_string(dir.join(key.file_name()))
        .ok()
        .filter(|s| !s.is_empty())
}

/// Stores `ptx` for `key` in `dir` (created if needed), through a temporary file renamed
/// into place, so a concurrent reader sees the whole file or none.
pub fn cache_write(dir: &Path, key: &CacheKey, ptx: &str) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(key.file_name());
    let tmp = dir.join(format!("{}.tmp{}", key.file_name(), std::process::id()));
    std::fs::write(&tmp, ptx)?;
    std::fs::rename(&tmp, &path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })?;
    Ok(path)
}

/// The CUDA header folders to give NVRTC, in order, those that exist: each folder of
/// `$RILL_CUDA_INCLUDE` (`:`-separated), `$CUDA_HOME/include`, `/usr/local/cuda/include`.
pub fn cuda_include_dirs(env: impl Fn(&str) -> Option<OsString>) -> Vec<PathBuf> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(v) = env("RILL_CUDA_INCLUDE") {
        candidates.extend(std::env::split_paths(&v).filter(|p| !p.as_os_str().is_empty()));
    }
    if let Some(home) = env("CUDA_HOME").filter(|v| !v.is_empty()) {
        candidates.push(PathBuf::from(home).join("include"));
    }
    candidates.push(PathBuf::from("/usr/local/cuda/include"));
    let mut dirs: Vec<PathBuf> = Vec::new();
    for c in candidates {
        if c.is_dir() && !dirs.contains(&c) {
            dirs.push(c);
        }
    }
    dirs
}

/// The NVRTC library's version (major, minor). Errors (no `libnvrtc`) name the library.
pub fn nvrtc_version() -> std::result::Result<(i32, i32), ProbeError> {
    // cudarc's names for NVRTC include `libnvrtc.so.13`, the soname of CUDA 13's NVRTC.
    super::probe::NVRTC.find()?;
    guarded(|| {
        let (mut major, mut minor) = (0, 0);
        // SAFETY: nvrtcVersion writes two ints through valid pointers.
        unsafe { nvrtc::sys::nvrtcVersion(&mut major, &mut minor) }
            .result()
            .map_err(|e| ProbeError::Call {
                call: "nvrtcVersion",
                error: format!("{e:?}"),
            })?;
        Ok((major, minor))
    })
}

/// One compiled kernel file.
#[derive(Debug, Clone)]
pub struct Compiled {
    pub name: &'static str,
    pub ptx: String,
    /// Read from the PTX cache rather than compiled.
    pub from_cache: bool,
    /// Why the cache was not used or not written (best effort, never an error).
    pub cache_note: Option<String>,
}

/// Builds the embedded `.cu` file `name` to PTX for `arch` (`compute_90`), from the PTX
/// cache in `cache` (`None`: no cache) when it holds this (source, arch, NVRTC version).
/// [`default_cache_dir`] is the usual `cache`.
pub fn compile(name: &'static str, arch: &str, cache: Option<&Path>) -> Result<Compiled> {
    let src = source(name)
        .filter(|_| name.ends_with(".cu"))
        .ok_or_else(|| Error::Internal(format!("no embedded kernel file {name:?}")))?;
    let nvrtc = nvrtc_version()
        .map_err(|e| Error::Internal(format!("cannot compile CUDA kernel {name}: {e}")))?;
    let env = |k: &str| std::env::var_os(k);
    let headers: Vec<(&str, &str)> = KERNEL_SOURCES
        .iter()
        .filter(|(n, _)| n.ends_with(".cuh"))
        .copied()
        .collect();
    let arch_option = format!("--gpu-architecture={arch}");
    let mut options: Vec<&str> = BASE_OPTIONS.to_vec();
    options.push(&arch_option);
    let key = CacheKey::new(name, src, &headers, &options, arch, nvrtc);
    if let Some(ptx) = cache.and_then(|d| cache_read(d, &key)) {
        return Ok(Compiled {
            name,
            ptx,
            from_cache: true,
            cache_note: None,
        });
    }
    // The CUDA headers (cuda_fp16.h, ...) from their folders; ours are served from
    // memory (see `nvrtc_program`).
    let mut all_options: Vec<String> = options.iter().map(|s| s.to_string()).collect();
    all_options.extend(
        cuda_include_dirs(env)
            .iter()
            .map(|p| format!("--include-path={}", p.display())),
    );
    let ptx = guarded(|| {
        nvrtc_program::compile(src, name, &headers, &all_options).map_err(|error| {
            ProbeError::Call {
                call: "nvrtc",
                error,
            }
        })
    })
    .map_err(|e| Error::Internal(format!("CUDA kernel {name} for {arch}: {e}")))?;
    let cache_note = match cache {
        None => Some("no PTX cache".to_owned()),
        Some(dir) => cache_write(dir, &key, &ptx)
            .err()
            .map(|e| format!("PTX cache {}: {e}", dir.display())),
    };
    Ok(Compiled {
        name,
        ptx,
        from_cache: false,
        cache_note,
    })
}

/// The kernel entry points a PTX text defines (`.visible .entry NAME(` lines), in order.
pub fn entry_points(ptx: &str) -> Vec<String> {
    ptx.lines()
        .filter_map(|l| l.trim_start().strip_prefix(".visible .entry "))
        .filter_map(|rest| rest.split('(').next())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .collect()
}

/// Builds every embedded `.cu` file for `arch` (see [`compile`]).
pub fn compile_all(arch: &str, cache: Option<&Path>) -> Result<Vec<Compiled>> {
    kernel_files().map(|n| compile(n, arch, cache)).collect()
}

/// The PTX cache of this process's environment (`${RILL_CACHE:-~/.cache/rill}/ptx`).
pub fn default_cache_dir() -> Option<PathBuf> {
    ptx_cache_dir(|k| std::env::var_os(k))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> {
        let m: HashMap<String, OsString> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v)))
            .collect();
        move |k| m.get(k).cloned()
    }

    fn temp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("rill-kernels-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn registry_matches_kernels_dir() {
        // The table is built by build.rs; this catches one made before kernels/ existed
        // (cargo watches the folder only once it exists): `touch build.rs` rebuilds it.
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("kernels");
        let mut on_disk: Vec<String> = match std::fs::read_dir(&dir) {
            Ok(entries) => entries
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.ends_with(".cu") || n.ends_with(".cuh"))
                .collect(),
            Err(_) => Vec::new(),
        };
        on_disk.sort();
        let embedded: Vec<String> = KERNEL_SOURCES.iter().map(|(n, _)| n.to_string()).collect();
        assert_eq!(
            embedded, on_disk,
            "stale kernel table: touch build.rs and rebuild"
        );
        for (name, text) in KERNEL_SOURCES {
            let disk = std::fs::read_to_string(dir.join(name)).unwrap();
            assert_eq!(*text, disk, "{name}");
            assert_eq!(source(name), Some(*text));
        }
        assert!(kernel_files().all(|n| n.ends_with(".cu")));
        assert_eq!(source("no-such.cu"), None);
        println!("{} kernel files embedded", KERNEL_SOURCES.len());
    }

    #[test]
    fn cache_key_covers_source_headers_options_arch_and_nvrtc() {
        let k = |src: &str, hdr: &[(&str, &str)], opt: &[&str], arch: &str, v: (i32, i32)| {
            CacheKey::new("rmsnorm.cu", src, hdr, opt, arch, v)
        };
        let base = k(
            "a",
            &[("h.cuh", "x")],
            &["-std=c++17"],
            "compute_90",
            (13, 0),
        );
        assert_eq!(
            base,
            k(
                "a",
                &[("h.cuh", "x")],
                &["-std=c++17"],
                "compute_90",
                (13, 0)
            )
        );
        assert_eq!(base.stem, "rmsnorm");
        let others = [
            k(
                "b",
                &[("h.cuh", "x")],
                &["-std=c++17"],
                "compute_90",
                (13, 0),
            ),
            k(
                "a",
                &[("h.cuh", "y")],
                &["-std=c++17"],
                "compute_90",
                (13, 0),
            ),
            k(
                "a",
                &[("g.cuh", "x")],
                &["-std=c++17"],
                "compute_90",
                (13, 0),
            ),
            k("a", &[], &["-std=c++17"], "compute_90", (13, 0)),
            k(
                "a",
                &[("h.cuh", "x")],
                &["-std=c++20"],
                "compute_90",
                (13, 0),
            ),
            k(
                "a",
                &[("h.cuh", "x")],
                &["-std=c++17"],
                "compute_80",
                (13, 0),
            ),
            k(
                "a",
                &[("h.cuh", "x")],
                &["-std=c++17"],
                "compute_90",
                (13, 1),
            ),
        ];
        for o in &others {
            assert_ne!(o.file_name(), base.file_name(), "{o:?}");
        }
        // Field boundaries count: ("ab", "c") is not ("a", "bc").
        let split =
            |a: &str, b: &str| CacheKey::new("k.cu", a, &[("h", b)], &[], "compute_90", (13, 0));
        assert_ne!(split("ab", "c").source_hash, split("a", "bc").source_hash);
        // Stable across builds and Rust releases (FNV-1a, not DefaultHasher).
        assert_eq!(Fnv::new().bytes(b"a").0, 0xaf63_dc4c_8601_ec8c);
        let name = base.file_name();
        assert!(
            name.starts_with("rmsnorm-") && name.ends_with("-compute_90-nvrtc13.0.ptx"),
            "{name}"
        );
    }

    #[test]
    fn cache_dir_follows_rill_cache_then_home() {
        assert_eq!(
            ptx_cache_dir(env(&[("RILL_CACHE", "/c"), ("HOME", "/h")])),
            Some(PathBuf::from("/c/ptx"))
        );
        assert_eq!(
            ptx_cache_dir(env(&[("HOME", "/h")])),
            Some(PathBuf::from("/h/.cache/rill/ptx"))
        );
        assert_eq!(
            ptx_cache_dir(env(&[("RILL_CACHE", ""), ("HOME", "/h")])),
            Some(PathBuf::from("/h/.cache/rill/ptx"))
        );
        assert_eq!(ptx_cache_dir(env(&[])), None);
    }

    #[test]
    fn cache_write_then_read() {
        let dir = temp("cache").join("ptx");
        let key = CacheKey::new("k.cu", "src", &[], &["-std=c++17"], "compute_90", (13, 0));
        assert_eq!(cache_read(&dir, &key), None);
        let path = cache_write(&dir, &key, ".version 9.0\n").unwrap();
        assert_eq!(path, dir.join(key.file_name()));
        assert_eq!(cache_read(&dir, &key).as_deref(), Some(".version 9.0\n"));
        // Overwrite, no temporary left behind.
        cache_write(&dir, &key, ".version 9.1\n").unwrap();
        assert_eq!(cache_read(&dir, &key).as_deref(), Some(".version 9.1\n"));
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        // Another arch is another entry; an empty file is a miss.
        let other = CacheKey {
            arch: "compute_80".into(),
            ..key.clone()
        };
        assert_eq!(cache_read(&dir, &other), None);
        std::fs::write(dir.join(other.file_name()), "").unwrap();
        assert_eq!(cache_read(&dir, &other), None);
        // An unwritable cache is an error to report, not a panic.
        let blocked = dir.join(key.file_name()).join("sub");
        assert!(cache_write(&blocked, &key, "x").is_err());
        let _ = std::fs::remove_dir_all(dir.parent().unwrap());
    }

    #[test]
    fn header_search_order() {
        let root = temp("include");
        let (a, b, home) = (root.join("a"), root.join("b"), root.join("cuda"));
        for d in [&a, &b, &home.join("include")] {
            std::fs::create_dir_all(d).unwrap();
        }
        let list = format!(
            "{}:{}:{}",
            a.display(),
            root.join("missing").display(),
            b.display()
        );
        let dirs = cuda_include_dirs(env(&[
            ("RILL_CUDA_INCLUDE", &list),
            ("CUDA_HOME", home.to_str().unwrap()),
        ]));
        let system = Path::new("/usr/local/cuda/include");
        let mut want = vec![a.clone(), b.clone(), home.join("include")];
        if system.is_dir() {
            want.push(system.to_owned());
        }
        assert_eq!(dirs, want);
        // Missing folders are skipped; duplicates kept once.
        let dup = format!("{}:{}", a.display(), a.display());
        let dirs = cuda_include_dirs(env(&[
            ("RILL_CUDA_INCLUDE", &dup),
            ("CUDA_HOME", "/nonexistent"),
        ]));
        assert_eq!(dirs[0], a);
        assert_eq!(dirs.iter().filter(|d| **d == a).count(), 1);
        assert!(!dirs.iter().any(|d| d.starts_with("/nonexistent")));
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn compile_without_nvrtc_or_a_file_is_an_error() {
        let e = compile("no-such.cu", "compute_90", None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("no-such.cu"), "{e}");
        if let (Err(reason), Some(name)) = (nvrtc_version(), kernel_files().next()) {
            let e = compile(name, "compute_90", None).unwrap_err().to_string();
            assert!(e.contains(&reason.to_string()), "{e}");
        }
    }

    /// The `// entry: a b` names at the top of a kernel file.
    fn declared_entries(src: &str) -> Vec<String> {
        src.lines()
            .filter_map(|l| l.trim().strip_prefix("// entry:"))
            .flat_map(|r| r.split(|c: char| c == ',' || c.is_whitespace()))
            .map(|n| n.trim().to_owned())
            .filter(|n| !n.is_empty())
            .collect()
    }

    #[test]
    fn entry_points_are_read_from_ptx() {
        let ptx = ".version 9.0\n.visible .entry rms_norm_kernel(\n\t.param .u64 a\n)\n\
                   .func helper(\n.visible .entry argmax_kernel(\n";
        assert_eq!(entry_points(ptx), ["rms_norm_kernel", "argmax_kernel"]);
        let all: Vec<String> = kernel_files()
            .flat_map(|f| declared_entries(source(f).unwrap()))
            .collect();
        assert!(
            all.len() >= 12 && all.contains(&"paged_attention_reduce_kernel".to_owned()),
            "{all:?}"
        );
    }

    /// Runs where NVRTC is installed (no GPU needed; e.g. the PyPI wheels
    /// `nvidia-cuda-nvrtc` + `nvidia-cuda-runtime` with `LD_LIBRARY_PATH` and
    /// `RILL_CUDA_INCLUDE` set): every embedded kernel compiles for sm_80 and sm_90, and
    /// the second build of each comes from the cache.
    #[test]
    fn kernels_compile_with_nvrtc_when_present() {
        let v = match nvrtc_version() {
            Ok(v) => v,
            Err(e) => return println!("NOT RUN: {e}"),
        };
        let cache = temp("nvrtc").join("ptx");
        for arch in ["compute_80", "compute_90"] {
            let first = compile_all(arch, Some(&cache)).unwrap();
            let second = compile_all(arch, Some(&cache)).unwrap();
            for (a, b) in first.iter().zip(&second) {
                assert!(
                    !a.from_cache && a.cache_note.is_none(),
                    "{}: {:?}",
                    a.name,
                    a.cache_note
                );
                assert!(b.from_cache && a.ptx == b.ptx, "{}", a.name);
                assert!(a.ptx.contains(".target sm_"), "{}", a.name);
                // Gpu::open loads the entry points the PTX names: each declared
                // `// entry:` of the source must be among them.
                let entries = entry_points(&a.ptx);
                for declared in declared_entries(source(a.name).unwrap()) {
                    assert!(
                        entries.contains(&declared),
                        "{}: {declared} not in {entries:?}",
                        a.name
                    );
                }
            }
            println!(
                "NVRTC {}.{}: {} kernel files for {arch}",
                v.0,
                v.1,
                first.len()
            );
        }
        let _ = std::fs::remove_dir_all(cache.parent().unwrap());
    }
}
