//! A run states the disk its raw records need before it starts, and refuses one the results disk
//! cannot hold instead of failing hours later.

use std::process::Command;

#[test]
fn a_run_larger_than_the_free_disk_is_refused_before_it_starts() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("huge.toml");
    // 1,000 devices at 1 kHz for a week: some 34 TB of records, more than any disk here.
    std::fs::write(
        &scenario,
        r#"name = "huge"
duration = "7days"

[fleet]
devices = 1000
interval = "1ms"

[[variants]]
name = "tcp"
transport = "tcp"
"#,
    )
    .unwrap();
    let out = dir.path().join("out");
    let output = Command::new(env!("CARGO_BIN_EXE_fleetbench"))
        .args(["run", "--quiet", "--out"])
        .arg(&out)
        .arg(&scenario)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("raw records need about 38.7 TB"),
        "the estimate is printed first: {stderr}"
    );
    assert!(stderr.contains("pick another --out"), "{stderr}");
    assert!(!out.exists(), "nothing was started or written");
}
