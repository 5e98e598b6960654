//! What ships for deployment: the container image (Dockerfile, baked
//! config) and the Kubernetes base and overlays, rendered by the real
//! `kubectl kustomize`. Each config is run through the real
//! `cloakroom check --strict` with the variables and secret files its
//! comments document.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine;
use cloakroom::config::{MapEnv, RedisTopology, StoreConfig};
use serde_json::Value;

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

/// The names a config's comments document, one per line as
/// `#   NAME   what it is` (the line may be indented): upper-case ones are
/// environment variables, lower-case ones secret files.
fn documented(config: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let (mut variables, mut files) = (BTreeSet::new(), BTreeSet::new());
    for line in config.lines() {
        let Some(entry) = line.trim_start().strip_prefix("#   ") else {
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

/// A value of the right form for each secret file: cookie keys are keys,
/// `.pem` files a real CA certificate.
fn example_secrets(files: &BTreeSet<String>) -> BTreeMap<String, String> {
    let pki = support::pki::Pki::new();
    files
        .iter()
        .map(|name| {
            let value = if name.starts_with("cookie-key") {
                format!("{}\n", support::COOKIE_KEY)
            } else if name.ends_with(".pem") {
                std::fs::read_to_string(pki.path("ca")).unwrap()
            } else if name == "redis-url" {
                "redis://cloakroom:example@redis:6379/0\n".to_owned()
            } else {
                "example-secret\n".to_owned()
            };
            (name.clone(), value)
        })
        .collect()
}

/// A fresh directory holding `files` (name → contents).
fn directory_of(files: &BTreeMap<String, String>) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, value) in files {
        std::fs::write(dir.path().join(name), value).unwrap();
    }
    dir
}

/// `cloakroom check --strict --config path` with `env`: exit code, stdout
/// and stderr.
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

/// Asserts `config` documents exactly the variables (but
/// `CLOAKROOM_SECRETS`, which the image or the Deployment sets) and the
/// secret files it uses; returns both.
fn documents_what_it_uses(what: &str, config: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let (variables, files) = documented(config);
    let mut used = variables_used(config);
    used.remove("CLOAKROOM_SECRETS");
    assert_eq!(variables, used, "{what}: documented variables vs used");
    assert_eq!(
        files,
        secret_files_used(config),
        "{what}: documented secret files vs used"
    );
    (variables, files)
}

/// The environment `cloakroom check` needs for `variables`, with the
/// secret files in `secrets`.
fn environment(variables: &BTreeSet<String>, secrets: &Path) -> BTreeMap<String, String> {
    let mut env: BTreeMap<String, String> = variables
        .iter()
        .map(|v| (v.clone(), example_variable(v).to_owned()))
        .collect();
    env.insert("CLOAKROOM_SECRETS".into(), secrets.to_str().unwrap().to_owned());
    env
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
    let (variables, files) = documents_what_it_uses("deploy/docker/cloakroom.yaml", &config);
    let secrets = directory_of(&example_secrets(&files));
    let (code, stdout, stderr) = check(&path, &environment(&variables, secrets.path()));
    assert_eq!(code, Some(0), "{stderr}");
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

// === The image's build, without Docker ===
//
// There is no Docker daemon in CI, so `the_dockerfile_builds_without_docker`
// plays the Dockerfile itself: each stage's filesystem is a directory that
// stands for its `/`; WORKDIR, ENV and COPY (from the build context or an
// earlier stage) lay it out as Docker would, and each RUN line is executed
// as it is written, by `sh -c`, in the stage's WORKDIR. The one stand-in is
// `cargo build`, which would compile for minutes: a `cargo` first on PATH
// runs `cargo fetch --locked --offline` instead, which reads the manifest
// as strictly as a build does (every target it declares has a source file:
// `cargo metadata` would not notice a missing one) and resolves the lock
// file, downloading nothing; it notes where the build ran. RUN lines
// therefore work relative to WORKDIR, as the Dockerfile's do.

/// One stage: its name (`AS name`, else its index) and instructions,
/// `FROM` first.
struct Stage {
    name: String,
    instructions: Vec<String>,
}

fn stages() -> Vec<Stage> {
    let mut stages: Vec<Stage> = Vec::new();
    for instruction in dockerfile() {
        if instruction.starts_with("FROM ") {
            let words: Vec<&str> = instruction.split_whitespace().collect();
            let name = match words.as_slice() {
                [_, _, as_, name] if as_.eq_ignore_ascii_case("as") => (*name).to_owned(),
                _ => stages.len().to_string(),
            };
            stages.push(Stage {
                name,
                instructions: Vec::new(),
            });
        }
        let stage = stages.last_mut().expect("an instruction before FROM");
        stage.instructions.push(instruction);
    }
    stages
}

/// Copies `from` (a file, or a directory's contents) to `to`, as COPY does.
fn copy_into(from: &Path, to: &Path) {
    if from.is_dir() {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            copy_into(&entry.path(), &to.join(entry.file_name()));
        }
    } else {
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(from, to).unwrap_or_else(|e| panic!("{}: {e}", from.display()));
    }
}

/// The script that takes `cargo`'s place in RUN lines.
const CARGO_STAND_IN: &str = r#"#!/bin/sh
if [ "$1" = build ]; then
  shift
  printf '%s|%s\n' "$PWD" "$*" >> "$CARGO_BUILDS"
  exec "$REAL_CARGO" fetch --locked --offline --target "$HOST_TRIPLE"
fi
exec "$REAL_CARGO" "$@"
"#;

/// A `cargo build` a RUN line made: where (in the image), with what
/// arguments, and whether it saw the real `src/main.rs` or a stand-in.
#[derive(Debug)]
struct CargoBuild {
    dir: String,
    args: String,
    real_sources: bool,
}

/// A stage laid out in a directory standing for its `/`.
struct Layout {
    root: PathBuf,
    workdir: String,
    env: BTreeMap<String, String>,
    builds: Vec<CargoBuild>,
}

// === impl Layout ===

impl Layout {
    /// The directory standing for the image path `path` (absolute, or
    /// relative to WORKDIR).
    fn at(&self, path: &str) -> PathBuf {
        let absolute = if path.starts_with('/') {
            path.to_owned()
        } else if path == "." || path == "./" {
            self.workdir.clone()
        } else {
            format!("{}/{path}", self.workdir.trim_end_matches('/'))
        };
        self.root.join(absolute.trim_start_matches('/'))
    }

    /// What the stage's `cargo build`s produce, as image paths:
    /// `<target dir>/<profile>/<bin>`.
    fn artifacts(&self) -> Vec<String> {
        let mut artifacts = Vec::new();
        for build in self.builds.iter().filter(|b| b.real_sources) {
            let args: Vec<&str> = build.args.split_whitespace().collect();
            let profile = if args.contains(&"--release") {
                "release"
            } else {
                "debug"
            };
            let metadata = Command::new(env!("CARGO"))
                .args(["metadata", "--no-deps", "--offline", "--format-version", "1"])
                .current_dir(self.at(&build.dir))
                .env_remove("CARGO_TARGET_DIR")
                .env_remove("CARGO_BUILD_TARGET_DIR")
                .output()
                .unwrap();
            assert!(metadata.status.success());
            let metadata: Value = serde_json::from_slice(&metadata.stdout).unwrap();
            let target = Path::new(str_of(&metadata["target_directory"]));
            let target = target
                .strip_prefix(&self.root)
                .expect("target dir inside the image");
            for bin in args.windows(2).filter(|w| w[0] == "--bin").map(|w| w[1]) {
                artifacts.push(format!("/{}/{profile}/{bin}", target.display()));
            }
        }
        artifacts
    }
}

/// Lays out every stage of the Dockerfile under `dir`, running its RUN
/// lines; the layouts by stage name.
fn build_without_docker(dir: &Path) -> BTreeMap<String, Layout> {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let cargo = bin.join("cargo");
    std::fs::write(&cargo, CARGO_STAND_IN).unwrap();
    std::fs::set_permissions(&cargo, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let host = String::from_utf8(Command::new("rustc").arg("-vV").output().unwrap().stdout)
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_owned))
        .unwrap();
    let ignore = read(".dockerignore");
    let allowed: Vec<&str> = ignore.lines().filter_map(|l| l.strip_prefix('!')).collect();

    let mut layouts: BTreeMap<String, Layout> = BTreeMap::new();
    for stage in stages() {
        let root = dir.join(format!("stage-{}", stage.name));
        std::fs::create_dir_all(&root).unwrap();
        let mut layout = Layout {
            root,
            workdir: "/".into(),
            env: BTreeMap::new(),
            builds: Vec::new(),
        };
        for instruction in &stage.instructions[1..] {
            let (keyword, rest) = instruction.split_once(' ').unwrap();
            match keyword {
                "WORKDIR" => {
                    layout.workdir = rest.trim().to_owned();
                    std::fs::create_dir_all(layout.at(".")).unwrap();
                }
                "ENV" => {
                    let (name, value) = rest.split_once('=').expect("ENV NAME=value");
                    layout.env.insert(name.trim().into(), value.trim().into());
                }
                "COPY" => {
                    let mut words: Vec<&str> = rest.split_whitespace().collect();
                    let from = words
                        .first()
                        .and_then(|w| w.strip_prefix("--from="))
                        .map(str::to_owned);
                    if from.is_some() {
                        words.remove(0);
                    }
                    let (destination, sources) = words.split_last().unwrap();
                    let into_dir = destination.ends_with('/') || sources.len() > 1;
                    for source in sources {
                        let from_path = match &from {
                            Some(stage) => {
                                let earlier = layouts
                                    .get(stage)
                                    .unwrap_or_else(|| panic!("COPY --from={stage}: no such stage"));
                                let path = earlier.at(source);
                                if !path.exists() {
                                    // Not laid out: it must be what a
                                    // `cargo build` of that stage makes.
                                    let artifacts = earlier.artifacts();
                                    assert!(
                                        artifacts.iter().any(|a| a == source),
                                        "COPY --from={stage} {source}: not in that stage, and \
                                         not what its cargo builds make ({artifacts:?})"
                                    );
                                    continue;
                                }
                                path
                            }
                            None => {
                                assert!(
                                    allowed
                                        .iter()
                                        .any(|a| { source == a || source.starts_with(&format!("{a}/")) }),
                                    "{source} is copied but .dockerignore leaves it out"
                                );
                                repo(source)
                            }
                        };
                        let to = if into_dir && !from_path.is_dir() {
                            layout.at(destination).join(from_path.file_name().unwrap())
                        } else {
                            layout.at(destination)
                        };
                        copy_into(&from_path, &to);
                    }
                }
                "RUN" => {
                    let log = dir.join(format!("builds-{}", stage.name));
                    let _ = std::fs::remove_file(&log);
                    let out = Command::new("sh")
                        .arg("-c")
                        .arg(rest)
                        .current_dir(layout.at("."))
                        .envs(&layout.env)
                        .env("PATH", &path)
                        .env("REAL_CARGO", env!("CARGO"))
                        .env("HOST_TRIPLE", &host)
                        .env("CARGO_BUILDS", &log)
                        .env_remove("CARGO_TARGET_DIR")
                        .env_remove("CARGO_BUILD_TARGET_DIR")
                        .output()
                        .unwrap();
                    assert!(
                        out.status.success(),
                        "stage {}: RUN {rest}\n{}",
                        stage.name,
                        String::from_utf8_lossy(&out.stderr)
                    );
                    let logged = std::fs::read_to_string(&log).unwrap_or_default();
                    for line in logged.lines() {
                        let (pwd, args) = line.split_once('|').unwrap();
                        let dir = Path::new(pwd).strip_prefix(&layout.root).unwrap();
                        let dir = format!("/{}", dir.display());
                        let main = std::fs::read_to_string(layout.at(&format!("{dir}/src/main.rs")));
                        layout.builds.push(CargoBuild {
                            real_sources: main.ok().as_deref() == Some(read("src/main.rs").as_str()),
                            dir,
                            args: args.to_owned(),
                        });
                    }
                }
                // What the image is, not how it is built.
                "USER" | "EXPOSE" | "HEALTHCHECK" | "ENTRYPOINT" | "CMD" => {}
                other => panic!("the test does not play {other}: teach it"),
            }
        }
        layouts.insert(stage.name, layout);
    }
    layouts
}

