//! Properties of the parsers that take what a browser or an operator
//! writes: cookie unsealing, request paths, `return_to`, the config file
//! and the callback's query. Each runs proptest's default 256 cases; for a
//! longer run: `PROPTEST_CASES=100000 cargo test --release --test properties`.

use std::collections::HashMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

use cloakroom::auth::callback::{self, SINGLE};
use cloakroom::auth::return_to::{self, MAX_LEN};
use cloakroom::config::{CookieKey, MapEnv};
use cloakroom::cookie::{KeyRing, Purpose, SealError};
use cloakroom::path::normalize_path;
use cloakroom::secret::Secret;
use cloakroom::Config;

/// proptest's defaults (`PROPTEST_CASES` and the rest from the
/// environment); failures are kept beside this file, to be replayed first.
fn config() -> ProptestConfig {
    ProptestConfig {
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        ..ProptestConfig::default()
    }
}

// === cookie unsealing (T04, T10) ===

const COOKIE: &str = "__Host-cloakroom";

fn ring(ids: &[&str]) -> KeyRing {
    let keys: Vec<CookieKey> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| CookieKey {
            id: (*id).to_owned(),
            secret: Secret::new(vec![i as u8 + 1; 32]),
        })
        .collect();
    KeyRing::new(&keys).unwrap()
}

fn purpose() -> impl Strategy<Value = Purpose> {
    prop_oneof![
        Just(Purpose::Session),
        Just(Purpose::Login),
        Just(Purpose::ClientToken),
        Just(Purpose::Revocation),
        Just(Purpose::Bound),
        Just(Purpose::DeviceChallenge)
    ]
}

/// Raw values shaped like the wire format (version 1, a key id the ring
/// knows), so the cheap checks pass and decryption is reached.
fn shaped_value() -> impl Strategy<Value = Vec<u8>> {
    (
        prop_oneof![Just(1u8), any::<u8>()],
        prop_oneof![Just(b"k1".to_vec()), prop::collection::vec(any::<u8>(), 0..4)],
        prop::collection::vec(any::<u8>(), 0..200),
    )
        .prop_map(|(version, kid, rest)| {
            let mut raw = vec![version, kid.len() as u8];
            raw.extend(kid);
            raw.extend(rest);
            raw
        })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn ck03_unsealing_any_text_never_panics_and_never_opens(
        text in any::<String>(),
        purpose in purpose(),
    ) {
        prop_assert!(ring(&["k1"]).unseal(purpose, COOKIE, &text).is_err());
    }

    #[test]
    fn ck01_unsealing_forged_values_fails_without_panicking(
        raw in shaped_value(),
        purpose in purpose(),
    ) {
        let value = URL_SAFE_NO_PAD.encode(&raw);
        prop_assert!(ring(&["k1"]).unseal(purpose, COOKIE, &value).is_err());
    }

    #[test]
    fn a_sealed_value_opens_to_its_plaintext(
        plaintext in prop::collection::vec(any::<u8>(), 0..1500),
        purpose in purpose(),
    ) {
        let both = ring(&["k1", "k0"]);
        let sealed = both.seal(purpose, COOKIE, &plaintext);
        let opened = both.unseal(purpose, COOKIE, &sealed).unwrap();
        prop_assert_eq!(&opened.plaintext[..], &plaintext[..]);
        prop_assert!(!opened.stale_key);
        // Not under another purpose or name (CK-06), nor by a ring without its key (CK-05).
        let other = match purpose {
            Purpose::Session => Purpose::Login,
            Purpose::Login
            | Purpose::ClientToken
            | Purpose::Revocation
            | Purpose::Bound
            | Purpose::DeviceChallenge => Purpose::Session,
        };
        prop_assert_eq!(both.unseal(other, COOKIE, &sealed).err(), Some(SealError::Tampered));
        prop_assert!(both.unseal(purpose, "__Host-other", &sealed).is_err());
        prop_assert_eq!(ring(&["k0"]).unseal(purpose, COOKIE, &sealed).err(), Some(SealError::UnknownKey));
    }

    #[test]
    fn ck01_a_flipped_bit_never_opens(
        plaintext in prop::collection::vec(any::<u8>(), 0..300),
        position in any::<prop::sample::Index>(),
        bit in 0u8..8,
    ) {
        let ring = ring(&["k1"]);
        let sealed = ring.seal(Purpose::Session, COOKIE, &plaintext);
        let mut raw = URL_SAFE_NO_PAD.decode(&sealed).unwrap();
        let at = position.index(raw.len());
        raw[at] ^= 1 << bit;
        let forged = URL_SAFE_NO_PAD.encode(&raw);
        prop_assert!(ring.unseal(Purpose::Session, COOKIE, &forged).is_err(), "byte {} bit {}", at, bit);
    }

    #[test]
    fn ck01_a_changed_character_never_opens(
        plaintext in prop::collection::vec(any::<u8>(), 0..300),
        position in any::<prop::sample::Index>(),
        replacement in prop::char::ranges(vec!['A'..='Z', 'a'..='z', '0'..='9', '-'..='-', '_'..='_'].into()),
    ) {
        let ring = ring(&["k1"]);
        let sealed = ring.seal(Purpose::Session, COOKIE, &plaintext);
        let mut chars: Vec<char> = sealed.chars().collect();
        let at = position.index(chars.len());
        prop_assume!(chars[at] != replacement);
        chars[at] = replacement;
        let forged: String = chars.into_iter().collect();
        prop_assert!(ring.unseal(Purpose::Session, COOKIE, &forged).is_err(), "character {}", at);
    }
}

