//! Where config text gets its outside values: `${VAR}` and `*_file` secrets.
//!
//! Lookups go through [`Env`] so tests hand in a map instead of mutating the
//! process environment.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::node::Cursor;

/// The outside world a config may refer to.
pub trait Env {
    fn var(&self, name: &str) -> Option<String>;
    fn read_file(&self, path: &Path) -> io::Result<String>;
}

/// The real process environment and file system.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

/// A fixed set of variables and files, for tests and tools.
#[derive(Debug, Clone, Default)]
pub struct MapEnv {
    pub vars: HashMap<String, String>,
    pub files: HashMap<PathBuf, String>,
}

// === impl ProcessEnv ===

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }

    fn read_file(&self, path: &Path) -> io::Result<String> {
        std::fs::read_to_string(path)
    }
}

// === impl MapEnv ===

impl MapEnv {
    pub fn with_var(mut self, name: &str, value: &str) -> Self {
        self.vars.insert(name.to_owned(), value.to_owned());
        self
    }

    pub fn with_file(mut self, path: &str, text: &str) -> Self {
        self.files.insert(PathBuf::from(path), text.to_owned());
        self
    }
}

impl Env for MapEnv {
    fn var(&self, name: &str) -> Option<String> {
        self.vars.get(name).cloned()
    }

    fn read_file(&self, path: &Path) -> io::Result<String> {
        self.files
            .get(path)
            .cloned()
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    }
}

/// Keys whose value may instead come from a file named by `<key>_file`:
/// secrets, and PEM certificates that live beside them.
pub const SECRET_KEYS: &[&str] = &[
    "client_secret",
    "client_key",
    "secret",
    "password",
    "url",
    "ca",
    "cert",
    "key",
    "api_token",
];

/// Replaces every `<secret>_file: PATH` with `<secret>: <file contents>`.
///
/// Runs after `${VAR}` substitution, so the path itself may use variables.
/// One trailing newline is dropped: files written by `echo` or mounted by
/// Kubernetes usually end with one.
pub fn read_secret_files(node: &mut Value, env: &dyn Env, at: &mut Cursor<'_>) {
    match node {
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                at.nested(&format!("[{i}]"), |at| read_secret_files(item, env, at));
            }
        }
        Value::Object(map) => {
            for key in SECRET_KEYS {
                let file_key = format!("{key}_file");
                let Some(path) = map.get(&file_key) else { continue };
                let Some(path) = path.as_str().map(str::to_owned) else {
                    at.error_at(&file_key, "expected a file path");
                    continue;
                };
                if map.contains_key(*key) {
                    at.error_at(&file_key, format!("set either `{key}` or `{file_key}`, not both"));
                    continue;
                }
                match env.read_file(Path::new(&path)) {
                    Ok(text) => {
                        let text = text.strip_suffix('\n').unwrap_or(&text);
                        let text = text.strip_suffix('\r').unwrap_or(text).to_owned();
                        map.shift_remove(&file_key);
                        map.insert((*key).to_owned(), Value::String(text));
                    }
                    Err(e) => {
                        // Reported at `<key>` so the missing value is not reported twice.
                        map.shift_remove(&file_key);
                        at.error_at(key, format!("cannot read {file_key} {path}: {e}"));
                    }
                }
            }
            for (key, value) in map.iter_mut() {
                at.nested(key, |at| read_secret_files(value, env, at));
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => {}
    }
}

/// Replaces `${VAR}` in every string scalar of `node`, in place.
///
/// Substitution happens after parsing, so a value can never change the YAML
/// structure around it. `$${` stays a literal `${`. An unset variable is an
/// error at the key that uses it.
pub fn substitute(node: &mut Value, env: &dyn Env, at: &mut Cursor<'_>) {
    match node {
        Value::String(text) => match expand(text, env) {
            Ok(Some(expanded)) => *text = expanded,
            Ok(None) => {}
            Err(reason) => at.error(reason),
        },
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                at.nested(&format!("[{i}]"), |at| substitute(item, env, at));
            }
        }
        Value::Object(map) => {
            for (key, value) in map.iter_mut() {
                at.nested(key, |at| substitute(value, env, at));
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// Expands one string; `Ok(None)` when it holds no reference.
fn expand(text: &str, env: &dyn Env) -> Result<Option<String>, String> {
    if !text.contains("${") {
        return Ok(None);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        if rest[..start].ends_with('$') {
            // `$${` is an escaped literal `${`.
            out.push_str(&rest[..start - 1]);
            out.push_str("${");
            rest = &rest[start + 2..];
            continue;
        }
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or("unterminated `${` (write `$${` for a literal)")?;
        let name = &after[..end];
        let valid = !name.is_empty()
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !name.starts_with(|c: char| c.is_ascii_digit());
        if !valid {
            return Err(format!("`${{{name}}}` is not a valid variable name"));
        }
        let value = env
            .var(name)
            .ok_or_else(|| format!("environment variable {name} is not set"))?;
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_escapes_and_reports_missing_variables() {
        let env = MapEnv::default().with_var("A", "one").with_var("B_2", "two");
        assert_eq!(expand("x${A}y${B_2}", &env).unwrap().unwrap(), "xoneytwo");
        assert_eq!(expand("$${A}", &env).unwrap().unwrap(), "${A}");
        assert_eq!(expand("plain", &env).unwrap(), None);
        assert!(expand("${MISSING}", &env)
            .unwrap_err()
            .contains("MISSING is not set"));
        assert!(expand("${A", &env).unwrap_err().contains("unterminated"));
        assert!(expand("${1A}", &env).unwrap_err().contains("not a valid"));
    }

    #[test]
    fn secret_files_replace_their_key_and_conflicts_are_reported() {
        let env = MapEnv::default().with_file("/run/s", "s3cret\n");
        let mut node = serde_json::json!({"oidc": {"client_secret_file": "/run/s"},
            "keys": [{"secret": "x", "secret_file": "/run/s"}, {"secret_file": "/nope"}]});
        let mut errors = Vec::new();
        read_secret_files(&mut node, &env, &mut Cursor::root(&mut errors));
        assert_eq!(node["oidc"]["client_secret"], "s3cret");
        assert!(node["oidc"].get("client_secret_file").is_none());
        let paths: Vec<_> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["keys[0].secret_file", "keys[1].secret"]);
    }
}
