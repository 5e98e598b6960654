//! Which file on disk a request path names, if any, without ever leaving
//! the served directory.
//!
//! The path arrives normalised (no dot segments; encoded `/`, `\`, `.` and
//! NUL already refused), and is checked again here segment by segment, so
//! this module holds on its own: `..`, `.`, dotfiles (`.env`, `.git`; only
//! `.well-known` is served), backslashes and NUL never name a file. A
//! symlink is followed only if it stays inside the directory: the
//! canonical path must start with the canonical root.

use std::fs::Metadata;
use std::io;
use std::path::{Path, PathBuf};

use percent_encoding::percent_decode_str;

/// A file to serve.
#[derive(Debug)]
pub struct Found {
    /// Canonical, inside the root.
    pub path: PathBuf,
    pub metadata: Metadata,
}

/// Finds the file for `rel` (a normalised path relative to the route)
/// under the canonical `root`; a directory means its `index`.
/// `Ok(None)`: nothing servable there (missing, hidden, or outside).
pub async fn lookup(root: &Path, rel: &str, index: &str) -> io::Result<Option<Found>> {
    let Some(mut candidate) = join(root, rel) else {
        return Ok(None);
    };
    if rel.is_empty() || rel.ends_with('/') {
        candidate.push(index);
    }
    let found = match open(root, &candidate).await? {
        Some(found) if found.metadata.is_dir() => {
            // `/docs` names a directory: serve its index, as `/docs/` would.
            open(root, &found.path.join(index)).await?
        }
        other => other,
    };
    Ok(found.filter(|f| f.metadata.is_file()))
}

/// The candidate path for `rel`, or `None` if a segment may not name a file.
fn join(root: &Path, rel: &str) -> Option<PathBuf> {
    let mut path = root.to_path_buf();
    for raw in rel.split('/').filter(|s| !s.is_empty()) {
        let segment = percent_decode_str(raw).decode_utf8().ok()?;
        let hidden = segment.starts_with('.') && segment != ".well-known";
        if hidden || segment.contains(['/', '\\', '\0']) {
            return None;
        }
        path.push(segment.as_ref());
    }
    Some(path)
}

/// Canonicalises `candidate` and keeps it only inside `root`.
async fn open(root: &Path, candidate: &Path) -> io::Result<Option<Found>> {
    let path = match tokio::fs::canonicalize(candidate).await {
        Ok(path) => path,
        Err(e) if is_absent(&e) => return Ok(None),
        Err(e) => return Err(e),
    };
    if !path.starts_with(root) {
        tracing::debug!("static path resolves outside the served directory");
        return Ok(None);
    }
    let metadata = tokio::fs::metadata(&path).await?;
    Ok(Some(Found { path, metadata }))
}

/// Missing, or a file used as a directory (`/index.html/x`).
fn is_absent(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn traversal_hidden_files_and_escaping_symlinks_name_nothing() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret.txt"), "secret").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        std::fs::write(root.join("index.html"), "index").unwrap();
        std::fs::write(root.join(".env"), "KEY=1").unwrap();
        std::fs::create_dir(root.join("docs")).unwrap();
        std::fs::write(root.join("docs/index.html"), "docs").unwrap();
        std::fs::create_dir(root.join(".well-known")).unwrap();
        std::fs::write(root.join(".well-known/security.txt"), "c").unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret.txt"), root.join("leak.txt")).unwrap();
        std::os::unix::fs::symlink(outside.path(), root.join("out")).unwrap();
        std::os::unix::fs::symlink(root.join("index.html"), root.join("alias.html")).unwrap();

        let name = |rel: &'static str| {
            let root = root.clone();
            async move {
                lookup(&root, rel, "index.html")
                    .await
                    .unwrap()
                    .map(|f| f.path.strip_prefix(&root).unwrap().display().to_string())
            }
        };
        assert_eq!(name("").await.as_deref(), Some("index.html"));
        assert_eq!(name("docs").await.as_deref(), Some("docs/index.html"));
        assert_eq!(name("docs/").await.as_deref(), Some("docs/index.html"));
        assert_eq!(name("alias.html").await.as_deref(), Some("index.html"));
        assert_eq!(
            name(".well-known/security.txt").await.as_deref(),
            Some(".well-known/security.txt")
        );
        for refused in [
            "../secret.txt",
            "docs/../../secret.txt",
            "%2e%2e/secret.txt",
            "..%2fsecret.txt",
            "docs%2f..%2f..%2fsecret.txt",
            "..%5csecret.txt",
            "index.html%00.png",
            ".env",
            "%2eenv",
            "leak.txt",
            "out/secret.txt",
            "index.html/x",
            "missing.js",
        ] {
            assert_eq!(name(refused).await, None, "{refused}");
        }
    }
}
