//! The Kubernetes objects of a split run, as JSON values: the namespace, the results volume
//! claim, the scenario's ConfigMap, and per variant the backend (a Deployment and its Service,
//! running `fleetbench receive`) and the fleet (an Indexed Job, one pod per shard, running
//! `fleetbench fleet --shard K/N`). Pure: the scenario and the options in, values out; the
//! YAML text is [`super::yaml`]'s, the files [`super::render`]'s.

use std::time::Duration;

use serde_json::{json, Value};

use super::sizing::{PodSizing, Requests};
use crate::distributed::{BROKER_PORT, CONTROL_PORT, SINK_PORT};
use crate::scenario::{BrokerChoice, Scenario, VariantConfig};

/// Where every pod finds the scenario file (the ConfigMap, mounted).
pub const SCENARIO_DIR: &str = "/etc/fleetbench";

/// The scenario's key in the ConfigMap, and its file name under [`SCENARIO_DIR`].
pub const SCENARIO_KEY: &str = "scenario.toml";

/// Where every pod has the results volume.
pub const RESULTS_DIR: &str = "/results";

/// The user and group every container runs as (the image's `USER`).
pub const RUN_AS: u64 = 10001;

/// The ConfigMap holding the scenario.
pub const CONFIGMAP_NAME: &str = "fleetbench-scenario";

/// The claim of the results volume.
pub const PVC_NAME: &str = "fleetbench-results";

/// How long the receiving side waits for every shard to say HELLO.
pub const WAIT_FOR_SHARDS: Duration = Duration::from_secs(600);

/// What a Job may run beyond waiting for shards, the ramp, the warm-up and the window: the
/// shards' start and the writing of their records.
pub const DEADLINE_MARGIN: Duration = Duration::from_secs(120);

/// The cluster's DNS domain that Service names are qualified with.
pub const CLUSTER_DOMAIN: &str = "cluster.local";

/// Annotation saying where a pod's requests come from.
pub const SIZING_ANNOTATION: &str = "fleetbench.dev/sizing";

/// Label naming the variant on everything that belongs to one.
pub const VARIANT_LABEL: &str = "fleetbench.dev/variant";

/// Longest variant part of an object's name: `fleetbench-<variant>-backend` stays within the
/// 63 characters of a DNS label, and an Indexed Job's pod hostnames (`<job>-<index>`) too.
const MAX_VARIANT_PART: usize = 39;

/// What every manifest is made from besides the variant.
#[derive(Clone, Copy, Debug)]
pub struct Target<'a> {
    /// The scenario.
    pub scenario: &'a Scenario,
    /// Its file's text, put in the ConfigMap as it is.
    pub scenario_text: &'a str,
    /// Fleet shards, one pod each.
    pub shards: u32,
    /// The image every pod runs.
    pub image: &'a str,
    /// The namespace of every object.
    pub namespace: &'a str,
    /// The results volume's storage class (absent: the cluster's default).
    pub storage_class: Option<&'a str>,
}

/// A variant's object names and label value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VariantNames {
    /// The Deployment's and the Service's name.
    pub backend: String,
    /// The Job's name.
    pub job: String,
    /// The value of [`VARIANT_LABEL`].
    pub label: String,
}

impl VariantNames {
    /// Names for the variant `name`, the `index`-th of its scenario (0-based; named by it when
    /// nothing of `name` fits a DNS label).
    pub fn of(name: &str, index: usize) -> VariantNames {
        let mut part = dns_label(name, MAX_VARIANT_PART);
        if part.is_empty() {
            part = format!("variant-{}", index + 1);
        }
        VariantNames {
            backend: format!("fleetbench-{part}-backend"),
            job: format!("fleetbench-{part}-fleet"),
            label: label_value(name),
        }
    }
}

/// `text` as a DNS label of at most `max` characters: lower case, every character other than a
/// letter, a digit or `-` turned into `-`, no `-` at either end.
pub fn dns_label(text: &str, max: usize) -> String {
    let mapped: String = text
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                '-'
            }
        })
        .collect();
    let trimmed = mapped.trim_matches('-');
    trimmed[..trimmed.len().min(max)]
        .trim_end_matches('-')
        .to_owned()
}

