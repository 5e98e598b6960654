//! Part 5: logins per CPU-second at the callback, the IdP alone, and
//! Apache with mod_auth_openidc.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use futures_util::StreamExt;
use serde_json::{Map, Value};

use crate::common::{cpu_seconds, env_or, Guard};
use crate::support::{self, Browser};
use crate::{client, percentile, Report, World};

pub fn apache_redirect(port: u16) -> String {
    format!("http://127.0.0.1:{port}/protected/redirect_uri")
}

/// Part 5: logins per CPU-second at the callback, the IdP's token endpoint
/// alone, and Apache with mod_auth_openidc.
pub async fn logins(world: &World, report: &mut Report) {
    let k: usize = env_or("SCALE_LOGINS", 200);
    let base = world.base(0);
    let replica = &world.replicas[0];
    let idp = world.idp.pid();
    // Codes live 60 s at the IdP: prepared and spent in batches.
    let batch = 50;
    let mut ours = Measured::default();
    for start in (0..k).step_by(batch) {
        let users: Vec<String> = (start..(start + batch).min(k))
            .map(|i| format!("login-{i}"))
            .collect();
        let prepared = prepare(
            &users,
            &format!("{base}/auth/login?return_to=/"),
            &format!("{base}/auth/callback"),
        )
        .await;
        ours.add(replica.pid(), idp, prepared, |page| {
            page.headers.get_all("set-cookie").iter().any(|c| {
                c.to_str()
                    .is_ok_and(|c| c.starts_with("cloakroom=") && !c.contains("Max-Age=0"))
            })
        })
        .await;
    }
    report.line(format!(
        "\n[logins] cloakroom callback: {} of {k} logins; {:.0} logins per CPU-second of cloakroom (the IdP spent {:.0} ms CPU per login meanwhile); wall p50 {:.1} ms",
        ours.ok,
        ours.ok as f64 / ours.cpu,
        ours.idp_cpu * 1000.0 / ours.ok.max(1) as f64,
        ours.p50(),
    ));

    // The IdP's token endpoint alone, with cloakroom's client and redirect URI.
    let alone = idp_alone(world, k).await;
    match alone {
        Ok((count, idp_cpu, p50)) => {
            report.line(format!(
                "[logins] IdP token endpoint alone: {count} code exchanges, {:.0} per CPU-second of the IdP (node), wall p50 {p50:.1} ms",
                count as f64 / idp_cpu
            ));
            report.line(format!(
                "[logins] cloakroom's CPU per login / the IdP's CPU per code exchange = {:.2}x",
                (ours.cpu / ours.ok.max(1) as f64) / (idp_cpu / count.max(1) as f64)
            ));
        }
        Err(e) => report.skipped.push(format!("logins, IdP alone: {e}")),
    }

    let asked = world
        .idp
        .authorizations()
        .await
        .into_iter()
        .next()
        .unwrap_or_default();
    match apache(world, &asked) {
        Err(reason) => report.skipped.push(format!("logins, mod_auth_openidc: {reason}")),
        Ok((apache, pid)) => {
            let origin = format!("http://127.0.0.1:{}", world.apache_port);
            let mut theirs = Measured::default();
            for start in (0..k).step_by(batch) {
                let users: Vec<String> = (start..(start + batch).min(k))
                    .map(|i| format!("apache-{i}"))
                    .collect();
                let prepared = prepare(
                    &users,
                    &format!("{origin}/protected/"),
                    &apache_redirect(world.apache_port),
                )
                .await;
                theirs
                    .add(pid, idp, prepared, |page| {
                        page.headers.get_all("set-cookie").iter().any(|c| {
                            c.to_str()
                                .is_ok_and(|c| c.starts_with("mod_auth_openidc_session="))
                        })
                    })
                    .await;
            }
            drop(apache);
            report.line(format!(
                "[logins] Apache mod_auth_openidc (one process, -X): {} of {k} logins; {:.0} logins per CPU-second (the IdP spent {:.0} ms CPU per login); wall p50 {:.1} ms",
                theirs.ok,
                theirs.ok as f64 / theirs.cpu,
                theirs.idp_cpu * 1000.0 / theirs.ok.max(1) as f64,
                theirs.p50(),
            ));
            report.line(format!(
                "[logins] cloakroom / mod_auth_openidc = {:.2}x logins per CPU-second",
                (ours.ok as f64 / ours.cpu) / (theirs.ok as f64 / theirs.cpu)
            ));
        }
    }
}

