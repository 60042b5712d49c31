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
