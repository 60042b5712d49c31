//! The crate's layers, read from its sources: the drivers sit below `transport`, which alone
//! knows the list of transports, and the shared types (`link`, `sink`, `settings`) sit below the drivers.

use std::path::{Path, PathBuf};

/// What only `transport` defines: the list of every transport and the dispatch over drivers.
const TOP_NAMES: &[&str] = &["TransportKind", "DialedTransport", "SinkTransport", "Link"];

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every source file below `src/`, by its path from there, with its code lines (comments left
/// out, so doc links may name any module).
fn code() -> Vec<(String, Vec<String>)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let name = path
                .strip_prefix(&src)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let lines = std::fs::read_to_string(&path)
                .unwrap()
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .map(str::to_string)
                .collect();
            (name, lines)
        })
        .collect()
}

#[test]
fn no_module_below_transport_imports_it_or_names_every_transport() {
    let top = ["transport.rs", "lib.rs"];
    let mut found = Vec::new();
    for (name, lines) in code() {
        if top.contains(&name.as_str()) {
            continue;
        }
        for line in lines {
            let names_the_top = line
                .split(|c: char| !c.is_alphanumeric() && c != '_')
                .any(|token| TOP_NAMES.contains(&token));
            if line.contains("crate::transport") || names_the_top {
                found.push(format!("{name}: {}", line.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "modules below `transport` use it:\n{}",
        found.join("\n")
    );
}

/// The leaves every driver builds on: shared types and per-transport settings.
const SHARED: &[&str] = &[
    "link.rs",
    "sink.rs",
    "settings.rs",
    "command/mod.rs",
    "command/routes.rs",
];

#[test]
fn the_shared_types_import_no_driver() {
    for (name, lines) in code() {
        if !SHARED.contains(&name.as_str()) {
            continue;
        }
        for line in lines {
            for driver in [
                "crate::tcp",
                "crate::ws",
                "crate::mqtt",
                "crate::httppost",
                "::driver",
                "crate::served",
                "crate::transport",
            ] {
                assert!(
                    !line.contains(driver),
                    "{name} imports a driver: {}",
                    line.trim()
                );
            }
        }
    }
}