/// Browsers that went through the IdP's login up to the redirect back to
/// `callback`, and that URL (with its code), not yet fetched.
async fn prepare(users: &[String], start: &str, callback: &str) -> Vec<(Browser, String)> {
    futures_util::stream::iter(users)
        .map(|user| async move {
            let origin: String = start.splitn(4, '/').take(3).collect::<Vec<_>>().join("/");
            let browser = Browser::new(&origin);
            let (_, visited) = browser.navigate_until(start, user, Some(callback)).await;
            let last = visited.last().cloned().unwrap_or_default();
            (browser, last)
        })
        .buffer_unordered(8)
        .filter(|(_, url)| std::future::ready(url.contains("code=")))
        .collect()
        .await
}

/// Callbacks fetched and the CPU they cost.
#[derive(Default)]
struct Measured {
    ok: usize,
    cpu: f64,
    idp_cpu: f64,
    walls: Vec<Duration>,
}

impl Measured {
    /// Fetches each prepared callback (4 at a time), counting those
    /// `succeeded` judges a login, and the CPU `pid` and the IdP spent.
    async fn add(
        &mut self,
        pid: u32,
        idp: u32,
        prepared: Vec<(Browser, String)>,
        succeeded: impl Fn(&support::Page) -> bool,
    ) {
        let (cpu, idp_cpu) = (cpu_seconds(pid), cpu_seconds(idp));
        let succeeded = &succeeded;
        let results: Vec<(bool, Duration)> = futures_util::stream::iter(prepared)
            .map(|(browser, url)| async move {
                let started = Instant::now();
                let page = browser.get(&url, &[]).await;
                (succeeded(&page), started.elapsed())
            })
            .buffer_unordered(4)
            .collect()
            .await;
        self.cpu += cpu_seconds(pid) - cpu;
        self.idp_cpu += cpu_seconds(idp) - idp_cpu;
        self.ok += results.iter().filter(|(ok, _)| *ok).count();
        self.walls.extend(results.into_iter().map(|(_, d)| d));
    }

    fn p50(&self) -> f64 {
        let mut walls = self.walls.clone();
        walls.sort_unstable();
        percentile(&walls, 0.5)
    }
}

/// `k` codes obtained for cloakroom's client with a PKCE verifier of our
/// own, then exchanged at the IdP's token endpoint directly: how many
/// succeeded, the IdP's CPU seconds, the wall p50 (ms).
async fn idp_alone(world: &World, k: usize) -> Result<(usize, f64, f64), String> {
    let http = client();
    let discovery: Value = http
        .get(world.idp.endpoint("/.well-known/openid-configuration"))
        .send()
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    let authorize = discovery["authorization_endpoint"]
        .as_str()
        .ok_or("no authorization_endpoint")?;
    let token = discovery["token_endpoint"].as_str().ok_or("no token_endpoint")?;
    // cloakroom's own authorization request, with our state, nonce and PKCE.
    let asked = world.idp.authorizations().await;
    let asked = asked.first().ok_or("no authorization request seen")?;
    let redirect = format!("{}/auth/callback", world.base(0));
    let verifier = "scale-bench-pkce-verifier-0123456789abcdefghijklmnop";
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(<sha2::Sha256 as sha2::Digest>::digest(verifier.as_bytes()));
    let mut ok = 0;
    let mut cpu = 0.0;
    let mut walls = Vec::new();
    for start in (0..k).step_by(50) {
        let mut urls = Vec::new();
        for i in start..(start + 50).min(k) {
            let mut url = url::Url::parse(authorize).map_err(|e| e.to_string())?;
            {
                let mut query = url.query_pairs_mut();
                for (name, value) in asked {
                    let value = match name.as_str() {
                        "state" => format!("scale-state-{i}"),
                        "nonce" => format!("scale-nonce-{i}"),
                        "code_challenge" => challenge.clone(),
                        "redirect_uri" => redirect.clone(),
                        _ => value.as_str().unwrap_or_default().to_owned(),
                    };
                    query.append_pair(name, &value);
                }
            }
            urls.push(url.to_string());
        }
        let codes: Vec<String> = futures_util::stream::iter(urls.into_iter().enumerate())
            .map(|(i, url)| {
                let redirect = redirect.clone();
                async move {
                    let browser = Browser::new("http://127.0.0.1:1");
                    let (_, visited) = browser
                        .navigate_until(&url, &format!("alone-{start}-{i}"), Some(&redirect))
                        .await;
                    let last = url::Url::parse(visited.last()?).ok()?;
                    let code = last.query_pairs().find(|(n, _)| n == "code")?.1.into_owned();
                    Some(code)
                }
            })
            .buffer_unordered(8)
            .filter_map(std::future::ready)
            .collect()
            .await;
        let before = cpu_seconds(world.idp.pid());
        let results: Vec<(bool, Duration)> = futures_util::stream::iter(codes)
            .map(|code| {
                let (http, redirect) = (http.clone(), redirect.clone());
                async move {
                    let started = Instant::now();
                    let answer = http
                        .post(token)
                        .basic_auth("cloakroom", Some("test-secret"))
                        .form(&[
                            ("grant_type", "authorization_code"),
                            ("code", code.as_str()),
                            ("redirect_uri", redirect.as_str()),
                            ("code_verifier", verifier),
                        ])
                        .send()
                        .await;
                    (answer.is_ok_and(|a| a.status() == 200), started.elapsed())
                }
            })
            .buffer_unordered(4)
            .collect()
            .await;
        cpu += cpu_seconds(world.idp.pid()) - before;
        ok += results.iter().filter(|(ok, _)| *ok).count();
        walls.extend(results.into_iter().map(|(_, d)| d));
    }
    if ok == 0 {
        return Err("no code exchange succeeded".into());
    }
    walls.sort_unstable();
    Ok((ok, cpu, percentile(&walls, 0.5)))
}