/// `text` as a label value: at most 63 characters of letters, digits, `-`, `_` and `.`,
/// beginning and ending with a letter or digit.
pub fn label_value(text: &str) -> String {
    let mapped: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .collect();
    let ends = |c: char| !c.is_ascii_alphanumeric();
    let trimmed = mapped.trim_matches(ends);
    trimmed[..trimmed.len().min(63)]
        .trim_end_matches(ends)
        .to_owned()
}

/// The labels of an object: fleetbench's, the scenario's, its component and its variant.
pub fn labels(target: &Target<'_>, component: &str, variant: Option<&VariantNames>) -> Value {
    let mut labels = selector(component, variant);
    let map = labels.as_object_mut().expect("an object");
    map.insert(
        "app.kubernetes.io/part-of".into(),
        label_value(&target.scenario.name).into(),
    );
    map.insert("app.kubernetes.io/managed-by".into(), "fleetbench".into());
    labels
}

/// The labels that pick a component's pods: fleetbench's, the component and the variant.
fn selector(component: &str, variant: Option<&VariantNames>) -> Value {
    let mut labels = json!({
        "app.kubernetes.io/name": "fleetbench",
        "app.kubernetes.io/component": component,
    });
    if let Some(v) = variant {
        labels[VARIANT_LABEL] = v.label.clone().into();
    }
    labels
}

/// The namespace, with the `restricted` Pod Security Standard enforced: every pod here meets
/// it (non-root, no privilege escalation, no capabilities, the runtime's seccomp profile).
pub fn namespace(target: &Target<'_>) -> Value {
    let mut labels = labels(target, "namespace", None);
    labels["pod-security.kubernetes.io/enforce"] = "restricted".into();
    json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": { "name": target.namespace, "labels": labels },
    })
}

/// The results volume's claim: `storage` (a quantity), ReadWriteMany, since every pod of the
/// run writes its records into it, on whichever node it runs. `estimate` says how the size was
/// reached.
pub fn results_claim(target: &Target<'_>, storage: &str, estimate: &str) -> Value {
    let mut spec = json!({
        "accessModes": ["ReadWriteMany"],
        "resources": { "requests": { "storage": storage } },
    });
    if let Some(class) = target.storage_class {
        spec["storageClassName"] = class.into();
    }
    json!({
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {
            "name": PVC_NAME,
            "namespace": target.namespace,
            "labels": labels(target, "results", None),
            "annotations": { "fleetbench.dev/estimate": estimate },
        },
        "spec": spec,
    })
}

/// The scenario file as a ConfigMap, its text as it is.
pub fn scenario_config_map(target: &Target<'_>) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": CONFIGMAP_NAME,
            "namespace": target.namespace,
            "labels": labels(target, "scenario", None),
        },
        "data": { SCENARIO_KEY: target.scenario_text },
    })
}

/// Where a variant's receiving side listens for the devices: the sink's port, the embedded
/// broker's, or none (an external broker: the devices dial it, not the backend).
pub fn listen_port(variant: &VariantConfig) -> Option<u16> {
    if variant.received_by_a_sink() {
        Some(SINK_PORT)
    } else {
        match variant.broker() {
            BrokerChoice::Embedded => Some(BROKER_PORT),
            BrokerChoice::External(_) => None,
        }
    }
}

/// The Service's name qualified for the cluster's DNS.
pub fn service_host(target: &Target<'_>, names: &VariantNames) -> String {
    format!(
        "{}.{}.svc.{CLUSTER_DOMAIN}",
        names.backend, target.namespace
    )
}

/// What the shards dial: the backend's Service at the listening port, or the external broker.
pub fn backend_address(
    target: &Target<'_>,
    variant: &VariantConfig,
    names: &VariantNames,
) -> String {
    match (listen_port(variant), variant.broker()) {
        (Some(port), _) => format!("{}:{port}", service_host(target, names)),
        (None, BrokerChoice::External(address)) => address,
        (None, BrokerChoice::Embedded) => unreachable!("an embedded broker listens"),
    }
}

