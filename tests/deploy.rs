//! What ships for deployment: the container image's Dockerfile and baked
//! config. Each config is run through the real `cloakroom check --strict`
//! with the variables and secret files its comments document.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

// === Configs and what they need ===

/// The YAML of `config` without its comments (whole-line and ` # …`).
fn without_comments(config: &str) -> String {
    config
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .map(|l| l.split_once(" #").map_or(l, |(code, _)| code))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every `${NAME}` the config's values use.
fn variables_used(config: &str) -> BTreeSet<String> {
    let yaml = without_comments(config);
    let mut names = BTreeSet::new();
    let mut rest = yaml.as_str();
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        let end = after.find('}').expect("unterminated ${");
        names.insert(after[..end].to_owned());
        rest = &after[end + 1..];
    }
    names
}

/// Every file the config reads from `${CLOAKROOM_SECRETS}/`.
fn secret_files_used(config: &str) -> BTreeSet<String> {
    let yaml = without_comments(config);
    yaml.split("${CLOAKROOM_SECRETS}/")
        .skip(1)
        .map(|rest| {
            rest.split(|c: char| c.is_whitespace() || c == '}' || c == ',' || c == '"')
                .next()
                .unwrap()
                .to_owned()
        })
        .collect()
}

/// The names a config's header comment documents, one per line as
/// `#   NAME   what it is`: upper-case ones are environment variables,
/// lower-case ones secret files.
fn documented(config: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let (mut variables, mut files) = (BTreeSet::new(), BTreeSet::new());
    for line in config.lines() {
        let Some(entry) = line.strip_prefix("#   ") else {
            continue;
        };
        let Some((name, text)) = entry.split_once("  ") else {
            continue;
        };
        if name.is_empty() || text.trim().is_empty() {
            continue;
        }
        if name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        {
            variables.insert(name.to_owned());
        } else if name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        {
            files.insert(name.to_owned());
        }
    }
    (variables, files)
}

/// A value of the right form for a documented variable.
fn example_variable(name: &str) -> &'static str {
    match name {
        "PUBLIC_URL" => "https://app.example.com",
        "OIDC_ISSUER" => "https://idp.example.com",
        "OIDC_CLIENT_ID" => "cloakroom",
        "API_UPSTREAM" => "http://api:8000",
        "SPA_UPSTREAM" => "http://spa:3000",
        "TRUSTED_PROXIES" => "10.0.0.0/8",
        _ => panic!("no example value for the documented variable {name}: add one here"),
    }
}

/// Writes a value of the right form for each secret file into a fresh
/// directory: cookie keys are keys, `.pem` files a real CA certificate.
fn secrets_dir(files: &BTreeSet<String>) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let pki = support::pki::Pki::new();
    for name in files {
        let value = if name.starts_with("cookie-key") {
            format!("{}\n", support::COOKIE_KEY)
        } else if name.ends_with(".pem") {
            std::fs::read_to_string(pki.path("ca")).unwrap()
        } else if name == "redis-url" {
            "redis://cloakroom:example@redis:6379/0\n".to_owned()
        } else {
            "example-secret\n".to_owned()
        };
        std::fs::write(dir.path().join(name), value).unwrap();
    }
    dir
}

/// `cloakroom check --strict --config path` with `env`: exit code and stdout.
fn check(path: &Path, env: &BTreeMap<String, String>) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_cloakroom"))
        .args(["check", "--strict", "--config"])
        .arg(path)
        .envs(env)
        .output()
        .unwrap();
    let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
    (out.status.code(), text(out.stdout), text(out.stderr))
}

