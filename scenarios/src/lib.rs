//! The scenario library: the `*.toml` files beside this crate, each a small mesh under a fault
//! schedule with the assertions it must meet, and the test suite (`tests/`) that runs every one of
//! them through the simulator on `cargo test`. The format is documented in `README.md` here; the
//! parser lives in `sim::scenario`.
//!
//! This crate holds no simulation code; it only finds the files.
#![forbid(unsafe_code)]

use std::path::PathBuf;

/// The directory holding the scenario files.
pub fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every scenario file in the library, sorted by name.
pub fn all() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir())
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| {
                    p.extension().is_some_and(|e| e == "toml")
                        && p.file_name().is_some_and(|n| n != "Cargo.toml")
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}
