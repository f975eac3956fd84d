//! Generates the C header from `src/ffi/` with cbindgen into `$OUT_DIR/rill.h`. The
//! committed `include/rill.h` must equal it: `tests/header.rs` fails when they differ, and
//! `scripts/gen_header.sh` copies the generated file over the committed one.

fn main() {
    println!("cargo:rerun-if-changed=src/ffi");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    let crate_dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let out_dir = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    if std::env::var_os("CARGO_FEATURE_CUDA").is_some() {
        write_kernel_table(&crate_dir, &out_dir);
    }
    flag_cuda_runner(&crate_dir);
    let config = cbindgen::Config::from_file(format!("{crate_dir}/cbindgen.toml"))
        .expect("cbindgen.toml is valid");
    match cbindgen::Builder::new()
        .with_crate(&crate_dir)
        .with_config(config)
        .generate()
    {
        Ok(bindings) => {
            bindings.write_to_file(format!("{out_dir}/rill.h"));
        }
        Err(e) => {
            // A syntax error in the crate is reported by rustc with better context.
            println!("cargo:warning=cbindgen could not generate rill.h: {e}");
        }
    }
}

/// Transitional, while the CUDA runner is being written on another branch: sets
/// `cfg(rill_cuda_runner)` when `src/backend/cuda/runner.rs` exists, so
/// `tests/cuda_engine.rs` compiles its `CudaRunner` comparison only when the runner is
/// there (and fails that test with the reason otherwise). Remove once the runner is merged.
fn flag_cuda_runner(crate_dir: &str) {
    println!("cargo::rustc-check-cfg=cfg(rill_cuda_runner)");
    println!("cargo:rerun-if-changed=src/backend/cuda");
    if std::path::Path::new(crate_dir)
        .join("src/backend/cuda/runner.rs")
        .is_file()
    {
        println!("cargo:rustc-cfg=rill_cuda_runner");
    }
}

/// Writes `$OUT_DIR/cuda_kernels.rs`: `KERNEL_SOURCES`, (file name, source) sorted by name.
///
/// Cargo reruns this script when `kernels/` changes, but only once the directory exists:
/// watching a missing path would rerun it (and rebuild the crate) on every build. A unit
/// test (`registry_matches_kernels_dir`) catches a table made before `kernels/` appeared.
fn write_kernel_table(crate_dir: &str, out_dir: &str) {
    let dir = std::path::Path::new(crate_dir).join("kernels");
    let mut files: Vec<(String, std::path::PathBuf)> = Vec::new();
    if dir.is_dir() {
        println!("cargo:rerun-if-changed=kernels");
        let entries = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
        for entry in entries {
            let path = entry
                .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
                .path();
            let name = path.file_name().and_then(|n| n.to_str()).map(str::to_owned);
            match name {
                Some(n) if path.is_file() && (n.ends_with(".cu") || n.ends_with(".cuh")) => {
                    files.push((n, path))
                }
                _ => {}
            }
        }
    }
    files.sort();
    let mut table = String::from(
        "/// Every `kernels/*.cu` and `*.cuh` file: (file name, source), sorted by name.\n\
         pub static KERNEL_SOURCES: &[(&str, &str)] = &[\n",
    );
    for (name, path) in &files {
        table.push_str(&format!(
            "    ({name:?}, include_str!({:?})),\n",
            path.display().to_string()
        ));
    }
    table.push_str("];\n");
    let out = std::path::Path::new(out_dir).join("cuda_kernels.rs");
    // Rewrite only on change, so an unchanged table does not look new to rustc.
    if std::fs::read_to_string(&out).ok().as_deref() != Some(table.as_str()) {
        std::fs::write(&out, table)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", out.display()));
    }
}
