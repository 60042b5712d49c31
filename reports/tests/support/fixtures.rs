//! The results folders under `tests/fixtures` (small ones from real runs) as the reports' tests
//! read them.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// The fixture folder `name`.
pub fn fixture_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// The names of the variants in `dir/results.json`, in its order.
pub fn variant_names(dir: &Path) -> Vec<String> {
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("results.json")).unwrap()).unwrap();
    r["variants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap().to_owned())
        .collect()
}
