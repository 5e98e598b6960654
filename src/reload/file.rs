//! Reading the config file, and what it read: the files a reload watches.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use sha2::{Digest as _, Sha256};

use crate::config::{Config, ConfigErrors, Env, ProcessEnv};

/// Why a config file gives no config.
#[derive(Debug)]
pub enum LoadError {
    Read(PathBuf, io::Error),
    Invalid(PathBuf, ConfigErrors),
}

// === impl LoadError ===

impl LoadError {
    /// One line per problem, as `cloakroom check` prints them.
    pub fn lines(&self) -> Vec<String> {
        match self {
            LoadError::Read(path, e) => vec![format!("cannot read {}: {e}", path.display())],
            LoadError::Invalid(_, errors) => errors.0.iter().map(ToString::to_string).collect(),
        }
    }
}

/// A config file and the files its last reading read, each with a digest
/// of what it held then: what the poll compares against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watched {
    path: PathBuf,
    /// The config file first, then each `*_file`; `None`: unreadable.
    pub(super) files: Vec<(PathBuf, Option<[u8; 32]>)>,
}

/// Reads and validates the config at `path`, with `${VAR}` from the process
/// environment; also returns what was read, to watch for changes.
pub fn load(path: &Path) -> (Result<Config, LoadError>, Watched) {
    let text = std::fs::read_to_string(path);
    let mut watched = Watched {
        path: path.to_owned(),
        files: vec![(path.to_owned(), text.as_ref().ok().map(|t| digest(t.as_bytes())))],
    };
    let text = match text {
        Ok(text) => text,
        Err(e) => return (Err(LoadError::Read(path.to_owned(), e)), watched),
    };
    let env = Recording::default();
    let config = Config::load_named(&text, &path.display().to_string(), &env)
        .map_err(|errors| LoadError::Invalid(path.to_owned(), errors));
    watched
        .files
        .extend(env.read.into_inner().unwrap_or_else(|p| p.into_inner()));
    (config, watched)
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// The process environment, noting each file the config reads.
#[derive(Default)]
struct Recording {
    read: Mutex<Vec<(PathBuf, Option<[u8; 32]>)>>,
}

impl Env for Recording {
    fn var(&self, name: &str) -> Option<String> {
        ProcessEnv.var(name)
    }

    fn read_file(&self, path: &Path) -> io::Result<String> {
        let text = ProcessEnv.read_file(path);
        let seen = text.as_ref().ok().map(|t| digest(t.as_bytes()));
        self.read
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((path.to_owned(), seen));
        text
    }
}

// === impl Watched ===

impl Watched {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The same files as they are now.
    ///
    /// Each file is read whole by its path, every time. In Kubernetes a
    /// mounted ConfigMap or Secret is updated by swapping a `..data`
    /// symlink to a new directory: the file's path stays, its inode and
    /// directory change, so file-system notifications on the old file never
    /// fire and would need re-arming on every swap; editors that save by
    /// rename do the same. Reading by path sees every such change, and the
    /// files are a few kilobytes, read once a second.
    pub fn now(&self) -> Watched {
        let files = self
            .files
            .iter()
            .map(|(path, _)| (path.clone(), std::fs::read(path).ok().map(|b| digest(&b))))
            .collect();
        Watched {
            path: self.path.clone(),
            files,
        }
    }
}
