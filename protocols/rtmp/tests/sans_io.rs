//! The crate stays sans-IO: no async runtime among its dependencies, and no
//! clock, randomness, socket or thread in its source.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::Path;

#[test]
fn no_runtime_dependencies() {
    let manifest = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
        .expect("the manifest is readable");
    // Only the [dependencies] table matters; dev-dependencies may be anything.
    let deps = manifest
        .split("[dependencies]")
        .nth(1)
        .and_then(|s| s.split("\n[").next())
        .expect("a [dependencies] table");
    for banned in [
        "tokio",
        "smol",
        "async-io",
        "async-std",
        "async-trait",
        "futures",
        "mio",
        "rand",
    ] {
        assert!(
            !deps.lines().any(|l| l.trim_start().starts_with(banned)),
            "{banned} must not be a dependency of arcly-rtmp"
        );
    }
}

#[test]
fn no_clock_randomness_io_or_threads_in_source() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    for entry in fs::read_dir(&src).expect("src is readable") {
        let path = entry.expect("a directory entry").path();
        let text = fs::read_to_string(&path).expect("a source file");
        for banned in [
            "std::time::Instant",
            "SystemTime",
            "std::thread",
            "std::net",
            "std::fs",
            "std::io::Read",
            "thread_rng",
            "getrandom",
            "async fn",
            ".await",
            "unsafe ",
        ] {
            assert!(!text.contains(banned), "{} uses {banned}", path.display());
        }
    }
}
