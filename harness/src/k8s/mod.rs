//! `fleetbench k8s render`: a scenario as a folder of Kubernetes manifests that run its fleet
//! split over machines, one shard per pod of an Indexed Job, against a backend in a pod of its
//! own, and the Dockerfile and README to build, apply, collect and merge it.
//!
//! - [`manifests`]: the objects as JSON values (pure);
//! - [`sizing`]: each pod's requests, from what a device costs (pure);
//! - [`yaml`]: their YAML text (pure);
//! - here: what is refused ([`refusal`]), the folder's files ([`plan`]), and writing them
//!   ([`write`]).
//!
//! The commands the pods run (`fleetbench receive`, `fleetbench fleet --shard`) are
//! [`crate::distributed`]'s; this module only writes them down.

use std::io;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::scenario::Scenario;

pub mod manifests;
mod readme;
pub mod sizing;
pub mod yaml;

use manifests::{Target, VariantNames};
use sizing::{PastRun, VariantSizing};

/// Most completions an Indexed Job may have (Kubernetes' own bound).
pub const MAX_SHARDS: u32 = 100_000;

/// Most bytes of the scenario file: a ConfigMap holds at most 1 MiB, its names included.
pub const MAX_SCENARIO_BYTES: usize = 1_000_000;

/// The least the results volume asks for.
pub const MIN_STORAGE_BYTES: u64 = 1 << 30;

/// Files of the folder's top level that a render writes (with the variants' folders of
/// [`VARIANT_FILES`]); `--force` removes these and nothing else.
pub const TOP_FILES: [&str; 6] = [
    "namespace.yaml",
    "pvc.yaml",
    "configmap.yaml",
    "Dockerfile",
    "Dockerfile.dockerignore",
    "README.md",
];

/// Files of each variant's folder.
pub const VARIANT_FILES: [&str; 2] = ["backend.yaml", "job.yaml"];

/// Namespaces Kubernetes makes itself; no manifest is rendered for them.
const BUILT_IN_NAMESPACES: [&str; 4] = ["default", "kube-system", "kube-public", "kube-node-lease"];

/// What `k8s render` is asked for besides the scenario.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RenderOptions {
    /// Fleet shards, one pod each.
    pub shards: u32,
    /// The image every pod runs.
    pub image: String,
    /// The namespace of every object.
    pub namespace: String,
    /// Only this variant (absent: every variant, each in a folder of its own).
    pub variant: Option<String>,
    /// The results volume's storage class (absent: the cluster's default).
    pub storage_class: Option<String>,
}

/// One file of the rendered folder.
#[derive(Clone, Debug, PartialEq)]
pub struct RenderedFile {
    /// Its path inside the folder.
    pub path: PathBuf,
    /// What it holds.
    pub contents: Contents,
}

/// What a rendered file holds.
#[derive(Clone, Debug, PartialEq)]
pub enum Contents {
    /// Kubernetes objects, written as YAML documents.
    Manifests(Vec<Value>),
    /// Text, written as it is.
    Text(String),
}

impl Contents {
    /// The file's text.
    pub fn text(&self) -> String {
        match self {
            Contents::Manifests(objects) => yaml::documents(objects),
            Contents::Text(text) => text.clone(),
        }
    }
}

/// Why nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The scenario or the options cannot be rendered, or the folder holds files already.
    #[error("{0}")]
    Refused(String),
    /// A file could not be written.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// The folder a render goes to by default: `results/k8s-<scenario>-<N>x`.
pub fn default_out(scenario: &Scenario, shards: u32) -> PathBuf {
    PathBuf::from("results").join(format!("k8s-{}-{shards}x", scenario.name))
}

