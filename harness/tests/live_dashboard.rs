//! The live dashboard as a person sees it: `fleetbench run --live 127.0.0.1:0` serves a page
//! during the run; headless Chromium (offline: no DNS, the page's policy allows nothing but its
//! own server) opens it mid-run and keeps it open. The numbers on the page must change while
//! the run goes, and at the end the page's results must be results.json's, per variant:
//! received, lost, p50 and p99. A screenshot taken mid-run is kept under target/tmp (printed).

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

#[path = "support/chromium.rs"]
mod chromium;
#[path = "support/run.rs"]
mod run;

const SCENARIO: &str = r#"
name = "live"
seed = 7
warmup = "2s"
duration = "8s"

[fleet]
devices = 20
interval = "100ms"
ramp = "500ms"

[[variants]]
name = "tcp"
transport = "tcp"

[[variants]]
name = "ws"
transport = "ws"
"#;

/// What the page shows, read from its DOM as text.
const READ_PAGE: &str = r#"JSON.stringify({
  phase: document.getElementById('phase').textContent,
  place: document.getElementById('place').textContent,
  timeLeft: document.getElementById('time-left').textContent,
  connection: document.getElementById('connection').textContent,
  rows: [...document.querySelectorAll('tr.variant')].map(tr => {
    const text = c => tr.querySelector('.' + c).textContent;
    return {
      name: tr.dataset.name, phase: text('phase'),
      live: ['live-rate', 'live-p50', 'live-p99', 'live-received', 'live-lost'].map(text),
      result: ['final-received', 'final-lost', 'final-p50', 'final-p99'].map(text),
    };
  }),
})"#;

/// Kills the run if the test fails before it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Every variant's live numbers on the page.
fn live_numbers(page: &Value) -> Vec<Value> {
    page["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["live"].clone())
        .collect()
}

/// `1.234 ms` as µs.
fn micros(text: &str) -> u64 {
    let ms = text
        .strip_suffix(" ms")
        .unwrap_or_else(|| panic!("not ms: {text:?}"));
    let (whole, frac) = ms.split_once('.').unwrap();
    assert_eq!(frac.len(), 3, "{text:?}");
    whole.parse::<u64>().unwrap() * 1000 + frac.parse::<u64>().unwrap()
}

#[test]
fn chromium_shows_the_live_dashboard_changing_mid_run_and_the_results_at_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = run::write_scenario(dir.path(), SCENARIO);
    let out = dir.path().join("out");
    let mut command = run::run_command(&scenario, &out);
    command.args(["--no-report", "--live", "127.0.0.1:0"]);
    let mut running = Running(command.stderr(Stdio::piped()).spawn().unwrap());

    // The page's address, from the run's stderr (read to its end by a thread of its own).
    let (lines, heard) = mpsc::channel();
    let stderr = running.0.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            eprintln!("fleetbench: {line}");
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let url = loop {
        let line = heard
            .recv_timeout(Duration::from_secs(60))
            .expect("`live http://…/` on stderr within a minute");
        if let Some(url) = line.strip_prefix("live ") {
            break url.to_string();
        }
    };
    assert!(
        url.starts_with("http://127.0.0.1:") && url.ends_with('/'),
        "{url}"
    );

    let mut browser = chromium::Browser::open(&url, dir.path());
    let read_page = |browser: &mut chromium::Browser| -> Value {
        serde_json::from_str(browser.evaluate(READ_PAGE).as_str().unwrap()).unwrap()
    };
    let has_live = |page: &Value| {
        page["rows"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["live"][0] != "–" && r["live"][3] != "–")
    };
    let screenshot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("live-dashboard")
        .join("mid-run.png");

    // Mid-run: the live numbers, twice, different, before the run is done.
    let guard = Instant::now() + Duration::from_secs(180);
    let mut first: Option<Value> = None;
    let mut changed: Option<(Value, Value)> = None;
    let mut shot = false;
    let last = loop {
        assert!(
            Instant::now() < guard,
            "the page never said done; first live view {first:#?}, changed {changed:#?}"
        );
        let page = read_page(&mut browser);
        // The last `done` event, not only a state whose phase is done, has been rendered.
        if page["connection"] == "run over" {
            break page;
        }
        // Until the first event arrives the page has no rows yet.
        if page["rows"].as_array().is_none_or(|r| r.len() < 2) {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        }
        if changed.is_none() && has_live(&page) {
            match &first {
                None => first = Some(page.clone()),
                Some(before) if live_numbers(before) != live_numbers(&page) => {
                    changed = Some((before.clone(), page.clone()));
                }
                Some(_) => {}
            }
        }
        // The screenshot once the first variant has its results and the second runs.
        let rows = page["rows"].as_array().unwrap();
        if !shot && rows[0]["result"][0] != "" && rows[1]["live"][0] != "–" {
            let png = browser.screenshot();
            std::fs::create_dir_all(screenshot.parent().unwrap()).unwrap();
            std::fs::write(&screenshot, &png).unwrap();
            println!("mid-run screenshot: {}", screenshot.display());
            eprintln!("mid-run screenshot: {}", screenshot.display());
            shot = true;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let (before, after) = changed.expect("the live numbers changed on the page before the end");
    eprintln!("mid-run, then: {before}\n{after}");
    for page in [&before, &after] {
        let place = page["place"].as_str().unwrap();
        assert!(
            place == "variant 1 of 2" || place == "variant 2 of 2",
            "{place:?}"
        );
        assert!(
            page["timeLeft"].as_str().unwrap().ends_with(" left"),
            "{page}"
        );
        assert_ne!(page["phase"], "done");
    }

    // The screenshot is a picture of the page: a PNG as wide as the window.
    assert!(
        shot,
        "no screenshot: the second variant never showed live numbers"
    );
    let decoder = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(&screenshot).unwrap(),
    ));
    let info = decoder.read_info().unwrap().info().clone();
    assert_eq!(info.width, 1280);
    assert!(info.height > 300, "{}", info.height);

    // The end: the run exits, and the page shows results.json's figures.
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = running.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the run did not exit after the page said done"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "{status}");
    let results = run::read_results(&out);
    let variants = results["variants"].as_array().unwrap();
    let rows = last["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(last["connection"], "run over");
    for (row, v) in rows.iter().zip(variants) {
        assert_eq!(row["name"], v["name"]);
        assert_eq!(row["phase"], "done");
        let shown = &row["result"];
        let name = &row["name"];
        assert_eq!(
            shown[0],
            v["delivery"]["received"].to_string(),
            "{name} received"
        );
        assert_eq!(shown[1], v["delivery"]["lost"].to_string(), "{name} lost");
        let corrected = &v["latency_us"]["corrected"];
        assert_eq!(
            micros(shown[2].as_str().unwrap()),
            corrected["p50"],
            "{name} p50"
        );
        assert_eq!(
            micros(shown[3].as_str().unwrap()),
            corrected["p99"],
            "{name} p99"
        );
        assert!(v["delivery"]["received"].as_u64().unwrap() > 0, "{name}");
    }

    let errors = browser.page_errors();
    assert!(errors.is_empty(), "the page went wrong: {errors:#?}");
}
