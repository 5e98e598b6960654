//! A playwright-core script of `tests/browser/` run against Debian's
//! Chromium: the settings go in as one JSON argument, the results come
//! back as the last line of its output.

use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

/// The Chromium the browser tests drive (`CHROMIUM`, else Debian's).
pub fn chromium() -> String {
    std::env::var("CHROMIUM").unwrap_or("/usr/bin/chromium".into())
}

/// Runs `tests/browser/<script>` with `settings`; its results, and how
/// long it took, printed for the test's log.
pub async fn run(script: &str, settings: Value) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/browser")
        .join(script);
    let started = std::time::Instant::now();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(path)
            .arg(settings.to_string())
            .env("CHROMIUM", chromium())
            .stderr(Stdio::inherit())
            .output()
            .expect("node must be installed")
    })
    .await
    .unwrap();
    eprintln!("browser run took {:.1} s", started.elapsed().as_secs_f64());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or("");
    serde_json::from_str(line).unwrap_or_else(|_| panic!("no results:\n{stdout}"))
}