/// Refuses what cannot be rendered, saying why: what a split fleet cannot run
/// ([`crate::distributed::check`]), a shard count outside 1 to the devices (and an Indexed
/// Job's bound), a variant not in the scenario, names Kubernetes would not take, two variants
/// whose names make the same object names, a scenario too large for a ConfigMap.
pub fn refusal(
    scenario: &Scenario,
    scenario_text: &str,
    options: &RenderOptions,
) -> Result<(), String> {
    crate::distributed::check(scenario)?;
    let devices = scenario.fleet.devices;
    if options.shards < 1 || options.shards > devices {
        return Err(format!(
            "--shards {}: a fleet of {devices} devices splits into 1 to {devices} shards",
            options.shards
        ));
    }
    if options.shards > MAX_SHARDS {
        return Err(format!(
            "--shards {}: an Indexed Job has at most {MAX_SHARDS} completions",
            options.shards
        ));
    }
    if let Some(name) = &options.variant {
        if !scenario.variants.iter().any(|v| &v.name == name) {
            let names: Vec<&str> = scenario.variants.iter().map(|v| v.name.as_str()).collect();
            return Err(format!(
                "--variant {name}: no such variant in the scenario; one of {}",
                names.join(", ")
            ));
        }
    }
    if manifests::dns_label(&options.namespace, 63) != options.namespace {
        return Err(format!(
            "--namespace {:?}: a namespace is a DNS label: at most 63 lower-case letters, digits \
             and `-`, starting and ending with a letter or digit",
            options.namespace
        ));
    }
    if let Some(class) = &options.storage_class {
        let valid = !class.is_empty()
            && class.len() <= 253
            && class
                .split('.')
                .all(|part| !part.is_empty() && manifests::dns_label(part, 63) == part);
        if !valid {
            return Err(format!(
                "--storage-class {class:?}: a storage class is named by lower-case letters, \
                 digits, `-` and `.`"
            ));
        }
    }
    if options.image.is_empty() || options.image.chars().any(|c| c.is_whitespace()) {
        return Err(format!(
            "--image {:?}: an image reference has no blanks, e.g. registry.example/fleetbench:1",
            options.image
        ));
    }
    if scenario_text.len() > MAX_SCENARIO_BYTES {
        return Err(format!(
            "the scenario file has {} bytes; a ConfigMap holds at most {MAX_SCENARIO_BYTES}",
            scenario_text.len()
        ));
    }
    let mut seen: Vec<(String, &str)> = Vec::new();
    for (i, v) in scenario.variants.iter().enumerate() {
        let backend = VariantNames::of(&v.name, i).backend;
        if let Some((_, other)) = seen.iter().find(|(b, _)| *b == backend) {
            return Err(format!(
                "variants `{other}` and `{}` would both be named {backend} in Kubernetes; rename \
                 one",
                v.name
            ));
        }
        seen.push((backend, &v.name));
    }
    Ok(())
}

/// The folder's files for `scenario` (read from `scenario_text`), sized from `past` where it
/// has figures; `folder` is where they will be, as the README's commands name it. Refused as
/// [`refusal`] says.
pub fn plan(
    scenario: &Scenario,
    scenario_text: &str,
    options: &RenderOptions,
    past: Option<PastRun<'_>>,
    folder: &Path,
) -> Result<Vec<RenderedFile>, String> {
    refusal(scenario, scenario_text, options)?;
    let target = Target {
        scenario,
        scenario_text,
        shards: options.shards,
        image: &options.image,
        namespace: &options.namespace,
        storage_class: options.storage_class.as_deref(),
    };
    let chosen: Vec<(usize, &crate::scenario::VariantConfig)> = scenario
        .variants
        .iter()
        .enumerate()
        .filter(|(_, v)| options.variant.as_ref().is_none_or(|name| &v.name == name))
        .collect();
    let mut files = Vec::new();
    let mut file = |path: PathBuf, contents: Contents| files.push(RenderedFile { path, contents });
    if !BUILT_IN_NAMESPACES.contains(&options.namespace.as_str()) {
        file(
            "namespace.yaml".into(),
            Contents::Manifests(vec![manifests::namespace(&target)]),
        );
    }
    let storage = storage(scenario, &chosen);
    file(
        "pvc.yaml".into(),
        Contents::Manifests(vec![manifests::results_claim(
            &target,
            &storage.quantity,
            &storage.estimate,
        )]),
    );
    file(
        "configmap.yaml".into(),
        Contents::Manifests(vec![manifests::scenario_config_map(&target)]),
    );
    let mut variants = Vec::new();
    for (i, v) in &chosen {
        let names = VariantNames::of(&v.name, *i);
        let sized: VariantSizing = sizing::size(scenario, v, options.shards, past);
        let dir = PathBuf::from(&v.name);
        file(
            dir.join("backend.yaml"),
            Contents::Manifests(manifests::backend(&target, v, &names, &sized.backend).into()),
        );
        file(
            dir.join("job.yaml"),
            Contents::Manifests(vec![manifests::fleet_job(&target, v, &names, &sized.shard)]),
        );
        variants.push(readme::Variant {
            config: v,
            names,
            sizing: sized,
        });
    }
    file(
        "Dockerfile".into(),
        Contents::Text(readme::DOCKERFILE.to_owned()),
    );
    file(
        "Dockerfile.dockerignore".into(),
        Contents::Text(readme::DOCKERIGNORE.to_owned()),
    );
    let readme = readme::readme(&readme::Folder {
        path: folder,
        target: &target,
        storage: &storage,
        variants: &variants,
        has_namespace_file: !BUILT_IN_NAMESPACES.contains(&options.namespace.as_str()),
    });
    file("README.md".into(), Contents::Text(readme));
    Ok(files)
}

