//! What DPoP (`oidc.dpop`) adds to one proxied request, in-process: the
//! token step and the leaf make a bound token's `Authorization` value
//! and a fresh proof (ES256) for each request, where a bearer token needs
//! only its header.
//!
//! - `bearer`: `Authorization: Bearer <token>`, as `stack::token` makes it;
//! - `dpop`: `Bound::new` (the `DPoP <token>` value and the token's hash)
//!   and `Bound::proof` (claims, a fresh `jti`, the ES256 signature), as
//!   the token step and `upstream::forward` make them;
//!
//! and, for the choice of signer (`oidc/dpop.rs`), one ES256 signature of
//! a proof's signing input with aws-lc-rs (what cloakroom uses) and with
//! ring, and a whole proof made by jsonwebtoken's `encode`.
//!
//! Prints nanoseconds of this thread's CPU time per operation, the best of
//! 7 rounds that interleave the cases. Run with `cargo bench --bench dpop`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use http::HeaderValue;

use cloakroom::clock::Clock;
use cloakroom::config::{DpopConfig, DpopKey};
use cloakroom::oidc::dpop::{Bound, Dpop};
use cloakroom::secret::AccessToken;

/// Calls per measurement: enough that each takes a few hundred
/// milliseconds, far above the scheduler tick the CPU time is counted in.
const N: u32 = 20_000;
const N_BEARER: u32 = 1_000_000;
const ROUNDS: usize = 7;

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        // `cargo test --benches` runs bench targets as tests: do nothing there.
        return;
    }
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let pkcs8 = aws_lc_rs::signature::EcdsaKeyPair::generate_pkcs8(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        &rng,
    )
    .expect("a key");
    let pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        base64::engine::general_purpose::STANDARD.encode(pkcs8.as_ref())
    );
    let key = DpopKey::new(pem.clone(), None).expect("a P-256 key");
    let jkt = key.jkt().to_owned();
    let dpop = Arc::new(Dpop::new(
        DpopConfig::new(vec![key]).expect("one key"),
        Clock::system(),
    ));
    // An access token of a usual size: a signed JWT of about 900 bytes.
    let token = AccessToken::new(format!(
        "eyJhbGciOiJSUzI1NiJ9.{}.{}",
        "a".repeat(600),
        "s".repeat(342)
    ));
    let (method, origin, path) = (http::Method::GET, "http://api.internal:8000", "/api/orders/42");

    let encoding = jsonwebtoken::EncodingKey::from_ec_pem(pem.as_bytes()).unwrap();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.typ = Some("dpop+jwt".into());
    let claims = serde_json::json!({"jti": "x", "htm": "GET", "htu": "http://api/x", "iat": 1, "ath": "y"});
    let input = signing_input(&dpop, &token, &jkt);
    let aws = aws_lc_rs::signature::EcdsaKeyPair::from_pkcs8(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        pkcs8.as_ref(),
    )
    .unwrap();
    let ring_rng = ring::rand::SystemRandom::new();
    let ring_key = ring::signature::EcdsaKeyPair::from_pkcs8(
        &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        pkcs8.as_ref(),
        &ring_rng,
    )
    .unwrap();

    // In the order printed below: bearer, DPoP, then the three signers.
    let cases: [Box<dyn Fn()>; 5] = [
        Box::new(|| {
            let mut value = HeaderValue::from_str(&format!("Bearer {}", token.expose())).unwrap();
            value.set_sensitive(true);
            black_box(value);
        }),
        Box::new(|| {
            let bound = Bound::new(&dpop, &token, &jkt).unwrap();
            black_box(bound.authorization());
            black_box(bound.proof(&method, origin, path));
        }),
        Box::new(|| {
            black_box(aws.sign(&rng, input.as_bytes()).unwrap());
        }),
        Box::new(|| {
            black_box(ring_key.sign(&ring_rng, input.as_bytes()).unwrap());
        }),
        Box::new(|| {
            black_box(jsonwebtoken::encode(&header, &claims, &encoding).unwrap());
        }),
    ];
    // Rounds interleave the cases, so a change in the machine's load falls
    // on all of them; the best round of each counts.
    let mut best = [f64::MAX; 5];
    for _ in 0..ROUNDS {
        for (i, case) in cases.iter().enumerate() {
            let n = if i == 0 { N_BEARER } else { N };
            best[i] = best[i].min(per(time(case, n), n));
        }
    }
    let [bearer, proof, aws_lc, ring, jwt] = best;
    println!("per request ({}, ns):", clock_name());
    println!("  bearer header:                    {bearer:>8.0}");
    println!(
        "  DPoP header and proof (ES256):    {proof:>8.0}   {:.0}x the bearer header, +{:.1} µs",
        proof / bearer,
        (proof - bearer) / 1000.0
    );
    println!("one ES256 signature ({}, ns):", clock_name());
    println!("  aws-lc-rs EcdsaKeyPair (used):    {aws_lc:>8.0}");
    println!(
        "  ring EcdsaKeyPair:                {ring:>8.0}   {:.2}x aws-lc-rs",
        ring / aws_lc
    );
    println!(
        "  jsonwebtoken encode (whole JWT):  {jwt:>8.0}   {:.2}x aws-lc-rs",
        jwt / aws_lc
    );
}

/// A proof's `header.claims`, as cloakroom signs it.
fn signing_input(dpop: &Arc<Dpop>, token: &AccessToken, jkt: &str) -> String {
    let bound = Bound::new(dpop, token, jkt).unwrap();
    let proof = bound.proof(&http::Method::GET, "http://api.internal:8000", "/api/orders/42");
    let proof = proof.to_str().unwrap();
    proof[..proof.rfind('.').unwrap()].to_owned()
}

/// The CPU time `n` calls of `f` took on this thread (wall time where
/// the kernel does not say): on a machine other work shares, waiting for
/// a core is not counted.
fn time(f: &dyn Fn(), n: u32) -> Duration {
    let (cpu, wall) = (thread_cpu(), Instant::now());
    for _ in 0..n {
        f();
    }
    match (cpu, thread_cpu()) {
        (Some(before), Some(after)) => after.saturating_sub(before),
        _ => wall.elapsed(),
    }
}

/// This thread's time on a CPU so far, from `/proc/thread-self/schedstat`.
fn thread_cpu() -> Option<Duration> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let nanos = text.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(nanos))
}

fn clock_name() -> &'static str {
    if thread_cpu().is_some() {
        "CPU time"
    } else {
        "wall time"
    }
}

fn per(took: Duration, n: u32) -> f64 {
    took.as_nanos() as f64 / f64::from(n)
}
