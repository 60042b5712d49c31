//! `fleetbench k8s render` as a user runs it: the shipped scenarios/k8s.toml rendered for 10
//! shards of 10,000 devices by the real binary, the manifests checked for what they ask of
//! Kubernetes and validated offline against its schemas by `kubernetes-validate` (PyPI), and
//! scenarios a fleet split over machines cannot run refused before anything is written.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use fleetbench::k8s::{self, Contents, RenderOptions, RenderedFile};
use serde_json::Value;

/// The Kubernetes version the manifests are validated against: Indexed Jobs are GA since 1.24,
/// and kubernetes-validate bundles the schemas of 1.25 onwards.
const KUBERNETES_VERSION: &str = "1.30.0";

const IMAGE: &str = "registry.example/fleetbench:test";

const MIB: f64 = 1024.0 * 1024.0;
const KIB: f64 = 1024.0;

fn shipped_scenario() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/k8s.toml")
}

fn render(scenario: &Path, out: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fleetbench"))
        .args(["k8s", "render"])
        .arg(scenario)
        .args(["--shards", "10", "--image", IMAGE, "--out"])
        .arg(out)
        .args(extra)
        .output()
        .unwrap()
}

/// The files the library plans for the shipped scenario with the same options, to read the
/// binary's YAML against.
fn planned(out: &Path) -> Vec<RenderedFile> {
    let path = shipped_scenario();
    let text = std::fs::read_to_string(&path).unwrap();
    let scenario = fleetbench::scenario::parse(&text, &path.display().to_string()).unwrap();
    let options = RenderOptions {
        shards: 10,
        image: IMAGE.to_owned(),
        namespace: "fleetbench".to_owned(),
        variant: None,
        storage_class: None,
    };
    k8s::plan(&scenario, &text, &options, None, out).unwrap()
}

/// Every file under `dir`, relative to it, sorted.
fn files_under(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let relative = path.strip_prefix(dir).unwrap();
                found.push(relative.display().to_string());
            }
        }
    }
    found.sort();
    found
}

/// The planned objects of `file`.
fn objects<'a>(files: &'a [RenderedFile], file: &str) -> &'a [Value] {
    let f = files
        .iter()
        .find(|f| f.path == Path::new(file))
        .unwrap_or_else(|| panic!("{file} is planned"));
    match &f.contents {
        Contents::Manifests(objects) => objects,
        Contents::Text(_) => panic!("{file} holds text"),
    }
}

/// (idle + devices x KiB per device) x 1.5 summed over processes, in whole MiB rounded up.
fn memory_mi(processes: &[(f64, f64)], devices: f64) -> String {
    let bytes: f64 = processes
        .iter()
        .map(|(idle_mib, kib)| idle_mib * MIB + devices * kib * KIB)
        .sum();
    format!("{}Mi", (bytes * 1.5 / MIB).ceil())
}

/// readings/s x µs per reading x 1.5 in millicores, rounded up, at least 100.
fn cpu_m(readings_per_s: f64, us: f64) -> String {
    let m = (readings_per_s * us * 1e-6 * 1.5 * 1000.0 * 1e6).round() / 1e6;
    format!("{}m", (m.ceil() as u64).max(100))
}