/// The results volume's size: the raw records of the chosen variants ([`crate::disk`]'s
/// estimate) x 1.5, at least [`MIN_STORAGE_BYTES`], in whole GiB.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Storage {
    /// The quantity asked for: `2Gi`.
    pub quantity: String,
    /// How it was reached, in words.
    pub estimate: String,
}

fn storage(scenario: &Scenario, chosen: &[(usize, &crate::scenario::VariantConfig)]) -> Storage {
    let mut only_chosen = scenario.clone();
    only_chosen.variants = chosen.iter().map(|(_, v)| (*v).clone()).collect();
    let estimate = crate::disk::estimate(&only_chosen);
    let wanted = (estimate.bytes as f64 * 1.5).ceil() as u64;
    let gib = wanted.max(MIN_STORAGE_BYTES).div_ceil(1 << 30);
    Storage {
        quantity: format!("{gib}Gi"),
        estimate: format!(
            "raw records of {} readings estimated at {}, x1.5, at least 1 GiB",
            estimate.readings,
            crate::disk::human(estimate.bytes)
        ),
    }
}

/// Writes `files` into `out`, each atomically, and returns their paths. A folder that holds
/// anything is refused unless `force`; with `force`, what an earlier render wrote there
/// ([`TOP_FILES`], and variant folders of [`VARIANT_FILES`] alone) is removed first.
pub fn write(files: &[RenderedFile], out: &Path, force: bool) -> Result<Vec<PathBuf>, RenderError> {
    let held = match std::fs::read_dir(out) {
        Ok(mut entries) => entries.next().is_some(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => false,
        Err(e) => return Err(io_error(out, e).into()),
    };
    if held {
        if !force {
            return Err(RenderError::Refused(format!(
                "{} is not empty; choose another --out, or pass --force to replace what an \
                 earlier render wrote there",
                out.display()
            )));
        }
        remove_earlier_render(out)?;
    }
    let mut written = Vec::new();
    for f in files {
        let path = out.join(&f.path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| io_error(parent, e))?;
        }
        crate::results::write_atomically(&path, f.contents.text().as_bytes())?;
        written.push(path);
    }
    Ok(written)
}

/// Removes what a render writes from `out`, leaving anything else.
fn remove_earlier_render(out: &Path) -> io::Result<()> {
    for entry in std::fs::read_dir(out).map_err(|e| io_error(out, e))? {
        let path = entry.map_err(|e| io_error(out, e))?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let remove = |p: &Path| std::fs::remove_file(p).map_err(|e| io_error(p, e));
        if path.is_file() && TOP_FILES.contains(&name) {
            remove(&path)?;
        } else if path.is_dir() && !path.is_symlink() {
            let inside: Vec<PathBuf> = std::fs::read_dir(&path)
                .map_err(|e| io_error(&path, e))?
                .map(|e| e.map(|e| e.path()))
                .collect::<io::Result<_>>()
                .map_err(|e| io_error(&path, e))?;
            let rendered = |p: &PathBuf| {
                p.is_file()
                    && p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| VARIANT_FILES.contains(&n))
            };
            if !inside.is_empty() && inside.iter().all(rendered) {
                for p in &inside {
                    remove(p)?;
                }
                std::fs::remove_dir(&path).map_err(|e| io_error(&path, e))?;
            }
        }
    }
    Ok(())
}

