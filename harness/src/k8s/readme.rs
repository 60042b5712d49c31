//! The rendered folder's text files: the Dockerfile that builds the image, its ignore file, and
//! the README that says how to build, apply, collect, merge and clean up. Pure.

use std::fmt::Write;
use std::path::Path;

use super::manifests::{self, Target, VariantNames, VARIANT_LABEL};
use super::sizing::{PodSizing, VariantSizing, HEADROOM, MIN_CPU_MILLICORES};
use super::Storage;
use crate::scenario::{BrokerChoice, VariantConfig};

/// The image: built from the project root in Rust's slim image with the locked dependencies,
/// run from a slim Debian with the binary alone, as user 10001 (the manifests' `runAsUser`).
pub const DOCKERFILE: &str = r#"# fleetbench's image, rendered by `fleetbench k8s render`. Build it from the project root:
#   docker build -f <this folder>/Dockerfile -t IMAGE .
# Two stages: the build (Rust's slim image, the dependencies Cargo.lock pins) and a slim runtime
# with the binary alone, run as user 10001 (the manifests' runAsUser, not root).
FROM rust:1-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p fleetbench

FROM debian:bookworm-slim
# ca-certificates only; the base image's tar stays, since `kubectl cp` needs it.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin fleetbench
COPY --from=build /src/target/release/fleetbench /usr/local/bin/fleetbench
USER 10001
ENTRYPOINT ["fleetbench"]
"#;

/// What the build context leaves out (BuildKit reads `<Dockerfile>.dockerignore` beside the
/// Dockerfile before the context's own `.dockerignore`).
pub const DOCKERIGNORE: &str =
    "# The image needs the sources and Cargo.lock, not builds, results or history.
target
results
.git
";

/// A rendered variant, as the README tells it.
pub struct Variant<'a> {
    /// The scenario's variant.
    pub config: &'a VariantConfig,
    /// Its objects' names.
    pub names: VariantNames,
    /// Its pods' sizes.
    pub sizing: VariantSizing,
}

/// The folder, as the README tells it.
pub struct Folder<'a> {
    /// Where it is, as the commands name it.
    pub path: &'a Path,
    /// What the manifests were made from.
    pub target: &'a Target<'a>,
    /// The results volume's size.
    pub storage: &'a Storage,
    /// The variants rendered.
    pub variants: &'a [Variant<'a>],
    /// Whether namespace.yaml is among the files.
    pub has_namespace_file: bool,
}

