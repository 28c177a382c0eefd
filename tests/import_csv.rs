//! Importing a tracker CSV through the real binary: dry run, import, the
//! pathway views it gives, idempotent re-import, and line-numbered refusals
//! that write nothing.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{fresh_dir, Server};
use serde_json::Value;

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
        .display()
        .to_string()
}

fn openptl(args: &[&str], data: &Path) -> Output {
    Command::new(common::binary())
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .env("OPENPTL_LOG", "warn")
        .output()
        .expect("run openptl")
}

fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn a_tracker_extract_becomes_pathways_once() {
    let data = fresh_dir("csv");
    let file = fixture("tracker.csv");

    let dry = openptl(&["import", &file, "--dry-run"], &data);
    let (out, err) = text(&dry);
    assert!(dry.status.success(), "{out}{err}");
    assert!(
        out.contains("4 rows valid (17 events), 0 invalid; nothing written"),
        "{out}"
    );

    let first = openptl(&["import", &file], &data);
    let (out, err) = text(&first);
    assert!(first.status.success(), "{out}{err}");
    assert!(
        out.contains("4 rows imported: 17 events appended, 0 already stored"),
        "{out}"
    );

    let again = openptl(&["import", &file], &data);
    let (out, _) = text(&again);
    assert!(
        out.contains("0 events appended, 17 already stored"),
        "re-import appends nothing: {out}"
    );

    let extract = openptl(&["export", "--format", "cwt", "--period", "2025-03"], &data);
    let (extract, err) = text(&extract);
    assert!(extract.lines().count() > 2, "{extract}{err}");

    let server = Server::start(&data, &[]);
    let (status, api_extract) = server.get("/v1/returns/cwt?period=2025-03");
    assert_eq!(status, 200);
    assert_eq!(
        extract, api_extract,
        "export --format cwt equals the API's extract"
    );
    // As JSON, sent in pieces with its length (read whole off the socket:
    // chunked framing or a short body would not parse): a row a record.
    let (status, json) = server.get("/v1/returns/cwt?period=2025-03&format=json");
    assert_eq!(status, 200);
    let json: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        json["rows"].as_array().unwrap().len(),
        api_extract.lines().count() - 1,
        "{json}"
    );
    let view = |id: &str| -> Value {
        let (status, body) = server.get(&format!("/v1/pathways/{id}?as_of=2025-04-30"));
        assert_eq!(status, 200, "{id}: {body}");
        serde_json::from_str(&body).unwrap()
    };
    let ruled_out = view("SCR-1001");
    assert_eq!(ruled_out["clocks"]["fds"]["status"], "met");
    assert_eq!(ruled_out["clocks"]["fds"]["days"], 25);
    assert_eq!(ruled_out["clocks"]["d62"]["status"], "closed");
    // A first-seen DNA on day 4 resets both clocks by 4 days.
    let treated = view("SCR-1002");
    assert_eq!(treated["status"], "treated");
    assert_eq!(treated["clocks"]["fds"]["adjustment_days"], 4);
    assert_eq!(treated["clocks"]["fds"]["days"], 21);
    assert_eq!(treated["clocks"]["d62"]["days"], 55);
    assert_eq!(treated["clocks"]["d31"]["days"], 17);
    // Transferred on day 34, treated on day 62: shared 0.5 / 0.5, met.
    let transferred = view("SCR-1003");
    assert_eq!(transferred["trust"], "RHM");
    assert_eq!(transferred["clocks"]["d62"]["days"], 62);
    assert_eq!(transferred["clocks"]["d62"]["allocation"][0]["share"], 0.5);
    assert_eq!(view("SCR-1004")["status"], "closed");
    let (_, history) = server.get("/v1/pathways/SCR-1002/events");
    assert!(history.contains("\"actor\":\"csv-import\""), "{history}");
}

#[test]
fn bad_rows_are_named_by_line_and_nothing_is_written() {
    let data = fresh_dir("csv-bad");
    let file = fixture("tracker_bad.csv");
    let refused = openptl(&["import", &file], &data);
    let (out, err) = text(&refused);
    assert!(!refused.status.success(), "{out}{err}");
    assert!(
        err.contains("line 3: ") && err.contains("invalid_nhs_number"),
        "{err}"
    );
    assert!(
        err.contains("line 4: ") && err.contains("treatment_without_decision"),
        "{err}"
    );
    assert!(
        err.contains("line 5: `referral_received` must be a date"),
        "{err}"
    );
    assert!(err.contains("nothing was written"), "{err}");
    assert!(
        !err.contains("9434765918"),
        "errors never echo an NHS number"
    );
    let export = openptl(&["export"], &data);
    assert!(String::from_utf8_lossy(&export.stdout).trim().is_empty());

    let partial = openptl(&["import", &file, "--skip-invalid"], &data);
    let (out, err) = text(&partial);
    assert!(partial.status.success(), "{out}{err}");
    assert!(
        out.contains("1 rows imported: 1 events appended, 0 already stored; 3 rows skipped"),
        "{out}"
    );
}

