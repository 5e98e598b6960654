//! The `cloakroom` command: `serve`, `check`, `keygen`, `health`.

#![forbid(unsafe_code)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use base64::Engine;
use clap::{Parser, Subcommand};
use rand::RngCore;

use cloakroom::config::{posture, units::format_duration, ProcessEnv, RedisConfig, StoreConfig};
use cloakroom::oidc::fit::Level;
use cloakroom::session::RedisStore;
use cloakroom::Config;

// A per-thread-cache allocator: request handling allocates many small,
// short-lived buffers across threads.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit status for a config that does not load (sysexits `EX_USAGE`).
const EXIT_BAD_CONFIG: u8 = 64;

/// The admin listener `cloakroom health` probes when given neither a URL
/// nor a config: `admin_listen`'s default.
const DEFAULT_ADMIN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9090);

/// How long `cloakroom health` waits for an answer, connecting included:
/// shorter than a Docker or Kubernetes probe's own timeout.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(3);

/// At most this much of a failing answer's body is quoted.
const HEALTH_BODY_QUOTE: usize = 300;

#[derive(Parser)]
#[command(
    name = "cloakroom",
    version,
    about = "Backend-for-Frontend token-handler reverse proxy"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy.
    Serve {
        #[arg(long, default_value = "config/cloakroom.yaml")]
        config: PathBuf,
    },
    /// Validate a config file, lint its security posture, and print the
    /// effective routes.
    Check {
        #[arg(long, default_value = "config/cloakroom.yaml")]
        config: PathBuf,
        /// Also refuse what production should not run with: every warning
        /// (insecure_dev_mode, long sessions, Redis eviction) is an error.
        #[arg(long)]
        strict: bool,
        /// Also ask the IdP: discovery, the keys, and how its metadata fits
        /// the config. Exits 1 on anything that would stop a login.
        #[arg(long)]
        online: bool,
    },
    /// Print a fresh 256-bit cookie key.
    Keygen,
    /// Probe a running cloakroom: exit 0 when it answers 2xx, else 1 with
    /// the reason on stderr. For Docker HEALTHCHECK and exec probes.
    Health {
        /// The URL to GET [default: http://<admin_listen>/readyz].
        #[arg(long, conflicts_with = "config")]
        url: Option<String>,
        /// Take admin_listen from this config file [default address: 127.0.0.1:9090].
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Serve { config } => serve(&config),
        Command::Check {
            config,
            strict,
            online,
        } => match check(&config, strict) {
            Ok(config) if online => check_online(&config, strict),
            Ok(_) => ExitCode::SUCCESS,
            Err(code) => code,
        },
        Command::Keygen => {
            let mut key = [0u8; 32];
            rand::rng().fill_bytes(&mut key);
            println!("{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key));
            ExitCode::SUCCESS
        }
        Command::Health { url, config } => health(url, config.as_deref()),
    }
}

fn load(path: &Path) -> Result<(Config, cloakroom::reload::Watched), ExitCode> {
    let (config, watched) = cloakroom::reload::load(path);
    match config {
        Ok(config) => Ok((config, watched)),
        Err(e @ cloakroom::reload::LoadError::Read(..)) => {
            eprintln!("cloakroom: {}", e.lines().join("; "));
            Err(ExitCode::from(EXIT_BAD_CONFIG))
        }
        Err(e) => {
            let lines = e.lines();
            eprintln!("cloakroom: {} has {} error(s):", path.display(), lines.len());
            for line in &lines {
                eprintln!("  {line}");
            }
            Err(ExitCode::from(EXIT_BAD_CONFIG))
        }
    }
}

