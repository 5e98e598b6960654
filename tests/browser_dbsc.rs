//! Device-bound sessions (DBSC, DB-11) and the `__Host-Http-` cookie prefix
//! in a real browser: Debian's Chromium with its DBSC features on, driven
//! by playwright-core (`tests/browser/dbsc.mjs`), logs in through the test
//! IdP to cloakroom served over `https://localhost` (nginx terminating TLS
//! with a test CA that the browser trusts through an NSS db), binds its
//! session, refreshes the bound cookie on its own, and keeps a script from
//! planting a session cookie; a copy of the session cookie in another
//! browser profile is refused.
//!
//! The bound cookie is `__Host-cloakroom-bound`, not `__Host-Http-`:
//! Chromium takes no `__Host-Http-` cookie as a DBSC credential.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::{json, Value};
use support::idp::Idp;
use support::nginx::Nginx;
use support::pki::Pki;
use support::{App, Upstream, COOKIE_KEY};

const SESSION: &str = "__Host-Http-cloakroom";
const BOUND: &str = "__Host-cloakroom-bound";

/// A home directory whose NSS db (`.pki/nssdb`, where Chromium on Linux
/// looks) trusts `pki`'s CA: DBSC registers only over https the browser
/// trusts, so `--ignore-certificate-errors` would not do.
fn trusting_home(pki: &Pki) -> tempfile::TempDir {
    let home = tempfile::tempdir().unwrap();
    let db = home.path().join(".pki/nssdb");
    std::fs::create_dir_all(&db).unwrap();
    let db = format!("sql:{}", db.display());
    let ca = pki.path("ca");
    let steps: [&[&str]; 2] = [
        &["-N", "-d", &db, "--empty-password"],
        &[
            "-A",
            "-d",
            &db,
            "-n",
            "cloakroom test CA",
            "-t",
            "C,,",
            "-a",
            "-i",
            &ca,
        ],
    ];
    for args in steps {
        let out = Command::new("certutil")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| {
                panic!("certutil is missing: apt-get install libnss3-tools (.ci/run does): {e}")
            });
        assert!(
            out.status.success(),
            "certutil {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    home
}

/// nginx's one location: everything to cloakroom, which trusts it as a
/// proxy; nginx terminates TLS for `localhost`.
const LOCATIONS: &str = r#"
        location / {
            proxy_pass http://127.0.0.1:{cloakroom};
            proxy_http_version 1.1;
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto https;
        }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn db11_chromium_binds_its_session_refreshes_the_bound_cookie_and_a_copy_is_refused() {
    let chromium = support::playwright::chromium();
    assert!(
        Path::new(&chromium).exists(),
        "{chromium} is missing: apt-get install chromium (.ci/run does)"
    );
    support::npm::ci("tests/browser", "playwright-core");
    let pki = Pki::new();
    let home = trusting_home(&pki);

    let up = Upstream::start().await;
    let bound = App::bind().await;
    let nginx = Nginx::start_tls(
        &LOCATIONS.replace("{cloakroom}", &bound.addr.port().to_string()),
        &pki,
    );
    let base = nginx.url("");
    let idp = Idp::start(json!({
        "redirect_uris": [format!("{base}/auth/callback")],
        "post_logout_redirect_uris": [format!("{base}/")],
    }));
    let yaml = format!(
        "public_url: {base}
trusted_proxies: [127.0.0.1/32]
log: {{level: warn}}
oidc: {{issuer: '{iss}', client_id: cloakroom, client_secret: test-secret}}
cookie: {{keys: [{{id: '1', secret: {COOKIE_KEY}}}], host_http_prefix: true}}
session: {{device_binding: offer, bound_cookie_lifetime: 10m}}
routes:
  - {{path: /api, upstream: '{u}'}}
  - {{path: /, upstream: '{u}', auth: none}}
",
        iss = idp.issuer,
        u = up.url()
    );
    let app = bound.start(&yaml);

    let settings = json!({
        "base": base,
        "metrics": format!("http://{}/metrics", app.admin),
        "home": home.path(),
    });
    let r = support::playwright::run("dbsc.mjs", settings).await;
    assert_eq!(
        r["ok"],
        true,
        "{}\nsteps: {}\nDBSC events: {}\nnginx: {}",
        r["error"],
        r["steps"],
        r["dbsc_events"],
        nginx.error_log()
    );

    eprintln!("DBSC events: {}", r["dbsc_events"]);

    // Registered on its own after the login, at the SPA's first call (the
    // callback, reached from the IdP's site, offers nothing), and the API
    // answers.
    assert_eq!(r["user"], 200);
    assert_eq!(r["registered"], 1, "{}", r["dbsc_events"]);
    let events = r["dbsc_events"].as_array().unwrap();
    let created: Vec<&Value> = events.iter().filter(|e| e["kind"] == "creation").collect();
    assert_eq!(created.len(), 1, "one registration: {events:?}");
    assert_eq!(created[0]["succeeded"], true, "{events:?}");
    // One refresh, for the request it held (below), not ahead of expiry.
    let refreshed: Vec<&Value> = events.iter().filter(|e| e["kind"] == "refresh").collect();
    assert_eq!(refreshed.len(), 1, "{events:?}");
    assert_eq!(
        (&refreshed[0]["result"], &refreshed[0]["proactive"]),
        (&json!("Refreshed"), &json!(false)),
        "{events:?}"
    );
    let api = &r["api"];
    assert_eq!(api["status"], 200, "{api}");
    // The cookies are cloakroom's, by their __Host-Http- names, and none of
    // them reaches the upstream (PX-10).
    let mut names: Vec<&str> = r["cookies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(names, [SESSION, BOUND], "{}", r["cookies"]);
    for cookie in r["cookies"].as_array().unwrap() {
        assert_eq!(
            (&cookie["httpOnly"], &cookie["secure"], &cookie["path"]),
            (&json!(true), &json!(true), &json!("/")),
            "{cookie}"
        );
    }
    assert_eq!(api["upstream_cookies"], json!([]), "{api}");

    // A script cannot set a __Host-Http- cookie: the jar and the next
    // request hold the real session cookie, once.
    assert_eq!(r["document_cookie"], "");
    let forged = &r["forged"];
    assert_eq!(forged["in_jar"], json!(["real"]), "{forged}");
    assert_eq!(forged["sent"], json!(["real"]), "{forged}");
    assert_eq!(forged["status"], 200, "{forged}");

    // Without its bound cookie, the browser refreshed before sending the
    // request it held: 403 with a challenge, then its proof, and the
    // request went with the new bound cookie. No anomaly on the way.
    assert_eq!(r["bound_cleared"], true);
    let refresh = &r["refresh"];
    assert_eq!(refresh["status"], 200, "{refresh}\n{}", r["dbsc_events"]);
    assert!(refresh["refreshed"].as_u64().unwrap() >= 1, "{refresh}");
    assert!(refresh["challenged"].as_u64().unwrap() >= 1, "{refresh}");
    assert_eq!(refresh["renewed"], true, "{refresh}");
    assert_eq!(refresh["sent_bound"], json!(["renewed"]), "{refresh}");
    assert_eq!(refresh["anomalies"], 0, "{refresh}");

    // The session cookie alone, in another profile: refused, no logout,
    // and counted.
    let copied = &r["copied"];
    assert_eq!(copied["sent"], json!([SESSION]), "{copied}");
    assert_eq!(copied["status"], 401, "{copied}");
    assert_eq!(copied["code"], "device_proof_required", "{copied}");
    assert_eq!(copied["anomalies"], 1, "{copied}");
    assert_eq!(r["still"], 200, "the device's browser goes on");
}
