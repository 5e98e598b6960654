//! The client module in a real Vite app, as docs/spa.md shows it: the app
//! under tests/vite/ is that page's `vite.config.js` and its example
//! module word for word; `vite build` bundles it, and `vite` dev behind
//! cloakroom serves its whole module graph, `/auth/client.js` included.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use support::wait::until_blocking;
use support::{client, config, free_port, App};

const APP: &str = "tests/vite";

/// The page that shows SPA teams the client module and the Vite config.
const SPA_PAGE: &str = "docs/spa.md";

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The text of every ```js block of the SPA teams' page.
fn spa_page_js_blocks() -> Vec<String> {
    let readme = read(SPA_PAGE);
    let mut blocks = Vec::new();
    let mut rest = readme.as_str();
    while let Some(start) = rest.find("\n```js\n") {
        let body = &rest[start + "\n```js\n".len()..];
        let end = body.find("\n```").expect("an unterminated block");
        blocks.push(format!("{}\n", &body[..end]));
        rest = &body[end..];
    }
    blocks
}

/// `vite` run in the app's directory with `args`.
fn vite(args: &[&str]) -> Command {
    support::npm::ci(APP, "vite");
    let mut command = Command::new("node");
    command
        .arg("node_modules/vite/bin/vite.js")
        .args(args)
        .current_dir(repo(APP));
    command
}

#[test]
fn the_spa_page_shows_the_vite_apps_files_as_they_are() {
    let blocks = spa_page_js_blocks();
    for file in ["vite.config.js", "src/main.js"] {
        let text = read(&format!("{APP}/{file}"));
        assert!(
            blocks.contains(&text),
            "{APP}/{file} is not a js block of {SPA_PAGE}, word for word:\n{text}"
        );
    }
}

#[test]
fn vite_build_bundles_an_app_that_imports_the_client_module_as_the_readme_shows() {
    let out_dir = tempfile::tempdir().unwrap();
    let out = vite(&["build", "--emptyOutDir", "--outDir"])
        .arg(out_dir.path())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "vite build:\n{said}");
    // The import is left for the browser, which asks cloakroom.
    let assets = out_dir.path().join("assets");
    let bundle = std::fs::read_dir(&assets)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "js"))
        .expect("a bundled script");
    let js = std::fs::read_to_string(&bundle).unwrap();
    assert!(js.contains(r#"from"/auth/client.js""#), "{js}");
    assert!(!js.contains("LoginRequired"), "client.js was bundled:\n{js}");
    let html = std::fs::read_to_string(out_dir.path().join("index.html")).unwrap();
    let name = bundle.file_name().unwrap().to_string_lossy();
    assert!(html.contains(&format!("/assets/{name}")), "{html}");
}

/// A running `vite` dev server; killed on drop. What it printed is in
/// [`ViteDev::log`].
struct ViteDev {
    port: u16,
    child: Child,
    log: tempfile::NamedTempFile,
}

// === impl ViteDev ===

impl ViteDev {
    /// Starts it on a free port (the SPA page's config otherwise) and waits
    /// until it answers on 127.0.0.1, where cloakroom's route points.
    fn start() -> Self {
        let port = free_port();
        let log = tempfile::NamedTempFile::new().unwrap();
        let child = vite(&["--port", &port.to_string(), "--strictPort"])
            .stdin(Stdio::null())
            .stdout(log.reopen().unwrap())
            .stderr(log.reopen().unwrap())
            .spawn()
            .expect("node must be installed to run vite");
        let dev = Self { port, child, log };
        until_blocking(
            Duration::from_secs(30),
            Duration::from_millis(50),
            &format!("vite dev never listened on 127.0.0.1:{port}"),
            || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
        );
        dev
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap()
    }
}

impl Drop for ViteDev {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The module specifiers `source` imports (`import … from "x"`,
/// `import "x"`, `import("x")`, `export … from "x"`), as written.
fn imports(source: &str) -> Vec<String> {
    let mut found = Vec::new();
    for opener in ["from", "import", "import("] {
        let mut rest = source;
        while let Some(at) = rest.find(opener) {
            let after = rest[at + opener.len()..].trim_start();
            rest = &rest[at + opener.len()..];
            let Some(quote) = after.chars().next().filter(|c| *c == '"' || *c == '\'') else {
                continue;
            };
            if let Some(end) = after[1..].find(quote) {
                found.push(after[1..=end].to_owned());
            }
        }
    }
    found
}

/// `specifier` as a path on the page's origin, from the module at `base`.
fn resolve(base: &str, specifier: &str) -> Option<String> {
    let base = url::Url::parse(&format!("http://app{base}")).unwrap();
    let url = base.join(specifier).ok()?;
    (url.host_str() == Some("app")).then(|| url[url::Position::BeforePath..].to_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn vite_dev_behind_cloakroom_serves_the_whole_module_graph() {
    let dev = ViteDev::start();
    let upstream = format!("http://127.0.0.1:{}", dev.port);
    let app = App::start(&config(&[("/", &upstream, ", websocket: true")])).await;
    let http = client();

    // The page, then every module it loads, through cloakroom.
    let page = http.get(app.url("/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    let mut pending: Vec<String> = html
        .split("<script type=\"module\" src=\"")
        .skip(1)
        .map(|s| s.split('"').next().unwrap().to_owned())
        .collect();
    assert!(pending.contains(&"/src/main.js".to_owned()), "{html}");
    let mut seen = BTreeSet::new();
    while let Some(path) = pending.pop() {
        if !seen.insert(path.clone()) {
            continue;
        }
        assert!(seen.len() < 50, "the module graph never ends: {seen:?}");
        let answer = http.get(app.url(&path)).send().await.unwrap();
        let status = answer.status();
        let source = answer.text().await.unwrap();
        assert_eq!(status, 200, "{path}: {source}\nvite said:\n{}", dev.log());
        pending.extend(imports(&source).iter().filter_map(|s| resolve(&path, s)));
    }
    // The page's module imports cloakroom's, which cloakroom served.
    assert!(seen.contains("/auth/client.js"), "{seen:?}");
    let client_js = http.get(app.url("/auth/client.js")).send().await.unwrap();
    assert!(client_js
        .text()
        .await
        .unwrap()
        .contains("export class LoginRequired"));
    // And vite had nothing to complain about.
    let log = dev.log();
    assert!(!log.to_lowercase().contains("error"), "vite said:\n{log}");
    app.shutdown().await;
}
