//! `Record::open` in both record formats (`session.record_format`): it
//! runs on every request with a session, the local cache keeping sealed
//! records. A record as a login through an IdP writes it: an access token
//! and an ID token that are RS256 JWTs of usual sizes, an opaque refresh
//! token, the kept claims (the ID token's, then one from UserInfo).
//!
//! Prints, for each format: the sealed size, nanoseconds of this thread's
//! CPU time per open (the best of 7 rounds that interleave the formats),
//! and heap allocations per open; then compact's time as a ratio of
//! JSON's. Run with `cargo bench --bench record`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Map, Value};

use cloakroom::config::RecordFormat;
use cloakroom::cookie::Ticket;
use cloakroom::secret::{AccessToken, IdToken, RefreshToken};
use cloakroom::session::record::{self, Record};

/// Opens per measurement: each takes a few hundred milliseconds.
const N: u32 = 100_000;
const ROUNDS: usize = 7;

/// The system allocator, counting allocations.
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        // `cargo test --benches` runs bench targets as tests: do nothing there.
        return;
    }
    let ticket = Ticket::generate(0);
    let key = record::store_key(&ticket);
    let login = login_record();
    println!(
        "a login's record: access token {} B, ID token {} B, refresh token {} B, {} claims kept",
        login.access_token.expose().len(),
        login.id_token.as_ref().map_or(0, |t| t.expose().len()),
        login.refresh_token.as_ref().map_or(0, |t| t.expose().len()),
        login.claims.len(),
    );
    let formats = [RecordFormat::Json, RecordFormat::Compact];
    let sealed = formats.map(|format| login.seal(format, &ticket, &key));
    let open = |bytes: &[u8]| {
        black_box(Record::open(black_box(bytes), &ticket, &key).expect("opens"));
    };
    let mut best = [f64::MAX; 2];
    for _ in 0..ROUNDS {
        for (i, bytes) in sealed.iter().enumerate() {
            best[i] = best[i].min(per(time(&|| open(bytes), N), N));
        }
    }
    println!("Record::open ({}):", clock_name());
    for (i, format) in formats.iter().enumerate() {
        let before = ALLOCATIONS.load(Ordering::Relaxed);
        open(&sealed[i]);
        let allocations = ALLOCATIONS.load(Ordering::Relaxed) - before;
        println!(
            "  {:<8} sealed {:>5} B   {:>6.0} ns per open   {allocations:>3} allocations",
            format.as_str(),
            sealed[i].len(),
            best[i],
        );
    }
    println!(
        "  compact / json: {:.2}x the time, {:.2}x the bytes",
        best[1] / best[0],
        sealed[1].len() as f64 / sealed[0].len() as f64
    );
}

/// `header.payload.signature` of an RS256 JWT with `claims`.
fn jwt(claims: &Value) -> String {
    let part = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
    let header = json!({"alg": "RS256", "typ": "JWT", "kid": "r1-2026-12"});
    let signature: Vec<u8> = (0..=255u8).collect();
    format!(
        "{}.{}.{}",
        part(header.to_string().as_bytes()),
        part(claims.to_string().as_bytes()),
        part(&signature)
    )
}

fn login_record() -> Record {
    let id_claims = json!({
        "sub": "248289761001", "email": "jane.doe@example.com", "email_verified": true,
        "name": "Jane Doe", "at_hash": "77QmUPtjPfzWtF2AnpK9RQ", "aud": "cloakroom",
        "exp": 1_767_229_200, "iat": 1_767_225_600, "auth_time": 1_767_225_590,
        "iss": "https://idp.example.com", "sid": "08a5019c-17e1-4977-8f42-65a12843ea02",
    });
    let access_claims = json!({
        "jti": "4BeQtlY7hKaTOb3ZzFj9s", "sub": "248289761001", "iat": 1_767_225_600,
        "exp": 1_767_229_200, "scope": "openid profile email offline_access orders:read",
        "client_id": "cloakroom", "iss": "https://idp.example.com", "aud": "https://api.example.com",
    });
    let mut claims = Map::new();
    for name in ["sub", "email", "name", "auth_time", "iss", "sid"] {
        claims.insert(name.into(), id_claims[name].clone());
    }
    claims.insert("groups".into(), json!(["staff", "orders"]));
    Record {
        format: 1,
        access_token: AccessToken::new(jwt(&access_claims)),
        access_expires_at: 1_767_229_200,
        access_issued_ms: Some(1_767_225_600_000),
        access_lifetime: Some(3600),
        access_jkt: None,
        refresh_token: Some(RefreshToken::new(
            "Jq2Pv8zS4yOCwBrmGhHfSuTkL9xQwEeRnP3aVdY1mKc".into(),
        )),
        id_token: Some(IdToken::new(jwt(&id_claims))),
        claims,
        created_at: 1_767_225_600,
        last_seen: 1_767_225_600,
        resource_tokens: BTreeMap::new(),
        exchanged_tokens: BTreeMap::new(),
        device: None,
    }
}

/// The CPU time `n` calls of `f` took on this thread (wall time where
/// the kernel does not say).
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
