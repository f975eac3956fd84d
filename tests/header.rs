//! The committed C header must be exactly what cbindgen generates from `src/ffi/` now
//! (build.rs writes it to OUT_DIR). Run `scripts/gen_header.sh` after changing the C API.

#[test]
fn committed_header_matches_generated() {
    let generated = std::fs::read_to_string(concat!(env!("OUT_DIR"), "/rill.h"))
        .expect("build.rs generated rill.h");
    let committed = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/include/rill.h"))
        .expect("include/rill.h");
    assert!(
        generated == committed,
        "include/rill.h is stale: run scripts/gen_header.sh and commit it"
    );
}