// === path normalisation (PX-02, T34) ===

/// Paths built from the pieces that make normalisation hard.
fn path_like() -> impl Strategy<Value = String> {
    let segment = prop_oneof![
        Just(String::new()),
        Just(".".to_owned()),
        Just("..".to_owned()),
        Just("api".to_owned()),
        Just("%2e".to_owned()),
        Just("%2E%2E".to_owned()),
        Just("%2f".to_owned()),
        Just("%5C".to_owned()),
        Just("%41b%7e".to_owned()),
        Just("%20".to_owned()),
        Just("%25".to_owned()),
        Just("%zz".to_owned()),
        Just("%4".to_owned()),
        Just(".%2e".to_owned()),
        Just("..;".to_owned()),
        Just("ünï".to_owned()),
        Just("\\".to_owned()),
        "[a-z0-9._~%-]{0,6}",
    ];
    prop::collection::vec(segment, 0..10).prop_map(|s| format!("/{}", s.join("/")))
}

fn check_normal(raw: &str) -> Result<(), TestCaseError> {
    let Ok(out) = normalize_path(raw) else {
        return Ok(());
    };
    prop_assert!(out.starts_with('/'), "{raw:?} -> {out:?}");
    prop_assert!(!out.contains("//"), "{raw:?} -> {out:?}");
    prop_assert!(
        !out.split('/').any(|s| s == ".." || s == "."),
        "{raw:?} -> {out:?}"
    );
    prop_assert!(
        !out.contains('\\') && !out.chars().any(char::is_control),
        "{raw:?} -> {out:?}"
    );
    prop_assert_eq!(
        normalize_path(&out),
        Ok(out.clone()),
        "not idempotent for {:?}",
        raw
    );
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn px02_any_path_normalises_without_dot_segments_or_double_slashes(raw in path_like()) {
        check_normal(&raw)?;
    }

    #[test]
    fn px02_any_text_normalises_without_panicking(raw in any::<String>()) {
        check_normal(&raw)?;
        check_normal(&format!("/{raw}"))?;
    }
}

// === return_to (T17, LG-12) ===

