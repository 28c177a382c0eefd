//! Crash tests of the durable log through the real binary: concurrent
//! clients append while the server is killed with SIGKILL at arbitrary
//! moments; after each restart every acknowledged event must be readable,
//! and `openptl verify` must pass.

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{fresh_dir, request, Server};
use openptl_rules::rng::SplitMix64;

const CLIENTS: usize = 8;
const ROUNDS: u64 = 4;

/// Deterministic "random" kill delays (SplitMix64 of the round).
fn kill_after(round: u64) -> Duration {
    Duration::from_millis(60 + SplitMix64::new(round).next_u64() % 250)
}

fn note(pathway: &str, id: &str) -> String {
    format!(
        r#"{{"event_id":"{id}","pathway_id":"{pathway}","type":"tracking_note_added","occurred_on":"2025-03-04","data":{{"text":"crash test note"}}}}"#
    )
}

#[test]
fn acknowledged_events_survive_sigkill() {
    let data = fresh_dir("crash");
    // pathway -> event ids the server acknowledged (2xx)
    let acknowledged: Arc<Mutex<BTreeMap<String, Vec<String>>>> = Arc::default();
    let mut serial = 0u64;
    for round in 0..ROUNDS {
        let mut server = Server::start(&data, &[]);
        let addr = server.addr.clone();
        let mut clients = Vec::new();
        for c in 0..CLIENTS {
            let addr = addr.clone();
            let acknowledged = acknowledged.clone();
            let pathway = format!("CRASH-{c}");
            let first = serial;
            serial += 100_000;
            clients.push(std::thread::spawn(move || {
                let referral = format!(
                    r#"{{"event_id":"00000000-0000-4000-8000-{c:012}","pathway_id":"{pathway}","type":"referral_received","occurred_on":"2025-03-03","data":{{"nhs_number":"9434765919","trust":"RXH","tumour_site":"lung","route":"urgent_suspected_cancer"}}}}"#
                );
                // Idempotent: a replay after a restart answers 200.
                match request(&addr, "POST", "/v1/events", Some(&referral)) {
                    Ok((200 | 201, _)) => {}
                    _ => return,
                }
                for i in first.. {
                    let id = format!("00000000-0000-4000-9000-{:012}", i);
                    match request(&addr, "POST", "/v1/events", Some(&note(&pathway, &id))) {
                        Ok((201, _)) => acknowledged.lock().unwrap().entry(pathway.clone()).or_default().push(id),
                        Ok((status, body)) => panic!("unexpected {status}: {body}"),
                        Err(_) => return, // the server is gone
                    }
                }
            }));
        }
        // Kill at a random moment once this round has made progress (a busy
        // CI machine may take a while to answer the first request).
        let before: usize = acknowledged.lock().unwrap().values().map(Vec::len).sum();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while acknowledged
            .lock()
            .unwrap()
            .values()
            .map(Vec::len)
            .sum::<usize>()
            == before
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(kill_after(round));
        server.kill(); // SIGKILL: no chance to flush anything
        for client in clients {
            client.join().expect("client thread");
        }

        let server = Server::start(&data, &[]);
        let acknowledged = acknowledged.lock().unwrap();
        assert!(
            !acknowledged.is_empty(),
            "round {round}: no event was acknowledged before the kill"
        );
        for (pathway, ids) in acknowledged.iter() {
            let (status, body) = server.get(&format!("/v1/pathways/{pathway}/events"));
            assert_eq!(status, 200, "{pathway}: {body}");
            for id in ids {
                assert!(
                    body.contains(id.as_str()),
                    "round {round}: acknowledged event {id} of {pathway} was lost"
                );
            }
        }
        drop(server);
    }
    let output = Command::new(common::binary())
        .args(["verify", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "verify failed:\n{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("OK"), "{stdout}");
    let total: usize = acknowledged.lock().unwrap().values().map(Vec::len).sum();
    eprintln!("{total} acknowledged events survived {ROUNDS} SIGKILLs");
}

#[test]
fn a_flipped_byte_stops_the_start_with_a_clear_message() {
    let data = fresh_dir("flip");
    {
        let server = Server::start(&data, &[]);
        for i in 0..20 {
            let body = note("FLIP-1", &format!("00000000-0000-4000-a000-{i:012}"));
            let referral = r#"{"pathway_id":"FLIP-1","type":"referral_received","occurred_on":"2025-03-03","data":{"nhs_number":"9434765919","trust":"RXH","tumour_site":"lung","route":"urgent_suspected_cancer"}}"#;
            if i == 0 {
                assert_eq!(
                    request(&server.addr, "POST", "/v1/events", Some(referral))
                        .unwrap()
                        .0,
                    201
                );
            }
            assert_eq!(
                request(&server.addr, "POST", "/v1/events", Some(&body))
                    .unwrap()
                    .0,
                201
            );
        }
    }
    let segment = data.join("segments/00000001.seg");
    let mut bytes = std::fs::read(&segment).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x20;
    std::fs::write(&segment, bytes).unwrap();
    let output = Command::new(common::binary())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--grpc-listen",
            "off",
            "--data-dir",
        ])
        .arg(&data)
        .output()
        .unwrap();
    assert!(!output.status.success(), "the server must refuse to start");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("00000001.seg") && stderr.contains("offset"),
        "{stderr}"
    );
    let output = Command::new(common::binary())
        .args(["verify", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        !output.status.success(),
        "verify must fail on a damaged log"
    );
}