fn check(path: &Path, strict: bool) -> Result<Config, ExitCode> {
    let (config, _) = load(path)?;
    // === security posture (config::posture): warnings, refused by --strict ===
    let mut findings = posture::warnings(&config);
    if let StoreConfig::Redis(redis) = &config.session.store {
        match eviction_policies(redis) {
            Ok(policies) => findings.extend(policies.iter().filter_map(|p| posture::eviction(p))),
            Err(why) => eprintln!(
                "cloakroom: note: session.store.redis: the server's maxmemory-policy could not be checked ({why}); make sure it is noeviction"
            ),
        }
    }
    if strict && !findings.is_empty() {
        eprintln!("cloakroom: {} is not for production:", path.display());
        for f in &findings {
            eprintln!("  {f}");
        }
        return Err(ExitCode::from(EXIT_BAD_CONFIG));
    }
    for f in &findings {
        eprintln!("cloakroom: warning: {f}");
    }
    for f in posture::recommendations(&config) {
        eprintln!("cloakroom: recommendation: {f}");
    }
    println!("{}: ok", path.display());
    println!(
        "listen {}  admin {}  public_url {}",
        config.listen, config.admin_listen, config.public_url
    );
    if let Some(reason) = &config.cookie.same_site_reason {
        println!("session cookie SameSite={:?}: {reason}", config.cookie.same_site);
    }
    if let Some(oidc) = &config.oidc {
        // The issuer as discovery compares it: exactly as configured.
        let issuer = oidc.issuer.as_str();
        println!("register at the IdP {issuer} for client_id {}:", oidc.client_id);
        println!("  redirect URI              {}", config.redirect_uri());
        println!(
            "  post-logout redirect URI  {}",
            config.post_logout_redirect_uri()
        );
        println!(
            "  back-channel logout URI   {}auth/backchannel-logout",
            config.public_url
        );
        if let Some(ring) = &oidc.dpop {
            // What a resource server sees: the key thumbprint in each
            // token's `cnf.jkt`, and a proof signed by that key.
            println!("DPoP (oidc.dpop): tokens are bound to a key; APIs get `Authorization: DPoP` and a proof per request");
            for (i, key) in ring.keys().iter().enumerate() {
                let role = if i == 0 {
                    "binds new tokens"
                } else {
                    "kept for the tokens bound to it, until they are renewed"
                };
                println!(
                    "  key {:<20} jkt {}  {role}",
                    format!("{:?}", key.id()),
                    key.jkt()
                );
            }
        }
        println!("{}", revocation(&config.session));
        println!("{}", record_format(config.session.record_format));
    }
    println!(
        "{:<24} {:<32} {:<9} {:<5} {:<6} {:<8} {:<10} {:<3} methods",
        "path", "upstream", "auth", "token", "strip", "timeout", "max_body", "ws"
    );
    let router = match cloakroom::routes::Router::new(&config.routes, config.is_https()) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cloakroom: {e}");
            return Err(ExitCode::from(EXIT_BAD_CONFIG));
        }
    };
    for route in router.routes() {
        let r = &route.config;
        let methods = r.methods.as_ref().map_or("all".to_owned(), |m| {
            m.iter().map(|m| m.as_str()).collect::<Vec<_>>().join(",")
        });
        println!(
            "{:<24} {:<32} {:<9} {:<5} {:<6} {:<8} {:<10} {:<3} {methods}",
            r.path,
            target(r),
            format!("{:?}", r.auth).to_lowercase(),
            format!("{:?}", r.token).to_lowercase(),
            r.strip_prefix,
            format_duration(r.timeout),
            r.max_body,
            if r.websocket { "yes" } else { "no" },
        );
        // What a route's own token is for, in the words of the keys.
        if let Some(audience) = &r.audience {
            let resource = audience.resource.as_ref().map_or("none", |u| u.as_str());
            let scopes = audience.scope().unwrap_or_else(|| "as granted".into());
            let kind = format!("{:?}", r.token).to_lowercase();
            println!("  └ its own {kind} token: resource {resource}, scopes {scopes}");
        }
        if let Some(exchange) = &r.exchange {
            let audience = exchange.audience.as_deref().unwrap_or("none");
            let resource = exchange.resource.as_ref().map_or("none", |u| u.as_str());
            let scopes = exchange.scope().unwrap_or_else(|| "as the IdP decides".into());
            let subject = exchange.subject.as_str();
            println!(
                "  └ the session's {subject} exchanged for a token: audience {audience}, resource {resource}, scopes {scopes}"
            );
        }
    }
    Ok(config)
}

