//! Which file on disk a request path names, if any, without ever leaving
//! the served directory.
//!
//! The path arrives normalised (no dot segments; encoded `/`, `\`, `.` and
//! NUL already refused), and is checked again here segment by segment, so
//! this module holds on its own: `..`, `.`, dotfiles (`.env`, `.git`; only
//! `.well-known` is served), backslashes and NUL never name a file. A
//! symlink is followed only if it stays inside the directory and names no
//! hidden file: the canonical path must start with the canonical root, and
//! the same dotfile rule holds for what follows the root (PX-37). Every
//! file served is one [`open`] has checked, precompressed siblings
//! included ([`sibling`]).

use std::fs::Metadata;
use std::io;
use std::path::{Path, PathBuf};

use percent_encoding::percent_decode_str;

/// A file to serve.
#[derive(Debug)]
pub(crate) struct Found {
    /// Canonical, inside the root.
    pub path: PathBuf,
    pub metadata: Metadata,
}

/// Finds the file for `rel` (a normalised path relative to the route)
/// under the canonical `root`; a directory means its `index`.
/// `Ok(None)`: nothing servable there (missing, hidden, or outside).
pub(crate) async fn lookup(root: &Path, rel: &str, index: &str) -> io::Result<Option<Found>> {
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

/// The precompressed sibling of the served `file` (`app.js.br` for
/// `app.js`, with `extension` `.br`), if it is a file that passes the same
/// checks. tower-http's `ServeFile` opens `<file><extension>` itself,
/// without them: only the encodings whose sibling passes here may be
/// turned on (PX-37).
pub(crate) async fn sibling(root: &Path, file: &Path, extension: &str) -> io::Result<Option<Found>> {
    let mut name = file.as_os_str().to_owned();
    name.push(extension);
    let found = open(root, Path::new(&name)).await?;
    Ok(found.filter(|f| f.metadata.is_file()))
}

/// The candidate path for `rel`, or `None` if a segment may not name a file.
fn join(root: &Path, rel: &str) -> Option<PathBuf> {
    let mut path = root.to_path_buf();
    for raw in rel.split('/').filter(|s| !s.is_empty()) {
        let segment = percent_decode_str(raw).decode_utf8().ok()?;
        if is_hidden(&segment) || segment.contains(['/', '\\', '\0']) {
            return None;
        }
        path.push(segment.as_ref());
    }
    Some(path)
}

/// Canonicalises `candidate` and keeps it only inside `root` and out of
/// hidden files and directories: a symlink (`env.txt -> .env`, `conf ->
/// .git`) gets no further than the name it is reached by.
async fn open(root: &Path, candidate: &Path) -> io::Result<Option<Found>> {
    let path = match tokio::fs::canonicalize(candidate).await {
        Ok(path) => path,
        Err(e) if is_absent(&e) => return Ok(None),
        Err(e) => return Err(e),
    };
    let Ok(inside) = path.strip_prefix(root) else {
        tracing::debug!("static path resolves outside the served directory");
        return Ok(None);
    };
    // Only below the root: the directory itself may sit under a hidden one.
    if inside.iter().any(|segment| is_hidden(&segment.to_string_lossy())) {
        tracing::debug!("static path resolves to a hidden file");
        return Ok(None);
    }
    let metadata = tokio::fs::metadata(&path).await?;
    Ok(Some(Found { path, metadata }))
}

/// Dotfiles and dot directories, but `.well-known`.
fn is_hidden(segment: &str) -> bool {
    segment.starts_with('.') && segment != ".well-known"
}

/// Missing, or a file used as a directory (`/index.html/x`).
fn is_absent(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn px37_traversal_hidden_files_and_escaping_or_hidden_symlinks_name_nothing() {
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
        std::fs::create_dir(root.join(".git")).unwrap();
        std::fs::write(root.join(".git/config"), "[core]").unwrap();
        std::os::unix::fs::symlink(root.join(".env"), root.join("env.txt")).unwrap();
        std::os::unix::fs::symlink(root.join(".git"), root.join("conf")).unwrap();
        std::os::unix::fs::symlink(".git/config", root.join("config.txt")).unwrap();

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
            "env.txt",
            "conf/config",
            "config.txt",
        ] {
            assert_eq!(name(refused).await, None, "{refused}");
        }
    }

    #[tokio::test]
    async fn px37_a_precompressed_sibling_is_checked_like_the_file() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "secret").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        for name in ["app.js", "app.js.br", "pre.js", "env.js", ".env.gz", "dir.js"] {
            std::fs::write(root.join(name), name).unwrap();
        }
        std::os::unix::fs::symlink(outside.path().join("secret"), root.join("pre.js.gz")).unwrap();
        std::os::unix::fs::symlink(root.join(".env.gz"), root.join("env.js.gz")).unwrap();
        std::os::unix::fs::symlink(root.join("app.js.br"), root.join("alias.js.br")).unwrap();
        std::fs::create_dir(root.join("dir.js.gz")).unwrap();

        let has = |file: &'static str, extension: &'static str| {
            let root = root.clone();
            async move {
                sibling(&root, &root.join(file), extension)
                    .await
                    .unwrap()
                    .is_some()
            }
        };
        assert!(has("app.js", ".br").await);
        assert!(has("alias.js", ".br").await, "a symlink inside, to a plain name");
        assert!(!has("app.js", ".gz").await, "missing");
        assert!(!has("pre.js", ".gz").await, "outside the directory");
        assert!(!has("env.js", ".gz").await, "a dotfile");
        assert!(!has("dir.js", ".gz").await, "not a file");
    }
}