/// `e`, naming `path`.
fn io_error(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCENARIO: &str = "name = \"s\"\nduration = \"60s\"\n[fleet]\ndevices = 100\n\
                            interval = \"1s\"\n[[variants]]\nname = \"tcp\"\ntransport = \"tcp\"\n";

    fn options(shards: u32) -> RenderOptions {
        RenderOptions {
            shards,
            image: "fleetbench:test".into(),
            namespace: "fleetbench".into(),
            variant: None,
            storage_class: None,
        }
    }

    fn refused(text: &str, options: &RenderOptions) -> String {
        let s = crate::scenario::parse(text, "s.toml").unwrap();
        refusal(&s, text, options).unwrap_err()
    }

    #[test]
    fn what_a_split_fleet_cannot_run_is_refused_with_its_reason() {
        let faults = format!(
            "{SCENARIO}[[faults]]\nkind = \"backend-restart\"\nstart = \"10s\"\nduration = \"3s\"\n"
        );
        assert!(refused(&faults, &options(2)).contains("[[faults]]"));
        let sse = SCENARIO.replace("transport = \"tcp\"", "transport = \"sse\"");
        assert!(refused(&sse, &options(2)).contains("serve"));
        assert!(refused(SCENARIO, &options(101)).contains("1 to 100 shards"));
        assert!(refused(SCENARIO, &options(0)).contains("1 to 100 shards"));
        let mut bad = options(2);
        bad.namespace = "Bench".into();
        assert!(refused(SCENARIO, &bad).contains("--namespace"));
        let mut bad = options(2);
        bad.variant = Some("ws".into());
        assert!(refused(SCENARIO, &bad).contains("one of tcp"));
        let clash = format!("{SCENARIO}[[variants]]\nname = \"TCP\"\ntransport = \"ws\"\n");
        assert!(refused(&clash, &options(2)).contains("fleetbench-tcp-backend"));
    }

    #[test]
    fn the_folder_has_shared_files_a_folder_per_variant_and_the_build_files() {
        let text = format!("{SCENARIO}[[variants]]\nname = \"ws\"\ntransport = \"ws\"\n");
        let s = crate::scenario::parse(&text, "s.toml").unwrap();
        let files = plan(&s, &text, &options(4), None, Path::new("out")).unwrap();
        let paths: Vec<_> = files.iter().map(|f| f.path.display().to_string()).collect();
        assert_eq!(
            paths,
            [
                "namespace.yaml",
                "pvc.yaml",
                "configmap.yaml",
                "tcp/backend.yaml",
                "tcp/job.yaml",
                "ws/backend.yaml",
                "ws/job.yaml",
                "Dockerfile",
                "Dockerfile.dockerignore",
                "README.md",
            ]
        );
        let mut one = options(4);
        one.variant = Some("ws".into());
        one.namespace = "default".into();
        let files = plan(&s, &text, &one, None, Path::new("out")).unwrap();
        let paths: Vec<_> = files.iter().map(|f| f.path.display().to_string()).collect();
        assert_eq!(
            paths[..3],
            ["pvc.yaml", "configmap.yaml", "ws/backend.yaml"]
        );
    }

    #[test]
    fn the_volume_holds_the_estimated_records_with_room() {
        let s = crate::scenario::parse(SCENARIO, "s.toml").unwrap();
        let chosen: Vec<_> = s.variants.iter().enumerate().collect();
        assert_eq!(storage(&s, &chosen).quantity, "1Gi");
        let big = SCENARIO.replace("devices = 100", "devices = 1000000");
        let s = crate::scenario::parse(&big, "s.toml").unwrap();
        let chosen: Vec<_> = s.variants.iter().enumerate().collect();
        let estimate = crate::disk::estimate(&s).bytes;
        let gib = (estimate as f64 * 1.5 / (1u64 << 30) as f64).ceil() as u64;
        assert!(gib > 1);
        assert_eq!(storage(&s, &chosen).quantity, format!("{gib}Gi"));
    }

    #[test]
    fn a_folder_in_use_is_refused_and_force_replaces_only_an_earlier_render() {
        let dir = tempfile::tempdir().unwrap();
        let s = crate::scenario::parse(SCENARIO, "s.toml").unwrap();
        let files = plan(&s, SCENARIO, &options(2), None, dir.path()).unwrap();
        std::fs::write(dir.path().join("notes.txt"), "mine").unwrap();
        std::fs::create_dir(dir.path().join("old-variant")).unwrap();
        std::fs::write(dir.path().join("old-variant/job.yaml"), "old").unwrap();
        let err = write(&files, dir.path(), false).unwrap_err();
        assert!(
            matches!(err, RenderError::Refused(ref m) if m.contains("--force")),
            "{err}"
        );
        let written = write(&files, dir.path(), true).unwrap();
        assert_eq!(written.len(), files.len());
        assert!(dir.path().join("notes.txt").exists());
        assert!(!dir.path().join("old-variant").exists());
        assert_eq!(
            std::fs::read_to_string(dir.path().join("tcp/job.yaml")).unwrap(),
            files[4].contents.text()
        );
    }
}
