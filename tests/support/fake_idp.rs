//! A purpose-built IdP for what a real one cannot be made to do: forged and
//! malformed ID tokens (also in refresh answers), a token endpoint that
//! redirects or refuses our client, broken metadata, a UserInfo endpoint
//! that names another user, answers signed or fails, signing keys that
//! rotate or are RSA.
//! Everything else is tested against the real oidc-provider.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Map, Value};

/// The key the fake IdP publishes (kid `k1`).
pub const KEY_PEM: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg0qTOyFlAg+LhAka9
tJXLnf2KD3Ye9rvIHM6QEDoKfd+hRANCAAQk4aiaFBJyf8lkpKWT7OejUNnfhYt0
u2GiTWTjqG867ZlSmrqmtXxkGk7EEj34NJnTDi6mzTCD04vnN+AUtW6f
-----END PRIVATE KEY-----";
const KEY_X: &str = "JOGomhQScn_JZKSlk-zno1DZ34WLdLthok1k46hvOu0";
const KEY_Y: &str = "mVKauqa1fGQaTsQSPfg0mdMOLqbNMIPTi-c34BS1bp8";

/// A key the IdP does not publish: what an attacker signs with.
pub const ATTACKER_PEM: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgwcEr90eZh73O11BQ
lTHJp9smLpXo+1apkshr0KoPPMehRANCAATK4UuJRFNBh3ZUx7TLyhSQzoCctBOh
n1c/+d4l3iYKt5GTpaYmTMLTyW5BZfXI8h40i7b0iNfb1eVav0Wil4v8
-----END PRIVATE KEY-----";

/// A second ES256 key, for key rotation: published (kid of the caller's
/// choosing) only when a test says so ([`rotated_jwk`]).
pub const ROTATED_PEM: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgGMzu7EWhUxtCiAT8
L5GnUw+UI0XOq6nai2+tApK8Y5ShRANCAASKvS3Ys0IODgtBs6t+8DHImgQe+qoD
hFNy27PAmXM3WUbdxqbs/POCS5NgB+Pw0sxYf2lH5yOfVeahZdZ+NAIv
-----END PRIVATE KEY-----";

/// An RSA key, for RS256 ID tokens: published only when a test says so
/// ([`rsa_jwk`]).
pub const RSA_PEM: &str = "-----BEGIN PRIVATE KEY-----
MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQDhZvsrggXW8mMk
cKNcaNu8WGuVpNOEU/qvYpvIqWjYShYFazP7hr8xyZtZC7LMm2a3awbfh1yrIV44
XLF+J3mjb1tW8uFexRftDGnEYtqUlPjUgpxHHVIJzcOsrwHJMYqIaBQoJyFuU8W6
W+tCbkyCQzcKoTTKdVBq+zAal5BRkQZPbXdHoEkLTC4iCjxSr9O5CRZiTo3inzip
M+PXxu1mVXUN26KEEQ+zRmLSPLjFG3aqxx4Nm5qiEQ47XZw6/wdzZ+3C692xlaIR
VpTt6V+jm0OwIGlY6JlhLs0eWZKJ0NIugxiXFB3JcVDoSTiNC6J6XXkpmAbDOpy2
EkeRgOkjAgMBAAECggEAaC/mx4yZUGrHwu9Bw5RAhYXFbO08S/1Zcbo90fnkmZ1d
InIUHB6Dv+q1oOpUYlkumHejPK1f+0Y4PAs0i+CJTC9L5BvuapTl40+KkBk1edqG
Tgx1WjXGVvvCh855H9uDclvRfWHhBRM54VNdol5DhS62gXZUZYTmgBzNdm06a0ik
rmJs2Yxr+wVVakERoX31wU02xSeYiPEUSCsg24jeSdsbz4P6sg3zQNtPrwKekK4C
uWVMxJjNHCOQ+4kxIiTbed8gQI3tSs+zFuaFGpTirPROtBRimFFSijVPx/Fl8oh4
q7X1PrxpBpo1vTUqaQrnIGcTN57/iJlCsbQXnk2FwQKBgQDz45ofSvSRl5ZWFWkC
3mi76tqCOrnwT68RiD9FgbD+ahLHvyPvYM6ERbVrHZdH2cmXCn3/0jZJOtp1pVcq
EhCklFRchfYQw4IodZ+JhUQU5XSZKJL6i4cCnXGHBgTKFow0B39VzlShup2XPtS+
odSJ09lGq/Js4R4z8rDbKyRHYQKBgQDsmF5qnwicm8gGwH4R8SZv4J0HsNf/EPfV
LePnERIBYpZ6WApjlxBv8G44yFNah9C1SMCGxxdR0Vl9BMekdMkfFNXXd4ohVI8Y
GQ9/wAKWKuEPT3jkRVdJ4hq0tr1noUvGHVvLD2H2Lib0Sj/FmAxb8zSnMMBSO3ra
VXIpaDPzAwKBgEJz9K2sHcGB3UutX8SRV1ZEoq8zUzCgdaJAToUg1losCtv0P9Vc
ukieOdVq5aqFNAF8sWJAI9yGNboyh/KFo5VEeUwQkEB3FQLzMbol3qwW7VNCE/JC
jFHxFlrlD+8Ef8U5eb+mjbbXg1MPoqYisCex2pUACvkRycn7yaaeNa9hAoGBAMD8
NB+CI1MjGpCvWOYnrvOY4l2QmU77tzvTF8+1s9sfYKDgyXCcmxLDqhR1CtCQceQ9
OJV3NgVN31HDoVj6zcalhxwe7LPtNl8wqdzJcRKuXS/Q4kpIaT/hx2jamjo6bgVm
kyZaIMzernWbTtNNB9/EzJEHighJbhdDlUBDOASjAoGAJpuCYs5znNZoWkAvLTBY
x/rsZWCLgFstHhDsSVPYom215juIT3jm4HhKC63M4GnG3YYgtB4cPKE6hBluNwe+
jLJV2l1/DQCj4BpBDmDfTN2CNnvvAcDpxZWDUbpINIH5vByczSrNdCGWEDlpjscf
0fqlk10s8NCA+1/VzqCi940=
-----END PRIVATE KEY-----";

