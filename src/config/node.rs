//! Typed reading of a parsed YAML tree that collects **every** error.
//!
//! serde stops at the first problem; a platform engineer fixing a config wants
//! the whole list at once. `Fields` walks one mapping, hands out typed values
//! through [`FromNode`], records each failure under its key path
//! (`routes[2].upstream`) and reports leftover keys as unknown.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;

/// One problem in a config file: where it is and why it is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: String,
    pub reason: String,
}

/// Every problem found in a config file, in document order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

/// Where the reader is in the document; errors are recorded here.
#[derive(Debug)]
pub struct Cursor<'e> {
    path: String,
    errors: &'e mut Vec<ConfigError>,
}

/// A value could not be read, and why is already in the error list.
///
/// Readers record each problem through the [`Cursor`] where they find it,
/// then return this to stop building the value: the caller has nothing
/// more to add.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reported;

/// A leaf or section type that can be read from a YAML node.
pub trait FromNode: Sized {
    /// Reads `node`; on failure records every problem through `at` and
    /// returns [`Reported`].
    fn from_node(node: &Value, at: &mut Cursor<'_>) -> Result<Self, Reported>;
}

/// The keys of one mapping, consumed one by one.
pub struct Fields<'v> {
    entries: BTreeMap<&'v str, &'v Value>,
    order: Vec<&'v str>,
}

// === impl ConfigError ===

impl ConfigError {
    pub fn new(path: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

impl ConfigError {
    /// A YAML syntax error as `source:line:column: not valid YAML: why`.
    ///
    /// One line, without the parser's snippet of the file: the lines around
    /// a mistake may hold a secret written inline.
    pub fn yaml(source: &str, error: &serde_saphyr::Error) -> Self {
        use serde_saphyr::MessageFormatter;
        let error = error.without_snippet();
        let message: String = serde_saphyr::DefaultMessageFormatter
            .format_message(error)
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        let at = match error.location() {
            Some(l) if l.line() > 0 => format!("{source}:{}:{}", l.line(), l.column()),
            _ => source.to_owned(),
        };
        Self::new("", format!("{at}: not valid YAML: {message}"))
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.reason)
        } else {
            write!(f, "{}: {}", self.path, self.reason)
        }
    }
}

// === impl ConfigErrors ===

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl ConfigErrors {
    pub fn single(path: impl Into<String>, reason: impl Into<String>) -> Self {
        Self(vec![ConfigError::new(path, reason)])
    }
}

// === impl Cursor ===

