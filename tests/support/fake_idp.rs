//! A purpose-built IdP for what a real one cannot be made to do: forged and
//! malformed ID tokens (also in refresh answers), a token endpoint that
//! redirects or refuses our client, broken metadata.
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
        }));
        let shared = Arc::new(Shared {
            issuer: issuer.clone(),
            behaviour: behaviour.clone(),
            nonces: Mutex::new(HashMap::new()),
            jwks_fetches: Arc::default(),
            token_calls: Arc::default(),
            discovery_fetches: Arc::default(),
            refreshes: Arc::default(),
        });
        let (jwks_fetches, token_calls) = (shared.jwks_fetches.clone(), shared.token_calls.clone());
        let refreshes = shared.refreshes.clone();
        let discovery_fetches = shared.discovery_fetches.clone();
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
            drop(behaviour);
            reply(
                StatusCode::OK,
                json!({
                    "issuer": announced,
                    "authorization_endpoint": format!("{iss}/authorize"),
                    "token_endpoint": format!("{iss}/token"),
                    "jwks_uri": format!("{iss}/jwks"),
                    "code_challenge_methods_supported": if s256 { vec!["S256"] } else { vec!["plain"] },
                    "id_token_signing_alg_values_supported": ["ES256"],
                    "authorization_response_iss_parameter_supported": true,
                }),
            )
        }
        "/jwks" => {
            shared.jwks_fetches.fetch_add(1, Ordering::SeqCst);
            let mut keys = shared.behaviour.lock().unwrap().extra_keys.clone();
            keys.push(json!({"kty": "EC", "crv": "P-256", "x": KEY_X, "y": KEY_Y, "kid": "k1", "use": "sig", "alg": "ES256"}));
            let mut r = reply(StatusCode::OK, json!({ "keys": keys }));
            r.headers_mut()
                .insert("content-type", "application/jwk-set+json".parse().unwrap());
            r
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
    let mut h = json!({"alg": "ES256", "typ": "JWT"});
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
    let key = jsonwebtoken::EncodingKey::from_ec_pem(pem.as_bytes()).unwrap();
    let signature =
        jsonwebtoken::crypto::sign(signing_input.as_bytes(), &key, jsonwebtoken::Algorithm::ES256).unwrap();
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
