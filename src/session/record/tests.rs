use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::json;

use super::*;
use crate::secret::Secret;

const BOTH: [RecordFormat; 2] = [RecordFormat::Json, RecordFormat::Compact];

fn record() -> Record {
    Record {
        format: 1,
        access_token: AccessToken::new("AT-secret".into()),
        access_expires_at: 10,
        access_issued_ms: Some(5_000),
        access_lifetime: Some(5),
        access_jkt: None,
        refresh_token: Some(RefreshToken::new("RT-secret".into())),
        id_token: None,
        claims: Map::new(),
        created_at: 1,
        last_seen: 1,
        resource_tokens: BTreeMap::new(),
        exchanged_tokens: BTreeMap::new(),
        device: None,
    }
}

#[test]
fn ck14_a_record_is_unreadable_without_the_cookie() {
    for format in BOTH {
        ck14_in(format);
    }
}

fn ck14_in(format: RecordFormat) {
    let ticket = Ticket::generate(0);
    let key = store_key(&ticket);
    let sealed = record().seal(format, &ticket, &key);
    assert!(!sealed.windows(9).any(|w| w == b"AT-secret"));
    assert!(!sealed.windows(9).any(|w| w == b"RT-secret"));
    assert_eq!(
        Record::open(&sealed, &ticket, &key)
            .unwrap()
            .access_token
            .expose(),
        "AT-secret"
    );
    assert!(
        Record::open(&sealed, &Ticket::generate(0), &key).is_err(),
        "another session's key"
    );
    let other = Ticket::generate(0);
    assert!(
        Record::open(&sealed, &ticket, &store_key(&other)).is_err(),
        "moved under another key"
    );
}

/// The record as the previous release declared it, every token a
/// `Secret<String>`.
#[derive(Serialize)]
struct PreviousRecord {
    format: u32,
    access_token: Secret<String>,
    access_expires_at: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    access_issued_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    access_lifetime: Option<u64>,
    refresh_token: Option<Secret<String>>,
    id_token: Option<Secret<String>>,
    claims: Map<String, Value>,
    created_at: u64,
    last_seen: u64,
}

/// Seals `json` as the previous release's `Record::seal` did: nonce,
/// then AES-256-GCM under the data key with the store key as AAD.
fn seal_as_before(json: &[u8], ticket: &Ticket, store_key: &str) -> Vec<u8> {
    let nonce = [7u8; 12];
    let cipher = Aes256Gcm::new(ticket.data_key.expose().into());
    let sealed = cipher
        .encrypt(
            &Nonce::from(nonce),
            Payload {
                msg: json,
                aad: store_key.as_bytes(),
            },
        )
        .unwrap();
    [&nonce[..], &sealed].concat()
}

#[test]
fn a_record_sealed_with_secret_string_tokens_opens_with_the_token_types() {
    let mut claims = Map::new();
    claims.insert("sub".into(), Value::from("alice"));
    let previous = PreviousRecord {
        format: 1,
        access_token: Secret::new("AT-secret".into()),
        access_expires_at: 10,
        access_issued_ms: Some(5_000),
        access_lifetime: Some(5),
        refresh_token: Some(Secret::new("RT-secret".into())),
        id_token: Some(Secret::new("ID-secret".into())),
        claims: claims.clone(),
        created_at: 1,
        last_seen: 2,
    };
    let json = serde_json::to_vec(&previous).unwrap();
    let ticket = Ticket::generate(0);
    let key = store_key(&ticket);
    let opened = Record::open(&seal_as_before(&json, &ticket, &key), &ticket, &key).unwrap();
    assert_eq!(opened.access_token.expose(), "AT-secret");
    assert_eq!(opened.refresh_token.as_ref().unwrap().expose(), "RT-secret");
    assert_eq!(opened.id_token.as_ref().unwrap().expose(), "ID-secret");
    assert_eq!(
        (
            opened.access_expires_at,
            opened.access_issued_ms,
            opened.access_lifetime
        ),
        (10, Some(5_000), Some(5))
    );
    assert_eq!(
        (opened.claims, opened.created_at, opened.last_seen),
        (claims, 1, 2)
    );

    // And what this release writes is the same text, byte for byte.
    let mut current = record();
    current.id_token = Some(IdToken::new("ID-secret".into()));
    current.claims.insert("sub".into(), Value::from("alice"));
    current.last_seen = 2;
    assert_eq!(serde_json::to_vec(&current).unwrap(), json);
}