#[test]
fn the_k8s_scenario_renders_as_ten_indexed_shards_sized_from_the_measured_figures() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("k8s");
    let rendered = render(&shipped_scenario(), &out, &[]);
    let stdout = String::from_utf8_lossy(&rendered.stdout);
    assert!(
        rendered.status.success(),
        "{}{stdout}",
        String::from_utf8_lossy(&rendered.stderr)
    );
    let expected = [
        "Dockerfile",
        "Dockerfile.dockerignore",
        "README.md",
        "configmap.yaml",
        "mqtt-qos0/backend.yaml",
        "mqtt-qos0/job.yaml",
        "namespace.yaml",
        "pvc.yaml",
        "tcp/backend.yaml",
        "tcp/job.yaml",
    ];
    assert_eq!(files_under(&out), expected);
    for file in expected {
        assert!(
            stdout.contains(&out.join(file).display().to_string()),
            "{stdout}"
        );
    }

    // The binary wrote what the library plans: its values describe the files.
    let files = planned(&out);
    for f in &files {
        let written = std::fs::read_to_string(out.join(&f.path)).unwrap();
        assert_eq!(written, f.contents.text(), "{}", f.path.display());
    }

    let job = &objects(&files, "tcp/job.yaml")[0];
    assert_eq!(job["kind"], "Job");
    let spec = &job["spec"];
    assert_eq!(spec["completionMode"], "Indexed");
    assert_eq!(spec["completions"], 10);
    assert_eq!(spec["parallelism"], 10);
    assert_eq!(spec["backoffLimit"], 0);
    // Shards wait 600 s, ramp 20 s, warm-up 30 s, window 120 s, margin 120 s.
    assert_eq!(spec["activeDeadlineSeconds"], 890);
    let pod = &spec["template"]["spec"];
    assert_eq!(pod["restartPolicy"], "Never");
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["securityContext"]["runAsUser"], 10001);
    let container = &pod["containers"][0];
    assert_eq!(
        container["securityContext"]["allowPrivilegeEscalation"],
        false
    );
    assert_eq!(
        container["securityContext"]["capabilities"]["drop"],
        serde_json::json!(["ALL"])
    );
    let args: Vec<&str> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(args.contains(&"$(JOB_COMPLETION_INDEX)/10"), "{args:?}");
    assert_eq!(args[0], "fleet");
    assert!(args.windows(2).any(|w| w
        == [
            "--backend",
            "fleetbench-tcp-backend.fleetbench.svc.cluster.local:7878"
        ]));
    // 10,000 devices a shard, one reading every 10 s: the tcp fleet's 3.6 KiB and 63 µs.
    let requests = &container["resources"]["requests"];
    assert_eq!(requests["memory"], memory_mi(&[(20.0, 3.6)], 10_000.0));
    assert_eq!(requests["cpu"], cpu_m(1_000.0, 63.0));
    assert!(job["metadata"]["annotations"]["fleetbench.dev/sizing"]
        .as_str()
        .unwrap()
        .contains("issue 16"));

    // The tcp backend: the receiving side's process and the sink, for all 100,000 devices.
    let [deployment, service] = objects(&files, "tcp/backend.yaml") else {
        panic!("a Deployment and a Service")
    };
    assert_eq!(deployment["kind"], "Deployment");
    assert_eq!(service["kind"], "Service");
    let backend = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(backend["args"][0], "receive");
    let requests = &backend["resources"]["requests"];
    assert_eq!(
        requests["memory"],
        memory_mi(&[(20.0, 0.0), (20.0, 5.8)], 100_000.0)
    );
    assert_eq!(requests["cpu"], cpu_m(10_000.0, 14.0));

    // MQTT through the external broker: the shards dial it; the Service has the control port.
    let job = &objects(&files, "mqtt-qos0/job.yaml")[0];
    let container = &job["spec"]["template"]["spec"]["containers"][0];
    assert!(container["args"]
        .as_array()
        .unwrap()
        .windows(2)
        .any(|w| w[0] == "--backend" && w[1] == "emqx.fleetbench.svc.cluster.local:1883"));
    assert_eq!(
        container["resources"]["requests"]["memory"],
        memory_mi(&[(20.0, 16.0)], 10_000.0)
    );
    let service = &objects(&files, "mqtt-qos0/backend.yaml")[1];
    assert_eq!(service["spec"]["ports"].as_array().unwrap().len(), 1);

    let dockerfile = std::fs::read_to_string(out.join("Dockerfile")).unwrap();
    let from: Vec<&str> = dockerfile
        .lines()
        .filter(|l| l.starts_with("FROM "))
        .collect();
    assert_eq!(
        from,
        [
            "FROM rust:1-slim-bookworm AS build",
            "FROM debian:bookworm-slim"
        ]
    );
    assert!(dockerfile.contains("cargo build --release --locked -p fleetbench"));
    let user = dockerfile
        .lines()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("a USER");
    assert!(
        !["root", "0"].contains(&user.split(':').next().unwrap()),
        "{user}"
    );
    assert!(dockerfile.contains("ENTRYPOINT [\"fleetbench\"]"));

    let readme = std::fs::read_to_string(out.join("README.md")).unwrap();
    for step in [
        format!("docker build -f {}/Dockerfile -t {IMAGE} .", out.display()),
        "kubectl -n fleetbench rollout status deployment/fleetbench-tcp-backend".to_owned(),
        "wait --for=condition=complete job/fleetbench-tcp-fleet".to_owned(),
        "kubectl cp fleetbench/$POD:/results/tcp ./results-k8s/tcp".to_owned(),
        "fleetbench merge results-k8s --out results/k8s-k8s".to_owned(),
        "built-in: measured on main for issue 16".to_owned(),
    ] {
        assert!(readme.contains(&step), "README lacks {step:?}");
    }

    // The folder is not empty now: refused without --force, replaced with it.
    let again = render(&shipped_scenario(), &out, &[]);
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
    let forced = render(&shipped_scenario(), &out, &["--force"]);
    assert!(forced.status.success());
    assert_eq!(files_under(&out), expected);
}