/// Apache in one process (`-X`) with mod_auth_openidc as a relying party of
/// the same IdP, protecting `/protected/`; its guard and process id, or why
/// it cannot run here. It asks for what cloakroom's login asked for
/// (`asked`: its scope, and prompt).
fn apache(world: &World, asked: &Map<String, Value>) -> Result<(Guard, u32), String> {
    let scope = asked.get("scope").and_then(Value::as_str).unwrap_or("openid");
    let prompt = asked
        .get("prompt")
        .and_then(Value::as_str)
        .map_or(String::new(), |p| format!("OIDCAuthRequestParams prompt={p}\n"));
    let modules = Path::new("/usr/lib/apache2/modules");
    if Command::new("apache2").arg("-v").output().is_err() || !modules.join("mod_auth_openidc.so").exists() {
        return Err("apache2 or libapache2-mod-auth-openidc is not installed (apt-get install apache2 libapache2-mod-auth-openidc)".into());
    }
    let dir = std::env::temp_dir().join(format!("cloakroom-scale-apache-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let conf = dir.join("httpd.conf");
    std::fs::write(
        &conf,
        format!(
            "ServerRoot /etc/apache2
ServerName 127.0.0.1
Listen 127.0.0.1:{port}
PidFile {dir}/httpd.pid
ErrorLog {dir}/error.log
LogLevel warn
# One process (-X) serves one connection at a time: no keep-alive.
KeepAlive Off
DefaultRuntimeDir {dir}
User www-data
Group www-data
LoadModule mpm_prefork_module {m}/mod_mpm_prefork.so
LoadModule authz_core_module {m}/mod_authz_core.so
LoadModule authn_core_module {m}/mod_authn_core.so
LoadModule authz_user_module {m}/mod_authz_user.so
LoadModule auth_openidc_module {m}/mod_auth_openidc.so
OIDCProviderMetadataURL {iss}/.well-known/openid-configuration
OIDCClientID cloakroom
OIDCClientSecret test-secret
OIDCRedirectURI {redirect}
OIDCCryptoPassphrase scale-bench-passphrase
OIDCScope \"{scope}\"
OIDCPKCEMethod S256
{prompt}<Location /protected/>
  AuthType openid-connect
  Require valid-user
</Location>
",
            port = world.apache_port,
            dir = dir.display(),
            m = modules.display(),
            iss = world.idp.issuer.trim_end_matches('/'),
            redirect = apache_redirect(world.apache_port),
        ),
    )
    .map_err(|e| e.to_string())?;
    let child = Command::new("apache2")
        .arg("-X")
        .arg("-f")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    let pid = child.id();
    let guard = Guard(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", world.apache_port)).is_err() {
        if Instant::now() > deadline {
            let log = std::fs::read_to_string(dir.join("error.log")).unwrap_or_default();
            return Err(format!("Apache did not start: {}", log.trim()));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok((guard, pid))
}
