//! Generates the C header from `src/ffi/` with cbindgen into `$OUT_DIR/rill.h`. The
//! committed `include/rill.h` must equal it: `tests/header.rs` fails when they differ, and
//! `scripts/gen_header.sh` copies the generated file over the committed one.

fn main() {
    println!("cargo:rerun-if-changed=src/ffi");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    let crate_dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let out_dir = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
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