impl<'e> Cursor<'e> {
    pub fn root(errors: &'e mut Vec<ConfigError>) -> Self {
        Self {
            path: String::new(),
            errors,
        }
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    /// Records a problem at the current path.
    pub fn error(&mut self, reason: impl Into<String>) {
        let path = self.path.clone();
        self.push(path, reason.into());
    }

    /// Records a problem at a child key of the current path.
    pub fn error_at(&mut self, key: &str, reason: impl Into<String>) {
        let path = self.child_path(key);
        self.push(path, reason.into());
    }

    /// Records why the value at the current path cannot be read, for a
    /// reader that gives up on it: `return Err(at.fail(reason))`.
    pub fn fail(&mut self, reason: impl Into<String>) -> Reported {
        self.error(reason);
        Reported
    }

    // One error per key: a value that failed `${VAR}` substitution is not
    // reported again as a bad URL.
    fn push(&mut self, path: String, reason: String) {
        if !self.errors.iter().any(|e| e.path == path) {
            self.errors.push(ConfigError { path, reason });
        }
    }

    /// Runs `f` one level down, at `key` (a map key) or `[i]` (an index).
    pub fn nested<R>(&mut self, segment: &str, f: impl FnOnce(&mut Cursor<'_>) -> R) -> R {
        let path = self.child_path(segment);
        let mut inner = Cursor {
            path,
            errors: self.errors,
        };
        f(&mut inner)
    }

    /// Reads `node` as `T`; `None` once its errors are recorded.
    pub fn read<T: FromNode>(&mut self, node: &Value) -> Option<T> {
        T::from_node(node, self).ok()
    }

    fn child_path(&self, segment: &str) -> String {
        match (self.path.is_empty(), segment.starts_with('[')) {
            (true, _) | (false, true) => format!("{}{segment}", self.path),
            (false, false) => format!("{}.{segment}", self.path),
        }
    }
}

// === impl Fields ===

impl<'v> Fields<'v> {
    /// Opens `node` as a mapping, or records that it is not one.
    pub fn open(node: &'v Value, at: &mut Cursor<'_>) -> Result<Self, Reported> {
        match node {
            Value::Object(map) => Ok(Self {
                order: map.keys().map(String::as_str).collect(),
                entries: map.iter().map(|(k, v)| (k.as_str(), v)).collect(),
            }),
            Value::Null => Ok(Self {
                entries: BTreeMap::new(),
                order: Vec::new(),
            }),
            other => Err(at.fail(format!("expected a mapping, found {}", kind(other)))),
        }
    }

    /// Takes an optional key. A YAML `null` counts as absent.
    pub fn optional<T: FromNode>(&mut self, key: &str, at: &mut Cursor<'_>) -> Option<T> {
        let node = self.entries.remove(key)?;
        if node.is_null() {
            return None;
        }
        at.nested(key, |at| at.read(node))
    }

    /// Takes a key with a default used when the key is absent.
    pub fn or<T: FromNode>(&mut self, key: &str, default: T, at: &mut Cursor<'_>) -> Option<T> {
        if self.entries.get(key).is_none_or(|v| v.is_null()) {
            self.entries.remove(key);
            return Some(default);
        }
        self.optional(key, at)
    }

    /// Takes a key that must be present.
    pub fn required<T: FromNode>(&mut self, key: &str, at: &mut Cursor<'_>) -> Option<T> {
        if self.entries.get(key).is_none_or(|v| v.is_null()) {
            self.entries.remove(key);
            at.error_at(key, "required key is missing");
            return None;
        }
        self.optional(key, at)
    }

    /// Whether the mapping has `key` (and it is not null).
    pub fn has(&self, key: &str) -> bool {
        self.entries.get(key).is_some_and(|v| !v.is_null())
    }

    /// Reports every key nobody asked for.
    pub fn finish(self, at: &mut Cursor<'_>) {
        for key in self.order {
            if self.entries.contains_key(key) {
                at.error_at(key, "unknown key");
            }
        }
    }
}

/// A short name for the YAML type of `v`, for messages.
pub fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

// === leaf impls ===

impl FromNode for String {
    fn from_node(node: &Value, at: &mut Cursor<'_>) -> Result<Self, Reported> {
        match node {
            Value::String(s) => Ok(s.clone()),
            // Scalars written without quotes are still text to us (`id: 2`).
            Value::Number(n) => Ok(n.to_string()),
            other => Err(at.fail(format!("expected a string, found {}", kind(other)))),
        }
    }
}

impl FromNode for bool {
    fn from_node(node: &Value, at: &mut Cursor<'_>) -> Result<Self, Reported> {
        match node {
            Value::Bool(b) => Ok(*b),
            // `${VAR}` substitution always yields text.
            Value::String(s) if s == "true" => Ok(true),
            Value::String(s) if s == "false" => Ok(false),
            other => Err(at.fail(format!("expected true or false, found {}", kind(other)))),
        }
    }
}

impl FromNode for u64 {
    fn from_node(node: &Value, at: &mut Cursor<'_>) -> Result<Self, Reported> {
        match node {
            Value::Number(n) => n
                .as_u64()
                .ok_or_else(|| at.fail(format!("expected a whole number ≥ 0, found {n}"))),
            Value::String(s) => s
                .trim()
                .parse()
                .map_err(|_| at.fail(format!("expected a whole number ≥ 0, found {s:?}"))),
            other => Err(at.fail(format!("expected a number, found {}", kind(other)))),
        }
    }
}

/// Any node, kept as it is.
impl FromNode for Value {
    fn from_node(node: &Value, _: &mut Cursor<'_>) -> Result<Self, Reported> {
        Ok(node.clone())
    }
}

impl<T: FromNode> FromNode for Vec<T> {
    fn from_node(node: &Value, at: &mut Cursor<'_>) -> Result<Self, Reported> {
        Each::<T>::from_node(node, at)?.complete().ok_or(Reported)
    }
}

/// A list whose good items are kept even when others fail, so checks that
/// span items (duplicate ids, duplicate paths) still run on the good ones.
pub struct Each<T>(pub Vec<Option<T>>);

impl<T: FromNode> FromNode for Each<T> {
    fn from_node(node: &Value, at: &mut Cursor<'_>) -> Result<Self, Reported> {
        let Value::Array(items) = node else {
            return Err(at.fail(format!("expected a list, found {}", kind(node))));
        };
        let read = |(i, item)| at.nested(&format!("[{i}]"), |at| at.read::<T>(item));
        Ok(Each(items.iter().enumerate().map(read).collect()))
    }
}

impl<T> Each<T> {
    /// The good items with their indexes.
    pub fn parsed(&self) -> impl Iterator<Item = (usize, &T)> {
        self.0
            .iter()
            .enumerate()
            .filter_map(|(i, t)| t.as_ref().map(|t| (i, t)))
    }

    /// All items, if every one was good.
    pub fn complete(self) -> Option<Vec<T>> {
        self.0.into_iter().collect()
    }
}

/// Implements [`FromNode`] for a type parsed from one string scalar; the
/// parser returns the reason a text is refused.
macro_rules! from_text {
    ($ty:ty, $parse:expr) => {
        impl $crate::config::node::FromNode for $ty {
            fn from_node(
                node: &serde_json::Value,
                at: &mut $crate::config::node::Cursor<'_>,
            ) -> Result<Self, $crate::config::node::Reported> {
                let text = <String as $crate::config::node::FromNode>::from_node(node, at)?;
                let parse: fn(&str) -> Result<$ty, String> = $parse;
                parse(text.trim()).map_err(|reason| at.fail(reason))
            }
        }
    };
}
pub(crate) use from_text;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_join_keys_and_indexes() {
        let mut errors = Vec::new();
        let mut at = Cursor::root(&mut errors);
        at.nested("routes", |at| {
            at.nested("[2]", |at| at.error_at("upstream", "bad"))
        });
        assert_eq!(errors, vec![ConfigError::new("routes[2].upstream", "bad")]);
    }

    #[test]
    fn unknown_keys_are_all_reported_in_document_order() {
        let node = json!({"b": 1, "known": "x", "a": 2});
        let mut errors = Vec::new();
        let mut at = Cursor::root(&mut errors);
        let mut fields = Fields::open(&node, &mut at).unwrap();
        let known: Option<String> = fields.required("known", &mut at);
        fields.finish(&mut at);
        assert_eq!(known.as_deref(), Some("x"));
        let paths: Vec<_> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["b", "a"]);
        assert!(errors.iter().all(|e| e.reason == "unknown key"));
    }

    #[test]
    fn list_errors_carry_the_index() {
        let node = json!({"xs": [1, "two", 3]});
        let mut errors = Vec::new();
        let mut at = Cursor::root(&mut errors);
        let mut fields = Fields::open(&node, &mut at).unwrap();
        let xs: Option<Vec<u64>> = fields.required("xs", &mut at);
        assert!(xs.is_none());
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].path, "xs[1]");
    }
}
