//! `npm ci` where a directory's packages are missing, as `.ci/run` does up
//! front, once per directory and test binary.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::sync::Mutex;

static DONE: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

/// Runs `npm ci` in `dir` (from the repository's root) unless
/// `node_modules/<package>` is there already.
pub fn ci(dir: &str, package: &str) {
    let mut done = DONE.lock().unwrap_or_else(|e| e.into_inner());
    if !done.insert(dir.to_owned()) {
        return;
    }
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    if path.join("node_modules").join(package).exists() {
        return;
    }
    let ok = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(&path)
        .status();
    assert!(
        ok.is_ok_and(|s| s.success()),
        "npm ci in {dir} failed (is node installed?)"
    );
}