/// The receiving side's command line (after `fleetbench`).
pub fn receive_args(target: &Target<'_>, variant: &VariantConfig) -> Vec<String> {
    let mut args = vec![
        "receive".to_owned(),
        format!("{SCENARIO_DIR}/{SCENARIO_KEY}"),
        "--variant".to_owned(),
        variant.name.clone(),
        "--shards".to_owned(),
        target.shards.to_string(),
    ];
    if let Some(port) = listen_port(variant) {
        args.extend(["--listen".to_owned(), format!("0.0.0.0:{port}")]);
    }
    args.extend([
        "--control".to_owned(),
        format!("0.0.0.0:{CONTROL_PORT}"),
        "--out".to_owned(),
        format!("{RESULTS_DIR}/{}/receiver", variant.name),
        "--wait-for-shards".to_owned(),
        format!("{}s", WAIT_FOR_SHARDS.as_secs()),
        "--linger".to_owned(),
    ]);
    args
}

/// A fleet shard's command line (after `fleetbench`); Kubernetes puts the pod's completion
/// index in for `$(JOB_COMPLETION_INDEX)`.
pub fn fleet_args(
    target: &Target<'_>,
    variant: &VariantConfig,
    names: &VariantNames,
) -> Vec<String> {
    let n = target.shards;
    vec![
        "fleet".to_owned(),
        "--scenario".to_owned(),
        format!("{SCENARIO_DIR}/{SCENARIO_KEY}"),
        "--variant".to_owned(),
        variant.name.clone(),
        "--shard".to_owned(),
        format!("$(JOB_COMPLETION_INDEX)/{n}"),
        "--backend".to_owned(),
        backend_address(target, variant, names),
        "--control".to_owned(),
        format!("{}:{CONTROL_PORT}", service_host(target, names)),
        "--out".to_owned(),
        format!(
            "{RESULTS_DIR}/{}/shard-$(JOB_COMPLETION_INDEX)",
            variant.name
        ),
    ]
}

/// The longest a variant's Job may run: the receiving side's wait for the shards, the connect
/// ramp, the warm-up, the window and [`DEADLINE_MARGIN`], in whole seconds.
pub fn active_deadline_s(scenario: &Scenario) -> u64 {
    let total = WAIT_FOR_SHARDS
        + scenario.fleet.ramp
        + scenario.warmup
        + scenario.duration
        + DEADLINE_MARGIN;
    total.as_secs() + u64::from(total.subsec_nanos() > 0)
}

/// A pod's resources: its requests, and a memory limit of twice the request (a shard that
/// leaks is stopped before it takes its node down). No CPU limit: the kernel would throttle
/// the pod in 100 ms periods, which the run would measure as latency the backend never caused.
pub fn resources(requests: &Requests) -> Value {
    let limit = Requests {
        memory_bytes: requests.memory_bytes * 2,
        ..*requests
    };
    json!({
        "requests": { "cpu": requests.cpu_quantity(), "memory": requests.memory_quantity() },
        "limits": { "memory": limit.memory_quantity() },
    })
}

/// The pod's security context: not root, the image's user and group, the volume's files
/// group-owned by it, the runtime's seccomp profile.
fn pod_security() -> Value {
    json!({
        "runAsNonRoot": true,
        "runAsUser": RUN_AS,
        "runAsGroup": RUN_AS,
        "fsGroup": RUN_AS,
        "seccompProfile": { "type": "RuntimeDefault" },
    })
}

/// The container's security context: no privilege escalation, no capabilities.
fn container_security() -> Value {
    json!({
        "runAsNonRoot": true,
        "allowPrivilegeEscalation": false,
        "capabilities": { "drop": ["ALL"] },
    })
}

/// The scenario (read-only) and the results volume, as every pod mounts them.
fn volumes() -> (Value, Value) {
    (
        json!([
            { "name": "scenario", "configMap": { "name": CONFIGMAP_NAME } },
            { "name": "results", "persistentVolumeClaim": { "claimName": PVC_NAME } },
        ]),
        json!([
            { "name": "scenario", "mountPath": SCENARIO_DIR, "readOnly": true },
            { "name": "results", "mountPath": RESULTS_DIR },
        ]),
    )
}

