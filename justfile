# fleetbench — `just bench smoke`, `just test`.

# Run scenarios/<scenario>.toml with a release build.
bench scenario="smoke" *args="":
    cargo run --release -- run scenarios/{{scenario}}.toml {{args}}

# Run every test (the same command CI runs).
test:
    cargo nextest run --workspace

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