/// Values built from the pieces of known open-redirect payloads.
fn return_to_like() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("/"),
        Just("//"),
        Just("\\"),
        Just("/\\"),
        Just("evil.com"),
        Just("@evil.com"),
        Just("https:"),
        Just("javascript:"),
        Just("%2F"),
        Just("%5c"),
        Just("%09"),
        Just("%2e%2e"),
        Just(".."),
        Just("."),
        Just("\t"),
        Just(" "),
        Just("?x=//evil.com"),
        Just("#//evil.com"),
        Just("\u{3002}"),
        Just("app"),
    ];
    prop::collection::vec(piece, 0..8).prop_map(|p| p.concat())
}

fn check_return_to(raw: &str) -> Result<(), TestCaseError> {
    let got = return_to::sanitize(Some(raw));
    prop_assert!(got.starts_with('/'), "{raw:?} -> {got:?}");
    prop_assert!(
        !got.starts_with("//") && !got.starts_with("/\\"),
        "{raw:?} -> {got:?}"
    );
    prop_assert!(got.len() <= MAX_LEN, "{raw:?} -> {} bytes", got.len());
    let base = url::Url::parse("https://app.example.com/").unwrap();
    let landed = base.join(&got).unwrap();
    prop_assert_eq!(landed.origin(), base.origin(), "{:?} -> {:?}", raw, got);
    // A value kept in the pre-auth cookie stays what it was if read again.
    prop_assert_eq!(
        return_to::sanitize(Some(&got)),
        got.clone(),
        "not stable for {:?}",
        raw
    );
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn lg12_return_to_is_always_a_local_path(raw in return_to_like()) {
        check_return_to(&raw)?;
    }

    #[test]
    fn lg12_return_to_from_any_text_is_a_local_path(raw in any::<String>()) {
        check_return_to(&raw)?;
        check_return_to(&format!("/{raw}"))?;
    }
}

// === config parsing ===

/// Every key name cloakroom reads anywhere, and a few it does not.
const KEYS: &[&str] = &[
    "public_url",
    "listen",
    "admin_listen",
    "insecure_dev_mode",
    "workers",
    "trusted_proxies",
    "allowed_origins",
    "identity_headers",
    "oidc",
    "issuer",
    "client_id",
    "client_secret",
    "scopes",
    "session",
    "store",
    "redis",
    "url",
    "cluster",
    "sentinel",
    "master_name",
    "nodes",
    "memory",
    "idle_timeout",
    "absolute_timeout",
    "refresh_skew",
    "login_timeout",
    "claims",
    "cookie",
    "name",
    "keys",
    "id",
    "secret",
    "same_site",
    "same_site_reason",
    "domain",
    "limits",
    "max_headers",
    "log",
    "level",
    "format",
    "routes",
    "path",
    "upstream",
    "auth",
    "token",
    "csrf",
    "login_redirect",
    "methods",
    "timeout",
    "max_body",
    "websocket",
    "static",
    "dir",
    "bogus",
    "Routes",
];

fn scalar() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("http://localhost:8080".to_owned()),
        Just("https://app.example.com".to_owned()),
        Just("'http://api:8000'".to_owned()),
        Just("0.0.0.0:8080".to_owned()),
        Just("true".to_owned()),
        Just("12".to_owned()),
        Just("-1".to_owned()),
        Just("30s".to_owned()),
        Just("366d".to_owned()),
        Just("10MiB".to_owned()),
        Just("/api".to_owned()),
        Just("lax".to_owned()),
        Just("none".to_owned()),
        Just("required".to_owned()),
        Just("user".to_owned()),
        Just("memory".to_owned()),
        Just("'${NOPE}'".to_owned()),
        Just("'${KEY}'".to_owned()),
        Just("null".to_owned()),
        Just("[]".to_owned()),
        Just("{}".to_owned()),
        "[a-z]{1,8}",
    ]
}

/// A YAML flow value: a scalar, or lists and mappings of them, keys mostly
/// cloakroom's own.
fn yaml_value() -> impl Strategy<Value = String> {
    scalar().prop_recursive(4, 40, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(", "))),
            prop::collection::vec((prop::sample::select(KEYS), inner), 0..6).prop_map(|fields| {
                let fields: Vec<String> = fields.iter().map(|(k, v)| format!("{k}: {v}")).collect();
                format!("{{{}}}", fields.join(", "))
            }),
        ]
    })
}