/// A variant's backend: a Deployment of one pod running `fleetbench receive` (which starts the
/// sink, or the broker and collector, as its children) and the Service the shards reach it by.
///
/// No probes: a TCP probe would be a connection the sink or the control channel counts. The
/// Deployment is replaced, never rolled (`Recreate`): two receiving sides would split a run.
pub fn backend(
    target: &Target<'_>,
    variant: &VariantConfig,
    names: &VariantNames,
    sizing: &PodSizing,
) -> [Value; 2] {
    let labels = labels(target, "backend", Some(names));
    let selector = selector("backend", Some(names));
    let (volumes, mounts) = volumes();
    let mut container_ports = vec![json!({
        "name": "control", "containerPort": CONTROL_PORT, "protocol": "TCP",
    })];
    let mut service_ports = vec![json!({
        "name": "control", "port": CONTROL_PORT, "targetPort": "control", "protocol": "TCP",
    })];
    if let Some(port) = listen_port(variant) {
        let name = if variant.received_by_a_sink() {
            "sink"
        } else {
            "mqtt"
        };
        container_ports.push(json!({ "name": name, "containerPort": port, "protocol": "TCP" }));
        service_ports.push(json!({
            "name": name, "port": port, "targetPort": name, "protocol": "TCP",
        }));
    }
    let deployment = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": names.backend,
            "namespace": target.namespace,
            "labels": labels,
            "annotations": { SIZING_ANNOTATION: sizing.describe() },
        },
        "spec": {
            "replicas": 1,
            "strategy": { "type": "Recreate" },
            "selector": { "matchLabels": selector },
            "template": {
                "metadata": { "labels": labels },
                "spec": {
                    "automountServiceAccountToken": false,
                    "securityContext": pod_security(),
                    "terminationGracePeriodSeconds": 60,
                    "containers": [{
                        "name": "receive",
                        "image": target.image,
                        "command": ["fleetbench"],
                        "args": receive_args(target, variant),
                        "ports": container_ports,
                        "resources": resources(&sizing.requests),
                        "securityContext": container_security(),
                        "volumeMounts": mounts,
                    }],
                    "volumes": volumes,
                },
            },
        },
    });
    let service = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": names.backend,
            "namespace": target.namespace,
            "labels": labels,
        },
        "spec": {
            "type": "ClusterIP",
            "selector": selector,
            "ports": service_ports,
        },
    });
    [deployment, service]
}