#[test]
fn sizing_from_a_past_run_names_it_in_the_annotations() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("k8s");
    let past = Path::new(env!("CARGO_MANIFEST_DIR")).join("../baselines/gate");
    let rendered = render(
        &shipped_scenario(),
        &out,
        &["--variant", "tcp", "--sizing-from", past.to_str().unwrap()],
    );
    assert!(
        rendered.status.success(),
        "{}",
        String::from_utf8_lossy(&rendered.stderr)
    );
    assert!(!out.join("mqtt-qos0").exists());
    let job = std::fs::read_to_string(out.join("tcp/job.yaml")).unwrap();
    let source = format!(
        "measured in {}, variant tcp",
        past.join("results.json").display()
    );
    assert!(job.contains(&source), "{job}");
    let missing = render(
        &shipped_scenario(),
        &dir.path().join("other"),
        &[
            "--sizing-from",
            dir.path().join("nothing").to_str().unwrap(),
        ],
    );
    assert_eq!(missing.status.code(), Some(2));
}

#[test]
fn what_a_fleet_split_over_machines_cannot_run_is_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let base =
        "name = \"split\"\nduration = \"60s\"\n\n[fleet]\ndevices = 100\ninterval = \"1s\"\n\n";
    let cases = [
        (
            format!(
                "{base}[[variants]]\nname = \"tcp\"\ntransport = \"tcp\"\n\n[[faults]]\n\
                 kind = \"backend-restart\"\nstart = \"5s\"\nduration = \"3s\"\n"
            ),
            "[[faults]]",
        ),
        (
            format!("{base}[[variants]]\nname = \"sse\"\ntransport = \"sse\"\n"),
            "variant `sse`: its devices serve",
        ),
        (
            base.replace("devices = 100", "devices = 5")
                + "[[variants]]\nname = \"tcp\"\ntransport = \"tcp\"\n",
            "1 to 5 shards",
        ),
    ];
    for (i, (text, reason)) in cases.iter().enumerate() {
        let scenario = dir.path().join(format!("split-{i}.toml"));
        std::fs::write(&scenario, text).unwrap();
        let out = dir.path().join(format!("out-{i}"));
        let refused = render(&scenario, &out, &[]);
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert_eq!(refused.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(reason), "{stderr}");
        assert!(!out.exists());
    }
}

/// The program, or a failure naming how to install it: a missing tool is never a pass. The
/// test that calls it has `kubernetes_validate` in its name, so the `without-tools` nextest
/// profile (.config/nextest.toml) can skip it.
fn run_tool(program: &str, args: &[&str]) -> Output {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} could not be run ({e})"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !stderr.contains("No module named kubernetes_validate"),
        "This test needs kubernetes-validate: `pip install kubernetes-validate` (README, Quick \
         start), or skip the tests that need it: `NEXTEST_PROFILE=without-tools cargo nextest \
         run --workspace`"
    );
    output
}

#[test]
fn kubernetes_validate_accepts_every_rendered_manifest_and_reads_it_as_planned() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("k8s");
    assert!(render(&shipped_scenario(), &out, &[]).status.success());
    let yaml: Vec<String> = files_under(&out)
        .into_iter()
        .filter(|f| f.ends_with(".yaml"))
        .map(|f| out.join(f).display().to_string())
        .collect();
    assert_eq!(yaml.len(), 7);
    let mut args = vec!["--strict", "-k", KUBERNETES_VERSION];
    args.extend(yaml.iter().map(String::as_str));
    // As a module of the Python pip installed it into, whether or not its script is on PATH.
    let mut module = vec!["-m", "kubernetes_validate"];
    module.extend(args);
    let validated = run_tool("python3", &module);
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&validated.stdout),
        String::from_utf8_lossy(&validated.stderr)
    );
    println!("{report}");
    assert!(validated.status.success(), "{report}");
    // Every object passed: a namespace, a claim, a ConfigMap, and per variant a Deployment, a
    // Service and a Job.
    assert_eq!(
        report.matches(" passed for resource ").count(),
        9,
        "{report}"
    );
    assert!(!report.contains("ERROR"), "{report}");

    // A YAML reader other than ours (PyYAML, which kubernetes-validate uses) reads every file
    // as the values planned: nothing was quoted too little.
    let files = planned(&out);
    for f in &files {
        let Contents::Manifests(planned) = &f.contents else {
            continue;
        };
        let path = out.join(&f.path);
        let read = run_tool(
            "python3",
            &[
                "-c",
                "import json, sys, yaml; \
                 print(json.dumps(list(yaml.safe_load_all(open(sys.argv[1])))))",
                path.to_str().unwrap(),
            ],
        );
        assert!(
            read.status.success(),
            "python3 could not read {} with PyYAML (`pip install kubernetes-validate` installs \
             it): {}",
            path.display(),
            String::from_utf8_lossy(&read.stderr)
        );
        let documents: Vec<Value> = serde_json::from_slice(&read.stdout).unwrap();
        assert_eq!(&documents, planned, "{}", path.display());
    }
}
