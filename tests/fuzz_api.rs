//! Schemathesis (PyPI) against the real binary: requests generated from the
//! OpenAPI document the service publishes (valid and invalid ones), with
//! zero 5xx responses and zero responses that break the documented schema,
//! status codes or content types. Bounded (15 examples per operation and
//! phase, deterministic) so it stays a test, not a soak.
//!
//! `.ci/run` installs schemathesis; without it this test says so loudly and
//! skips (fails under `CI=true`).

mod common;

use std::process::Command;

use common::{fresh_dir, Server, ADMIN_TOKEN};

fn schemathesis() -> Option<&'static str> {
    ["st", "schemathesis"].into_iter().find(|cmd| {
        Command::new(cmd)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

#[test]
fn schemathesis_finds_no_server_errors_or_schema_breaks() {
    let Some(st) = schemathesis() else {
        openptl_testkit::skip(
            "schemathesis is not installed (pip install schemathesis); the API fuzz run did not happen",
        );
        return;
    };
    let server = Server::start(&fresh_dir("fuzz"), &["--demo", "--demo-pathways", "200"]);
    let output = Command::new(st)
        .args(["run", &format!("http://{}/v1/openapi.json", server.addr)])
        .args(["-H", &format!("Authorization: Bearer {ADMIN_TOKEN}")])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
        ])
        .args(["--max-examples", "15", "--mode", "all", "--phases", "coverage,fuzzing"])
        .arg("--generation-deterministic")
        .env("NO_COLOR", "1")
        // Schemathesis keeps a cache in its working directory: not in the repository.
        .current_dir(std::env::temp_dir())
        .output()
        .expect("run schemathesis");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let summary = stdout
        .lines()
        .skip_while(|l| !l.contains("Test cases:"))
        .nth(1)
        .unwrap_or("no summary")
        .trim()
        .to_string();
    eprintln!("schemathesis: {summary}");
    assert!(
        output.status.success(),
        "schemathesis found problems ({summary}):\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(summary.contains("generated"), "{stdout}");
}

/// The published document is valid OpenAPI 3.0, checked by the reference
/// validator (PyPI `openapi-spec-validator`, which `.ci/run` installs):
/// client generators and gateways reject what it rejects.
#[test]
fn the_openapi_document_is_valid_openapi() {
    let has_validator = Command::new("python3")
        .args(["-c", "import openapi_spec_validator"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_validator {
        openptl_testkit::skip(
            "openapi-spec-validator is not installed (pip install openapi-spec-validator); the OpenAPI document was not validated",
        );
        return;
    }
    let server = Server::start(&fresh_dir("openapi-valid"), &[]);
    let (status, body) = common::request(&server.addr, "GET", "/v1/openapi.json", None).unwrap();
    assert_eq!(status, 200, "{body}");
    let dir = fresh_dir("openapi-valid-doc");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("openapi.json");
    std::fs::write(&file, &body).unwrap();
    let output = Command::new("python3")
        .args([
            "-c",
            "import json, sys\n\
             from openapi_spec_validator import validate\n\
             doc = json.load(open(sys.argv[1]))\n\
             assert doc['openapi'].startswith('3.'), doc['openapi']\n\
             validate(doc)\n\
             print('valid', doc['openapi'])",
        ])
        .arg(&file)
        .output()
        .expect("run python3");
    // The validator's message repeats the whole failing schema: its start
    // and its last line say enough.
    let stderr = String::from_utf8_lossy(&output.stderr);
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        output.status.success(),
        "the OpenAPI document is not valid: {} … {}",
        stderr.chars().take(2000).collect::<String>(),
        last.chars()
            .rev()
            .take(500)
            .collect::<String>()
            .chars()
            .rev()
            .collect::<String>()
    );
}