/// A config document: a top-level mapping, one key per line.
fn config_like() -> impl Strategy<Value = String> {
    prop::collection::vec((prop::sample::select(KEYS), yaml_value()), 0..8).prop_map(|fields| {
        fields
            .iter()
            .map(|(k, v)| format!("{k}: {v}\n"))
            .collect::<String>()
    })
}

fn env() -> MapEnv {
    MapEnv::default().with_var("KEY", "q8mpiU4Df6kDNHGrPDb2Xt2zqW1QpOOb8j2r6bXaFtY")
}

/// Every error names a key path (with `segments`: made of key names and
/// list indexes), or is a YAML syntax error naming the file, or says the
/// document is not a mapping.
fn check_errors_name_keys(text: &str, segments: bool) -> Result<(), TestCaseError> {
    let Err(errors) = Config::load_named(text, "cloakroom.yaml", &env()) else {
        return Ok(());
    };
    prop_assert!(!errors.0.is_empty());
    for e in &errors.0 {
        if e.path.is_empty() {
            prop_assert!(
                e.reason.starts_with("cloakroom.yaml") && e.reason.contains("not valid YAML")
                    || e.reason.starts_with("expected a mapping"),
                "{:?} in\n{}",
                e,
                text
            );
            continue;
        }
        if !segments {
            continue;
        }
        for segment in e.path.split('.') {
            let name = segment.split('[').next().unwrap_or_default();
            let indexes = &segment[name.len()..];
            prop_assert!(!name.is_empty(), "empty key in {:?}", e.path);
            prop_assert!(
                indexes.is_empty()
                    || indexes.split_inclusive(']').all(|i| i.starts_with('[')
                        && i.ends_with(']')
                        && i[1..i.len() - 1].parse::<usize>().is_ok()),
                "bad index in {:?}",
                e.path
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn config_errors_name_a_key_path(text in config_like()) {
        check_errors_name_keys(&text, true)?;
        // A document that names only cloakroom's keys gets errors at those keys.
        if let Err(errors) = Config::load(&text, &env()) {
            for e in errors.0.iter().filter(|e| !e.path.is_empty()) {
                for segment in e.path.split('.') {
                    let name = segment.split('[').next().unwrap_or_default();
                    prop_assert!(KEYS.contains(&name), "{:?} is no key of the document or of cloakroom", e.path);
                }
            }
        }
    }

    #[test]
    fn config_from_any_text_never_panics(text in any::<String>()) {
        check_errors_name_keys(&text, false)?;
    }
}

// === the callback's parameters (T18) ===

/// The model: each decoded key's last value; refused when a single-use
/// parameter is repeated.
fn model(pairs: &[(String, String)]) -> Option<HashMap<String, String>> {
    let mut seen: HashMap<String, String> = HashMap::new();
    for (k, v) in pairs {
        if seen.insert(k.clone(), v.clone()).is_some() && SINGLE.contains(&k.as_str()) {
            return None;
        }
    }
    Some(seen)
}

fn parameter_name() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(SINGLE).prop_map(str::to_owned),
        Just("session_state".to_owned()),
        Just("scope".to_owned()),
        any::<String>(),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn lg10_any_query_string_parses_without_panicking(query in any::<String>()) {
        let decoded: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        prop_assert_eq!(callback::parameters(&query).ok(), model(&decoded));
    }

    #[test]
    fn lg10_repeated_security_parameters_are_refused(
        pairs in prop::collection::vec((parameter_name(), any::<String>()), 0..8),
    ) {
        let query = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&pairs)
            .finish();
        let got = callback::parameters(&query).ok();
        let repeated = SINGLE
            .iter()
            .any(|s| pairs.iter().filter(|(k, _)| k == s).count() > 1);
        prop_assert_eq!(got.is_none(), repeated, "{:?}", query);
        prop_assert_eq!(got, model(&pairs));
    }
}