/// The published form of the fake IdP's own key, `k1`.
pub fn key_jwk() -> Value {
    json!({"kty": "EC", "crv": "P-256", "x": KEY_X, "y": KEY_Y, "kid": "k1", "use": "sig", "alg": "ES256"})
}

/// The published form of [`ROTATED_PEM`] under `kid`.
pub fn rotated_jwk(kid: &str) -> Value {
    json!({
        "kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "alg": "ES256",
        "x": "ir0t2LNCDg4LQbOrfvAxyJoEHvqqA4RTctuzwJlzN1k",
        "y": "Rt3Gpuz884JLk2AH4_DSzFh_aUfnI59V5qFl1n40Ai8",
    })
}

/// The published form of [`RSA_PEM`] under `kid`.
pub fn rsa_jwk(kid: &str) -> Value {
    json!({
        "kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256", "e": "AQAB",
        "n": "4Wb7K4IF1vJjJHCjXGjbvFhrlaTThFP6r2KbyKlo2EoWBWsz-4a_McmbWQuyzJtmt2sG34dcqyFeOFyxfid5o29bVvLhXsUX7QxpxGLalJT41IKcRx1SCc3DrK8ByTGKiGgUKCchblPFulvrQm5MgkM3CqE0ynVQavswGpeQUZEGT213R6BJC0wuIgo8Uq_TuQkWYk6N4p84qTPj18btZlV1DduihBEPs0Zi0jy4xRt2qsceDZuaohEOO12cOv8Hc2ftwuvdsZWiEVaU7elfo5tDsCBpWOiZYS7NHlmSidDSLoMYlxQdyXFQ6Ek4jQuiel15KZgGwzqcthJHkYDpIw",
    })
}

/// Makes the ID token for one token response from (issuer, nonce, access token).
pub type Forge = Box<dyn Fn(&str, &str, &str) -> String + Send + Sync>;