/// Checks `config` (its text, at `path`) with every variable and secret
/// file it documents, after asserting it documents exactly what it uses.
/// Returns `cloakroom check`'s output.
fn check_documented(path: &Path, config: &str, extra_env: &[(&str, &str)]) -> String {
    let (variables, files) = documented(config);
    let mut used = variables_used(config);
    used.remove("CLOAKROOM_SECRETS");
    for (name, _) in extra_env {
        used.remove(*name);
    }
    assert_eq!(
        variables,
        used,
        "{}: documented variables vs used",
        path.display()
    );
    assert_eq!(
        files,
        secret_files_used(config),
        "{}: documented secret files vs used",
        path.display()
    );
    let secrets = secrets_dir(&files);
    let mut env: BTreeMap<String, String> = variables
        .iter()
        .map(|v| (v.clone(), example_variable(v).to_owned()))
        .collect();
    env.insert(
        "CLOAKROOM_SECRETS".into(),
        secrets.path().to_str().unwrap().to_owned(),
    );
    env.extend(extra_env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let (code, stdout, stderr) = check(path, &env);
    assert_eq!(code, Some(0), "{}:\n{stderr}", path.display());
    stdout
}

// === The container image ===

/// The Dockerfile's instructions, continuation lines joined, comments out.
fn dockerfile() -> Vec<String> {
    let text = read("Dockerfile");
    let mut instructions = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(part) => current.push_str(part),
            None => {
                current.push_str(line);
                instructions.push(std::mem::take(&mut current));
            }
        }
    }
    instructions
}

/// The instructions of the Dockerfile's last stage.
fn runtime_stage() -> Vec<String> {
    let all = dockerfile();
    let from = all.iter().rposition(|i| i.starts_with("FROM ")).unwrap();
    all[from..].to_vec()
}

#[test]
fn the_baked_docker_config_passes_check_with_its_documented_variables() {
    let path = repo("deploy/docker/cloakroom.yaml");
    let config = read("deploy/docker/cloakroom.yaml");
    let stdout = check_documented(&path, &config, &[]);
    // Reachable from outside the container; the ports the image exposes.
    assert!(
        stdout.contains("listen 0.0.0.0:8080  admin 0.0.0.0:9090"),
        "{stdout}"
    );
}

#[test]
fn the_image_runs_the_baked_config_as_non_root_with_a_health_check() {
    let stage = runtime_stage();
    let has = |instruction: &str| stage.iter().any(|i| i == instruction);
    assert_eq!(stage[0], "FROM gcr.io/distroless/cc-debian12:nonroot");
    assert!(
        has("COPY deploy/docker/cloakroom.yaml /etc/cloakroom/cloakroom.yaml"),
        "{stage:#?}"
    );
    assert!(
        has(r#"CMD ["serve", "--config", "/etc/cloakroom/cloakroom.yaml"]"#),
        "{stage:#?}"
    );
    assert!(has("ENV CLOAKROOM_SECRETS=/run/secrets"), "{stage:#?}");
    assert!(has("USER 65532:65532"), "{stage:#?}");
    assert!(has("EXPOSE 8080 9090"), "{stage:#?}");
    let health = stage
        .iter()
        .find(|i| i.starts_with("HEALTHCHECK "))
        .expect("a HEALTHCHECK");
    assert!(
        health.ends_with(r#"CMD ["/usr/local/bin/cloakroom", "health"]"#),
        "{health}"
    );
    // `cloakroom health` without arguments probes 127.0.0.1:9090, where the
    // baked config's admin listener is.
    let config = read("deploy/docker/cloakroom.yaml");
    assert!(without_comments(&config).contains("admin_listen: 0.0.0.0:9090"));
}

#[test]
fn the_docker_build_context_holds_everything_the_dockerfile_copies() {
    // .dockerignore is an allow-list: `*`, then `!path` for what is needed.
    let ignore = read(".dockerignore");
    let allowed: Vec<&str> = ignore.lines().filter_map(|l| l.strip_prefix('!')).collect();
    assert!(ignore.lines().any(|l| l == "*"), "not an allow-list");
    for copy in dockerfile().iter().filter(|i| i.starts_with("COPY ")) {
        if copy.contains("--from=") {
            continue;
        }
        let words: Vec<&str> = copy.split_whitespace().collect();
        for source in &words[1..words.len() - 1] {
            assert!(
                allowed
                    .iter()
                    .any(|a| source == a || source.starts_with(&format!("{a}/"))),
                "{source} is copied but .dockerignore leaves it out"
            );
            assert!(repo(source).exists(), "{source} does not exist");
        }
    }
}