#[test]
fn the_dockerfile_builds_without_docker() {
    let dir = tempfile::tempdir().unwrap();
    let layouts = build_without_docker(dir.path());
    let build = &layouts["build"];
    // The dependencies are built first, on stand-ins, then cloakroom on
    // its sources: the layer of dependencies survives a change of code.
    let builds: Vec<bool> = build.builds.iter().map(|b| b.real_sources).collect();
    assert_eq!(builds, [false, true], "{:#?}", build.builds);
    assert_eq!(
        build.artifacts(),
        ["/src/target/release/cloakroom"],
        "{:#?}",
        build.builds
    );
    // What the last stage copies from the build stage was there (checked
    // while laying it out), and the binary is where the image runs it.
    let runtime = stages().pop().unwrap();
    assert!(runtime
        .instructions
        .iter()
        .any(|i| i == "COPY --from=build /src/target/release/cloakroom /usr/local/bin/cloakroom"));
    assert!(layouts[&runtime.name]
        .at("/etc/cloakroom/cloakroom.yaml")
        .is_file());
}

// === Kubernetes ===

/// `kubectl kustomize dir`: the objects it renders; `None`, said on
/// stderr, when kubectl is not installed.
fn kustomize(dir: &str) -> Option<Vec<Value>> {
    let out = match Command::new("kubectl").arg("kustomize").arg(repo(dir)).output() {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!(
                "SKIPPED: kubectl is not installed, so {dir} is not rendered \
                 (kubectl 1.27 or later; Debian's kubernetes-client is too old for its kustomize)"
            );
            return None;
        }
        Err(e) => panic!("kubectl: {e}"),
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "kubectl kustomize {dir} (needs kubectl 1.27 or later):\n{stderr}"
    );
    let text = String::from_utf8(out.stdout).unwrap();
    Some(
        text.split("\n---\n")
            .map(|doc| serde_saphyr::from_str(doc).unwrap_or_else(|e| panic!("{e}:\n{doc}")))
            .collect(),
    )
}

