//! Black-box: the real binary anchors its log's hash chain (issue 27) while
//! it runs and at shutdown, and `openptl verify --anchors` accepts the log
//! it leaves.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{fresh_dir, Server};

fn anchor_lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("an anchor is a JSON line"))
        .collect()
}

fn verify(data: &Path, anchors: &Path) -> std::process::Output {
    Command::new(common::binary())
        .args(["verify", "--data-dir"])
        .arg(data)
        .arg("--anchors")
        .arg(anchors)
        .output()
        .unwrap()
}

#[test]
fn the_service_anchors_its_head_and_verify_checks_the_anchors() {
    let root = fresh_dir("anchors");
    let data = root.join("data");
    // Elsewhere than the data directory, as an operator would.
    let anchors = root.join("worm").join("anchors.jsonl");
    std::fs::create_dir_all(anchors.parent().unwrap()).unwrap();
    let mut server = Server::start(
        &data,
        &[
            "--anchors",
            anchors.to_str().unwrap(),
            "--anchor-every",
            "0.2",
        ],
    );
    let referral = |id: &str| {
        format!(
            r#"{{"pathway_id":"{id}","type":"referral_received","occurred_on":"2025-03-03","data":{{"nhs_number":"9434765919","trust":"RXH","tumour_site":"lung","route":"urgent_suspected_cancer"}}}}"#
        )
    };
    // An empty log is not anchored.
    std::thread::sleep(Duration::from_millis(500));
    assert!(anchor_lines(&anchors).is_empty());
    for i in 0..3 {
        let (status, body) = common::request(
            &server.addr,
            "POST",
            "/v1/events",
            Some(&referral(&format!("ANC-{i}"))),
        )
        .unwrap();
        assert_eq!(status, 201, "{body}");
        // Wait for the anchor of this head.
        let deadline = Instant::now() + Duration::from_secs(20);
        while anchor_lines(&anchors)
            .last()
            .is_none_or(|a| a["position"] != i + 1)
        {
            assert!(
                Instant::now() < deadline,
                "position {} never anchored",
                i + 1
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let lines = anchor_lines(&anchors);
    assert_eq!(
        lines
            .iter()
            .map(|a| a["position"].clone())
            .collect::<Vec<_>>(),
        [1, 2, 3],
        "one anchor each time the head moved: {lines:?}"
    );
    for a in &lines {
        assert_eq!(a["v"], 1);
        assert_eq!(a["hash"].as_str().unwrap().len(), 64);
        assert!(a["at"].is_string());
    }
    // The gauge is set just after the line is written: wait for it too.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, metrics) = server.get("/metrics");
        if metrics.contains("openptl_log_anchored_position 3") {
            break;
        }
        assert!(Instant::now() < deadline, "{metrics}");
        std::thread::sleep(Duration::from_millis(50));
    }
    server.stop_gracefully();
    // Nothing moved since: shutdown adds no anchor of the same head.
    assert_eq!(anchor_lines(&anchors).len(), 3);
    let checked = verify(&data, &anchors);
    let out = String::from_utf8_lossy(&checked.stdout);
    assert!(
        checked.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&checked.stderr)
    );
    assert!(out.contains("3 anchors") && out.contains("OK"), "{out}");

    // An anchor the log does not hold (a forged or foreign one) fails
    // verify, naming it.
    let mut forged = anchor_lines(&anchors)[1].clone();
    forged["hash"] = serde_json::json!("00".repeat(32));
    let other = root.join("forged.jsonl");
    std::fs::write(&other, format!("{}\n{forged}\n", anchor_lines(&anchors)[0])).unwrap();
    let refused = verify(&data, &other);
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        err.contains("anchor 2 (position 2") && err.contains("no longer matches"),
        "{err}"
    );
}
