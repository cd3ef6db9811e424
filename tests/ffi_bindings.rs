//! The committed bindings (src/llamacpp/ffi.rs) are what bindgen makes of csrc/extractor.h.
//! Needs libclang, so it runs under the `regen-bindings` feature:
//! `cargo test --release --features regen-bindings --test ffi_bindings`. To update the committed
//! file after a header change, copy the generated one over it (the path is in the failure message).

#[cfg(feature = "regen-bindings")]
#[test]
fn committed_bindings_match_the_header() {
    let generated_path = env!("LLORCH_REGENERATED_FFI");
    let generated = std::fs::read_to_string(generated_path).unwrap();
    let committed = include_str!("../src/llamacpp/ffi.rs");
    assert!(
        generated == committed,
        "src/llamacpp/ffi.rs is stale: cp {generated_path} src/llamacpp/ffi.rs"
    );
}

#[cfg(not(feature = "regen-bindings"))]
#[test]
fn committed_bindings_declare_every_header_function() {
    // Without libclang: every function the header declares has a binding of the same name.
    let header = include_str!("../csrc/extractor.h");
    let committed = include_str!("../src/llamacpp/ffi.rs");
    let mut n = 0;
    for line in header.lines() {
        if let Some(pos) = line.find("llorch_") {
            let rest = &line[pos..];
            if let Some(paren) = rest.find('(') {
                let name = &rest[..paren];
                if name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    n += 1;
                    assert!(
                        committed.contains(&format!("pub fn {name}(")),
                        "no binding for {name}: regenerate ffi.rs"
                    );
                }
            }
        }
    }
    assert!(n >= 20, "found only {n} functions in the header");
}
