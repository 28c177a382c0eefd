//! The upgrade fixture (issue 27): a data directory written by an earlier
//! binary (`tests/fixtures/upgrade/v1`, made by `make-v1.sh`: segments,
//! sled index, projection snapshot, a tokens file from before tokens files
//! had versions, an anchor) must open with this binary and answer the views
//! it answered then. Every future change of an on-disk layout must keep
//! this test passing; a new layout adds `v2` beside `v1`, never edits it.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{fresh_dir, Server};

/// Each recorded view: the file under `expected/` and the request (the
/// same table as `make-v1.sh`).
const VIEWS: &[(&str, &str)] = &[
    ("ptl-2025-03-01", "/v1/ptl?as_of=2025-03-01"),
    ("ptl-2025-01-15", "/v1/ptl?as_of=2025-01-15"),
    (
        "pathway-DEMO-000001",
        "/v1/pathways/DEMO-000001?as_of=2025-06-30",
    ),
    (
        "pathway-DEMO-000004",
        "/v1/pathways/DEMO-000004?as_of=2025-03-01",
    ),
    (
        "pathway-DEMO-000009",
        "/v1/pathways/DEMO-000009?as_of=2025-03-01",
    ),
    ("events-DEMO-000003", "/v1/pathways/DEMO-000003/events"),
    ("standards-d62-2025-03", "/v1/standards/d62?period=2025-03"),
];

fn fixture(version: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/upgrade")
        .join(version)
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// The value with every number as an f64: the recorded views went through
/// `jq`, which writes `100.0` as `100`; JSON does not tell them apart.
fn numbers_as_f64(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::Number(n) => n
            .as_f64()
            .and_then(serde_json::Number::from_f64)
            .map_or(Value::Number(n), Value::Number),
        Value::Array(items) => Value::Array(items.into_iter().map(numbers_as_f64).collect()),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (k, numbers_as_f64(v)))
                .collect(),
        ),
        other => other,
    }
}

/// Whether `now` answers everything `then` did, the same: a later binary
/// may add fields (the views grow), never drop or change one.
fn answers_as_before(now: &serde_json::Value, then: &serde_json::Value) -> bool {
    use serde_json::Value;
    match (now, then) {
        (Value::Object(now), Value::Object(then)) => then
            .iter()
            .all(|(k, v)| now.get(k).is_some_and(|n| answers_as_before(n, v))),
        (Value::Array(now), Value::Array(then)) => {
            now.len() == then.len() && now.iter().zip(then).all(|(n, t)| answers_as_before(n, t))
        }
        (now, then) => now == then,
    }
}

#[test]
fn a_data_directory_of_the_v1_layouts_opens_and_answers_as_it_did() {
    let v1 = fixture("v1");
    let data = fresh_dir("upgrade-v1");
    copy_tree(&v1.join("data"), &data);
    let tokens_before = std::fs::read(data.join("tokens.json")).unwrap();
    let segment = "segments/00000001.seg";
    let mut server = Server::start(&data, &[]);
    for (name, path) in VIEWS {
        let (status, body) = server.get(path);
        assert_eq!(status, 200, "{path}: {body}");
        let got = numbers_as_f64(serde_json::from_str(&body).unwrap());
        let expected = numbers_as_f64(
            serde_json::from_slice(
                &std::fs::read(v1.join("expected").join(format!("{name}.json"))).unwrap(),
            )
            .unwrap(),
        );
        assert!(
            answers_as_before(&got, &expected),
            "{path} does not answer what the binary that wrote the v1 fixture did (fields may be added, never dropped or changed)\n\
             now:\n{}\nthen:\n{}",
            serde_json::to_string_pretty(&got).unwrap(),
            serde_json::to_string_pretty(&expected).unwrap()
        );
    }
    server.stop_gracefully();

    // The stored records were not rewritten, the tokens file (written
    // before versions) was read as version 1 and left as it was (the
    // bootstrap token was already in it).
    assert_eq!(
        std::fs::read(data.join(segment)).unwrap(),
        std::fs::read(v1.join("data").join(segment)).unwrap()
    );
    assert_eq!(
        std::fs::read(data.join("tokens.json")).unwrap(),
        tokens_before
    );
    // The anchor written then still holds, and so does the log as a whole.
    let verified = Command::new(common::binary())
        .args(["verify", "--data-dir"])
        .arg(&data)
        .arg("--anchors")
        .arg(data.join("anchors.jsonl"))
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&verified.stdout);
    assert!(
        verified.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&verified.stderr)
    );
    assert!(out.contains("111 records") && out.contains("OK"), "{out}");

    // This binary appends after the earlier records (a batch of two begins
    // with a batch mark, decision 189): the earlier bytes stay as they
    // were, and the log reads and verifies whole.
    let mut server = Server::start(&data, &[]);
    let note = r#"{"events": [
        {"pathway_id": "DEMO-000001", "type": "tracking_note_added", "occurred_on": "2025-06-30", "data": {"text": "After the upgrade"}},
        {"pathway_id": "DEMO-000001", "type": "tracking_note_added", "occurred_on": "2025-06-30", "data": {"text": "And again"}}
    ]}"#;
    let (status, body) = common::request(&server.addr, "POST", "/v1/events", Some(note)).unwrap();
    assert_eq!(status, 201, "{body}");
    server.stop_gracefully();
    let mut server = Server::start(&data, &[]);
    let (status, body) = server.get("/v1/pathways/DEMO-000001/events");
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("After the upgrade") && body.contains("And again"),
        "{body}"
    );
    server.stop_gracefully();
    let now = std::fs::read(data.join(segment)).unwrap();
    let then = std::fs::read(v1.join("data").join(segment)).unwrap();
    assert!(now.len() > then.len() && now.starts_with(&then));
    assert!(
        now[then.len()..].starts_with(b"OPTL\x02"),
        "the batch begins with its mark"
    );
    let verified = Command::new(common::binary())
        .args(["verify", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&verified.stdout);
    assert!(
        verified.status.success() && out.contains("113 records"),
        "{out}"
    );
}
