//! Chromium: where it is, what version, and how it is started on the page: headless, with a
//! profile of its own, nothing fetched in the background, timers never throttled (a page in the
//! background has its timers slowed to once a second, which would hold its batches back).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::child::ChildProcess;

/// Where Chromium is looked for (Debian's `chromium`, and the name other distributions use),
/// unless [`CHROMIUM_ENV`] names it.
pub const CANDIDATES: [&str; 2] = ["/usr/bin/chromium", "/usr/bin/chromium-browser"];

/// The environment variable that names another Chromium (or Chrome) binary.
pub const CHROMIUM_ENV: &str = "FLEETBENCH_CHROMIUM";

/// How to install it.
pub const INSTALL: &str = "apt-get install chromium";

/// A Chromium binary and its version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chromium {
    /// The binary.
    pub path: PathBuf,
    /// What `--version` printed (`Chromium 156.0.8078.114 built on Debian GNU/Linux 12`).
    pub version: String,
}

impl Chromium {
    /// The Chromium [`CHROMIUM_ENV`] names, or the first of [`CANDIDATES`] there is, with its
    /// version; or why there is none, naming the install command.
    pub fn find() -> Result<Chromium, String> {
        let named = std::env::var_os(CHROMIUM_ENV).map(PathBuf::from);
        let path = match &named {
            Some(path) => Some(path.clone()).filter(|p| p.is_file()),
            None => CANDIDATES.iter().map(PathBuf::from).find(|p| p.is_file()),
        };
        let Some(path) = path else {
            let looked = match &named {
                Some(p) => format!("{} ({CHROMIUM_ENV})", p.display()),
                None => CANDIDATES.join(" and "),
            };
            return Err(format!(
                "`browser = true` in [consumer] needs Chromium, which is not installed (looked \
                 for {looked}): {INSTALL}"
            ));
        };
        let output = Command::new(&path)
            .arg("--version")
            .output()
            .map_err(|e| format!("{} --version: {e}", path.display()))?;
        let version = String::from_utf8_lossy(&output.stdout).trim().to_string();
        if !output.status.success() || version.is_empty() {
            return Err(format!(
                "{} --version failed ({}); reinstall it: {INSTALL}",
                path.display(),
                output.status
            ));
        }
        Ok(Chromium { path, version })
    }

    /// Starts it headless on `url` with the profile in `profile`, its log (stderr) in `log`.
    pub fn start(&self, url: &str, profile: &Path, log: &Path) -> anyhow::Result<ChildProcess> {
        ChildProcess::spawn("chromium", &self.path, &args(url, profile), log)
    }
}

/// The arguments Chromium is started with on `url`.
pub fn args(url: &str, profile: &Path) -> Vec<String> {
    [
        "--headless",
        // Root (as a run with a link is) may not run Chromium's sandbox.
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--disable-default-apps",
        "--mute-audio",
        "--disable-background-timer-throttling",
        "--disable-renderer-backgrounding",
        "--disable-backgrounding-occluded-windows",
        "--enable-logging=stderr",
        "--v=0",
    ]
    .iter()
    .map(|a| a.to_string())
    .chain([
        format!("--user-data-dir={}", profile.display()),
        url.to_string(),
    ])
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chromium_runs_headless_on_its_own_profile_and_the_page() {
        let args = args("http://127.0.0.1:9/", Path::new("/tmp/p"));
        assert_eq!(args[0], "--headless");
        assert!(args.contains(&"--disable-background-timer-throttling".to_string()));
        assert!(args.contains(&"--user-data-dir=/tmp/p".to_string()));
        assert_eq!(args.last().unwrap(), "http://127.0.0.1:9/");
    }
}