pub struct Behaviour {
    pub forge: Forge,
    /// The token endpoint answers 307 to this URL instead of tokens.
    pub token_redirect: Option<String>,
    pub s256: bool,
    /// Extra entries in the JWKS `keys` list, before the real key.
    pub extra_keys: Vec<Value>,
    /// Access token lifetime, seconds; `None` leaves `expires_in` out.
    pub expires_in: Option<u64>,
    pub token_type: String,
    /// The code exchange answers a refresh token.
    pub issue_refresh_token: bool,
    /// The `issuer` discovery announces, if not the real one.
    pub announced_issuer: Option<String>,
    /// Refresh grants answer a new refresh token (rotation).
    pub rotate: bool,
    /// Refresh grants answer this (status, OAuth error) instead of tokens.
    pub refresh_error: Option<(u16, String)>,
    /// Makes the ID token of refresh answers; `None`: they carry none.
    pub refresh_forge: Option<Forge>,
    /// Discovery lists `userinfo_endpoint`.
    pub userinfo_listed: bool,
    /// What the UserInfo endpoint answers: (status, content type, body).
    pub userinfo: (u16, String, String),
    /// `id_token_signing_alg_values_supported`.
    pub algs: Vec<String>,
    /// The JWKS endpoint answers this status (and no keys) unless 200.
    pub jwks_status: u16,
    /// Discovery lists `revocation_endpoint` (RFC 7009).
    pub revocation_listed: bool,
}

pub struct FakeIdp {
    pub issuer: String,
    pub behaviour: Arc<Mutex<Behaviour>>,
    pub jwks_fetches: Arc<AtomicU64>,
    pub token_calls: Arc<AtomicU64>,
    /// Requests for the discovery document.
    pub discovery_fetches: Arc<AtomicU64>,
    /// The form of every refresh grant received, in order.
    pub refreshes: Arc<Mutex<Vec<HashMap<String, String>>>>,
    /// The `Authorization` header of every UserInfo request, in order.
    pub userinfo_calls: Arc<Mutex<Vec<String>>>,
    /// The `token` of every revocation request, in order.
    pub revocations: Arc<Mutex<Vec<String>>>,
    /// When set, the JWKS is exactly these keys (`k1` included or not);
    /// else `extra_keys` and `k1`. Apart from `behaviour`, so a forge can
    /// change it the moment it signs (a rotation just before signing).
    pub published: Arc<Mutex<Option<Vec<Value>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeIdp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Shared {
    issuer: String,
    behaviour: Arc<Mutex<Behaviour>>,
    nonces: Mutex<HashMap<String, String>>,
    jwks_fetches: Arc<AtomicU64>,
    token_calls: Arc<AtomicU64>,
    discovery_fetches: Arc<AtomicU64>,
    refreshes: Arc<Mutex<Vec<HashMap<String, String>>>>,
    userinfo_calls: Arc<Mutex<Vec<String>>>,
    revocations: Arc<Mutex<Vec<String>>>,
    published: Arc<Mutex<Option<Vec<Value>>>>,
}

impl FakeIdp {
    pub async fn start(forge: Forge) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let issuer = format!("http://{addr}");
        let behaviour = Arc::new(Mutex::new(Behaviour {
            forge,
            token_redirect: None,
            s256: true,
            extra_keys: vec![],
            expires_in: Some(300),
            token_type: "Bearer".into(),
            issue_refresh_token: true,
            announced_issuer: None,
            rotate: true,
            refresh_error: None,
            refresh_forge: None,
            userinfo_listed: true,
            userinfo: (
                200,
                "application/json".into(),
                json!({"sub": "alice", "groups": ["staff"]}).to_string(),
            ),
            algs: vec!["ES256".into()],
            jwks_status: 200,
            revocation_listed: false,
        }));
        let shared = Arc::new(Shared {
            issuer: issuer.clone(),
            behaviour: behaviour.clone(),
            nonces: Mutex::new(HashMap::new()),
            jwks_fetches: Arc::default(),
            token_calls: Arc::default(),
            discovery_fetches: Arc::default(),
            refreshes: Arc::default(),
            userinfo_calls: Arc::default(),
            revocations: Arc::default(),
            published: Arc::default(),
        });
        let (jwks_fetches, token_calls) = (shared.jwks_fetches.clone(), shared.token_calls.clone());
        let refreshes = shared.refreshes.clone();
        let discovery_fetches = shared.discovery_fetches.clone();
        let userinfo_calls = shared.userinfo_calls.clone();
        let published = shared.published.clone();
        let revocations = shared.revocations.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let shared = shared.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| serve(req, shared.clone()));
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            issuer,
            behaviour,
            jwks_fetches,
            token_calls,
            discovery_fetches,
            refreshes,
            userinfo_calls,
            revocations,
            published,
            task,
        }
    }
}

