//! Black-box tests: the real `openptl` binary on port 0, driven from outside
//! as a client would, including the shared conformance runner.

mod common;

use std::path::Path;
use std::process::Command;

use common::{fresh_dir, Server};

#[test]
fn conformance_runner_passes_against_the_real_binary() {
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/conformance");
    if !shared.join("run_cases.py").exists() {
        eprintln!(
            "\n!!! SKIPPED: {} not found; the black-box conformance run did not happen !!!\n",
            shared.display()
        );
        return;
    }
    // `cases.json` and every case folder beside it (e.g. `treatment-periods/`).
    let mut folders: Vec<std::path::PathBuf> = std::fs::read_dir(&shared)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    folders.sort();
    folders.insert(0, shared.clone());
    let expected: usize = folders
        .iter()
        .flat_map(|f| {
            std::fs::read_dir(f)
                .unwrap()
                .filter_map(|e| e.ok().map(|e| e.path()))
        })
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            let cases: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
            cases.as_array().map_or(1, Vec::len)
        })
        .sum();
    let server = Server::start(&fresh_dir("conformance"), &[]);
    let output = Command::new("python3")
        .arg(shared.join("run_cases.py"))
        .arg(format!("http://{}", server.addr))
        .args(&folders)
        .env("OPENPTL_TOKEN", common::ADMIN_TOKEN)
        .output()
        .expect("python3 runs the conformance runner");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "conformance runner failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let summary = stdout.lines().last().unwrap_or_default();
    assert_eq!(
        summary,
        format!("{expected} passed, 0 failed"),
        "every case of every folder runs"
    );
    eprintln!("black-box conformance: {summary}");
}

#[test]
fn demo_mode_serves_the_synthetic_alliance() {
    let server = Server::start(&fresh_dir("demo"), &["--demo", "--demo-pathways", "150"]);
    let (status, body) = server.get("/v1/pathways/DEMO-000001");
    assert_eq!(status, 200, "{body}");
    let view: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(view["clocks"]["d62"]["status"].is_string(), "{view}");
    let (status, body) = server.get("/healthz");
    assert_eq!(status, 200, "{body}");
}

#[cfg(unix)]
#[test]
fn sigterm_stops_the_server_cleanly() {
    let mut server = Server::start(&fresh_dir("sigterm"), &[]);
    let pid = server.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = server.child.wait().unwrap();
    assert!(status.success(), "exit status after SIGTERM: {status}");
}

#[test]
fn generate_import_export_round_trip_is_idempotent_and_verified() {
    let run = |args: &[&str], data: &Path| {
        let output = Command::new(common::binary())
            .args(args)
            .arg("--data-dir")
            .arg(data)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    };
    let generate = || {
        Command::new(common::binary())
            .args([
                "generate",
                "--pathways",
                "120",
                "--seed",
                "3",
                "--as-of",
                "2026-06-30",
            ])
            .output()
            .unwrap()
    };
    let generated = generate();
    assert!(generated.status.success());
    let again = generate();
    assert_eq!(
        generated.stdout, again.stdout,
        "generate is deterministic for a seed"
    );
    let events = generated
        .stdout
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .count();
    let file = fresh_dir("gen").with_extension("ndjson");
    std::fs::write(&file, &generated.stdout).unwrap();
    let first = fresh_dir("import");
    let file_arg = file.to_str().unwrap();
    assert!(run(&["import", file_arg], &first)
        .starts_with(&format!("{events} events imported (0 were")));
    assert!(
        run(&["import", file_arg], &first).contains(&format!("({events} were already stored)")),
        "re-import appends nothing"
    );
    let exported = run(&["export"], &first);
    assert_eq!(exported.lines().count(), events);
    let export_file = fresh_dir("export").with_extension("ndjson");
    std::fs::write(&export_file, &exported).unwrap();
    let second = fresh_dir("import2");
    run(&["import", export_file.to_str().unwrap()], &second);
    let strip = |text: &str| -> Vec<serde_json::Value> {
        text.lines()
            .map(|l| {
                let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
                v.as_object_mut()
                    .unwrap()
                    .retain(|k, _| k != "recorded_at" && k != "actor");
                v
            })
            .collect()
    };
    assert_eq!(
        strip(&run(&["export"], &second)),
        strip(&exported),
        "an exported log imports to the same events"
    );
    assert!(run(&["verify"], &second).contains("OK"));
}

/// Personal-data hygiene: after a run that posts NHS numbers (valid and
/// invalid, in bodies and in paths), reads, fails and scrapes metrics, no
/// NHS number appears in the service's log (at debug level) or in /metrics.
#[test]
fn nhs_numbers_never_reach_logs_or_metrics() {
    let dir = fresh_dir("hygiene");
    std::fs::create_dir_all(&dir).unwrap();
    let log_path = dir.join("service.log");
    let log_file = std::fs::File::create(&log_path).unwrap();
    let server = Server::start_logging(
        &dir.join("data"),
        &["--log-json"],
        "debug",
        std::process::Stdio::from(log_file),
    );
    let numbers = ["9434765919", "943 476 5919", "4010232137", "9434765918"];
    let referral = |id: &str, nhs: &str| {
        format!(
            r#"{{"pathway_id":"{id}","type":"referral_received","occurred_on":"2025-03-03","data":{{"nhs_number":"{nhs}","trust":"RXH","tumour_site":"lung","route":"urgent_suspected_cancer"}}}}"#
        )
    };
    let post =
        |body: &str| common::request(&server.addr, "POST", "/v1/events", Some(body)).unwrap();
    assert_eq!(post(&referral("HYG-1", "943 476 5919")).0, 201);
    assert_eq!(post(&referral("HYG-2", "4010232137")).0, 201);
    assert_eq!(
        post(&referral("HYG-3", "9434765918")).0,
        422,
        "bad check digit"
    );
    assert_eq!(post(&referral("HYG-1", "9434765919")).0, 409, "exists");
    assert_eq!(post("{not json 9434765919").0, 400);
    for path in [
        "/v1/pathways/HYG-1",
        "/v1/pathways/9434765919",
        "/v1/pathways/HYG-1/events",
        "/v1/ptl?format=csv",
        "/v1/returns/cwt?period=2025-03",
        "/v1/nowhere/9434765919",
    ] {
        server.get(path);
    }
    let (_, unauthenticated) =
        common::request_as(&server.addr, Some("9434765919"), "GET", "/v1/ptl", None).unwrap();
    assert!(unauthenticated.contains("unauthenticated"));
    let (status, metrics) = server.get("/metrics");
    assert_eq!(status, 200);
    drop(server);
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        log.contains("answered"),
        "the request log was written:\n{log}"
    );
    for number in numbers {
        assert!(
            !log.contains(number),
            "an NHS number reached the service log:\n{log}"
        );
        assert!(!metrics.contains(number), "an NHS number reached /metrics");
    }
}
