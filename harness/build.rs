//! Records the git revision the binary is built from, for `machine::describe`.
//!
//! Sets `FLEETBENCH_GIT_REVISION` to `git rev-parse --short=12 HEAD`, with `-dirty` appended when
//! `git status --porcelain` lists anything, or to `unknown` when git is missing or this is not a
//! checkout (a crate tarball, say).
//!
//! It never writes to the repository, and it does not watch git's index: a plain `git status`
//! rewrites the index when it refreshes stat data, so a script that ran it and watched the index
//! made its own next build stale, and each profile (dev, test, release) invalidated the others:
//! the first release build after the test suite recompiled the harness and everything linking it.
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let revision = revision(&manifest_dir).unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=FLEETBENCH_GIT_REVISION={revision}");

    // Rerun when HEAD moves (checkout, commit) or the sources change, so that `-dirty` follows
    // edits to the code that goes into the binary. Not on the index: any git command (a shell
    // prompt's `git status`) may rewrite it without changing what is committed or edited.
    // `--git-path` finds the files in worktrees too; plain `../.git` is the fallback.
    let mut watched = Vec::new();
    let mut git_files = vec!["HEAD".to_owned(), "packed-refs".to_owned()];
    git_files.extend(git_output(&manifest_dir, &["symbolic-ref", "-q", "HEAD"]));
    for file in git_files {
        match git_output(&manifest_dir, &["rev-parse", "--git-path", &file]) {
            Some(path) => watched.push(manifest_dir.join(path)),
            None => watched.push(manifest_dir.join("../.git").join(file)),
        }
    }
    for source in [
        "src",
        "../transports/src",
        "../device-emulator/src",
        "../Cargo.lock",
    ] {
        watched.push(manifest_dir.join(source));
    }
    for path in watched.iter().filter(|p| p.exists()) {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    // Without a single rerun-if-changed line cargo would rerun on any change in the package.
    println!("cargo:rerun-if-changed=build.rs");
}

/// `abcdef123456` or `abcdef123456-dirty`; `None` when git fails.
fn revision(dir: &Path) -> Option<String> {
    let head = git_output(dir, &["rev-parse", "--short=12", "HEAD"])?;
    // --no-optional-locks: status must not refresh and rewrite the index.
    let status = Command::new("git")
        .args(["--no-optional-locks", "status", "--porcelain"])
        .current_dir(dir)
        .output()
        .ok()
        .filter(|out| out.status.success())?;
    let dirty = !status.stdout.iter().all(u8::is_ascii_whitespace);
    Some(if dirty { format!("{head}-dirty") } else { head })
}

/// Trimmed stdout of a successful `git args...` run in `dir`.
fn git_output(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (!text.is_empty()).then_some(text)
}
