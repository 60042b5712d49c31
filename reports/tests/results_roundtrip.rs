//! results.json through the results model and back: the harness writes, and the reports read,
//! the same bytes (field names, order, optional fields left out as the harness leaves them out).

use std::path::Path;

use reports::results::RunResult;

fn repo_file(path: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

#[test]
fn a_committed_baseline_is_written_back_byte_for_byte() {
    let path = repo_file("baselines/gate/results.json");
    let bytes = std::fs::read(&path).unwrap();
    let run = RunResult::read(&path).unwrap();
    assert!(run.variants.len() > 1, "the baseline has its variants");
    let written = run.to_json();
    assert!(
        written == bytes,
        "{} is not written back as it was",
        path.display()
    );
}

#[test]
fn older_fixtures_read_and_write_without_loss() {
    // Written before some fields existed: reading fills them in, and what is written then reads
    // back to the same bytes.
    for fixture in ["clean", "lossy", "link"] {
        let path = repo_file(&format!("reports/tests/fixtures/{fixture}/results.json"));
        let once = RunResult::read(&path).unwrap().to_json();
        let again: RunResult = serde_json::from_slice(&once).unwrap();
        assert!(again.to_json() == once, "{fixture} changes when re-read");
    }
}
