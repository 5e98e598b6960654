//! What the documentation shows works: every ```yaml block of README.md
//! and of every Markdown file under docs/ (new pages are found by
//! themselves) passes the real `cloakroom check`.
//!
//! How a block is read:
//!
//! - a block that sets `public_url` is a whole config, checked as written;
//! - any other mapping is a fragment, merged over [`BASE`] (mappings key by
//!   key, anything else replaced: a fragment's `routes` replace the base's);
//! - a list is a fragment of `routes` entries, checked with the base's
//!   catch-all route unless an entry takes its path;
//! - a block right after a `<!-- not a cloakroom config -->` line (an
//!   alerting rule, a Kubernetes object) is left alone.
//!
//! The variables a block uses (`${NAME}`) get example values of the form
//! their names say ([`example_variable`]); every absolute path under a
//! `*_file` key, and a static route's `dir`, is replaced by a file (or
//! directory) of the right form made for the run (each DPoP `key_file` a
//! P-256 key of its own). A fragment with
//! `token_endpoint_auth: private_key_jwt` drops the base's client secret.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// What a fragment is merged over: the least a config needs.
const BASE: &str = r#"
public_url: http://localhost:8080
oidc: {issuer: "http://127.0.0.1:9000", client_id: docs, client_secret: docs-secret}
cookie: {keys: [{id: "1", secret: "${COOKIE_KEY}"}]}
routes: [{path: /, upstream: "http://127.0.0.1:3000", auth: none}]
"#;

/// The line that keeps the next block out of the check.
const NOT_A_CONFIG: &str = "<!-- not a cloakroom config -->";

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// README.md and every `.md` under docs/, as repository paths.
fn documents() -> Vec<String> {
    fn walk(dir: &Path, found: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, found);
            } else if path.extension().is_some_and(|e| e == "md") {
                let relative = path.strip_prefix(repo("")).unwrap();
                found.push(relative.to_string_lossy().into_owned());
            }
        }
    }
    let mut found = vec!["README.md".to_owned()];
    walk(&repo("docs"), &mut found);
    found.sort();
    found
}

/// One ```yaml block: where it starts, its text (dedented as far as its
/// fence is), and whether the line before the fence opts it out.
struct Block {
    at: String,
    yaml: String,
    not_a_config: bool,
}

fn yaml_blocks(document: &str) -> Vec<Block> {
    let text = std::fs::read_to_string(repo(document)).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let mut blocks = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if line.trim_start() != "```yaml" {
            i += 1;
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        let not_a_config = lines[..i]
            .iter()
            .rev()
            .find(|l| !l.trim().is_empty())
            .is_some_and(|l| l.trim() == NOT_A_CONFIG);
        let start = i + 1;
        let mut end = start;
        while end < lines.len() && lines[end].trim() != "```" {
            end += 1;
        }
        assert!(end < lines.len(), "{document}:{start}: the block never ends");
        let yaml = lines[start..end]
            .iter()
            .map(|l| l.get(indent..).unwrap_or("").trim_end())
            .collect::<Vec<_>>()
            .join("\n");
        blocks.push(Block {
            at: format!("{document}:{start}"),
            yaml: yaml + "\n",
            not_a_config,
        });
        i = end + 1;
    }
    blocks
}

/// A value of the right form for a variable the docs use, judged by its
/// name, so a new page needs no change here: a cookie key is a key, a
/// token long enough, a URL, issuer or upstream an https URL, a domain or
/// host a host name, anything else a word.
fn example_variable(name: &str) -> String {
    let word = name.to_ascii_lowercase().replace('_', "-");
    if name.contains("COOKIE_KEY") {
        support::COOKIE_KEY.to_owned()
    } else if name.ends_with("TOKEN") {
        "an-example-token-of-at-least-32-characters".to_owned()
    } else if ["URL", "ISSUER", "UPSTREAM"].iter().any(|s| name.ends_with(s)) {
        format!("https://{word}.example.com")
    } else if ["DOMAIN", "HOST"].iter().any(|s| name.ends_with(s)) {
        format!("{word}.example.com")
    } else {
        format!("example-{word}")
    }
}

/// `fragment` over `base`: mappings merged key by key, anything else
/// replaced.
fn merge(base: &mut Value, fragment: Value) {
    match (base, fragment) {
        (Value::Object(base), Value::Object(fragment)) => {
            for (key, value) in fragment {
                match base.get_mut(&key) {
                    Some(existing) => merge(existing, value),
                    None => {
                        base.insert(key, value);
                    }
                }
            }
        }
        (base, fragment) => *base = fragment,
    }
}