/// The stored event ids of the whole log (an NDJSON export's `event_id`s).
fn stored_ids(data: &Path) -> Vec<String> {
    let export = openptl(&["export"], data);
    assert!(export.status.success(), "{:?}", text(&export));
    String::from_utf8_lossy(&export.stdout)
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["event_id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

/// The id the first imports gave a pathway's referral, computable by anyone.
fn unkeyed_referral_id(pathway_id: &str) -> String {
    uuid::Uuid::new_v5(
        &uuid::Uuid::NAMESPACE_URL,
        format!("openptl-csv:{pathway_id}:referral_received:0").as_bytes(),
    )
    .to_string()
}

#[test]
fn import_ids_cannot_be_computed_from_a_pathway_id() {
    let file = fixture("tracker.csv");
    let (a, b) = (fresh_dir("csv-key-a"), fresh_dir("csv-key-b"));
    for data in [&a, &b] {
        let out = openptl(&["import", &file], data);
        assert!(out.status.success(), "{:?}", text(&out));
        assert!(data.join("import.key").exists());
    }
    let (ids_a, ids_b) = (stored_ids(&a), stored_ids(&b));
    assert_eq!(ids_a.len(), 17);
    assert!(
        ids_a.iter().all(|id| !ids_b.contains(id)),
        "two data directories, the same ids"
    );
    assert!(!ids_a.contains(&unkeyed_referral_id("SCR-1001")));
    // Idempotent in its own data directory all the same.
    let again = openptl(&["import", &file], &a);
    assert!(
        text(&again).0.contains("17 already stored"),
        "{:?}",
        text(&again)
    );
}

#[test]
fn a_data_directory_with_unkeyed_imports_keeps_their_ids() {
    let data = fresh_dir("csv-legacy");
    // What an import of the first, unkeyed ids left: SCR-1001's referral.
    let ndjson = data.with_extension("ndjson");
    std::fs::write(
        &ndjson,
        format!(
            r#"{{"event_id":"{}","pathway_id":"SCR-1001","type":"referral_received","occurred_on":"2025-03-03","data":{{"nhs_number":"9434765919","trust":"RXH","tumour_site":"lower_gi","route":"urgent_suspected_cancer"}}}}"#,
            unkeyed_referral_id("SCR-1001")
        ) + "\n",
    )
    .unwrap();
    let out = openptl(&["import", ndjson.to_str().unwrap()], &data);
    assert!(out.status.success(), "{:?}", text(&out));
    let out = openptl(&["import", &fixture("tracker.csv")], &data);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains("16 events appended, 1 already stored"),
        "{stdout}"
    );
    assert_eq!(
        std::fs::read_to_string(data.join("import.key"))
            .unwrap()
            .trim(),
        "legacy"
    );
}

/// An NDJSON file cut short (or damaged anywhere) is refused whole before
/// anything is appended: it once imported the batches before the damage.
#[test]
fn an_ndjson_file_cut_short_imports_nothing() {
    let data = fresh_dir("ndjson-cut");
    let referral = |n: usize| {
        format!(
            r#"{{"event_id":"00000000-0000-4000-8000-{n:012}","pathway_id":"CUT-{n}","type":"referral_received","occurred_on":"2025-03-03","data":{{"nhs_number":"9434765919","trust":"RXH","tumour_site":"lung","route":"urgent_suspected_cancer"}}}}"#
        )
    };
    let whole: String = (1..=1200).map(|n| referral(n) + "\n").collect();
    let cut = format!("{whole}{}", &referral(1201)[..40]);
    let file = data.with_extension("ndjson");
    std::fs::write(&file, cut).unwrap();
    let out = openptl(&["import", file.to_str().unwrap()], &data);
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success(), "{stdout}");
    assert!(
        stderr.contains("line 1201: not JSON; nothing was imported"),
        "{stderr}"
    );
    std::fs::write(&file, whole).unwrap();
    let out = openptl(&["import", file.to_str().unwrap()], &data);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains("1200 events imported (0 were already stored)"),
        "{stdout}"
    );
}
