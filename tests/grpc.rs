//! The gRPC API against the real binary: append, read a stream, a catch-up
//! subscription that goes live, a resumed subscription (no gaps, no
//! duplicates), errors with the HTTP API's codes, and trust scoping.

mod common;

use std::time::Duration;

use common::{fresh_dir, request, Server, ADMIN_TOKEN};
use openptl_grpc::proto::event_data::Kind;
use openptl_grpc::proto::open_ptl_client::OpenPtlClient;
use openptl_grpc::proto::{
    AppendRequest, Envelope, EventCorrected, EventData, ReadStreamRequest, ReferralReceived,
    StoredEvent, SubscribeRequest, TrackingNoteAdded, TriageCompleted,
};
use openptl_grpc::tonic::transport::Channel;
use openptl_grpc::tonic::{Code, Request, Status, Streaming};

fn authed<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

fn day(days_ago: i64) -> String {
    (chrono::Utc::now().date_naive() - chrono::Duration::days(days_ago))
        .format("%Y-%m-%d")
        .to_string()
}

fn envelope(pathway: &str, occurred_on: String, kind: Kind) -> Envelope {
    Envelope {
        event_id: None,
        pathway_id: pathway.into(),
        occurred_on,
        expected_version: None,
        data: Some(EventData { kind: Some(kind) }),
    }
}

fn referral(pathway: &str, trust: &str) -> Envelope {
    envelope(
        pathway,
        day(10),
        Kind::ReferralReceived(ReferralReceived {
            nhs_number: "943 476 5919".into(),
            trust: trust.into(),
            tumour_site: "lower_gi".into(),
            route: "urgent_suspected_cancer".into(),
            screening_programme: None,
            referrer: None,
            nhs_number_status: None,
        }),
    )
}

fn note(pathway: &str, text: &str) -> Envelope {
    envelope(
        pathway,
        day(1),
        Kind::TrackingNoteAdded(TrackingNoteAdded {
            text: text.into(),
            next_action: Some("Chase".into()),
            next_action_due: None,
            owner: None,
            escalated: None,
        }),
    )
}

async fn client(server: &Server) -> OpenPtlClient<Channel> {
    OpenPtlClient::connect(format!("http://{}", server.grpc_addr))
        .await
        .expect("connect to the gRPC port")
}

async fn next(stream: &mut Streaming<StoredEvent>) -> StoredEvent {
    tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("an event within 10 s")
        .expect("a healthy stream")
        .expect("the stream goes on")
}