/// Every `${NAME}` the config's values use (`$${` is a literal `${`).
fn variables_used(config: &Value, names: &mut Vec<String>) {
    match config {
        Value::String(text) => {
            let mut rest = text.as_str();
            while let Some(start) = rest.find("${") {
                let escaped = start > 0 && rest.as_bytes()[start - 1] == b'$';
                let after = &rest[start + 2..];
                let Some(end) = after.find('}') else { break };
                if !escaped {
                    names.push(after[..end].to_owned());
                }
                rest = &after[end + 1..];
            }
        }
        Value::Object(map) => map.values().for_each(|v| variables_used(v, names)),
        Value::Array(items) => items.iter().for_each(|v| variables_used(v, names)),
        _ => {}
    }
}

/// Replaces every absolute path under a `*_file` key, and a static
/// route's `dir`, by one made in `dir` with contents of the right form for
/// its key.
fn make_files(config: &mut Value, dir: &Path, pki: &support::pki::Pki) {
    match config {
        Value::Object(map) => {
            let is_static = map.contains_key("dir");
            // A TLS client key goes with its certificate; any other
            // `key_file` (a DPoP key ring's) is a key of its own.
            let with_cert = map.contains_key("cert_file");
            for (key, value) in map.iter_mut() {
                let Value::String(path) = value else {
                    make_files(value, dir, pki);
                    continue;
                };
                if !path.starts_with('/') {
                    continue;
                }
                let made = dir.join(path.trim_start_matches('/'));
                std::fs::create_dir_all(made.parent().unwrap()).unwrap();
                if key == "dir" && is_static {
                    std::fs::create_dir_all(&made).unwrap();
                    std::fs::write(made.join("index.html"), "<!doctype html>\n").unwrap();
                } else if key.ends_with("_file") {
                    let contents = match key.as_str() {
                        "secret_file" => format!("{}\n", support::COOKIE_KEY),
                        "url_file" => "redis://cloakroom:example@redis:6379/0\n".to_owned(),
                        "api_token_file" => "an-admin-api-token-of-at-least-32-characters\n".into(),
                        "ca_file" => std::fs::read_to_string(pki.path("ca")).unwrap(),
                        "cert_file" => std::fs::read_to_string(pki.path("client")).unwrap(),
                        "key_file" if with_cert => std::fs::read_to_string(pki.path("client-key")).unwrap(),
                        "key_file" => rcgen::KeyPair::generate().unwrap().serialize_pem(),
                        "client_key_file" => support::fake_idp::RSA_PEM.to_owned(),
                        _ => "example-secret\n".to_owned(),
                    };
                    std::fs::write(&made, contents).unwrap();
                } else {
                    continue;
                }
                *path = made.to_string_lossy().into_owned();
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| make_files(v, dir, pki)),
        _ => {}
    }
}

/// The config a block stands for, as the text to check (a whole config as
/// written, a fragment merged over [`BASE`] as JSON, which is YAML), and
/// the variables it uses.
fn config_of(block: &Block, dir: &Path, pki: &support::pki::Pki) -> Result<(String, Vec<String>), String> {
    let parsed: Value = serde_saphyr::from_str(&block.yaml).map_err(|e| format!("not valid YAML: {e}"))?;
    let whole = parsed.get("public_url").is_some();
    let mut config = if whole {
        parsed
    } else {
        let mut base: Value = serde_saphyr::from_str(BASE).unwrap();
        match parsed {
            Value::Array(routes) => {
                let named: Vec<&Value> = routes.iter().map(|r| &r["path"]).collect();
                let mut all = routes.clone();
                all.extend(
                    base["routes"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .filter(|r| !named.contains(&&r["path"]))
                        .cloned(),
                );
                base["routes"] = Value::Array(all);
            }
            fragment @ Value::Object(_) => {
                // A client that signs its assertions has no secret.
                if fragment["oidc"]["token_endpoint_auth"] == "private_key_jwt" {
                    base["oidc"].as_object_mut().unwrap().remove("client_secret");
                }
                merge(&mut base, fragment)
            }
            other => return Err(format!("neither a mapping nor a list: {other}")),
        }
        base
    };
    let mut variables = Vec::new();
    variables_used(&config, &mut variables);
    let before = config.clone();
    make_files(&mut config, dir, pki);
    let text = if whole {
        // Its files are made here: their paths are rewritten in the text,
        // which is otherwise checked as written.
        let mut text = block.yaml.clone();
        replace_paths(&before, &config, &mut text);
        text
    } else {
        serde_json::to_string_pretty(&config).unwrap()
    };
    Ok((text, variables))
}

/// In `text`, every string of `before` that `after` changed, changed.
fn replace_paths(before: &Value, after: &Value, text: &mut String) {
    match (before, after) {
        (Value::String(b), Value::String(a)) if a != b => *text = text.replace(b, a),
        (Value::Object(b), Value::Object(a)) => {
            for (key, value) in b {
                replace_paths(value, &a[key], text);
            }
        }
        (Value::Array(b), Value::Array(a)) => {
            for (b, a) in b.iter().zip(a) {
                replace_paths(b, a, text);
            }
        }
        _ => {}
    }
}

/// `cloakroom check` on `text` with `env`: whether it passed, and what it
/// said.
fn check(text: &str, env: &BTreeMap<String, String>) -> (bool, String) {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_cloakroom"))
        .args(["check", "--config"])
        .arg(file.path())
        .envs(env)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
    (out.status.success(), said.into_owned())
}

#[test]
fn every_yaml_block_of_the_docs_passes_check() {
    let pki = support::pki::Pki::new();
    let mut checked = 0;
    let mut failures = Vec::new();
    for document in documents() {
        for block in yaml_blocks(&document) {
            if block.not_a_config {
                continue;
            }
            let dir = tempfile::tempdir().unwrap();
            let (config, variables) = match config_of(&block, dir.path(), &pki) {
                Ok(found) => found,
                Err(e) => {
                    failures.push(format!("{}: {e}\n{}", block.at, block.yaml));
                    continue;
                }
            };
            let env: BTreeMap<String, String> = variables
                .into_iter()
                .map(|name| {
                    let value = example_variable(&name);
                    (name, value)
                })
                .collect();
            let (passed, said) = check(&config, &env);
            if !passed {
                failures.push(format!(
                    "{}: check refused it (with {env:?}):\n{said}\n{}",
                    block.at, block.yaml
                ));
            }
            checked += 1;
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n\n"));
    // The README and docs/ hold dozens; a parser that found none proves nothing.
    assert!(checked >= 10, "only {checked} blocks found");
}

/// The Markdown files a reader follows links between: the README and
/// docs/, and the pages beside the README.
fn linked_pages() -> Vec<String> {
    let mut pages = documents();
    for page in ["ARCHITECTURE.md", "BENCHMARKS.md", "CHANGELOG.md", "SECURITY.md"] {
        pages.push(page.to_owned());
    }
    pages
}

/// Every `](target)` of a page, outside fenced blocks.
fn link_targets(text: &str) -> Vec<String> {
    let mut prose = String::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        } else if !fenced {
            prose.push_str(line);
            prose.push('\n');
        }
    }
    prose
        .split("](")
        .skip(1)
        .filter_map(|rest| rest.split_once(')').map(|(target, _)| target.to_owned()))
        .filter(|target| !target.contains(char::is_whitespace))
        .collect()
}

/// The anchors GitHub gives a page's headings: lower case, spaces to
/// hyphens, punctuation other than `-` and `_` dropped.
fn anchors(text: &str) -> Vec<String> {
    text.lines()
        .filter(|line| line.starts_with('#'))
        .map(|line| {
            line.trim_start_matches('#')
                .trim()
                .chars()
                .filter_map(|c| match c {
                    ' ' => Some('-'),
                    c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c.to_ascii_lowercase()),
                    _ => None,
                })
                .collect()
        })
        .collect()
}

#[test]
fn every_link_between_the_pages_leads_somewhere() {
    let mut broken = Vec::new();
    let mut followed = 0;
    for page in linked_pages() {
        let text = std::fs::read_to_string(repo(&page)).unwrap();
        let dir = Path::new(&page).parent().unwrap_or(Path::new(""));
        for target in link_targets(&text) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let (file, anchor) = target.split_once('#').unwrap_or((&target, ""));
            let path = if file.is_empty() {
                repo(&page)
            } else {
                repo("").join(dir).join(file)
            };
            followed += 1;
            if !path.exists() {
                broken.push(format!("{page}: ({target}): no such file"));
            } else if !anchor.is_empty() {
                let linked = std::fs::read_to_string(&path).unwrap_or_default();
                if !anchors(&linked).iter().any(|a| a == anchor) {
                    broken.push(format!("{page}: ({target}): no such heading"));
                }
            }
        }
    }
    assert!(broken.is_empty(), "\n{}", broken.join("\n"));
    assert!(followed >= 50, "only {followed} links found");
}