async fn serve(req: Request<Incoming>, shared: Arc<Shared>) -> Result<Response<Full<Bytes>>, Infallible> {
    let iss = shared.issuer.clone();
    let query: HashMap<String, String> =
        url::form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
    let reply = |status: StatusCode, body: Value| {
        let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
        *r.status_mut() = status;
        r.headers_mut()
            .insert("content-type", "application/json".parse().unwrap());
        r
    };
    let response = match req.uri().path() {
        "/.well-known/openid-configuration" => {
            shared.discovery_fetches.fetch_add(1, Ordering::SeqCst);
            let behaviour = shared.behaviour.lock().unwrap();
            let s256 = behaviour.s256;
            let announced = behaviour.announced_issuer.clone().unwrap_or_else(|| iss.clone());
            let userinfo = behaviour.userinfo_listed.then(|| format!("{iss}/userinfo"));
            let algs = behaviour.algs.clone();
            let revocation = behaviour.revocation_listed.then(|| format!("{iss}/revoke"));
            drop(behaviour);
            reply(
                StatusCode::OK,
                json!({
                    "userinfo_endpoint": userinfo,
                    "revocation_endpoint": revocation,
                    "issuer": announced,
                    "authorization_endpoint": format!("{iss}/authorize"),
                    "token_endpoint": format!("{iss}/token"),
                    "jwks_uri": format!("{iss}/jwks"),
                    "code_challenge_methods_supported": if s256 { vec!["S256"] } else { vec!["plain"] },
                    "id_token_signing_alg_values_supported": algs,
                    "authorization_response_iss_parameter_supported": true,
                }),
            )
        }
        "/jwks" => {
            shared.jwks_fetches.fetch_add(1, Ordering::SeqCst);
            let status = shared.behaviour.lock().unwrap().jwks_status;
            if status != 200 {
                return Ok(reply(StatusCode::from_u16(status).unwrap(), json!({})));
            }
            let published = shared.published.lock().unwrap().clone();
            let keys = published.unwrap_or_else(|| {
                let mut keys = shared.behaviour.lock().unwrap().extra_keys.clone();
                keys.push(key_jwk());
                keys
            });
            let mut r = reply(StatusCode::OK, json!({ "keys": keys }));
            r.headers_mut()
                .insert("content-type", "application/jwk-set+json".parse().unwrap());
            r
        }
        "/userinfo" => {
            let authorization = req
                .headers()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            shared.userinfo_calls.lock().unwrap().push(authorization);
            let (status, content_type, body) = shared.behaviour.lock().unwrap().userinfo.clone();
            let mut r = Response::new(Full::new(Bytes::from(body)));
            *r.status_mut() = StatusCode::from_u16(status).unwrap();
            r.headers_mut()
                .insert("content-type", content_type.parse().unwrap());
            r
        }
        "/revoke" => {
            let body = req.into_body().collect().await.unwrap().to_bytes();
            let token = url::form_urlencoded::parse(&body)
                .find(|(k, _)| k == "token")
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default();
            shared.revocations.lock().unwrap().push(token);
            reply(StatusCode::OK, json!({}))
        }
        "/authorize" => {
            let code = format!("code-{}", rand_hex());
            shared
                .nonces
                .lock()
                .unwrap()
                .insert(code.clone(), query.get("nonce").cloned().unwrap_or_default());
            let mut target = url::Url::parse(&query["redirect_uri"]).unwrap();
            target
                .query_pairs_mut()
                .append_pair("code", &code)
                .append_pair("state", &query["state"])
                // RFC 9207: the issuer its metadata announces.
                .append_pair("iss", &announced_issuer(&shared, &iss));
            let mut r = Response::new(Full::new(Bytes::new()));
            *r.status_mut() = StatusCode::FOUND;
            r.headers_mut()
                .insert("location", target.as_str().parse().unwrap());
            r
        }
        "/token" => {
            shared.token_calls.fetch_add(1, Ordering::SeqCst);
            let body = req.into_body().collect().await.unwrap().to_bytes();
            let form: HashMap<String, String> = url::form_urlencoded::parse(&body)
                .map(|(k, v)| (k.into(), v.into()))
                .collect();
            let behaviour = shared.behaviour.lock().unwrap();
            if let Some(to) = &behaviour.token_redirect {
                let mut r = Response::new(Full::new(Bytes::new()));
                *r.status_mut() = StatusCode::TEMPORARY_REDIRECT;
                r.headers_mut().insert("location", to.parse().unwrap());
                return Ok(r);
            }
            let access_token = format!("at-{}", rand_hex());
            let mut answer = json!({
                "access_token": access_token,
                "token_type": behaviour.token_type,
                "expires_in": behaviour.expires_in,
                "refresh_token": format!("rt-{}", rand_hex()),
            });
            if behaviour.expires_in.is_none() {
                answer.as_object_mut().unwrap().remove("expires_in");
            }
            if form.get("grant_type").map(String::as_str) == Some("refresh_token") {
                shared.refreshes.lock().unwrap().push(form.clone());
                if let Some((status, error)) = &behaviour.refresh_error {
                    return Ok(reply(
                        StatusCode::from_u16(*status).unwrap(),
                        json!({ "error": error }),
                    ));
                }
                if !behaviour.rotate {
                    answer.as_object_mut().unwrap().remove("refresh_token");
                }
                if let Some(forge) = &behaviour.refresh_forge {
                    answer["id_token"] = json!(forge(&iss, "", &access_token));
                }
            } else {
                if !behaviour.issue_refresh_token {
                    answer.as_object_mut().unwrap().remove("refresh_token");
                }
                let nonce = shared
                    .nonces
                    .lock()
                    .unwrap()
                    .remove(form.get("code").map_or("", |c| c.as_str()));
                answer["id_token"] = json!((behaviour.forge)(
                    &iss,
                    nonce.as_deref().unwrap_or(""),
                    &access_token
                ));
            }
            reply(StatusCode::OK, answer)
        }
        _ => reply(StatusCode::NOT_FOUND, json!({})),
    };
    Ok(response)
}

