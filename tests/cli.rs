//! The `cloakroom` binary as an operator uses it.

mod support;

use std::io::Write;
use std::process::Command;
use std::time::Duration;

use support::wait::until_blocking;
use support::{free_port, COOKIE_KEY};

fn cloakroom() -> Command {
    Command::new(env!("CARGO_BIN_EXE_cloakroom"))
}

fn config_file(yaml: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(yaml.as_bytes()).unwrap();
    file
}

#[test]
fn check_lists_every_mistake_with_its_key_path() {
    let file = config_file(
        "public_url: http://localhost:8080
limits: {max_connection: 10}
routes:
  - {path: /api, upstream: 'localhost:8000', auth: none}
  - {path: /, upstream: 'http://spa:3000', auth: sometimes}
",
    );
    let out = cloakroom()
        .args(["check", "--config"])
        .arg(file.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8(out.stderr).unwrap();
    for line in [
        "limits.max_connection: unknown key",
        "routes[0].upstream: not an absolute http(s) URL",
        "routes[1].auth: \"sometimes\" is not one of required, optional, none",
    ] {
        assert!(stderr.contains(line), "missing {line:?} in:\n{stderr}");
    }
    assert!(stderr.contains("3 error(s)"), "{stderr}");
}

#[test]
fn check_prints_the_effective_routes_longest_prefix_first() {
    let out = cloakroom()
        .args(["check", "--config", "config/cloakroom.yaml"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains("http://127.0.0.1:3000/"), "{stdout}");
}

#[test]
fn px23_check_says_what_each_routes_own_token_is_for() {
    let file = config_file(
        "public_url: http://localhost:8080
oidc: {issuer: 'http://127.0.0.1:9000', client_id: c, client_secret: s}
cookie: {keys: [{id: '1', secret: q8mpiU4Df6kDNHGrPDb2Xt2zqW1QpOOb8j2r6bXaFtY}]}
routes:
  - {path: /orders, upstream: 'http://127.0.0.1:3000', resource: 'urn:x:orders', scopes: [orders:read]}
  - {path: /jobs, upstream: 'http://127.0.0.1:3001', auth: none, token: client, scopes: [jobs]}
  - {path: /ledger, upstream: 'http://127.0.0.1:3002', token: exchange,
     exchange: {audience: 'urn:x:ledger', scopes: ['ledger:read'], subject_token: id_token}}
",
    );
    let out = cloakroom()
        .args(["check", "--config"])
        .arg(file.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    for line in [
        "└ its own user token: resource urn:x:orders, scopes orders:read",
        "└ its own client token: resource none, scopes jobs",
        "└ the session's id_token exchanged for a token: audience urn:x:ledger, resource none, scopes ledger:read",
    ] {
        assert!(stdout.contains(line), "missing {line:?} in:\n{stdout}");
    }
}

#[test]
fn check_refuses_an_exchange_route_without_its_exchange_naming_the_key() {
    let (code, stderr) = check(
        "public_url: http://localhost:8080
oidc: {issuer: 'http://127.0.0.1:9000', client_id: c, client_secret: s}
cookie: {keys: [{id: '1', secret: q8mpiU4Df6kDNHGrPDb2Xt2zqW1QpOOb8j2r6bXaFtY}]}
routes:
  - {path: /ledger, upstream: 'http://127.0.0.1:3002', token: exchange}
  - {path: /api, upstream: 'http://127.0.0.1:3000', exchange: {audience: 'urn:x:ledger'}}
",
    );
    assert_eq!(code, Some(64), "{stderr}");
    for error in [
        "routes[0].exchange: required with token: exchange",
        "routes[1].exchange: only meaningful with token: exchange",
    ] {
        assert!(stderr.contains(error), "missing {error:?} in:\n{stderr}");
    }
}

/// Runs `cloakroom check` on `yaml`; the exit code and stderr.
fn check(yaml: &str) -> (Option<i32>, String) {
    let file = config_file(yaml);
    let out = cloakroom()
        .args(["check", "--config"])
        .arg(file.path())
        .output()
        .unwrap();
    (out.status.code(), String::from_utf8(out.stderr).unwrap())
}

const ONE_ROUTE: &str = "routes: [{path: /, upstream: 'http://127.0.0.1:3000', auth: none}]";

#[test]
fn check_refuses_a_log_level_that_would_silence_serve() {
    for level in ["verbose", "warning"] {
        let (code, stderr) = check(&format!(
            "public_url: http://localhost:8080\nlog: {{level: {level}}}\n{ONE_ROUTE}\n"
        ));
        assert_eq!(code, Some(64), "{level}: {stderr}");
        let expected = format!(
            "log.level: \"{level}\" is not a log level: use one of trace, debug, info, warn, error, off"
        );
        assert!(stderr.contains(&expected), "{stderr}");
    }
    let (code, stderr) = check(&format!(
        "public_url: http://localhost:8080\nlog: {{level: 'warn,cloakroom=debug'}}\n{ONE_ROUTE}\n"
    ));
    assert_eq!(code, Some(0), "{stderr}");
}

#[test]
fn check_names_the_file_line_and_column_of_a_yaml_syntax_error() {
    let file = config_file(&format!(
        "public_url: http://localhost:8080\nlog: {{level: info\n{ONE_ROUTE}\n"
    ));
    let out = cloakroom()
        .args(["check", "--config"])
        .arg(file.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8(out.stderr).unwrap();
    let expected = format!("  {}:3:", file.path().display());
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with(&expected) && l.contains(": not valid YAML: ")),
        "{stderr}"
    );
    assert!(!stderr.contains("<input>"), "{stderr}");
}

#[test]
fn check_prints_the_redirect_uris_to_register_at_the_idp() {
    for (post_logout_key, post_logout) in [
        ("", "https://app.example.com/"),
        (
            ", post_logout_redirect_uri: 'https://app.example.com/signed-out'",
            "https://app.example.com/signed-out",
        ),
    ] {
        let file = config_file(&format!(
            "public_url: https://app.example.com
oidc: {{issuer: 'https://idp.example.com', client_id: spa, client_secret: s{post_logout_key}}}
cookie: {{keys: [{{id: '1', secret: {COOKIE_KEY}}}]}}
routes: [{{path: /api, upstream: 'http://api:8000'}}]
"
        ));
        let out = cloakroom()
            .args(["check", "--config"])
            .arg(file.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let stdout = String::from_utf8(out.stdout).unwrap();
        assert!(
            stdout.contains("redirect URI              https://app.example.com/auth/callback\n"),
            "{stdout}"
        );
        assert!(
            stdout.contains(&format!("post-logout redirect URI  {post_logout}\n")),
            "{stdout}"
        );
        assert!(
            stdout.contains("back-channel logout URI   https://app.example.com/auth/backchannel-logout\n"),
            "{stdout}"
        );
    }
}

#[test]
fn check_says_which_session_ends_revoke_refresh_tokens() {
    for (session, expected) in [
        (
            "",
            "refresh tokens: revoked at the IdP at every end of a session, also without its cookie \
             (session.revoke_on_end: true; each kept sealed to cookie.keys beside its record; \
             at most 10000 waiting)",
        ),
        (
            "session: {revoke_on_end: false}",
            "refresh tokens: revoked at the IdP only at ends that read the record with its cookie, \
             logout and the idle timeout (session.revoke_on_end: false)",
        ),
    ] {
        let file = config_file(&format!(
            "public_url: https://app.example.com
oidc: {{issuer: 'https://idp.example.com', client_id: spa, client_secret: s}}
cookie: {{keys: [{{id: '1', secret: {COOKIE_KEY}}}]}}
{session}
routes: [{{path: /api, upstream: 'http://api:8000'}}]
"
        ));
        let out = cloakroom()
            .args(["check", "--config"])
            .arg(file.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let stdout = String::from_utf8(out.stdout).unwrap();
        assert!(stdout.contains(&format!("{expected}\n")), "{stdout}");
    }
}

#[test]
fn check_says_which_record_format_is_written_and_names_the_key_of_a_bad_one() {
    let yaml = |session: &str| {
        format!(
            "public_url: https://app.example.com
oidc: {{issuer: 'https://idp.example.com', client_id: spa, client_secret: s}}
cookie: {{keys: [{{id: '1', secret: {COOKIE_KEY}}}]}}
{session}
routes: [{{path: /api, upstream: 'http://api:8000'}}]
"
        )
    };
    for (session, expected) in [
        (
            "",
            "session records: written as JSON, format 1 (session.record_format: json)",
        ),
        (
            "session: {record_format: compact}",
            "session records: written compact, format 2 (session.record_format: compact)",
        ),
    ] {
        let file = config_file(&yaml(session));
        let out = cloakroom()
            .args(["check", "--config"])
            .arg(file.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let stdout = String::from_utf8(out.stdout).unwrap();
        assert!(stdout.contains(expected), "{stdout}");
        assert!(stdout.contains("formats 1 and 2 are read"), "{stdout}");
    }
    let (code, stderr) = check(&yaml("session: {record_format: binary}"));
    assert_eq!(code, Some(64), "{stderr}");
    assert!(
        stderr.contains("session.record_format: \"binary\" is not one of json, compact"),
        "{stderr}"
    );
}

/// The reference config documents the variables it needs to be checked as
/// it is; with exactly those set, it passes.
#[test]
fn check_accepts_the_reference_config_with_its_documented_variables() {
    let reference = std::fs::read_to_string("config/reference.yaml").unwrap();
    let documented = reference
        .lines()
        .find(|l| l.starts_with('#') && l.contains("cloakroom check --config config/reference.yaml"))
        .expect("reference.yaml documents how to check it");
    let mut check = cloakroom();
    check.env_clear();
    let mut words = documented.trim_start_matches('#').split_whitespace();
    while let Some((name, value)) = words.next().and_then(|w| w.split_once('=')) {
        if value.starts_with("$(") {
            // `$(cloakroom keygen)`: a fresh key.
            words.by_ref().find(|w| w.ends_with(')'));
            check.env(name, COOKIE_KEY);
        } else {
            check.env(name, value);
        }
    }
    let out = check
        .args(["check", "--config", "config/reference.yaml"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.contains("https://app.example.com/auth/callback"),
        "{stdout}"
    );
}

#[test]
fn keygen_prints_a_fresh_256_bit_key() {
    let run = || String::from_utf8(cloakroom().arg("keygen").output().unwrap().stdout).unwrap();
    let (a, b) = (run(), run());
    use base64::Engine;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(a.trim())
        .unwrap();
    assert_eq!(bytes.len(), 32);
    assert_ne!(a, b);
}

#[test]
fn serve_refuses_a_bad_config_before_binding() {
    let file = config_file("public_url: nope\nroutes: []\n");
    let out = cloakroom()
        .args(["serve", "--config"])
        .arg(file.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("public_url: not an absolute http(s) URL"));
}

/// Waits until the admin listener on `port` accepts connections.
fn await_admin(port: u16) {
    until_blocking(
        Duration::from_secs(10),
        Duration::from_millis(20),
        "cloakroom did not start",
        || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
    );
}

#[cfg(unix)]
#[test]
fn serve_stops_cleanly_on_sigterm() {
    let port = free_port();
    let admin = free_port();
    let file = config_file(&format!(
        "listen: 127.0.0.1:{port}\nadmin_listen: 127.0.0.1:{admin}\npublic_url: http://localhost:{port}
routes: [{{path: /, upstream: 'http://127.0.0.1:9', auth: none}}]\n"
    ));
    let mut child = cloakroom()
        .args(["serve", "--config"])
        .arg(file.path())
        .spawn()
        .unwrap();
    await_admin(admin);
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

/// PX-25 for the proxy: credentials a browser sends (Authorization, cookies,
/// an OAuth code in the query) never reach a log line; the access line is
/// still written, with the path alone.
#[cfg(unix)]
#[test]
fn px25_logs_carry_no_credentials_or_query_strings() {
    use std::io::{Read, Write as _};
    let port = free_port();
    let admin = free_port();
    let dead = free_port();
    let file = config_file(&format!(
        "listen: 127.0.0.1:{port}\nadmin_listen: 127.0.0.1:{admin}\npublic_url: http://localhost:{port}
log: {{format: json, level: debug}}
routes: [{{path: /, upstream: 'http://127.0.0.1:{dead}', auth: none}}]\n"
    ));
    let mut child = cloakroom()
        .args(["serve", "--config"])
        .arg(file.path())
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    await_admin(admin);
    let secrets = [
        "SECRET-BEARER-1",
        "SECRET-COOKIE-2",
        "SECRET-CODE-3",
        "SECRET-STATE-4",
    ];
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        stream,
        "GET /cb?code={}&state={} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nCookie: cloakroom={}\r\nConnection: close\r\n\r\n",
        secrets[2], secrets[3], secrets[0], secrets[1]
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 502"), "{response}");
    assert!(Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success());
    let mut logs = String::new();
    child.stdout.take().unwrap().read_to_string(&mut logs).unwrap();
    child.wait().unwrap();
    for secret in secrets {
        assert!(!logs.contains(secret), "{secret} leaked into the logs:\n{logs}");
        assert!(!response.contains(secret), "{secret} leaked into the response");
    }
    let access = logs
        .lines()
        .find(|l| l.contains("cloakroom::access"))
        .expect("an access line");
    let line: serde_json::Value = serde_json::from_str(access).unwrap();
    assert_eq!(line["path"], "/cb");
    assert_eq!(line["status"], 502);
    assert_eq!(line["code"], "upstream_unavailable");
}

/// Development on real host names (docker compose, a LAN box): plain http
/// needs the loud switch, `serve` warns about it, `check --strict` refuses it.
const DEV_CONFIG: &str = "public_url: http://app.lan:8080
oidc: {issuer: 'http://idp.lan:9000', client_id: c, client_secret: s}
cookie: {keys: [{id: '1', secret: q8mpiU4Df6kDNHGrPDb2Xt2zqW1QpOOb8j2r6bXaFtY}]}
routes: [{path: /api, upstream: 'http://api:8000'}]
";

#[test]
fn plain_http_on_a_real_host_name_is_refused_without_the_dev_switch() {
    let file = config_file(DEV_CONFIG);
    let out = cloakroom()
        .args(["check", "--config"])
        .arg(file.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("public_url: must be https"), "{stderr}");
    assert!(stderr.contains("oidc.issuer: must be https"), "{stderr}");
}

#[test]
fn check_strict_refuses_the_dev_switch_and_plain_check_warns() {
    let file = config_file(&format!("insecure_dev_mode: true\n{DEV_CONFIG}"));
    let out = cloakroom()
        .args(["check", "--config"])
        .arg(file.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("warning: insecure_dev_mode:"), "{stderr}");

    let strict = cloakroom()
        .args(["check", "--strict", "--config"])
        .arg(file.path())
        .output()
        .unwrap();
    assert_eq!(strict.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&strict.stderr);
    assert!(
        stderr.contains("insecure_dev_mode: a development switch"),
        "{stderr}"
    );

    // The production example passes, its SPA directory opened for real.
    let spa = tempfile::tempdir().unwrap();
    let yaml = std::fs::read_to_string("config/spa.yaml")
        .unwrap()
        .replace("/srv/spa", spa.path().to_str().unwrap());
    let production_file = config_file(&yaml);
    let production = cloakroom()
        .args(["check", "--strict", "--config"])
        .arg(production_file.path())
        .env("CLIENT_SECRET", "s")
        .env("COOKIE_KEY_1", COOKIE_KEY)
        .output()
        .unwrap();
    assert!(
        production.status.success(),
        "{}",
        String::from_utf8_lossy(&production.stderr)
    );
    let stdout = String::from_utf8_lossy(&production.stdout);
    assert!(stdout.contains("static:"), "{stdout}");
    // A missing SPA directory is found by check, before any deployment.
    let missing = config_file(&yaml.replace(spa.path().to_str().unwrap(), "/nonexistent/spa"));
    let out = cloakroom()
        .args(["check", "--config"])
        .arg(missing.path())
        .env("CLIENT_SECRET", "s")
        .env("COOKIE_KEY_1", COOKIE_KEY)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("static.dir /nonexistent/spa"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[cfg(unix)]
#[test]
fn serve_warns_at_start_when_the_dev_switch_is_on() {
    use std::io::{BufRead, BufReader};
    let port = free_port();
    let file = config_file(&format!(
        "insecure_dev_mode: true\nlisten: 127.0.0.1:{port}\nadmin_listen: 127.0.0.1:0\nlog: {{format: json}}\n{DEV_CONFIG}"
    ));
    let mut child = cloakroom()
        .args(["serve", "--config"])
        .arg(file.path())
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let warning = lines
        .find_map(|l| l.ok().filter(|l| l.contains("insecure_dev_mode")))
        .expect("a warning line");
    let _ = child.kill();
    let _ = child.wait();
    let line: serde_json::Value = serde_json::from_str(&warning).unwrap();
    assert_eq!(line["level"], "WARN");
}

// === Security posture (config::posture) ===

/// A production-style config with one route that needs login; `extra` is
/// appended at the top level, `cookie` inside the cookie section.
fn posture_config(cookie: &str, extra: &str) -> String {
    format!(
        "public_url: https://app.example.com
oidc: {{issuer: 'https://idp.example.com', client_id: c, client_secret: s}}
cookie: {{keys: [{{id: '1', secret: {COOKIE_KEY}}}]{cookie}}}
routes:
  - {{path: /api, upstream: 'http://api:8000'}}
  - {{path: /app, upstream: 'http://web:3000', login_redirect: true}}
{extra}"
    )
}

/// Runs `cloakroom check [--strict]` on `yaml`: exit code, stdout, stderr.
fn check_with(yaml: &str, strict: bool) -> (Option<i32>, String, String) {
    let file = config_file(yaml);
    let mut command = cloakroom();
    command.arg("check");
    if strict {
        command.arg("--strict");
    }
    let out = command.arg("--config").arg(file.path()).output().unwrap();
    let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
    (out.status.code(), text(out.stdout), text(out.stderr))
}

#[test]
fn check_warns_about_a_long_session_and_strict_refuses_it() {
    let yaml = posture_config("", "session: {absolute_timeout: 30d}\n");
    let (code, stdout, stderr) = check_with(&yaml, false);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("cloakroom: warning: session.absolute_timeout: 30d is longer than 7 days"),
        "{stderr}"
    );
    assert!(
        stderr.contains("(RFC 10017 §6.1.2.2; ASVS 5.0 7.3.2)"),
        "{stderr}"
    );
    assert!(stdout.contains(": ok"), "{stdout}");

    let (code, stdout, stderr) = check_with(&yaml, true);
    assert_eq!(code, Some(64), "{stderr}");
    assert!(stderr.contains("is not for production:"), "{stderr}");
    assert!(stderr.contains("  session.absolute_timeout: 30d"), "{stderr}");
    assert!(!stdout.contains(": ok"), "{stdout}");

    // Without the finding, both pass and say nothing.
    for strict in [false, true] {
        let (code, _, stderr) = check_with(&posture_config("", ""), strict);
        assert_eq!(code, Some(0), "{stderr}");
        assert!(!stderr.contains("warning"), "{stderr}");
    }
}

#[test]
fn every_posture_error_is_refused_with_its_key() {
    let lax = ", same_site: lax, same_site_reason: 'links from the portal'";
    for (cookie, extra, key) in [
        (", domain: example.com", "", "cookie.domain: not supported"),
        (
            ", same_site: lax",
            "",
            "cookie.same_site: lax sends the session cookie",
        ),
        (", same_site: none", "", "cookie.same_site: none is never allowed"),
        (
            lax,
            "",
            "routes[1].login_redirect: page loads pass without X-CSRF",
        ),
        (
            "",
            "session: {absolute_timeout: 400d}\n",
            "session.absolute_timeout: must be between 1s and 365d",
        ),
    ] {
        for strict in [false, true] {
            let (code, _, stderr) = check_with(&posture_config(cookie, extra), strict);
            assert_eq!(code, Some(64), "{key}: {stderr}");
            assert!(stderr.contains(&format!("  {key}")), "{key}: {stderr}");
        }
    }
    let short_key = posture_config("", "").replace(COOKIE_KEY, "c2hvcnQ");
    let (code, _, stderr) = check_with(&short_key, false);
    assert_eq!(code, Some(64));
    assert!(
        stderr.contains("cookie.keys[0].secret: must decode to 32 bytes (a 256-bit key), got 5"),
        "{stderr}"
    );
    let plain = posture_config("", "").replace("https://app.example.com", "http://app.example.com");
    let (code, _, stderr) = check_with(&plain, false);
    assert_eq!(code, Some(64));
    assert!(
        stderr.contains("public_url: must be https") && stderr.contains("(RFC 10017 §6.1.3.2)"),
        "{stderr}"
    );
    // The page route keeps its token under a strict cookie, and a lax
    // cookie with a reason is accepted once the page route sends no token.
    let (code, stdout, stderr) = check_with(
        &posture_config(lax, "").replace("login_redirect: true}", "login_redirect: true, token: none}"),
        true,
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.contains("session cookie SameSite=Lax: links from the portal"),
        "{stdout}"
    );
}

fn redis_config(store: &str) -> String {
    posture_config("", &format!("session: {{store: {{redis: {store}}}}}\n"))
}

#[test]
fn rd08_check_asks_redis_for_its_eviction_policy() {
    let evicting = support::redis::RedisServer::start_with(&["--maxmemory-policy", "allkeys-lru"]);
    let yaml = redis_config(&format!("{{url: '{}'}}", evicting.url()));
    let (code, _, stderr) = check_with(&yaml, false);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains(
            "cloakroom: warning: session.store.redis: the Redis server's maxmemory-policy is allkeys-lru"
        ),
        "{stderr}"
    );
    let (code, _, stderr) = check_with(&yaml, true);
    assert_eq!(code, Some(64), "{stderr}");
    assert!(stderr.contains("  session.store.redis:"), "{stderr}");

    let keeping = support::redis::RedisServer::start_with(&["--maxmemory-policy", "noeviction"]);
    let (code, _, stderr) = check_with(&redis_config(&format!("{{url: '{}'}}", keeping.url())), true);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!stderr.contains("session.store.redis"), "{stderr}");
}

#[test]
fn rd08_an_unreachable_redis_is_said_to_be_unchecked_not_a_finding() {
    let dead = free_port();
    let yaml = redis_config(&format!(
        "{{url: 'redis://cloakroom:hunter2-pw@127.0.0.1:{dead}', connect_timeout: 500ms}}"
    ));
    let started = std::time::Instant::now();
    let (code, _, stderr) = check_with(&yaml, true);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("note: session.store.redis: the server's maxmemory-policy could not be checked"),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2-pw"), "{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn rd08_every_cluster_primary_is_asked() {
    let cluster = support::redis::RedisCluster::start();
    // One primary of three evicts: a check that asked one node at random
    // would miss it two times in three.
    let answer = cluster.nodes[2].cli(&["CONFIG", "SET", "maxmemory-policy", "allkeys-lfu"]);
    assert_eq!(answer.trim(), "OK");
    let seeds: Vec<String> = cluster.seeds().iter().map(|s| format!("'{s}'")).collect();
    let yaml = redis_config(&format!("{{cluster: [{}]}}", seeds.join(", ")));
    for _ in 0..3 {
        let (code, _, stderr) = check_with(&yaml, true);
        assert_eq!(code, Some(64), "{stderr}");
        assert!(stderr.contains("maxmemory-policy is allkeys-lfu"), "{stderr}");
    }
}

#[cfg(unix)]
#[test]
fn rd08_serve_warns_at_start_about_an_evicting_redis() {
    use std::io::{BufRead, BufReader};
    let redis = support::redis::RedisServer::start_with(&["--maxmemory-policy", "allkeys-random"]);
    let port = free_port();
    let file = config_file(&format!(
        "listen: 127.0.0.1:{port}\nadmin_listen: 127.0.0.1:0\npublic_url: http://localhost:{port}
log: {{format: json}}
session: {{store: {{redis: {{url: '{}'}}}}, absolute_timeout: 8d}}
routes: [{{path: /, upstream: 'http://127.0.0.1:9', auth: none}}]\n",
        redis.url()
    ));
    let mut child = cloakroom()
        .args(["serve", "--config"])
        .arg(file.path())
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut warnings = Vec::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
        if line["level"] == "WARN" {
            warnings.push(line.clone());
        }
        if line["message"] == "cloakroom started" {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let keys: Vec<&str> = warnings.iter().filter_map(|w| w["key"].as_str()).collect();
    assert_eq!(
        keys,
        ["session.absolute_timeout", "session.store.redis"],
        "{warnings:?}"
    );
    assert!(
        warnings[1]["message"]
            .as_str()
            .unwrap()
            .contains("maxmemory-policy is allkeys-random"),
        "{warnings:?}"
    );
}

// === check --online: the IdP asked before anyone signs in ===

/// Runs `cloakroom check --online` on `yaml`: exit code, stdout, stderr.
fn check_online(yaml: &str, strict: bool) -> (Option<i32>, String, String) {
    let file = config_file(yaml);
    let mut command = cloakroom();
    command.args(["check", "--online", "--config"]).arg(file.path());
    if strict {
        command.arg("--strict");
    }
    let out = command.output().unwrap();
    (
        out.status.code(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn online_config(issuer: &str, oidc_extra: &str) -> String {
    format!(
        "public_url: http://localhost:8080
oidc: {{issuer: '{issuer}', client_id: cloakroom, client_secret: test-secret{oidc_extra}}}
cookie: {{keys: [{{id: '1', secret: {COOKIE_KEY}}}]}}
routes: [{{path: /api, upstream: 'http://127.0.0.1:3000'}}]
"
    )
}

#[test]
fn check_online_reports_what_the_idp_offers_and_passes_on_a_working_config() {
    let idp = support::idp::Idp::start(serde_json::json!({
        "issuer_path": "/",
        "metadata_omit": ["code_challenge_methods_supported", "end_session_endpoint"],
    }));
    let (code, stdout, stderr) = check_online(&online_config(&idp.issuer, ""), false);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    let line = |subject: &str| {
        stdout
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(subject))
            .unwrap_or_else(|| panic!("no {subject} line in:\n{stdout}"))
            .to_owned()
    };
    assert!(line("issuer").starts_with("  ok"), "{stdout}");
    assert!(line("issuer").contains(&format!("{:?}", idp.issuer)), "{stdout}");
    assert!(line("pkce").starts_with("  note"), "{stdout}");
    assert!(line("jwks").contains("signing key(s)"), "{stdout}");
    assert!(
        line("token_endpoint_auth").contains("client_secret_basic listed"),
        "{stdout}"
    );
    assert!(line("scopes").starts_with("  ok"), "{stdout}");
    assert!(
        line("revocation_endpoint").contains("/token/revocation"),
        "{stdout}"
    );
    assert!(line("end_session_endpoint").starts_with("  note"), "{stdout}");
    assert!(
        line("backchannel_logout").contains("supported, with sid"),
        "{stdout}"
    );
    assert!(stdout.contains("the IdP fits this config"), "{stdout}");
}

#[test]
fn idp01_check_online_fails_naming_both_issuers_when_one_character_differs() {
    let idp = support::idp::Idp::start(serde_json::json!({"issuer_path": "/"}));
    let configured = idp.issuer.trim_end_matches('/');
    let (code, stdout, stderr) = check_online(&online_config(configured, ""), false);
    assert_eq!(code, Some(1), "{stdout}\n{stderr}");
    let expected = format!(
        "metadata issuer {:?} differs from the configured issuer {configured:?}",
        idp.issuer
    );
    assert!(stdout.contains(&expected), "{stdout}");
    assert!(
        stderr.contains(&format!("the IdP {configured} does not fit this config")),
        "{stderr}"
    );
}

#[test]
fn check_online_refuses_what_would_stop_a_login_and_strict_refuses_warnings() {
    let idp = support::idp::Idp::start(serde_json::json!({}));
    // A scope the IdP does not list may still be granted (custom scopes),
    // so it is a warning, refused only by --strict.
    let scopes = ", scopes: [openid, profile, email, offline_access, admin]";
    let (code, stdout, _) = check_online(&online_config(&idp.issuer, scopes), false);
    assert_eq!(code, Some(0), "{stdout}");
    assert!(stdout.contains("warning scopes"), "{stdout}");
    let (code, _, stderr) = check_online(&online_config(&idp.issuer, scopes), true);
    assert_eq!(code, Some(1), "{stderr}");
    // An IdP that cannot be reached stops every login.
    let gone = format!("http://127.0.0.1:{}", free_port());
    let (code, stdout, _) = check_online(&online_config(&gone, ""), false);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(stdout.contains("error   discovery"), "{stdout}");
}

#[test]
fn check_online_names_oidc_userinfo_when_the_metadata_lacks_its_endpoint() {
    let listed = support::idp::Idp::start(serde_json::json!({}));
    let (code, stdout, _) = check_online(&online_config(&listed.issuer, ", userinfo: true"), false);
    assert_eq!(code, Some(0), "{stdout}");
    assert!(stdout.contains("ok      userinfo_endpoint"), "{stdout}");
    let omitted = support::idp::Idp::start(serde_json::json!({"metadata_omit": ["userinfo_endpoint"]}));
    let (code, stdout, _) = check_online(&online_config(&omitted.issuer, ", userinfo: true"), false);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(
        stdout.contains("oidc.userinfo is true, but the IdP metadata names no userinfo_endpoint"),
        "{stdout}"
    );
}

#[test]
fn idp02_check_refuses_a_protocol_parameter_with_its_key_path() {
    let (code, stderr) = check(&online_config(
        "https://idp.example.com/",
        ", authorize_params: {audience: 'https://api.example.com', state: fixed}, login_params: [login_hint, redirect_uri]",
    ));
    assert_eq!(code, Some(64), "{stderr}");
    for line in [
        "oidc.authorize_params.state: \"state\" is a protocol parameter cloakroom sets itself; it cannot be configured",
        "oidc.login_params[1]: \"redirect_uri\" is a protocol parameter cloakroom sets itself; it cannot be configured",
    ] {
        assert!(stderr.contains(line), "missing {line:?} in:\n{stderr}");
    }
}

#[test]
fn check_online_says_whether_the_idp_takes_private_key_jwt_and_pushed_requests() {
    let idp = support::idp::Idp::start(serde_json::json!({"par": true, "require_par": true}));
    let key = config_file(support::fake_idp::RSA_PEM);
    let signed = format!(
        ", token_endpoint_auth: private_key_jwt, client_key_file: '{}'",
        key.path().display()
    );
    let yaml = online_config(&idp.issuer, &signed).replace(", client_secret: test-secret", "");
    let (code, stdout, stderr) = check_online(&yaml, false);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("ok      token_endpoint_auth    private_key_jwt listed"),
        "{stdout}"
    );
    assert!(
        stdout.contains("ok      client_key             RS256 listed"),
        "{stdout}"
    );
    assert!(
        stdout.contains("ok      par                    pushed to "),
        "{stdout}"
    );

    let (code, stdout, _) = check_online(&online_config(&idp.issuer, ", par: off"), false);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(
        stdout.contains(
            "error   par                    oidc.par is off, but the IdP metadata says \
             require_pushed_authorization_requests"
        ),
        "{stdout}"
    );
}