#[test]
fn a_record_from_before_token_lifetimes_were_kept_still_opens() {
    let json = br#"{"format":1,"access_token":"AT","access_expires_at":10,"refresh_token":null,"id_token":null,"claims":{},"created_at":1,"last_seen":1}"#;
    let ticket = Ticket::generate(0);
    let key = store_key(&ticket);
    let opened = Record::open(&seal_as_before(json, &ticket, &key), &ticket, &key).unwrap();
    assert_eq!(opened.access_token.expose(), "AT");
    assert!(opened.refresh_token.is_none() && opened.id_token.is_none());
    assert_eq!((opened.access_issued_ms, opened.access_lifetime), (None, None));
    assert_eq!(serde_json::to_vec(&opened).unwrap(), json);
}

#[test]
fn px23_routes_tokens_are_sealed_with_the_record_and_absent_when_none() {
    let ticket = Ticket::generate(0);
    let key = store_key(&ticket);
    let mut with = record();
    with.resource_tokens.insert(
        "urn:x:orders orders:read".into(),
        ResourceToken {
            access_token: AccessToken::new("RES-secret".into()),
            expires_at: 20,
            issued_ms: 15_000,
            lifetime: 5,
            jkt: None,
        },
    );
    with.exchanged_tokens.insert(
        "access_token ledger  read".into(),
        ResourceToken::obtained(AccessToken::new("EXC-secret".into()), None, 60, 15_000),
    );
    for format in BOTH {
        let sealed = with.seal(format, &ticket, &key);
        assert!(!sealed.windows(10).any(|w| w == b"RES-secret"));
        assert!(!sealed.windows(10).any(|w| w == b"EXC-secret"));
        let opened = Record::open(&sealed, &ticket, &key).unwrap();
        let kept = &opened.resource_tokens["urn:x:orders orders:read"];
        assert_eq!((kept.access_token.expose(), kept.expires_at), ("RES-secret", 20));
        let exchanged = &opened.exchanged_tokens["access_token ledger  read"];
        assert_eq!(
            (exchanged.access_token.expose(), exchanged.expires_at),
            ("EXC-secret", 75)
        );
    }
    // A session without them writes what earlier releases wrote.
    let json = serde_json::to_string(&record()).unwrap();
    assert!(!json.contains("resource_tokens"), "{json}");
    assert!(!json.contains("exchanged_tokens"), "{json}");
}

#[test]
fn ck12_store_keys_are_hashed_and_hash_tagged() {
    let ticket = Ticket::generate(0);
    let key = store_key(&ticket);
    assert!(key.starts_with("cloakroom:{") && key.ends_with("}:s"), "{key}");
    let sid_hex = hex::encode(ticket.sid.expose());
    assert!(!key.contains(&sid_hex));
}

/// `header.payload.signature`, each base64url-encoded.
fn jwt(header: &Value, payload: &Value, signature: &[u8]) -> String {
    let part = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
    format!(
        "{}.{}.{}",
        part(header.to_string().as_bytes()),
        part(payload.to_string().as_bytes()),
        part(signature)
    )
}

fn id_token_claims() -> Value {
    json!({
        "sub": "248289761001", "iss": "https://idp.example.com", "aud": "cloakroom",
        "exp": 1_767_229_200, "iat": 1_767_225_600, "auth_time": 1_767_225_590,
        "nonce": "n-0S6_WzA2Mj", "at_hash": "77QmUPtjPfzWtF2AnpK9RQ",
        "name": "Jane Doe", "email": "jane@example.com", "sid": "08a5019c-17e1-4977-8f42-65a12843ea02",
    })
}

