//! Online backup and restore through the real binary (issue 27): a backup
//! taken beside a running service under concurrent appends, a second one
//! that copies only what is new, one through the admin API, and a restore
//! into a fresh directory that verifies and serves the same views as the
//! original did at the backup's position.

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::{binary, fresh_dir, request, Server};
use openptl_log::EventLog;
use serde_json::Value;

const PATHWAYS: usize = 12;

fn referral(p: usize) -> String {
    format!(
        r#"{{"pathway_id":"BK-{p}","type":"referral_received","occurred_on":"2025-03-03","data":{{"nhs_number":"9434765919","trust":"RXH","tumour_site":"lung","route":"urgent_suspected_cancer"}}}}"#
    )
}

fn note(p: usize, i: u64) -> String {
    format!(
        r#"{{"pathway_id":"BK-{p}","type":"tracking_note_added","occurred_on":"2025-03-04","data":{{"text":"note {i}","next_action":"chase {i}"}}}}"#
    )
}

/// Every file and directory under `dir` (the directory itself is the
/// operator's) is its owner's alone: backups and restores hold NHS numbers
/// and the import key, whatever the umask of the shell or cron that ran
/// them.
fn assert_private(dir: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "{} is {mode:o}", path.display());
        if path.is_dir() {
            assert_private(&path);
        }
    }
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// Runs `openptl` with `args`, from a shell whose umask is the usual 022;
/// its stdout, or a panic with its stderr.
fn openptl(args: &[&str]) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg("umask 022; exec \"$0\" \"$@\"")
        .arg(binary())
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openptl {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The `position N` a backup or restore printed.
fn position_in(text: &str) -> u64 {
    let rest = text.split("position ").nth(1).expect("a position");
    rest.split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// The history of pathway `p` on `server`: (event id, position, recorded_at).
fn history(server: &Server, p: usize) -> Vec<(String, u64, String)> {
    let (status, body) = server.get(&format!("/v1/pathways/BK-{p}/events"));
    assert_eq!(status, 200, "{body}");
    json(&body)["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["event_id"].as_str().unwrap().to_string(),
                e["position"].as_u64().unwrap(),
                e["recorded_at"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn a_backup_of_a_running_service_restores_to_the_same_views() {
    let data = fresh_dir("backup-source");
    let by_api = fresh_dir("backup-api");
    let server = Server::start(&data, &["--backup-to", by_api.to_str().unwrap()]);
    for p in 0..PATHWAYS {
        let (status, body) =
            request(&server.addr, "POST", "/v1/events", Some(&referral(p))).unwrap();
        assert_eq!(status, 201, "{body}");
    }
    // Appends go on, from four clients, all through the backups.
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|c| {
            let (addr, stop) = (server.addr.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut acknowledged = 0u64;
                let mut i = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    i += 1;
                    let p = (c * 3 + i as usize) % PATHWAYS;
                    if let Ok((201, _)) = request(&addr, "POST", "/v1/events", Some(&note(p, i))) {
                        acknowledged += 1;
                    }
                }
                acknowledged
            })
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(300));

    let backup = fresh_dir("backup-copy");
    let (data_s, backup_s) = (data.to_str().unwrap(), backup.to_str().unwrap());
    let first = openptl(&["backup", "--data-dir", data_s, "--to", backup_s]);
    let first_position = position_in(&first);
    std::thread::sleep(std::time::Duration::from_millis(300));
    // Incremental: the second backup copies only the bytes appended since.
    let second = openptl(&["backup", "--data-dir", data_s, "--to", backup_s]);
    let position = position_in(&second);
    assert!(position > first_position, "{first}\n{second}");
    let segment = std::fs::metadata(backup.join("segments/00000001.seg"))
        .unwrap()
        .len();
    let copied: u64 = second
        .split(" bytes")
        .next()
        .and_then(|s| s.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("bytes copied");
    assert!(
        copied < segment,
        "the second backup copied everything again: {second}"
    );
    // And through the admin API, into the directory the service was given.
    let (status, body) = request(&server.addr, "POST", "/v1/backup", None).unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(json(&body)["position"].as_u64().unwrap() >= position);

    stop.store(true, Ordering::SeqCst);
    let acknowledged: u64 = clients.into_iter().map(|c| c.join().unwrap()).sum();
    assert!(acknowledged > 0, "no appends ran beside the backups");
    // The original moved on after the backup.
    assert!(server.get("/readyz").1.contains("ready"));

    // Each backup checks out whole, and restores into a fresh directory.
    for dir in [&backup, &by_api] {
        openptl(&["verify", "--data-dir", dir.to_str().unwrap()]);
    }
    let restored = fresh_dir("backup-restored");
    let said = openptl(&[
        "restore",
        "--from",
        backup_s,
        "--to",
        restored.to_str().unwrap(),
    ]);
    assert_eq!(position_in(&said), position, "{said}");
    assert_private(&backup);
    assert_private(&restored);
    let refused = Command::new(binary())
        .args([
            "restore",
            "--from",
            backup_s,
            "--to",
            restored.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        !refused.status.success(),
        "a restore over a log must be refused"
    );

    let copy = Server::start(&restored, &[]);
    let mut last_recorded = String::new();
    let mut originals = BTreeMap::new();
    for p in 0..PATHWAYS {
        let theirs = history(&copy, p);
        let ours = history(&server, p);
        // The copy holds exactly the original's records up to the backup's position.
        let expected: Vec<_> = ours.iter().filter(|e| e.1 <= position).cloned().collect();
        assert_eq!(theirs, expected, "pathway BK-{p}");
        if let Some(at) = theirs.iter().find(|e| e.1 == position) {
            last_recorded = at.2.clone();
        }
        originals.insert(p, ours);
    }
    assert!(
        !last_recorded.is_empty(),
        "the record at the backup's position"
    );
    // Every pathway view as known just before the backup's last record was
    // recorded (a group shares its recorded_at, and a backup may end inside
    // one): the same on both.
    let last: chrono::DateTime<chrono::Utc> = last_recorded.parse().unwrap();
    let known_at = (last - chrono::Duration::microseconds(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    for p in 0..PATHWAYS {
        let path = format!("/v1/pathways/BK-{p}?known_at={known_at}");
        let (a, b) = (server.get(&path), copy.get(&path));
        assert_eq!(a.0, 200, "{}", a.1);
        assert_eq!(
            json(&a.1),
            json(&b.1),
            "pathway BK-{p} as known at {known_at}"
        );
    }
    // The restored service takes appends after the backup's position.
    let (status, body) = request(&copy.addr, "POST", "/v1/events", Some(&note(0, 0))).unwrap();
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        json(&body)["appended"][0]["position"].as_u64(),
        Some(position + 1)
    );
}

#[test]
fn the_backup_api_is_off_unless_configured_and_for_admins_only() {
    let data = fresh_dir("backup-off");
    let server = Server::start(&data, &[]);
    let (status, body) = request(&server.addr, "POST", "/v1/backup", None).unwrap();
    assert_eq!(status, 409, "{body}");
    assert_eq!(json(&body)["error"]["code"], "not_configured");
    let (status, body) = request(
        &server.addr,
        "POST",
        "/v1/tokens",
        Some(r#"{"role":"manager","trusts":["RXH"]}"#),
    )
    .unwrap();
    assert_eq!(status, 201, "{body}");
    let manager = json(&body)["token"].as_str().unwrap().to_string();
    let (status, body) =
        common::request_as(&server.addr, Some(&manager), "POST", "/v1/backup", None).unwrap();
    assert_eq!(status, 403, "{body}");
}

/// A backup through the API that cannot finish (here: `--backup-to` holds
/// another log's backup) is `503 backup_failed` saying why, not the
/// append's "nothing was recorded".
#[tokio::test]
async fn a_backup_through_the_api_that_cannot_finish_says_why() {
    let other = fresh_dir("backup-api-other");
    {
        let log = openptl_log::SegmentLog::open(&other).unwrap();
        log.append(vec![openptl_log::suite::record("x", None, b"x")])
            .await
            .unwrap();
    }
    let to = fresh_dir("backup-api-target");
    openptl_log::segment::backup(&other, &to, &mut |_| {}).unwrap();
    let data = fresh_dir("backup-api-data");
    let server = Server::start(&data, &["--backup-to", to.to_str().unwrap()]);
    let (status, body) = request(&server.addr, "POST", "/v1/events", Some(&referral(1))).unwrap();
    assert_eq!(status, 201, "{body}");
    let (status, body) = request(&server.addr, "POST", "/v1/backup", None).unwrap();
    assert_eq!(status, 503, "{body}");
    let error = &json(&body)["error"];
    assert_eq!(error["code"], "backup_failed", "{body}");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("another event log"),
        "{body}"
    );
}

/// A backup into its own data directory (or a folder inside it) is refused,
/// and so is a restore into a directory that holds anything: nothing there
/// (a tokens file, say) may be overwritten.
#[test]
fn backups_and_restores_refuse_to_overwrite_or_nest() {
    let data = fresh_dir("nest-source");
    let mut server = Server::start(&data, &[]);
    let (status, body) = request(&server.addr, "POST", "/v1/events", Some(&referral(0))).unwrap();
    assert_eq!(status, 201, "{body}");
    server.stop_gracefully();
    let data_s = data.to_str().unwrap();
    let fails = |args: &[&str]| {
        let out = Command::new(binary()).args(args).output().unwrap();
        assert!(!out.status.success(), "openptl {args:?} was not refused");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    for to in [data.clone(), data.join("backups"), data.join("new/..")] {
        let said = fails(&["backup", "--data-dir", data_s, "--to", to.to_str().unwrap()]);
        assert!(said.contains("or inside it"), "{said}");
    }
    assert!(!data.join("backups").exists());
    assert!(!data.join("backup.json").exists());

    let backup = fresh_dir("nest-backup");
    openptl(&[
        "backup",
        "--data-dir",
        data_s,
        "--to",
        backup.to_str().unwrap(),
    ]);
    let target = fresh_dir("nest-target");
    std::fs::create_dir_all(&target).unwrap();
    std::fs::write(target.join("tokens.json"), "kept").unwrap();
    let said = fails(&[
        "restore",
        "--from",
        backup.to_str().unwrap(),
        "--to",
        target.to_str().unwrap(),
    ]);
    assert!(
        said.contains("is not empty (it holds tokens.json)"),
        "{said}"
    );
    assert_eq!(
        std::fs::read_to_string(target.join("tokens.json")).unwrap(),
        "kept"
    );
    // A freshly made file system's lost+found is no data.
    let mounted = fresh_dir("nest-mounted");
    std::fs::create_dir_all(mounted.join("lost+found")).unwrap();
    openptl(&[
        "restore",
        "--from",
        backup.to_str().unwrap(),
        "--to",
        mounted.to_str().unwrap(),
    ]);
}