/// What `session.revoke_on_end` means for this config, in one line.
fn revocation(session: &cloakroom::config::SessionConfig) -> String {
    if session.revoke_on_end {
        format!(
            "refresh tokens: revoked at the IdP at every end of a session, also without its cookie \
             (session.revoke_on_end: true; each kept sealed to cookie.keys beside its record; \
             at most {} waiting)",
            session.revocation_queue_max
        )
    } else {
        "refresh tokens: revoked at the IdP only at ends that read the record with its cookie, \
         logout and the idle timeout (session.revoke_on_end: false)"
            .to_owned()
    }
}

/// What `session.record_format` means for this config, in one line.
fn record_format(format: cloakroom::config::RecordFormat) -> String {
    use cloakroom::config::RecordFormat;
    match format {
        RecordFormat::Json => "session records: written as JSON, format 1 (session.record_format: json); \
             formats 1 and 2 are read. Once every replica runs a release that reads format 2, \
             compact takes about a quarter less Redis memory per session"
            .to_owned(),
        RecordFormat::Compact => {
            "session records: written compact, format 2 (session.record_format: compact); \
             formats 1 and 2 are read. A replica of a release that reads only format 1 takes \
             these sessions for none: roll out a release that reads both first"
                .to_owned()
        }
    }
}

/// `check --online`: what the IdP publishes, judged against `config`
/// (`oidc::fit`). Exits 1 on an error, or on a warning with `--strict`.
fn check_online(config: &Config, strict: bool) -> ExitCode {
    let Some(oidc) = &config.oidc else {
        println!("no oidc section: no IdP to ask");
        return ExitCode::SUCCESS;
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cloakroom: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("asking the IdP {}:", oidc.issuer);
    let findings = runtime.block_on(cloakroom::oidc::fit::inspect(oidc));
    for f in &findings {
        println!("  {f}");
    }
    let worst = if strict { Level::Warning } else { Level::Error };
    let stopping = findings.iter().filter(|f| f.level >= worst).count();
    if stopping > 0 {
        eprintln!(
            "cloakroom: the IdP {} does not fit this config: {stopping} problem(s) above",
            oidc.issuer
        );
        return ExitCode::FAILURE;
    }
    println!("the IdP fits this config");
    ExitCode::SUCCESS
}

/// The Redis servers' `maxmemory-policy`, asked within the configured
/// timeouts; why not, in one line, when Redis cannot be reached or refuses
/// `CONFIG` (managed services often do).
fn eviction_policies(redis: &RedisConfig) -> Result<Vec<String>, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    // rediss:// needs a TLS provider, as in `serve`.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let bound = redis.connect_timeout + 2 * redis.command_timeout;
    let policies = runtime.block_on(RedisStore::probe_eviction(redis, bound));
    // A name lookup still running past the bound must not hold `check` up.
    runtime.shutdown_background();
    policies.map_err(|e| cloakroom::error::chain(&*e))
}

fn serve(path: &Path) -> ExitCode {
    let (config, watched) = match load(path) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    if let Err(e) = cloakroom::telemetry::init(&config.log, &config.telemetry) {
        eprintln!("cloakroom: telemetry.otlp: {}", cloakroom::error::chain(&*e));
        return ExitCode::FAILURE;
    }
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cloakroom: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(async move {
        let shutdown = shutdown_signal();
        let (reloader, requests) = cloakroom::reload::channel();
        reload_on_sighup(reloader);
        let bind = |addr| async move {
            tokio::net::TcpListener::bind(addr).await.map_err(|e| {
                tracing::error!(%addr, error = %e, "cannot listen");
                ExitCode::FAILURE
            })
        };
        let listener = match bind(config.listen).await {
            Ok(l) => l,
            Err(code) => return code,
        };
        let admin = match bind(config.admin_listen).await {
            Ok(l) => l,
            Err(code) => return code,
        };
        let options = cloakroom::Options {
            reload: Some(cloakroom::reload::Triggers {
                watched,
                requests,
                poll: Some(cloakroom::reload::POLL_EVERY),
            }),
            ..Default::default()
        };
        match cloakroom::run_with(listener, admin, config, options, shutdown).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!(error = %e, "cloakroom failed");
                ExitCode::FAILURE
            }
        }
    });
    // The last spans: the exporter sends what it still holds.
    cloakroom::telemetry::shutdown();
    code
}