/// A record as a login writes it: the ID token's kept claims, then one
/// that UserInfo added; tokens of every kind, a device.
fn full_record() -> Record {
    let header = json!({"alg": "RS256", "kid": "r1", "typ": "JWT"});
    let id_token = jwt(&header, &id_token_claims(), &[0x5a; 256]);
    let access = jwt(
        &json!({"alg": "ES256", "typ": "at+jwt"}),
        &json!({"sub": "248289761001", "scope": "openid orders:read", "exp": 1_767_229_200}),
        &[0xa5; 64],
    );
    let mut claims = Map::new();
    for name in ["sub", "iss", "auth_time", "name", "email", "sid"] {
        claims.insert(name.into(), id_token_claims()[name].clone());
    }
    claims.insert("groups".into(), json!(["admins", "ops"]));
    let mut record = Record {
        format: 1,
        access_token: AccessToken::new(access.clone()),
        access_expires_at: 1_767_229_200,
        access_issued_ms: Some(1_767_225_600_123),
        access_lifetime: Some(3600),
        access_jkt: Some("0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I".into()),
        refresh_token: Some(RefreshToken::new(
            "Jq2Pv8zS4yOCwBrmGhHfSuTkL9xQwEeRnP3aVdY1mKc".into(),
        )),
        id_token: Some(IdToken::new(id_token)),
        claims,
        created_at: 1_767_225_600,
        last_seen: 1_767_227_000,
        resource_tokens: BTreeMap::new(),
        exchanged_tokens: BTreeMap::new(),
        device: Some(DeviceKey {
            id: "dbsc-1".into(),
            alg: "ES256".into(),
            jwk: json!({"kty": "EC", "crv": "P-256", "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}),
            bound_at: 1_767_225_700,
        }),
    };
    record.resource_tokens.insert(
        "urn:x:orders orders:read".into(),
        ResourceToken::obtained(AccessToken::new(access), None, 300, 1_767_225_600_000),
    );
    record.exchanged_tokens.insert(
        "access_token ledger  read".into(),
        ResourceToken::obtained(
            AccessToken::new("opaque exchanged".into()),
            Some("jkt".into()),
            60,
            1,
        ),
    );
    record
}

/// Everything a record holds, as one text: tokens, claims in their order.
fn everything(record: &Record) -> String {
    serde_json::to_string(record).unwrap()
}

fn reopened(record: &Record, format: RecordFormat) -> Record {
    let ticket = Ticket::generate(0);
    let key = store_key(&ticket);
    Record::open(&record.seal(format, &ticket, &key), &ticket, &key).unwrap()
}

#[test]
fn a_compact_record_opens_to_the_same_record() {
    let record = full_record();
    let opened = reopened(&record, RecordFormat::Compact);
    assert_eq!(everything(&opened), everything(&record));
    assert_eq!(opened.format, 2, "read in format 2");
    assert_eq!(reopened(&record, RecordFormat::Json).format, 1);
    // Read back in JSON, it is format 1 again: what earlier releases read.
    let json = serde_json::to_value(&opened).unwrap();
    assert_eq!(json["format"], 1);
}

#[test]
fn a_compact_record_is_about_half_the_json_one() {
    let record = full_record();
    let ticket = Ticket::generate(0);
    let key = store_key(&ticket);
    let json = record.seal(RecordFormat::Json, &ticket, &key).len();
    let compact = record.seal(RecordFormat::Compact, &ticket, &key).len();
    assert!(compact * 10 < json * 7, "compact {compact} B, JSON {json} B");
}

#[test]
fn every_token_reads_back_exactly_and_only_canonical_jwts_are_split() {
    let canonical = jwt(&json!({"alg": "none"}), &json!({"a": 1}), b"sig");
    let (head, rest) = canonical.split_once('.').unwrap();
    let unsplit = [
        // Not three base64url segments.
        "",
        ".",
        "a.b.c",
        "opaque-refresh-token",
        "eyJhbGciOiJub25lIn0.eyJhIjoxfQ",
        "a.b.c.d",
        "eyJhbGciOiJSU0EtT0FFUCJ9.a2V5.aXY.Y2lwaGVy.dGFn",
        // Padding, the standard alphabet, spaces, another script.
        "eyJhbGciOiJub25lIn0=.eyJhIjoxfQ.c2ln",
        "eyJhbGciOiJub25lIn0.eyJhIjoxfQ.c2/n+w",
        "eyJhbGciOiJub25lIn0 .eyJhIjoxfQ.c2ln",
        "eyJhbGciOiJub25lIn0.eyJhIjoxfQ.c2ln\n",
        "\u{e9}t\u{e9}.\u{e9}t\u{e9}.\u{e9}t\u{e9}",
        // Trailing bits set: to a lax decoder `c2l` is `c2k` and `fR` is `fQ`.
        "eyJhbGciOiJub25lIn0.eyJhIjoxfQ.c2l",
        "eyJhbGciOiJub25lIn0.eyJhIjoxfR.c2ln",
    ];
    let split = [
        canonical.clone(),
        format!("{head}..c2ln"),
        format!(".{rest}"),
        "eyJhbGciOiJub25lIn0.eyJhIjoxfQ.".to_owned(),
        "AAAA.AA.AAA".to_owned(),
        // Three empty segments read back exactly too.
        "..".to_owned(),
        "eyJhbGciOiJub25lIn0.eyJhIjoxfQ.c2k".to_owned(),
    ];
    for (token, is_split) in unsplit
        .iter()
        .map(|t| (t.to_string(), false))
        .chain(split.iter().map(|t| (t.clone(), true)))
    {
        let wire = Split::new(&token);
        assert_eq!(matches!(wire.token(), jwt::Token::Jwt(..)), is_split, "{token:?}");
        assert_eq!(jwt::text(&wire.token()), token, "{token:?}");

        let mut record = record();
        record.access_token = AccessToken::new(token.clone());
        record.refresh_token = Some(RefreshToken::new(token.clone()));
        record.id_token = Some(IdToken::new(token.clone()));
        record.claims.insert("sub".into(), json!("alice"));
        record.resource_tokens.insert(
            "r".into(),
            ResourceToken::obtained(AccessToken::new(token.clone()), None, 1, 1),
        );
        let opened = reopened(&record, RecordFormat::Compact);
        assert_eq!(everything(&opened), everything(&record), "{token:?}");
    }
}

#[test]
fn claims_from_userinfo_and_after_a_refresh_read_back_as_they_were() {
    let header = json!({"alg": "RS256", "kid": "r1"});
    // A login: the ID token's claims, then UserInfo's, which the ID token lacks.
    let record = full_record();
    let opened = reopened(&record, RecordFormat::Compact);
    assert_eq!(everything(&opened), everything(&record));

    // A refresh that brings a new ID token: the session keeps the claims
    // of its login, whatever the new token says (iat, name changed).
    let mut refreshed = full_record();
    let mut newer = id_token_claims();
    newer["iat"] = json!(1_767_229_000);
    newer["name"] = json!("Jane Q. Doe");
    refreshed.id_token = Some(IdToken::new(jwt(&header, &newer, &[1; 256])));
    let opened = reopened(&refreshed, RecordFormat::Compact);
    assert_eq!(everything(&opened), everything(&refreshed));
    assert_eq!(opened.claims["name"], "Jane Doe");

    // A new ID token whose claims come in another order.
    let mut reordered = full_record();
    let mut text = String::from("{");
    for (i, (name, value)) in id_token_claims().as_object().unwrap().iter().rev().enumerate() {
        if i > 0 {
            text.push(',');
        }
        text += &format!("{}:{value}", Value::from(name.as_str()));
    }
    text.push('}');
    let payload = URL_SAFE_NO_PAD.encode(text.as_bytes());
    reordered.id_token = Some(IdToken::new(format!("eyJhbGciOiJub25lIn0.{payload}.c2ln")));
    let opened = reopened(&reordered, RecordFormat::Compact);
    assert_eq!(everything(&opened), everything(&reordered));

    // A refresh that brings none: the login's ID token stays, and so do the claims.
    // A session without an ID token, or with one that is no JWT, keeps its
    // claims whole.
    for id_token in [
        None,
        Some("not-a-jwt"),
        Some("eyJhbGciOiJub25lIn0.bm90IGpzb24.c2ln"),
    ] {
        let mut record = full_record();
        record.id_token = id_token.map(|t| IdToken::new(t.into()));
        let opened = reopened(&record, RecordFormat::Compact);
        assert_eq!(everything(&opened), everything(&record), "{id_token:?}");
    }
}

#[test]
fn rd13_a_record_of_an_unknown_format_or_cut_short_is_malformed() {
    let ticket = Ticket::generate(0);
    let key = store_key(&ticket);
    let compact = full_record().compact();
    for plain in [
        vec![3u8, 0, 0],
        vec![],
        br#"[1]"#.to_vec(),
        br#"{"format":2,"access_token":"AT","access_expires_at":10,"refresh_token":null,"id_token":null,"claims":{},"created_at":1,"last_seen":1}"#.to_vec(),
        compact[..compact.len() - 1].to_vec(),
        [&compact[..], &[0]].concat(),
    ] {
        let sealed = seal_as_before(&plain, &ticket, &key);
        assert!(
            matches!(Record::open(&sealed, &ticket, &key), Err(SealError::Malformed)),
            "{:?}",
            plain.first()
        );
    }
}

/// The record as the last release that wrote only JSON declared it, with
/// every field it had.
#[derive(Serialize)]
struct LastJsonRecord {
    format: u32,
    access_token: Secret<String>,
    access_expires_at: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    access_issued_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    access_lifetime: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    access_jkt: Option<String>,
    refresh_token: Option<Secret<String>>,
    id_token: Option<Secret<String>>,
    claims: Map<String, Value>,
    created_at: u64,
    last_seen: u64,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    resource_tokens: BTreeMap<String, Value>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    exchanged_tokens: BTreeMap<String, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    device: Option<Value>,
}

#[test]
fn n2_format_1_records_of_the_last_json_release_open_and_are_written_back_alike() {
    let full = full_record();
    let kept = |t: &ResourceToken| {
        let mut v = json!({"access_token": t.access_token.expose(), "expires_at": t.expires_at,
            "issued_ms": t.issued_ms, "lifetime": t.lifetime});
        if let Some(jkt) = &t.jkt {
            v["jkt"] = json!(jkt);
        }
        v
    };
    let device = full.device.as_ref().unwrap();
    let previous = LastJsonRecord {
        format: 1,
        access_token: Secret::new(full.access_token.expose().into()),
        access_expires_at: full.access_expires_at,
        access_issued_ms: full.access_issued_ms,
        access_lifetime: full.access_lifetime,
        access_jkt: full.access_jkt.clone(),
        refresh_token: full
            .refresh_token
            .as_ref()
            .map(|t| Secret::new(t.expose().into())),
        id_token: full.id_token.as_ref().map(|t| Secret::new(t.expose().into())),
        claims: full.claims.clone(),
        created_at: full.created_at,
        last_seen: full.last_seen,
        resource_tokens: full
            .resource_tokens
            .iter()
            .map(|(k, t)| (k.clone(), kept(t)))
            .collect(),
        exchanged_tokens: full
            .exchanged_tokens
            .iter()
            .map(|(k, t)| (k.clone(), kept(t)))
            .collect(),
        device: Some(
            json!({"id": device.id, "alg": device.alg, "jwk": device.jwk, "bound_at": device.bound_at}),
        ),
    };
    let json = serde_json::to_vec(&previous).unwrap();
    let ticket = Ticket::generate(0);
    let key = store_key(&ticket);
    let opened = Record::open(&seal_as_before(&json, &ticket, &key), &ticket, &key).unwrap();
    assert_eq!(everything(&opened), everything(&full));
    assert_eq!(opened.format, 1);

    // What a `json` replica writes is that text, byte for byte, also for a
    // record it read in format 2: the last release reads it.
    for read_in in BOTH {
        let read = reopened(&full, read_in);
        let written = read.seal(RecordFormat::Json, &ticket, &key);
        let nonce: [u8; 12] = written[..12].try_into().unwrap();
        let plain = Aes256Gcm::new(ticket.data_key.expose().into())
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: &written[12..],
                    aad: key.as_bytes(),
                },
            )
            .unwrap();
        assert_eq!(
            String::from_utf8(plain).unwrap(),
            String::from_utf8(json.clone()).unwrap(),
            "read in {read_in:?}"
        );
    }
}
