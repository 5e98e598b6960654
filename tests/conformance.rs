//! `docs/conformance.md` maps the OpenID Foundation's relying-party test
//! modules to tests of this suite. This reads the table and checks it
//! against `tests/`, so it cannot drift: every test it names exists and is
//! a test, every case label it gives is in that test's file, and every
//! module the project committed to is mapped.

use std::collections::BTreeMap;
use std::path::Path;

/// One row of the table: module → (test file, test name, case label).
struct Row {
    module: String,
    file: String,
    test: String,
    case: Option<String>,
}

/// The modules issue 20 lists, each of which must be mapped to a test.
const REQUIRED: &[&str] = &[
    "oidcc-client-test-invalid-iss",
    "oidcc-client-test-invalid-aud",
    "oidcc-client-test-missing-aud",
    "oidcc-client-test-missing-iat",
    "oidcc-client-test-missing-sub",
    "oidcc-client-test-nonce-invalid",
    "oidcc-client-test-idtoken-sig-none",
    "oidcc-client-test-invalid-sig-rs256",
    "oidcc-client-test-invalid-sig-hs256",
    "oidcc-client-test-invalid-sig-es256",
    "oidcc-client-test-kid-absent-single-jwks",
    "oidcc-client-test-kid-absent-multiple-jwks",
    "oidcc-client-test-signing-key-rotation",
    "oidcc-client-test-signing-key-rotation-just-before-signing",
    "oidcc-client-test-userinfo-invalid-sub",
    "oidcc-client-test-discovery-issuer-mismatch",
    "oidcc-client-test-refresh-token-invalid-issuer",
    "oidcc-client-test-refresh-token-invalid-sub",
    "oidcc-client-test-rp-backchannel-rpinitlogout-alg-none",
    "oidcc-client-test-rp-backchannel-rpinitlogout-no-event",
    "oidcc-client-test-rp-backchannel-rpinitlogout-with-nonce",
    "oidcc-client-test-rp-backchannel-rpinitlogout-wrong-alg",
    "oidcc-client-test-rp-backchannel-rpinitlogout-wrong-aud",
    "oidcc-client-test-rp-backchannel-rpinitlogout-wrong-event",
    "oidcc-client-test-rp-backchannel-rpinitlogout-wrong-iss",
];

fn repo(path: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// The text between the first pair of backticks in `cell`, if any.
fn code(cell: &str) -> Option<&str> {
    let start = cell.find('`')? + 1;
    let len = cell[start..].find('`')?;
    Some(&cell[start..start + len])
}

/// The table's rows: lines `| `module` | `tests/f.rs::name` | case | how |`.
fn rows(doc: &str) -> Vec<Row> {
    doc.lines()
        .filter(|line| line.starts_with("| `"))
        .map(|line| {
            let cells: Vec<&str> = line.split(" | ").collect();
            assert!(cells.len() >= 4, "a row has module, test, case, how: {line}");
            let module = code(cells[0]).unwrap_or_else(|| panic!("no module: {line}"));
            let target = code(cells[1]).unwrap_or_else(|| panic!("no test: {line}"));
            let (file, test) = target
                .split_once("::")
                .unwrap_or_else(|| panic!("not file::test: {line}"));
            Row {
                module: module.to_owned(),
                file: file.to_owned(),
                test: test.to_owned(),
                case: code(cells[2]).map(str::to_owned),
            }
        })
        .collect()
}

/// Whether `source` defines `name` as a test: `fn name(` with a test
/// attribute on one of the lines just above.
fn defines_test(source: &str, name: &str) -> bool {
    let lines: Vec<&str> = source.lines().collect();
    lines.iter().enumerate().any(|(i, line)| {
        let line = line.trim_start();
        (line.starts_with(&format!("fn {name}(")) || line.starts_with(&format!("async fn {name}(")))
            && lines[i.saturating_sub(3)..i]
                .iter()
                .any(|l| l.trim_start().starts_with("#[tokio::test") || l.trim_start() == "#[test]")
    })
}

#[test]
fn every_test_in_docs_conformance_exists_and_every_required_module_is_mapped() {
    let doc = std::fs::read_to_string(repo("docs/conformance.md")).unwrap();
    let rows = rows(&doc);
    assert!(rows.len() >= REQUIRED.len(), "{} rows", rows.len());
    let mut sources: BTreeMap<String, String> = BTreeMap::new();
    for row in &rows {
        assert!(
            row.file.starts_with("tests/") && row.file.ends_with(".rs") && !row.file.contains(".."),
            "{}: {} is not a file of tests/",
            row.module,
            row.file
        );
        let source = sources
            .entry(row.file.clone())
            .or_insert_with(|| {
                std::fs::read_to_string(repo(&row.file))
                    .unwrap_or_else(|e| panic!("{}: {} ({e})", row.module, row.file))
            })
            .clone();
        assert!(
            defines_test(&source, &row.test),
            "{}: no test {} in {}",
            row.module,
            row.test,
            row.file
        );
        if let Some(case) = &row.case {
            assert!(
                source.contains(&format!("\"{case}")),
                "{}: case label {case:?} not in {}",
                row.module,
                row.file
            );
        }
    }
    for module in REQUIRED {
        assert!(
            rows.iter().any(|r| r.module == *module),
            "{module} is not mapped in docs/conformance.md"
        );
    }
}

#[test]
fn the_table_check_notices_a_test_that_does_not_exist() {
    let doc = "| `oidcc-client-test-x` | `tests/login.rs::no_such_test` | — | how |\n";
    let row = &rows(doc)[0];
    let source = std::fs::read_to_string(repo(&row.file)).unwrap();
    assert!(!defines_test(&source, &row.test));
    assert!(defines_test(
        &source,
        "login_through_the_real_idp_puts_a_verified_bearer_jwt_on_upstream_calls"
    ));
    // A helper is not a test.
    assert!(!defines_test(&source, "urlencode"));
}