/// Reloads the config on each SIGHUP. Installed before the ports open, so
/// a SIGHUP never ends the process (its default action) once it serves.
fn reload_on_sighup(reloader: cloakroom::reload::Reloader) {
    let hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP; config reloads only on file changes");
            return;
        }
    };
    tokio::spawn(async move {
        let mut hangup = hangup;
        while hangup.recv().await.is_some() {
            tracing::info!("SIGHUP received; reloading the config");
            // The reload task logs the outcome.
            let _ = reloader.reload().await;
        }
    });
}

/// `cloakroom health`: one GET, exit 0 on 2xx and 1 on anything else.
fn health(url: Option<String>, config: Option<&Path>) -> ExitCode {
    let url = match (url, config) {
        (Some(url), _) => url,
        (None, config) => {
            let admin = match config.map(admin_listen).transpose() {
                Ok(admin) => admin.unwrap_or(DEFAULT_ADMIN),
                Err(reason) => {
                    eprintln!("cloakroom health: {reason}");
                    return ExitCode::FAILURE;
                }
            };
            format!("http://{}/readyz", loopback_for(admin))
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cloakroom health: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(probe(&url)) {
        Ok(status) => {
            println!("{url}: {status}");
            ExitCode::SUCCESS
        }
        Err(reason) => {
            eprintln!("cloakroom health: {url}: {reason}");
            ExitCode::FAILURE
        }
    }
}

/// `admin_listen` of the config at `path`, or why it cannot be had, in one line.
fn admin_listen(path: &Path) -> Result<SocketAddr, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Config::load_named(&text, &path.display().to_string(), &ProcessEnv)
        .map(|config| config.admin_listen)
        .map_err(|errors| {
            let first = errors.0.first().map(ToString::to_string).unwrap_or_default();
            match errors.0.len() {
                1 => format!("{} does not load: {first}", path.display()),
                n => format!("{} does not load: {first} (and {} more)", path.display(), n - 1),
            }
        })
}

/// Where to reach a listener bound to `addr`: a wildcard address is
/// reached on loopback.
fn loopback_for(addr: SocketAddr) -> SocketAddr {
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, addr.port())
}

/// GETs `url`: its status when 2xx, else the reason in one line.
async fn probe(url: &str) -> Result<reqwest::StatusCode, String> {
    // reqwest is built without a default crypto provider (see oidc/http.rs).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        // A probe of this host's port must not go through HTTP_PROXY.
        .no_proxy()
        .timeout(HEALTH_TIMEOUT)
        .build()
        .map_err(|e| cloakroom::error::chain(&e))?;
    let response = client
        .get(url)
        .send()
        .await
        // The line already starts with the URL.
        .map_err(|e| cloakroom::error::chain(&e.without_url()))?;
    let status = response.status();
    if status.is_success() {
        return Ok(status);
    }
    // The body of a failing `/readyz` says why (draining); keep it on the line.
    let body = response.text().await.unwrap_or_default();
    let body: String = body.split_whitespace().collect::<Vec<_>>().join(" ");
    let body: String = body.chars().take(HEALTH_BODY_QUOTE).collect();
    if body.is_empty() {
        Err(status.to_string())
    } else {
        Err(format!("{status}: {body}"))
    }
}

/// The upstream URL, or `static:<dir>` for a route that serves files.
fn target(route: &cloakroom::config::RouteConfig) -> String {
    match &route.target {
        cloakroom::config::Target::Upstream(url) => url.to_string(),
        cloakroom::config::Target::Static(files) => format!("static:{}", files.dir.display()),
        cloakroom::config::Target::ForwardAuth => "forward_auth".to_owned(),
    }
}

/// Resolves on SIGTERM (Kubernetes, systemd) or SIGINT (Ctrl-C).
///
/// The handlers are installed when this is called, not when first polled,
/// so a signal that arrives right after the ports open is not lost.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()).ok();
    async move {
        let wait = |s: Option<tokio::signal::unix::Signal>| async move {
            match s {
                Some(mut s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            () = wait(term) => {},
            () = wait(interrupt) => {},
        }
        tracing::info!("shutdown signal received");
    }
}