fn error_code(status: &Status) -> &str {
    status
        .metadata()
        .get("openptl-error-code")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

#[tokio::test]
async fn append_read_and_subscribe_over_grpc() {
    let server = Server::start(&fresh_dir("grpc"), &[]);
    let mut grpc = client(&server).await;

    // No token: the same refusal as HTTP.
    let refused = grpc
        .read_stream(ReadStreamRequest {
            pathway_id: "G1".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
    assert_eq!(error_code(&refused), "unauthenticated");

    // A batch: a referral and its triage.
    let triage = envelope(
        "G1",
        day(9),
        Kind::TriageCompleted(TriageCompleted {
            outcome: "straight_to_test".into(),
        }),
    );
    let appended = grpc
        .append(authed(
            AppendRequest {
                events: vec![referral("G1", "RXH"), triage],
            },
            ADMIN_TOKEN,
        ))
        .await
        .unwrap()
        .into_inner();
    let positions: Vec<u64> = appended.appended.iter().map(|a| a.position).collect();
    assert_eq!(positions, [1, 2]);
    assert!(!appended.replayed);
    let triage_id = appended.appended[1].event_id.clone();

    // The HTTP API sees what gRPC appended.
    let (status, body) = request(&server.addr, "GET", "/v1/pathways/G1", None).unwrap();
    assert_eq!(status, 200, "{body}");

    // Bad input: the HTTP API's error code and body, nothing written.
    let mut bad = referral("G2", "RXH");
    if let Some(EventData {
        kind: Some(Kind::ReferralReceived(r)),
    }) = bad.data.as_mut()
    {
        r.nhs_number = "1234567890".into();
    }
    let refused = grpc
        .append(authed(AppendRequest { events: vec![bad] }, ADMIN_TOKEN))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert_eq!(error_code(&refused), "invalid_nhs_number");
    let body: serde_json::Value = serde_json::from_str(refused.message()).unwrap();
    assert_eq!(body["error"]["code"], "invalid_nhs_number");
    assert!(!refused.message().contains("1234567890"));

    // Subscribe from the start: the two events, in order.
    let mut stream = grpc
        .subscribe(authed(SubscribeRequest { after_position: 0 }, ADMIN_TOKEN))
        .await
        .unwrap()
        .into_inner();
    let first = next(&mut stream).await;
    assert_eq!((first.position, first.version), (1, 1));
    assert!(matches!(
        first.data.as_ref().and_then(|d| d.kind.as_ref()),
        Some(Kind::ReferralReceived(r)) if r.nhs_number == "9434765919" && r.trust == "RXH"
    ));
    assert_eq!(next(&mut stream).await.position, 2);

    // Then live: a note and a correction appended now arrive on the stream.
    let correction = envelope(
        "G1",
        day(1),
        Kind::EventCorrected(Box::new(EventCorrected {
            corrects: triage_id.clone(),
            reason: "outcome keyed wrongly".into(),
            new_occurred_on: None,
            new_data: Some(Box::new(EventData {
                kind: Some(Kind::TriageCompleted(TriageCompleted {
                    outcome: "outpatient".into(),
                })),
            })),
        })),
    );
    grpc.append(authed(
        AppendRequest {
            events: vec![note("G1", "Booked"), correction],
        },
        ADMIN_TOKEN,
    ))
    .await
    .unwrap();
    let live = next(&mut stream).await;
    assert_eq!((live.position, live.pathway_id.as_str()), (3, "G1"));
    let corrected = next(&mut stream).await;
    assert_eq!(corrected.position, 4);
    match corrected.data.and_then(|d| d.kind) {
        Some(Kind::EventCorrected(c)) => {
            assert_eq!(c.corrects, triage_id);
            assert!(matches!(
                c.new_data.and_then(|d| d.kind),
                Some(Kind::TriageCompleted(t)) if t.outcome == "outpatient"
            ));
        }
        other => panic!("expected the correction, got {other:?}"),
    }
    drop(stream);

    // Resumed after position 2: exactly 3, 4, then what comes next.
    let mut resumed = grpc
        .subscribe(authed(SubscribeRequest { after_position: 2 }, ADMIN_TOKEN))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(next(&mut resumed).await.position, 3);
    assert_eq!(next(&mut resumed).await.position, 4);
    grpc.append(authed(
        AppendRequest {
            events: vec![note("G1", "Chased")],
        },
        ADMIN_TOKEN,
    ))
    .await
    .unwrap();
    assert_eq!(next(&mut resumed).await.position, 5);

    // ReadStream: the whole pathway, typed, with its metadata.
    let events = grpc
        .read_stream(authed(
            ReadStreamRequest {
                pathway_id: "G1".into(),
            },
            ADMIN_TOKEN,
        ))
        .await
        .unwrap()
        .into_inner()
        .events;
    let versions: Vec<u64> = events.iter().map(|e| e.version).collect();
    assert_eq!(versions, [1, 2, 3, 4, 5]);
    assert_eq!(events[0].actor, "bootstrap-admin");
    assert!(events[0].recorded_at.ends_with('Z'));
    let missing = grpc
        .read_stream(authed(
            ReadStreamRequest {
                pathway_id: "nope".into(),
            },
            ADMIN_TOKEN,
        ))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    assert_eq!(error_code(&missing), "pathway_not_found");

    // Trust scoping: a coordinator of RHM follows only RHM's pathways and
    // cannot read RXH's; a read-only role may not follow the feed at all.
    let token_for = |role: &str, trust: &str| {
        let (status, body) = request(
            &server.addr,
            "POST",
            "/v1/tokens",
            Some(&format!(
                r#"{{"role": "{role}", "trusts": ["{trust}"], "label": "{role}-{trust}"}}"#
            )),
        )
        .unwrap();
        assert_eq!(status, 201, "{body}");
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        body["token"].as_str().unwrap().to_string()
    };
    let rhm = token_for("coordinator", "RHM");
    let mut scoped = grpc
        .subscribe(authed(SubscribeRequest { after_position: 0 }, &rhm))
        .await
        .unwrap()
        .into_inner();
    grpc.append(authed(
        AppendRequest {
            events: vec![referral("H1", "RHM")],
        },
        &rhm,
    ))
    .await
    .unwrap();
    let seen = next(&mut scoped).await;
    assert_eq!((seen.pathway_id.as_str(), seen.position), ("H1", 6));
    let hidden = grpc
        .read_stream(authed(
            ReadStreamRequest {
                pathway_id: "G1".into(),
            },
            &rhm,
        ))
        .await
        .unwrap_err();
    assert_eq!(hidden.code(), Code::NotFound);
    let analyst = token_for("analyst", "RXH");
    let forbidden = grpc
        .subscribe(authed(SubscribeRequest { after_position: 0 }, &analyst))
        .await
        .unwrap_err();
    assert_eq!(forbidden.code(), Code::PermissionDenied);
    assert_eq!(error_code(&forbidden), "forbidden");
}

/// A token created through the HTTP API by the test admin.
fn token_with(server: &Server, body: &str) -> String {
    let (status, answer) = request(&server.addr, "POST", "/v1/tokens", Some(body)).unwrap();
    assert_eq!(status, 201, "{answer}");
    let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
    answer["token"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn read_stream_masks_nhs_numbers_for_an_alliance_viewer() {
    let server = Server::start(&fresh_dir("grpc-mask"), &[]);
    let mut grpc = client(&server).await;
    grpc.append(authed(
        AppendRequest {
            events: vec![referral("M1", "RXH")],
        },
        ADMIN_TOKEN,
    ))
    .await
    .unwrap();
    let viewer = token_with(
        &server,
        r#"{"role": "alliance_viewer", "alliance": "demo", "label": "viewer"}"#,
    );
    let read = |token: String| {
        let mut grpc = grpc.clone();
        async move {
            let events = grpc
                .read_stream(authed(
                    ReadStreamRequest {
                        pathway_id: "M1".into(),
                    },
                    &token,
                ))
                .await
                .unwrap()
                .into_inner()
                .events;
            match events[0].data.as_ref().and_then(|d| d.kind.clone()) {
                Some(Kind::ReferralReceived(r)) => r.nhs_number,
                other => panic!("not a referral: {other:?}"),
            }
        }
    };
    assert_eq!(read(viewer).await, "*** *** 5919");
    assert_eq!(read(ADMIN_TOKEN.to_string()).await, "9434765919");
}

#[tokio::test]
async fn append_takes_at_most_a_thousand_events() {
    let server = Server::start(&fresh_dir("grpc-batch"), &[]);
    let mut grpc = client(&server).await;
    let events: Vec<Envelope> = (0..1001)
        .map(|i| referral(&format!("B{i}"), "RXH"))
        .collect();
    let refused = grpc
        .append(authed(AppendRequest { events }, ADMIN_TOKEN))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    assert_eq!(error_code(&refused), "invalid_field");
    assert!(refused.message().contains("at most 1000"), "{refused:?}");
    // A thousand is fine.
    let events: Vec<Envelope> = (0..1000)
        .map(|i| referral(&format!("B{i}"), "RXH"))
        .collect();
    let done = grpc
        .append(authed(AppendRequest { events }, ADMIN_TOKEN))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(done.appended.len(), 1000);
}

#[tokio::test]
async fn live_subscriptions_are_capped_and_end_with_their_token() {
    let server = Server::start(&fresh_dir("grpc-subs"), &["--grpc-max-subscriptions", "2"]);
    let mut grpc = client(&server).await;
    let (status, body) = request(
        &server.addr,
        "POST",
        "/v1/tokens",
        Some(r#"{"role": "coordinator", "trusts": ["RXH"], "label": "engine"}"#),
    )
    .unwrap();
    assert_eq!(status, 201, "{body}");
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    let (engine, engine_id) = (
        body["token"].as_str().unwrap().to_string(),
        body["record"]["id"].as_str().unwrap().to_string(),
    );
    let mut first = grpc
        .subscribe(authed(SubscribeRequest { after_position: 0 }, &engine))
        .await
        .unwrap()
        .into_inner();
    let second = grpc
        .subscribe(authed(SubscribeRequest { after_position: 0 }, ADMIN_TOKEN))
        .await
        .unwrap()
        .into_inner();
    let third = grpc
        .subscribe(authed(SubscribeRequest { after_position: 0 }, ADMIN_TOKEN))
        .await
        .unwrap_err();
    assert_eq!(third.code(), Code::ResourceExhausted, "{third:?}");
    assert_eq!(error_code(&third), "busy");
    // Hanging up frees the place (once the server notices).
    drop(second);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        match grpc
            .subscribe(authed(SubscribeRequest { after_position: 0 }, ADMIN_TOKEN))
            .await
        {
            Ok(_) => break,
            Err(e) => {
                assert_eq!(e.code(), Code::ResourceExhausted);
                assert!(std::time::Instant::now() < deadline, "never freed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    // Revoking the engine's token ends its live stream.
    let (status, body) = request(
        &server.addr,
        "DELETE",
        &format!("/v1/tokens/{engine_id}"),
        None,
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let ended = tokio::time::timeout(Duration::from_secs(30), first.message())
        .await
        .expect("the stream ends once its token is revoked");
    let error = ended.unwrap_err();
    assert_eq!(error.code(), Code::Unauthenticated, "{error:?}");
}

/// A client codec that sends a message's bytes as they are (to send what no
/// well-behaved client would) and ignores the answer's.
#[derive(Clone, Copy, Default)]
struct Raw;

impl openptl_grpc::tonic::codec::Codec for Raw {
    type Encode = Vec<u8>;
    type Decode = ();
    type Encoder = Raw;
    type Decoder = Raw;
    fn encoder(&mut self) -> Raw {
        Raw
    }
    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl openptl_grpc::tonic::codec::Encoder for Raw {
    type Item = Vec<u8>;
    type Error = Status;
    fn encode(
        &mut self,
        item: Vec<u8>,
        dst: &mut openptl_grpc::tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), Status> {
        bytes::BufMut::put_slice(dst, &item);
        Ok(())
    }
}

impl openptl_grpc::tonic::codec::Decoder for Raw {
    type Item = ();
    type Error = Status;
    fn decode(
        &mut self,
        src: &mut openptl_grpc::tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<()>, Status> {
        let n = bytes::Buf::remaining(src);
        bytes::Buf::advance(src, n);
        Ok(Some(()))
    }
}

/// An `Append` whose message is `bytes` as they are.
async fn raw_append(server: &Server, bytes: Vec<u8>, token: Option<&str>) -> Status {
    let channel = Channel::from_shared(format!("http://{}", server.grpc_addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = openptl_grpc::tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let request = match token {
        Some(token) => authed(bytes, token),
        None => Request::new(bytes),
    };
    grpc.unary(
        request,
        openptl_grpc::tonic::codegen::http::uri::PathAndQuery::from_static(
            "/openptl.v1.OpenPtl/Append",
        ),
        Raw,
    )
    .await
    .expect_err("refused")
}

/// The server's peak resident memory (kB), from /proc; None elsewhere.
fn peak_resident_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

#[tokio::test]
async fn a_message_is_decoded_only_for_a_valid_token_and_within_a_limit() {
    let server = Server::start(&fresh_dir("grpc-decode"), &[]);
    // 3.5 MiB of empty envelopes (2 bytes each on the wire; field 1, length
    // 0): about 1.8 million of them, some 440 MB once decoded. Under tonic's
    // default limit (4 MiB), over the service's.
    let empties = b"\x0a\x00".repeat(3 * 512 * 1024 + 256 * 1024);
    assert!(empties.len() > openptl_grpc::MAX_MESSAGE_BYTES);
    let before = peak_resident_kb(server.child.id());
    // Without a valid token: refused from the headers, nothing decoded.
    for token in [None, Some("optl_00000000_wrong")] {
        let refused = raw_append(&server, empties.clone(), token).await;
        assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
        assert_eq!(error_code(&refused), "unauthenticated");
    }
    // With one, a message within the limit but of more than 1,000 events
    // is refused before it is decoded (some 1.5 million empty envelopes
    // here, about 360 MB once decoded).
    let within = empties[..openptl_grpc::MAX_MESSAGE_BYTES].to_vec();
    let refused = raw_append(&server, within, Some(ADMIN_TOKEN)).await;
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    assert_eq!(error_code(&refused), "invalid_field");
    assert!(refused.message().contains("at most 1000"), "{refused:?}");
    if let (Some(before), Some(after)) = (before, peak_resident_kb(server.child.id())) {
        // A generous ceiling: 64 MB, against 360 MB and more a decode costs.
        assert!(
            after.saturating_sub(before) < 64 * 1024,
            "peak resident {before} kB -> {after} kB"
        );
    }
    // A message over the limit is refused before it is decoded.
    let refused = raw_append(&server, empties, Some(ADMIN_TOKEN)).await;
    assert_eq!(refused.code(), Code::OutOfRange, "{refused:?}");
    assert_eq!(server.get("/healthz").0, 200);
}

#[tokio::test]
async fn a_revoked_subscription_ends_even_if_its_subscriber_never_reads() {
    let server = Server::start(
        &fresh_dir("grpc-revoke"),
        &["--grpc-max-subscriptions", "1"],
    );
    let mut grpc = client(&server).await;
    let (status, body) = request(
        &server.addr,
        "POST",
        "/v1/tokens",
        Some(r#"{"role": "coordinator", "trusts": ["RXH"], "label": "engine"}"#),
    )
    .unwrap();
    assert_eq!(status, 201, "{body}");
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    let (engine, engine_id) = (
        body["token"].as_str().unwrap().to_string(),
        body["record"]["id"].as_str().unwrap().to_string(),
    );
    // A subscriber that never reads (with a small HTTP/2 window, 16 KiB),
    // and more events than its buffer and that window hold.
    let small = Channel::from_shared(format!("http://{}", server.grpc_addr))
        .unwrap()
        .initial_stream_window_size(16 * 1024)
        .initial_connection_window_size(16 * 1024)
        .connect()
        .await
        .unwrap();
    let stalled = OpenPtlClient::new(small)
        .subscribe(authed(SubscribeRequest { after_position: 0 }, &engine))
        .await
        .unwrap()
        .into_inner();
    for batch in 0..3 {
        let events: Vec<Envelope> = (0..1000)
            .map(|i| referral(&format!("R{batch}-{i}"), "RXH"))
            .collect();
        grpc.append(authed(AppendRequest { events }, ADMIN_TOKEN))
            .await
            .unwrap();
    }
    let (status, body) = request(
        &server.addr,
        "DELETE",
        &format!("/v1/tokens/{engine_id}"),
        None,
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    // The revoked subscription ends on the server (its turn comes back)
    // although nobody reads it.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut next_one = loop {
        match grpc
            .subscribe(authed(
                SubscribeRequest {
                    after_position: 2999,
                },
                ADMIN_TOKEN,
            ))
            .await
        {
            Ok(s) => break s.into_inner(),
            Err(e) => {
                assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
                assert!(
                    std::time::Instant::now() < deadline,
                    "the revoked subscription still holds its turn"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    assert_eq!(next(&mut next_one).await.position, 3000);
    // The stalled stream, read at last, ends UNAUTHENTICATED after at most
    // what was already on its way (not the whole buffer behind it).
    let mut stalled = stalled;
    let mut delivered = 0;
    let error = loop {
        match tokio::time::timeout(Duration::from_secs(30), stalled.message())
            .await
            .expect("the stream ends")
        {
            Ok(Some(_)) => delivered += 1,
            Ok(None) => panic!("ended without an error after {delivered} events"),
            Err(e) => break e,
        }
    };
    assert_eq!(error.code(), Code::Unauthenticated, "{error:?}");
    assert!(delivered < 3000, "{delivered}");
}
