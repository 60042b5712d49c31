//! Baselines: complete runs kept to compare later ones with, in a folder meant to be committed
//! (`baselines/<name>/` by default). A baseline is a results folder pared down to what
//! `fleetbench compare` reads: results.json and the interval logs (no raw records, no charts).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use crate::compare::files::{read_run, results_dir};

/// The default folder of baselines, relative to the project root.
pub const DEFAULT_DIR: &str = "baselines";

/// Saves the run in `results` as baseline `name` under `dir`, replacing an older one whole.
/// Refuses incomplete runs and names that are not `[A-Za-z0-9_.-]+`.
pub fn save(results: &Path, name: &str, dir: &Path) -> anyhow::Result<PathBuf> {
    if name.is_empty()
        || name.starts_with('.')
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        bail!("a baseline name is letters, digits, `_`, `-` and `.`, not `{name}`");
    }
    let source = results_dir(results);
    let run = read_run(&source).map_err(|e| anyhow::anyhow!("{e}"))?;
    if !run.complete {
        bail!(
            "{} is an incomplete run; a baseline must be a complete one",
            source.display()
        );
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let target = dir.join(name);
    let staging = dir.join(format!(".{name}.saving-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging).with_context(|| format!("creating {}", staging.display()))?;
    let copy = || -> anyhow::Result<()> {
        let mut files = vec!["results.json".to_string()];
        for v in &run.variants {
            files.push(v.files.hlog.clone());
            files.extend(v.repetitions.iter().map(|r| r.files.hlog.clone()));
            files.extend(v.files.commands_hlog.clone());
            files.extend(
                v.repetitions
                    .iter()
                    .flat_map(|r| r.files.commands_hlog.clone()),
            );
        }
        files.sort();
        files.dedup();
        for file in files.iter().filter(|f| !f.is_empty() && !f.contains('/')) {
            let from = source.join(file);
            if from.exists() {
                std::fs::copy(&from, staging.join(file))
                    .with_context(|| format!("copying {}", from.display()))?;
            }
        }
        // Swap the new folder in whole: a reader sees the old baseline or the new one.
        let old = dir.join(format!(".{name}.old-{}", std::process::id()));
        if target.exists() {
            std::fs::rename(&target, &old)
                .with_context(|| format!("moving {} aside", target.display()))?;
        }
        std::fs::rename(&staging, &target)
            .with_context(|| format!("moving {} into place", target.display()))?;
        let _ = std::fs::remove_dir_all(&old);
        Ok(())
    };
    copy().inspect_err(|_| {
        let _ = std::fs::remove_dir_all(&staging);
    })?;
    Ok(target)
}