/// A variant's fleet: an Indexed Job of one pod per shard, all at once, none retried (a
/// shard run again would not be the same run), spread over the nodes and kept off the
/// backend's where the cluster allows.
pub fn fleet_job(
    target: &Target<'_>,
    variant: &VariantConfig,
    names: &VariantNames,
    sizing: &PodSizing,
) -> Value {
    let labels = labels(target, "fleet", Some(names));
    let (volumes, mounts) = volumes();
    let apart_from = |component: &str, weight: u32| {
        json!({
            "weight": weight,
            "podAffinityTerm": {
                "labelSelector": { "matchLabels": selector(component, Some(names)) },
                "topologyKey": "kubernetes.io/hostname",
            },
        })
    };
    json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": names.job,
            "namespace": target.namespace,
            "labels": labels,
            "annotations": { SIZING_ANNOTATION: sizing.describe() },
        },
        "spec": {
            "completionMode": "Indexed",
            "completions": target.shards,
            "parallelism": target.shards,
            "backoffLimit": 0,
            "activeDeadlineSeconds": active_deadline_s(target.scenario),
            "template": {
                "metadata": { "labels": labels },
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": false,
                    "securityContext": pod_security(),
                    "terminationGracePeriodSeconds": 60,
                    "affinity": {
                        "podAntiAffinity": {
                            "preferredDuringSchedulingIgnoredDuringExecution": [
                                apart_from("fleet", 100),
                                apart_from("backend", 50),
                            ],
                        },
                    },
                    "containers": [{
                        "name": "fleet",
                        "image": target.image,
                        "command": ["fleetbench"],
                        "args": fleet_args(target, variant, names),
                        "env": [{
                            "name": "JOB_COMPLETION_INDEX",
                            "valueFrom": { "fieldRef": {
                                "fieldPath":
                                    "metadata.annotations['batch.kubernetes.io/job-completion-index']",
                            } },
                        }],
                        "resources": resources(&sizing.requests),
                        "securityContext": container_security(),
                        "volumeMounts": mounts,
                    }],
                    "volumes": volumes,
                },
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::super::sizing;
    use super::*;

    const SCENARIO: &str = r#"
name = "k8s"
warmup = "30s"
duration = "120s"

[fleet]
devices = 100000
interval = "10s"
ramp = "20s"

[[variants]]
name = "tcp"
transport = "tcp"

[[variants]]
name = "Mqtt_Qos0"
transport = "mqtt-qos0"

[[variants]]
name = "mqtt-ext"
transport = "mqtt-qos0"
broker = "mqtt://emqx.brokers.svc.cluster.local:1883"
"#;

    fn scenario() -> Scenario {
        crate::scenario::parse(SCENARIO, "k8s.toml").unwrap()
    }

    fn target(scenario: &Scenario) -> Target<'_> {
        Target {
            scenario,
            scenario_text: SCENARIO,
            shards: 10,
            image: "registry.example/fleetbench:1",
            namespace: "bench",
            storage_class: Some("nfs"),
        }
    }

    fn strings(value: &Value) -> Vec<&str> {
        value
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect()
    }

    #[test]
    fn the_job_is_indexed_with_one_pod_per_shard_each_told_its_index() {
        let s = scenario();
        let t = target(&s);
        let names = VariantNames::of("tcp", 0);
        let sizing = sizing::size(&s, &s.variants[0], 10, None);
        let job = fleet_job(&t, &s.variants[0], &names, &sizing.shard);
        let spec = &job["spec"];
        assert_eq!(spec["completionMode"], "Indexed");
        assert_eq!(spec["completions"], 10);
        assert_eq!(spec["parallelism"], 10);
        assert_eq!(spec["backoffLimit"], 0);
        // 600 s for the shards, 20 s ramp, 30 s warm-up, 120 s window, 120 s margin.
        assert_eq!(spec["activeDeadlineSeconds"], 890);
        let pod = &spec["template"]["spec"];
        assert_eq!(pod["restartPolicy"], "Never");
        let container = &pod["containers"][0];
        assert_eq!(
            strings(&container["args"]),
            [
                "fleet",
                "--scenario",
                "/etc/fleetbench/scenario.toml",
                "--variant",
                "tcp",
                "--shard",
                "$(JOB_COMPLETION_INDEX)/10",
                "--backend",
                "fleetbench-tcp-backend.bench.svc.cluster.local:7878",
                "--control",
                "fleetbench-tcp-backend.bench.svc.cluster.local:7070",
                "--out",
                "/results/tcp/shard-$(JOB_COMPLETION_INDEX)",
            ]
        );
        assert_eq!(container["env"][0]["name"], "JOB_COMPLETION_INDEX");
        assert_eq!(
            container["env"][0]["valueFrom"]["fieldRef"]["fieldPath"],
            "metadata.annotations['batch.kubernetes.io/job-completion-index']"
        );
        assert_eq!(container["resources"]["requests"]["memory"], "83Mi");
        assert_eq!(container["resources"]["limits"]["memory"], "166Mi");
        assert!(container["resources"]["limits"].get("cpu").is_none());
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
        assert_eq!(pod["securityContext"]["runAsUser"], 10001);
        assert_eq!(
            container["securityContext"]["allowPrivilegeEscalation"],
            false
        );
        assert_eq!(
            container["securityContext"]["capabilities"]["drop"][0],
            "ALL"
        );
        assert!(job["metadata"]["annotations"][SIZING_ANNOTATION]
            .as_str()
            .unwrap()
            .contains("issue 16"));
        let labels = &job["metadata"]["labels"];
        assert_eq!(labels["app.kubernetes.io/name"], "fleetbench");
        assert_eq!(labels["app.kubernetes.io/part-of"], "k8s");
        assert_eq!(labels[VARIANT_LABEL], "tcp");
        let spread =
            &pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"];
        assert_eq!(
            spread[0]["podAffinityTerm"]["labelSelector"]["matchLabels"]
                ["app.kubernetes.io/component"],
            "fleet"
        );
    }

    #[test]
    fn the_backend_listens_where_its_variant_receives() {
        let s = scenario();
        let t = target(&s);
        let sink = &s.variants[0];
        let names = VariantNames::of(&sink.name, 0);
        let sizing = sizing::size(&s, sink, 10, None);
        let [deployment, service] = backend(&t, sink, &names, &sizing.backend);
        let container = &deployment["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(
            strings(&container["args"]),
            [
                "receive",
                "/etc/fleetbench/scenario.toml",
                "--variant",
                "tcp",
                "--shards",
                "10",
                "--listen",
                "0.0.0.0:7878",
                "--control",
                "0.0.0.0:7070",
                "--out",
                "/results/tcp/receiver",
                "--wait-for-shards",
                "600s",
                "--linger",
            ]
        );
        let ports: Vec<_> = service["spec"]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["port"].as_u64().unwrap())
            .collect();
        assert_eq!(ports, [7070, 7878]);
        // The selector picks the template's pods.
        let selector = deployment["spec"]["selector"]["matchLabels"]
            .as_object()
            .unwrap();
        let pod_labels = &deployment["spec"]["template"]["metadata"]["labels"];
        assert!(selector.iter().all(|(k, v)| &pod_labels[k] == v));
        assert_eq!(
            &service["spec"]["selector"],
            &deployment["spec"]["selector"]["matchLabels"]
        );

        // The embedded broker listens on 1883; names fit DNS, labels keep the case.
        let embedded = &s.variants[1];
        let names = VariantNames::of(&embedded.name, 1);
        assert_eq!(names.backend, "fleetbench-mqtt-qos0-backend");
        assert_eq!(names.label, "Mqtt_Qos0");
        let [deployment, service] = backend(&t, embedded, &names, &sizing.backend);
        let args = strings(&deployment["spec"]["template"]["spec"]["containers"][0]["args"]);
        assert!(args.windows(2).any(|w| w == ["--listen", "0.0.0.0:1883"]));
        assert_eq!(service["spec"]["ports"][1]["name"], "mqtt");

        // An external broker: no --listen, the Service has the control port only, and the
        // shards dial the broker.
        let external = &s.variants[2];
        let names = VariantNames::of(&external.name, 2);
        let [deployment, service] = backend(&t, external, &names, &sizing.backend);
        let args = strings(&deployment["spec"]["template"]["spec"]["containers"][0]["args"]);
        assert!(!args.contains(&"--listen"));
        assert_eq!(service["spec"]["ports"].as_array().unwrap().len(), 1);
        let fleet = fleet_args(&t, external, &names);
        assert!(fleet
            .windows(2)
            .any(|w| w == ["--backend", "emqx.brokers.svc.cluster.local:1883"]));
    }

    #[test]
    fn names_fit_dns_labels_and_label_values() {
        assert_eq!(dns_label("Tcp_JSON", 39), "tcp-json");
        assert_eq!(dns_label("-_a_-", 39), "a");
        assert_eq!(dns_label(&"x".repeat(64), 39).len(), 39);
        assert_eq!(
            dns_label(&format!("{}-y", "x".repeat(38)), 39),
            "x".repeat(38)
        );
        assert_eq!(
            VariantNames::of("__", 4).backend,
            "fleetbench-variant-5-backend"
        );
        assert_eq!(label_value("_a_b-"), "a_b");
        assert_eq!(label_value(&"y".repeat(64)).len(), 63);
        let longest = VariantNames::of(&"z".repeat(64), 0);
        assert!(longest.backend.len() <= 63 && longest.job.len() <= 63);
    }

    #[test]
    fn the_claim_names_its_class_and_the_namespace_enforces_restricted_pods() {
        let s = scenario();
        let t = target(&s);
        let claim = results_claim(&t, "2Gi", "about");
        assert_eq!(claim["spec"]["accessModes"][0], "ReadWriteMany");
        assert_eq!(claim["spec"]["storageClassName"], "nfs");
        assert_eq!(claim["spec"]["resources"]["requests"]["storage"], "2Gi");
        let ns = namespace(&t);
        assert_eq!(ns["metadata"]["name"], "bench");
        assert_eq!(
            ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
            "restricted"
        );
        let cm = scenario_config_map(&t);
        assert_eq!(cm["data"][SCENARIO_KEY], SCENARIO);
    }
}
