//! One NVRTC compilation with the kernels' headers passed in memory (the `headers` and
//! `includeNames` of `nvrtcCreateProgram`). cudarc's `compile_ptx_with_opts` passes no
//! headers; writing them to a folder for `-I` instead made a cold start depend on a
//! writable folder, raced with another process writing the same files, and let a stray
//! file in that folder shadow a CUDA header. NVRTC finds an in-memory header by its
//! include name before searching any folder.
//!
//! The raw calls are cudarc's bindings (`cudarc::nvrtc::sys`, loaded at run time); the
//! caller runs this under `catch_unwind` (cudarc panics on a missing library or symbol).

use std::ffi::{c_char, c_int, CStr, CString};

use cudarc::nvrtc::{result, sys};

/// Destroys the program when dropped (also on every error path).
struct Program(sys::nvrtcProgram);

impl Drop for Program {
    fn drop(&mut self) {
        // SAFETY: `self.0` was created by nvrtcCreateProgram and is destroyed only here.
        let _ = unsafe { result::destroy_program(self.0) };
    }
}

/// Compiles `src` (program name `name`) with `options`, `#include "N"` of each
/// `(N, text)` in `headers` served from memory; returns the PTX, or the failing call
/// with NVRTC's log.
pub fn compile(
    src: &str,
    name: &str,
    headers: &[(&str, &str)],
    options: &[String],
) -> std::result::Result<String, String> {
    let c = |s: &str, what: &str| {
        CString::new(s).map_err(|_| format!("{what} holds a NUL byte: NVRTC cannot take it"))
    };
    let src_c = c(src, name)?;
    let name_c = c(name, "the program name")?;
    let texts = headers
        .iter()
        .map(|(n, t)| c(t, n))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let names = headers
        .iter()
        .map(|(n, _)| c(n, "a header name"))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let text_ptrs: Vec<*const c_char> = texts.iter().map(|s| s.as_ptr()).collect();
    let name_ptrs: Vec<*const c_char> = names.iter().map(|s| s.as_ptr()).collect();
    let count = c_int::try_from(headers.len()).map_err(|_| "too many headers".to_owned())?;
    let mut raw: sys::nvrtcProgram = std::ptr::null_mut();
    // SAFETY: every pointer is a NUL-terminated string that outlives the program (the
    // CStrings live to the end of this function, after `Program` is dropped); the two
    // arrays hold `count` entries each, and `raw` is written by the call.
    unsafe {
        sys::nvrtcCreateProgram(
            &mut raw,
            src_c.as_ptr(),
            name_c.as_ptr(),
            count,
            text_ptrs.as_ptr(),
            name_ptrs.as_ptr(),
        )
    }
    .result()
    .map_err(|e| format!("nvrtcCreateProgram: {e:?}"))?;
    let prog = Program(raw);
    // SAFETY: `prog.0` is a live program (destroyed when `prog` drops, below).
    let compiled = unsafe { result::compile_program(prog.0, options) };
    if let Err(e) = compiled {
        // SAFETY: as above.
        let log = unsafe { result::get_program_log(prog.0) }
            .map(|l| c_text(&l))
            .unwrap_or_else(|e| format!("(no log: {e:?})"));
        return Err(format!(
            "nvrtcCompileProgram: {e:?} with options {options:?}:\n{log}"
        ));
    }
    // SAFETY: as above; the program compiled.
    let ptx = unsafe { result::get_ptx(prog.0) }.map_err(|e| format!("nvrtcGetPTX: {e:?}"))?;
    Ok(c_text(&ptx))
}

/// The text of a NUL-terminated buffer NVRTC filled (everything when it has no NUL).
fn c_text(buf: &[c_char]) -> String {
    // SAFETY: c_char and u8 have the same size and alignment; the slice is borrowed as is.
    let bytes = unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), buf.len()) };
    match CStr::from_bytes_until_nul(bytes) {
        Ok(s) => s.to_string_lossy().into_owned(),
        Err(_) => String::from_utf8_lossy(bytes).into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nvrtc_buffers_become_text_up_to_their_nul() {
        let buf: Vec<c_char> = b".version 9.0\n\0junk"
            .iter()
            .map(|&b| b as c_char)
            .collect();
        assert_eq!(c_text(&buf), ".version 9.0\n");
        let no_nul: Vec<c_char> = b"log".iter().map(|&b| b as c_char).collect();
        assert_eq!(c_text(&no_nul), "log");
    }

    /// Where NVRTC is installed (no GPU needed): a header is served from memory, and a
    /// compile error comes back with NVRTC's log.
    #[test]
    fn headers_come_from_memory_and_errors_carry_the_log() {
        if let Err(e) = crate::backend::cuda::kernels::nvrtc_version() {
            return println!("NOT RUN: {e}");
        }
        let src = "#include \"twice.cuh\"\n\
                   extern \"C\" __global__ void k(int* p) { p[0] = twice(p[0]); }\n";
        let header = (
            "twice.cuh",
            "__device__ int twice(int x) { return 2 * x; }\n",
        );
        let opts = ["--gpu-architecture=compute_80".to_owned()];
        let ptx = super::super::probe::guarded(|| {
            compile(src, "t.cu", &[header], &opts).map_err(|error| {
                super::super::probe::ProbeError::Call {
                    call: "nvrtc",
                    error,
                }
            })
        })
        .unwrap();
        assert!(ptx.contains(".visible .entry k("), "{ptx}");
        let e = compile(src, "t.cu", &[], &opts).unwrap_err();
        assert!(
            e.contains("nvrtcCompileProgram") && e.contains("twice.cuh"),
            "{e}"
        );
    }

    #[test]
    fn nul_bytes_are_refused_before_nvrtc_is_called() {
        let e = compile("a\0b", "x.cu", &[], &[]).unwrap_err();
        assert!(e.contains("x.cu holds a NUL byte"), "{e}");
        let e = compile("", "x.cu", &[("h.cuh", "\0")], &[]).unwrap_err();
        assert!(e.contains("h.cuh holds a NUL byte"), "{e}");
    }
}
