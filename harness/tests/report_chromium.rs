//! The HTML report as a person sees it: `fleetbench report` renders a results folder, headless
//! Chromium (Debian's `chromium`) opens report.html from disk with the network cut off, and the
//! page must load with no console error and show its charts. The screenshot is saved next to the
//! report.

use std::path::Path;
use std::process::Command;

#[path = "support/chromium.rs"]
mod support_chromium;
use support_chromium::chromium;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

#[test]
fn chromium_opens_the_report_offline_without_console_errors_and_shows_its_charts() {
    let chromium = chromium();
    let dir = tempfile::tempdir().unwrap();
    let results = dir.path().join("run");
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../reports/tests/fixtures/clean"),
        &results,
    );
    let status = Command::new(env!("CARGO_BIN_EXE_fleetbench"))
        .arg("report")
        .arg(&results)
        .status()
        .unwrap();
    assert!(status.success());
    let html = results.join("report.html");
    let screenshot = results.join("report-screenshot.png");
    let profile = dir.path().join("chromium-profile");
    let output = Command::new(&chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--enable-logging=stderr",
            "--v=0",
            "--window-size=1280,3000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--screenshot={}", screenshot.display()))
        .arg(format!("file://{}", html.display()))
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&output.stderr);
    let console_errors: Vec<&str> = log
        .lines()
        .filter(|l| {
            (l.contains("CONSOLE") && (l.contains("rror") || l.contains("Uncaught")))
                || l.contains("Failed to load resource")
                || l.contains("net::ERR_")
        })
        .collect();
    assert!(
        console_errors.is_empty(),
        "console errors: {console_errors:#?}"
    );
    assert!(output.status.success(), "chromium failed: {log}");

    // The screenshot shows the charts: a large share of the page is drawn, in many colours.
    let decoder = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(&screenshot).expect("screenshot saved next to the report"),
    ));
    let mut reader = decoder.read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut pixels).unwrap();
    assert_eq!((info.width, info.height), (1280, 3000));
    let channels = info.color_type.samples();
    let mut colours = std::collections::HashSet::new();
    let mut drawn = 0usize;
    for px in pixels[..info.buffer_size()].chunks(channels) {
        let rgb = (px[0], px[1], px[2]);
        if rgb != (255, 255, 255) {
            drawn += 1;
        }
        colours.insert(rgb);
    }
    let share = drawn as f64 / (info.width * info.height) as f64;
    assert!(
        share > 0.05,
        "only {:.1} % of the page is drawn",
        share * 100.0
    );
    assert!(
        colours.len() > 50,
        "only {} colours: no charts?",
        colours.len()
    );

    // And the page holds the six charts as inline SVG.
    let text = std::fs::read_to_string(&html).unwrap();
    assert!(text.matches("<svg").count() >= 6);
}