fn rand_hex() -> String {
    use rand::RngCore;
    let mut b = [0u8; 12];
    rand::rng().fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Claims a valid ID token for client `cloakroom` carries.
fn announced_issuer(shared: &Shared, iss: &str) -> String {
    let behaviour = shared.behaviour.lock().unwrap();
    behaviour
        .announced_issuer
        .clone()
        .unwrap_or_else(|| iss.to_owned())
}

pub fn claims(iss: &str, nonce: &str) -> Map<String, Value> {
    let now = now();
    json!({"iss": iss, "aud": "cloakroom", "sub": "alice", "iat": now, "exp": now + 300, "nonce": nonce})
        .as_object()
        .unwrap()
        .clone()
}

/// Signs `claims` with ES256 under `pem`, with header fields `header` added.
pub fn sign(claims: &Map<String, Value>, pem: &str, header: Value) -> String {
    sign_alg(claims, pem, jsonwebtoken::Algorithm::ES256, header)
}

/// Signs `claims` with `alg` (ES256 or RS256) under `pem`, with header
/// fields `header` added (a null value removes one).
pub fn sign_alg(
    claims: &Map<String, Value>,
    pem: &str,
    alg: jsonwebtoken::Algorithm,
    header: Value,
) -> String {
    let mut h = json!({"alg": format!("{alg:?}"), "typ": "JWT"});
    for (k, v) in header.as_object().unwrap() {
        if v.is_null() {
            h.as_object_mut().unwrap().remove(k);
        } else {
            h[k] = v.clone();
        }
    }
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(h.to_string()),
        URL_SAFE_NO_PAD.encode(Value::Object(claims.clone()).to_string())
    );
    let key = match alg {
        jsonwebtoken::Algorithm::RS256 => jsonwebtoken::EncodingKey::from_rsa_pem(pem.as_bytes()),
        _ => jsonwebtoken::EncodingKey::from_ec_pem(pem.as_bytes()),
    }
    .unwrap();
    let signature = jsonwebtoken::crypto::sign(signing_input.as_bytes(), &key, alg).unwrap();
    format!("{signing_input}.{signature}")
}

/// A token with an arbitrary header and a raw signature part.
pub fn raw(header: Value, claims: &Map<String, Value>, signature: &str) -> String {
    format!(
        "{}.{}.{signature}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(Value::Object(claims.clone()).to_string())
    )
}

/// A valid back-channel logout token from `iss` for every session of `sub`
/// (no `sid`), signed with the IdP's key.
#[allow(dead_code)]
pub fn subject_logout_token(iss: &str, sub: &str) -> String {
    let claims = json!({
        "iss": iss, "aud": "cloakroom", "iat": now(), "sub": sub,
        "jti": format!("jti-{}", rand::random::<u64>()),
        "events": { "http://schemas.openid.net/event/backchannel-logout": {} },
    });
    sign(
        claims.as_object().unwrap(),
        KEY_PEM,
        json!({"kid": "k1", "typ": "logout+jwt"}),
    )
}