/// The README.
pub fn readme(folder: &Folder<'_>) -> String {
    let t = folder.target;
    let s = t.scenario;
    let dir = folder.path.display();
    let ns = t.namespace;
    let shard_devices = super::sizing::devices_per_shard(s.fleet.devices, t.shards);
    let human = |d: std::time::Duration| humantime::format_duration(d).to_string();
    let mut out = String::new();
    let w = &mut out;
    let _ = writeln!(
        w,
        "# fleetbench on Kubernetes: scenario `{}`, {} shards\n",
        s.name, t.shards
    );
    let _ = writeln!(
        w,
        "Rendered by `fleetbench k8s render`. The scenario's {} devices (one reading every {}, \
         ramp {}, warm-up {}, window {}) run as an Indexed Job of {} pods, one fleet shard of up \
         to {} devices each (`fleetbench fleet --shard K/{}`), against the variant's backend in a \
         pod of its own (`fleetbench receive`: the sink, or the broker and collector, as its \
         children). The backend serves the control channel on port {} through which each shard's \
         clock is estimated against its own and the run's start is given. Namespace `{ns}`, \
         image `{}`.\n",
        s.fleet.devices,
        human(s.fleet.interval),
        human(s.fleet.ramp),
        human(s.warmup),
        human(s.duration),
        t.shards,
        shard_devices,
        t.shards,
        crate::distributed::CONTROL_PORT,
        t.image,
    );
    let _ = writeln!(w, "| file | what it is |\n| --- | --- |");
    if folder.has_namespace_file {
        let _ = writeln!(
            w,
            "| `namespace.yaml` | the namespace `{ns}`, enforcing the `restricted` Pod Security \
             Standard |"
        );
    }
    let class = t
        .storage_class
        .map(|c| format!("storage class `{c}`"))
        .unwrap_or_else(|| "the cluster's default storage class".to_owned());
    let _ = writeln!(
        w,
        "| `pvc.yaml` | the results volume `{}`: {}, ReadWriteMany, {} ({}), mounted at `{}` in \
         every pod |",
        manifests::PVC_NAME,
        folder.storage.quantity,
        class,
        folder.storage.estimate,
        manifests::RESULTS_DIR
    );
    let _ = writeln!(
        w,
        "| `configmap.yaml` | the scenario file, mounted as `{}/{}` |",
        manifests::SCENARIO_DIR,
        manifests::SCENARIO_KEY
    );
    for v in folder.variants {
        let name = &v.config.name;
        let listens = match manifests::listen_port(v.config) {
            Some(port) => format!(", devices' port {port}"),
            None => String::new(),
        };
        let _ = writeln!(
            w,
            "| `{name}/backend.yaml` | Deployment and Service `{}`: `fleetbench receive`, control \
             port {}{listens} |",
            v.names.backend,
            crate::distributed::CONTROL_PORT
        );
        let _ = writeln!(
            w,
            "| `{name}/job.yaml` | Indexed Job `{}`: {} shards, at most {} s |",
            v.names.job,
            t.shards,
            manifests::active_deadline_s(s)
        );
    }
    let _ = writeln!(
        w,
        "| `Dockerfile`, `Dockerfile.dockerignore` | the image: a multi-stage build, run as user \
         {} |\n",
        manifests::RUN_AS
    );

    let _ = writeln!(w, "## What the cluster needs\n");
    let _ = writeln!(
        w,
        "- A storage class that provides ReadWriteMany volumes (NFS, CephFS, a cloud's file \
         storage): every pod writes its records into the one volume, on whichever node it runs. \
         Render with `--storage-class NAME` to name one."
    );
    let _ = writeln!(
        w,
        "- Room for {} shard pods at once and the backend's (requests below). The shards spread \
         over the nodes and keep off the backend's where the cluster allows (preferred pod \
         anti-affinity); a shard that cannot be scheduled within {} s of the backend's start \
         fails the run.",
        t.shards,
        manifests::WAIT_FOR_SHARDS.as_secs()
    );
    for v in folder.variants {
        if let BrokerChoice::External(address) = v.config.broker() {
            let _ = writeln!(
                w,
                "- Variant `{}`: the MQTT broker at `{address}`, running before you start \
                 (fleetbench does not start an external broker); its shards dial it and the \
                 backend's collector subscribes to it.",
                v.config.name
            );
        }
    }
    let _ = writeln!(
        w,
        "- Cluster DNS under `{}` (the shards reach the backend as \
         `<service>.{ns}.svc.{}`).",
        manifests::CLUSTER_DOMAIN,
        manifests::CLUSTER_DOMAIN
    );
    let _ = writeln!(
        w,
        "- Open files: a shard opens a socket per device ({shard_devices}), the backend one per \
         device ({}). Container runtimes usually allow 1,048,576 per process (`kubectl exec ... \
         -- sh -c 'ulimit -n'` shows it). A shard dials the backend's one address from one pod \
         address, so past about 28,000 devices a shard runs out of ephemeral ports: use more \
         shards.\n",
        s.fleet.devices
    );

    let _ = writeln!(w, "## Sizing\n");
    let _ = writeln!(
        w,
        "| variant | pod | devices | readings/s | CPU request | memory request | memory limit \
         |\n| --- | --- | ---: | ---: | ---: | ---: | ---: |"
    );
    for v in folder.variants {
        for (pod, sized) in [
            ("fleet shard", &v.sizing.shard),
            ("backend", &v.sizing.backend),
        ] {
            let limit = manifests::resources(&sized.requests);
            let _ = writeln!(
                w,
                "| {} | {pod} | {} | {:.0} | {} | {} | {} |",
                v.config.name,
                sized.devices,
                sized.readings_per_s,
                sized.requests.cpu_quantity(),
                sized.requests.memory_quantity(),
                limit["limits"]["memory"].as_str().unwrap_or_default()
            );
        }
    }
    let _ = writeln!(
        w,
        "\nMemory = (idle RSS + devices x memory per device) x {HEADROOM}, summed over the pod's \
         processes; CPU = readings/s x CPU seconds per reading x {HEADROOM}, at least \
         {MIN_CPU_MILLICORES}m. The memory limit is twice the request; there is no CPU limit, \
         since the kernel would throttle the pod in 100 ms periods and the run would measure \
         that as latency. Where each figure comes from (also the `{}` annotation of each Job and \
         Deployment):\n",
        manifests::SIZING_ANNOTATION
    );
    for v in folder.variants {
        let line = |pod: &str, sized: &PodSizing| {
            format!("- `{}` {pod}: {}", v.config.name, sized.describe())
        };
        let _ = writeln!(w, "{}", line("fleet shard", &v.sizing.shard));
        let _ = writeln!(w, "{}", line("backend", &v.sizing.backend));
    }
    let _ = writeln!(
        w,
        "\nTo size from a run of your own, render again with `--sizing-from <results folder>`: \
         the figures of the variant with the same transport in its results.json.\n"
    );

    let _ = writeln!(w, "## 1. Build and push the image\n");
    let _ = writeln!(
        w,
        "From the project root (the build context):\n\n```sh\ndocker build -f {dir}/Dockerfile \
         -t {image} .\ndocker push {image}\n```\n",
        image = t.image
    );
    let _ = writeln!(
        w,
        "`Dockerfile.dockerignore` beside the Dockerfile keeps `target/`, `results/` and `.git/` \
         out of the build context (BuildKit, the default builder since Docker 23, reads it); with \
         another builder, put the same lines in a `.dockerignore` at the project root.\n"
    );

    let _ = writeln!(
        w,
        "## 2. The namespace, the results volume and the scenario\n\n```sh"
    );
    if folder.has_namespace_file {
        let _ = writeln!(w, "kubectl apply -f {dir}/namespace.yaml");
    }
    let _ = writeln!(
        w,
        "kubectl apply -f {dir}/pvc.yaml -f {dir}/configmap.yaml\n```\n"
    );

    let _ = writeln!(w, "## 3. Each variant, one at a time\n");
    let _ = writeln!(
        w,
        "Never two variants at once: they would share the nodes and the network, and each would \
         measure the other's load. Apply a variant's backend, wait for it, apply its fleet, wait \
         for every shard to complete, copy the results, delete both; then the next variant.\n"
    );
    for v in folder.variants {
        let name = &v.config.name;
        let wait = manifests::active_deadline_s(s) + 60;
        let _ = writeln!(w, "### {name}\n\n```sh");
        let _ = writeln!(w, "kubectl apply -f {dir}/{name}/backend.yaml");
        let _ = writeln!(
            w,
            "kubectl -n {ns} rollout status deployment/{} --timeout=300s",
            v.names.backend
        );
        let _ = writeln!(w, "kubectl apply -f {dir}/{name}/job.yaml");
        let _ = writeln!(
            w,
            "kubectl -n {ns} wait --for=condition=complete job/{} --timeout={wait}s",
            v.names.job
        );
        let _ = writeln!(
            w,
            "POD=$(kubectl -n {ns} get pod -l app.kubernetes.io/component=backend,{VARIANT_LABEL}={} \
             -o jsonpath='{{.items[0].metadata.name}}')",
            v.names.label
        );
        let _ = writeln!(
            w,
            "# receiver.json is written last (atomically): the backend's results are whole\n\
             until kubectl -n {ns} exec $POD -- test -f {}/{name}/receiver/receiver.json; do sleep 5; done",
            manifests::RESULTS_DIR
        );
        let _ = writeln!(
            w,
            "mkdir -p results-k8s && kubectl cp {ns}/$POD:{}/{name} ./results-k8s/{name}",
            manifests::RESULTS_DIR
        );
        let _ = writeln!(
            w,
            "kubectl delete -f {dir}/{name}/job.yaml -f {dir}/{name}/backend.yaml\n```\n"
        );
    }
    let _ = writeln!(
        w,
        "The backend stays up after it has written its results (`--linger`), so that its \
         Deployment does not start it again: copy the results, then delete it. A shard is never \
         retried (`backoffLimit: 0`; a shard run again would not be the same run): when `kubectl \
         wait` fails, `kubectl -n {ns} get pods -l {VARIANT_LABEL}=<variant>` and `kubectl logs` \
         say which pod failed and why; delete the variant's Job and backend and apply both again. \
         Each shard's records are in `{}/<variant>/shard-<K>`, the receiving side's in \
         `{}/<variant>/receiver`.\n",
        manifests::RESULTS_DIR,
        manifests::RESULTS_DIR,
    );

    let _ = writeln!(w, "## 4. Merge\n");
    let _ = writeln!(
        w,
        "```sh\nfleetbench merge results-k8s --out results/{}-k8s\n```\n",
        s.name
    );
    let _ = writeln!(
        w,
        "The merge joins every shard's records with the receiving side's into one results \
         folder: delivery exact, latency on each shard's clock as estimated over the control \
         channel (with its uncertainty), cost per shard and in total.\n"
    );

    let _ = writeln!(w, "## 5. Clean up\n\n```sh");
    let _ = writeln!(
        w,
        "kubectl delete -f {dir}/configmap.yaml -f {dir}/pvc.yaml"
    );
    if folder.has_namespace_file {
        let _ = writeln!(w, "kubectl delete -f {dir}/namespace.yaml");
    }
    let _ = writeln!(w, "```");
    out
}