/// The one object of `kind` (named `name`, or generated from it with a
/// hash suffix).
fn object<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    let found: Vec<&Value> = objects
        .iter()
        .filter(|o| o["kind"] == kind)
        .filter(|o| {
            let n = o["metadata"]["name"].as_str().unwrap();
            n == name
                || n.strip_prefix(name)
                    .and_then(|h| h.strip_prefix('-'))
                    .is_some_and(|h| h.len() == 10)
        })
        .collect();
    assert_eq!(found.len(), 1, "one {kind} {name}: {found:#?}");
    found[0]
}

fn str_of(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v}"))
}

/// Renders `dir` and checks what it deploys hangs together: the config
/// passes `cloakroom check --strict` with the Secret's files where the
/// Deployment mounts them, the example Secret itself is refused, the
/// probes, ports, grace period and security context match the config, and
/// the NetworkPolicy lets cloakroom reach its Redis.
fn check_kubernetes(dir: &str) {
    let Some(objects) = kustomize(dir) else { return };
    for kind in [
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
        "NetworkPolicy",
        "ServiceMonitor",
        "PrometheusRule",
    ] {
        object(&objects, kind, "cloakroom");
    }
    object(&objects, "Service", "cloakroom-admin");
    assert!(
        !objects.iter().any(|o| o["metadata"]["name"] == "cloakroom-redis"),
        "{dir}: the overlay's redis.yaml carrier stays out of the output"
    );
    let config_map = object(&objects, "ConfigMap", "cloakroom");
    let config = str_of(&config_map["data"]["cloakroom.yaml"]);
    let secret = object(&objects, "Secret", "cloakroom");
    let example: BTreeMap<String, String> = secret["data"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            let b64: String = str_of(v).split_whitespace().collect();
            let bytes = base64::engine::general_purpose::STANDARD.decode(b64).unwrap();
            (k.clone(), String::from_utf8(bytes).unwrap())
        })
        .collect();

    // The config reads exactly the Secret's files, and says what each is.
    let (variables, files) = documents_what_it_uses(dir, config);
    assert!(
        variables.is_empty(),
        "{dir}: variables {variables:?}: use the ConfigMap or the Secret"
    );
    assert_eq!(
        files,
        example.keys().cloned().collect(),
        "{dir}: secret files vs the Secret's keys"
    );

    // Where the Deployment mounts them.
    let deployment = object(&objects, "Deployment", "cloakroom");
    let pod = &deployment["spec"]["template"]["spec"];
    let containers = pod["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1);
    let container = &containers[0];
    let env: Vec<&Value> = container["env"].as_array().unwrap().iter().collect();
    let secrets_dir = env
        .iter()
        .find(|e| e["name"] == "CLOAKROOM_SECRETS")
        .map(|e| str_of(&e["value"]))
        .expect("CLOAKROOM_SECRETS is set");
    let mount = |volume: &str| -> &str {
        let mounts = container["volumeMounts"].as_array().unwrap();
        let m = mounts.iter().find(|m| m["name"] == volume).unwrap();
        assert_eq!(m["readOnly"], true, "{volume} is mounted read-only");
        str_of(&m["mountPath"])
    };
    let volume = |name: &str| -> &Value {
        let volumes = pod["volumes"].as_array().unwrap();
        volumes.iter().find(|v| v["name"] == name).unwrap()
    };
    assert_eq!(mount("secrets"), secrets_dir);
    assert_eq!(
        volume("secrets")["secret"]["secretName"],
        secret["metadata"]["name"]
    );
    assert_eq!(mount("config"), "/etc/cloakroom");
    assert_eq!(
        volume("config")["configMap"]["name"],
        config_map["metadata"]["name"]
    );
    let args: Vec<&str> = container["args"].as_array().unwrap().iter().map(str_of).collect();
    assert_eq!(args, ["serve", "--config", "/etc/cloakroom/cloakroom.yaml"]);

    // `cloakroom check --strict` passes with real values in those files…
    let rendered = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(rendered.path(), config).unwrap();
    let values = example_secrets(&files);
    let secrets = directory_of(&values);
    let (code, stdout, stderr) = check(rendered.path(), &environment(&variables, secrets.path()));
    assert_eq!(code, Some(0), "{dir}: {stderr}\n{config}");
    assert!(
        stdout.contains("listen 0.0.0.0:8080  admin 0.0.0.0:9090"),
        "{stdout}"
    );
    // …and refuses the example Secret's placeholders as they are.
    let placeholders = directory_of(&example);
    let (code, _, stderr) = check(rendered.path(), &environment(&variables, placeholders.path()));
    assert_eq!(code, Some(64), "{dir}: the example Secret must not run");
    assert!(stderr.contains("cookie.keys[0].secret"), "{stderr}");

    // The config as cloakroom reads it, for the numbers below.
    let mut env = MapEnv::default().with_var("CLOAKROOM_SECRETS", secrets_dir);
    for (name, value) in &values {
        env = env.with_file(&format!("{secrets_dir}/{name}"), value);
    }
    let loaded = cloakroom::Config::load(config, &env).unwrap_or_else(|e| panic!("{e}"));

    // Ports and probes on the listeners the config names.
    let port = |name: &str| {
        let ports = container["ports"].as_array().unwrap();
        let p = ports.iter().find(|p| p["name"] == name).unwrap();
        p["containerPort"].as_u64().unwrap()
    };
    assert_eq!(port("http"), u64::from(loaded.listen.port()));
    assert_eq!(port("admin"), u64::from(loaded.admin_listen.port()));
    let probe = &container["livenessProbe"]["httpGet"];
    assert_eq!(
        (str_of(&probe["path"]), str_of(&probe["port"])),
        ("/healthz", "admin")
    );
    let probe = &container["readinessProbe"]["httpGet"];
    assert_eq!(
        (str_of(&probe["path"]), str_of(&probe["port"])),
        ("/readyz", "admin")
    );

    // Load balancers stop sending during the preStop sleep, then the drain
    // runs its full course before Kubernetes kills the pod.
    let sleep = container["lifecycle"]["preStop"]["sleep"]["seconds"]
        .as_u64()
        .unwrap();
    assert!(sleep >= 5, "preStop sleep {sleep}s");
    let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
    let drain = loaded.limits.shutdown_grace.as_secs();
    assert!(
        grace > sleep + drain,
        "terminationGracePeriodSeconds {grace} ≤ {sleep} + {drain}"
    );

    // Locked down.
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault");
    assert_eq!(pod["automountServiceAccountToken"], false);
    let security = &container["securityContext"];
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["capabilities"]["drop"], serde_json::json!(["ALL"]));

    // The NetworkPolicy lets in the listeners and out to every Redis node
    // the config names.
    let policy = object(&objects, "NetworkPolicy", "cloakroom");
    // A rule without `ports` allows every port: none listed.
    let ports_of = |rule: &Value| -> Vec<u64> {
        rule["ports"]
            .as_array()
            .map_or(&[][..], Vec::as_slice)
            .iter()
            .map(|p| p["port"].as_u64().unwrap())
            .collect()
    };
    let ingress: Vec<u64> = policy["spec"]["ingress"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(ports_of)
        .collect();
    assert!(
        ingress.contains(&port("http")) && ingress.contains(&port("admin")),
        "{ingress:?}"
    );
    let to_redis: Vec<u64> = policy["spec"]["egress"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| {
            r["to"]
                .to_string()
                .contains(r#""kubernetes.io/metadata.name":"redis""#)
        })
        .flat_map(ports_of)
        .collect();
    // An IdP in the cluster, on any port; OTLP/HTTP to a collector; the
    // IdP's back-channel logout straight to the Service.
    let namespace = |rule: &Value, name: &str| {
        rule.to_string()
            .contains(&format!(r#""kubernetes.io/metadata.name":"{name}""#))
    };
    let egress = policy["spec"]["egress"].as_array().unwrap();
    assert!(
        egress
            .iter()
            .any(|r| namespace(&r["to"], "idp") && r.get("ports").is_none()),
        "{dir}: egress to an in-cluster IdP on any port"
    );
    assert!(
        egress.iter().any(|r| ports_of(r).contains(&4318)),
        "{dir}: egress to OTLP/HTTP"
    );
    assert!(
        policy["spec"]["ingress"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| namespace(&r["from"], "idp") && ports_of(r).contains(&port("http"))),
        "{dir}: ingress from the IdP for back-channel logout"
    );

    // The alerts docs/operations.md suggests are the ones deployed.
    let rule = object(&objects, "PrometheusRule", "cloakroom");
    let documented = documented_alerts();
    assert_eq!(
        rule["spec"]["groups"], documented["groups"],
        "{dir}: prometheusrule.yaml and docs/operations.md's alerts differ"
    );
    let names: Vec<&str> = documented["groups"][0]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| str_of(&r["alert"]))
        .collect();
    for name in [
        "CloakroomAnomaly",
        "CloakroomSessionStoreDown",
        "CloakroomIdpDown",
    ] {
        assert!(names.contains(&name), "{name} in {names:?}");
    }

    let StoreConfig::Redis(redis) = &loaded.session.store else {
        panic!("{dir}: sessions in Redis")
    };
    let urls = match &redis.topology {
        RedisTopology::Standalone(url) => vec![url.clone()],
        RedisTopology::Cluster(urls) | RedisTopology::Sentinel { nodes: urls, .. } => urls.clone(),
    };
    for url in urls {
        let port = url::Url::parse(url.expose()).unwrap().port().unwrap_or(6379);
        assert!(
            to_redis.contains(&u64::from(port)),
            "{dir}: no egress to Redis port {port}"
        );
    }
}

/// The YAML block of docs/operations.md's "Alerts" section, parsed.
fn documented_alerts() -> Value {
    let docs = read("docs/operations.md");
    let section = &docs[docs.find("### Alerts").expect("an Alerts section")..];
    let start = section.find("```yaml\n").expect("a YAML block") + "```yaml\n".len();
    let block = &section[start..];
    let block = &block[..block.find("```").unwrap()];
    serde_saphyr::from_str(block).unwrap_or_else(|e| panic!("{e}:\n{block}"))
}

#[test]
fn kubernetes_base_renders_and_its_config_passes_check() {
    check_kubernetes("deploy/kubernetes/base");
}

#[test]
fn kubernetes_standalone_overlay_renders_and_its_config_passes_check() {
    check_kubernetes("deploy/kubernetes/overlays/standalone");
}

#[test]
fn kubernetes_sentinel_overlay_renders_and_its_config_passes_check() {
    check_kubernetes("deploy/kubernetes/overlays/sentinel");
}

#[test]
fn kubernetes_cluster_overlay_renders_and_its_config_passes_check() {
    check_kubernetes("deploy/kubernetes/overlays/cluster");
}

/// Without kubectl the overlays are not rendered; the base config, which
/// is a file of its own, is still checked.
#[test]
fn kubernetes_base_config_passes_check_as_a_file() {
    let path = repo("deploy/kubernetes/base/cloakroom.yaml");
    let config = read("deploy/kubernetes/base/cloakroom.yaml");
    let (variables, files) = documents_what_it_uses("deploy/kubernetes/base/cloakroom.yaml", &config);
    let secrets = directory_of(&example_secrets(&files));
    let (code, _, stderr) = check(&path, &environment(&variables, secrets.path()));
    assert_eq!(code, Some(0), "{stderr}");
}
