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
    let server = Server::start(&fresh_dir("conformance"), &[]);
    let output = Command::new("python3")
        .arg(shared.join("run_cases.py"))
        .arg(format!("http://{}", server.addr))
        .arg(&shared)
        .output()
        .expect("python3 runs the conformance runner");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "conformance runner failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let summary = stdout.lines().last().unwrap_or_default();
    assert!(
        summary.ends_with(" passed, 0 failed") && !summary.starts_with("0 passed"),
        "{summary}"
    );
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
