//! Bounded under abuse (issue 20): unauthenticated paths take small bodies
//! and limit failed attempts per client address; sign-out revokes the
//! session's token; cookie writes from other sites are refused; event ids
//! leak nothing across trusts; NHS numbers are masked on every surface for
//! roles that must not see them; past-date views queue boundedly.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use axum::Router;
use openptl_app::access::Role;
use openptl_app::App;
use openptl_http::FailedAuth;
use openptl_log::MemoryLog;
use serde_json::{json, Value};
use support::{request, token};

const NHS: &str = "9434765919";

fn new_app() -> Arc<App> {
    Arc::new(new_app_unshared())
}

/// The app of `new_app`, not yet shared, to be configured further.
fn new_app_unshared() -> App {
    support::app_at("2025-04-07T12:00:00Z", Arc::new(MemoryLog::new()))
}

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Value,
}

async fn send(router: &Router, request: Request<Body>) -> Answer {
    let reply = support::send(router, request).await;
    Answer {
        status: reply.status,
        body: reply.json_or_text(),
        headers: reply.headers,
    }
}

fn from(mut request: Request<Body>, addr: &str) -> Request<Body> {
    let addr: SocketAddr = addr.parse().unwrap();
    request.extensions_mut().insert(ConnectInfo(addr));
    request
}

fn referral(id: &str, trust: &str) -> Value {
    json!({ "pathway_id": id, "type": "referral_received", "occurred_on": "2025-03-03",
            "data": { "nhs_number": NHS, "trust": trust, "tumour_site": "lower_gi", "route": "urgent_suspected_cancer" } })
}

fn code(answer: &Answer) -> &str {
    answer.body["error"]["code"].as_str().unwrap_or("")
}

#[tokio::test]
async fn sign_in_takes_a_small_typed_body() {
    let app = new_app();
    let router = openptl_http::router(app.clone());
    // A body over the limit is refused without being parsed.
    let big = json!({ "token": "x".repeat(openptl_http::SESSION_BODY_LIMIT + 1) });
    let a = send(&router, request("POST", "/v1/session", None, Some(&big))).await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", a.body);
    assert_eq!(code(&a), "payload_too_large");
    // A body without the field is a field error; not JSON is invalid_json.
    let a = send(
        &router,
        request("POST", "/v1/session", None, Some(&json!({ "nope": 1 }))),
    )
    .await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", a.body);
    assert_eq!(a.body["error"]["details"]["field"], "token");
    let a = send(
        &router,
        Request::post("/v1/session")
            .header("content-type", "application/json")
            .body(Body::from("{"))
            .unwrap(),
    )
    .await;
    assert_eq!(code(&a), "invalid_json");
    // Only JSON, said so (a page on another site cannot send that type
    // without the browser asking first).
    for content_type in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
    ] {
        let mut r = Request::post("/v1/session");
        if let Some(t) = content_type {
            r = r.header("content-type", t);
        }
        let a = send(&router, r.body(Body::from(r#"{"token": "x"}"#)).unwrap()).await;
        assert_eq!(a.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{}", a.body);
        assert_eq!(code(&a), "unsupported_media_type");
    }
    // A good token still signs in.
    let secret = token(&app, Role::Coordinator, &["RXH"], None, "jane");
    let a = send(
        &router,
        request(
            "POST",
            "/v1/session",
            None,
            Some(&json!({ "token": secret })),
        ),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
}

#[tokio::test]
async fn failed_sign_ins_and_bearer_tokens_are_limited_per_address() {
    let app = new_app();
    let good = token(&app, Role::Coordinator, &["RXH"], None, "jane");
    let router = openptl_http::router_with(app.clone(), Arc::new(FailedAuth::new(3, 60, 100)));
    let attacker = "192.0.2.7:40000";
    let wrong = json!({ "token": "optl_00000000_0000" });
    // Failures mixed across sign-in and bearer tokens share one allowance.
    for (i, r) in [
        request("POST", "/v1/session", None, Some(&wrong)),
        request("GET", "/v1/ptl", Some("not-a-token"), None),
        request("GET", "/v1/session", Some("optl_1234_bad"), None),
    ]
    .into_iter()
    .enumerate()
    {
        let a = send(&router, from(r, attacker)).await;
        assert_eq!(
            a.status,
            StatusCode::UNAUTHORIZED,
            "attempt {i}: {}",
            a.body
        );
    }
    for r in [
        request("POST", "/v1/session", None, Some(&wrong)),
        request("GET", "/v1/ptl", Some("not-a-token"), None),
    ] {
        let a = send(&router, from(r, attacker)).await;
        assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS, "{}", a.body);
        assert_eq!(code(&a), "rate_limited");
        let retry: u64 = a.headers["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=60).contains(&retry), "{retry}");
        assert_eq!(a.body["error"]["details"]["retry_after"], retry);
    }
    // A valid secret is never refused by the limit: one client guessing
    // must not lock out everyone behind the same address.
    let a = send(
        &router,
        from(request("GET", "/v1/ptl", Some(&good), None), attacker),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let a = send(
        &router,
        from(
            request("POST", "/v1/session", None, Some(&json!({ "token": good }))),
            attacker,
        ),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    // Another address is not affected; no token at all is not a failure.
    let a = send(
        &router,
        from(
            request("GET", "/v1/ptl", Some(&good), None),
            "198.51.100.1:1",
        ),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    for _ in 0..5 {
        let a = send(
            &router,
            from(request("GET", "/v1/ptl", None, None), "198.51.100.1:1"),
        )
        .await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    }
}

/// Behind the trust's reverse proxy every request comes from the proxy's
/// address: with the proxy trusted, failures count against the client it
/// names, so one user's wrong secrets lock out nobody else; a client that is
/// not a trusted proxy cannot choose whom its failures are counted against.
#[tokio::test]
async fn failures_through_a_trusted_proxy_count_against_the_client_it_names() {
    let app = new_app();
    let good = token(&app, Role::Coordinator, &["RXH"], None, "jane");
    let proxies = openptl_app::proxies::TrustedProxies::parse("10.0.0.0/8").unwrap();
    let router = openptl_http::router_with(
        app.clone(),
        Arc::new(FailedAuth::new(3, 60, 100).with_trusted_proxies(proxies)),
    );
    let proxy = "10.0.0.5:50000";
    let via_proxy = |bearer: &str, client: &str| {
        let mut r = request("GET", "/v1/ptl", Some(bearer), None);
        r.headers_mut().insert(
            "x-forwarded-for",
            format!("203.0.113.66, {client}").parse().unwrap(),
        );
        from(r, proxy)
    };
    // One user behind the proxy spends their allowance...
    for _ in 0..3 {
        let a = send(&router, via_proxy("not-a-token", "198.51.100.7")).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.body);
    }
    let a = send(&router, via_proxy("not-a-token", "198.51.100.7")).await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS, "{}", a.body);
    // ...another behind the same proxy still has all of theirs.
    for _ in 0..3 {
        let a = send(&router, via_proxy("not-a-token", "198.51.100.8")).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.body);
    }
    let a = send(&router, via_proxy(&good, "198.51.100.8")).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    // A client that is not a proxy naming someone else in the header is
    // counted as itself: its fourth failure is refused whatever it names.
    let direct = "192.0.2.44:1234";
    for i in 0..4 {
        let mut r = request("GET", "/v1/ptl", Some("not-a-token"), None);
        r.headers_mut().insert(
            "x-forwarded-for",
            format!("198.51.100.{}", 100 + i).parse().unwrap(),
        );
        let a = send(&router, from(r, direct)).await;
        let expected = if i < 3 {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::TOO_MANY_REQUESTS
        };
        assert_eq!(a.status, expected, "attempt {i}: {}", a.body);
    }
}

#[tokio::test]
async fn another_site_cannot_sign_in_or_spend_an_address_allowance() {
    let app = new_app();
    let good = token(&app, Role::Coordinator, &["RXH"], None, "jane");
    let router = openptl_http::router_with(app.clone(), Arc::new(FailedAuth::new(3, 60, 100)));
    let hospital = "192.0.2.9:40000";
    // A page on another site posting sign-ins from a browser behind the
    // hospital's address: a no-cors form post, a fetch with its Origin.
    for _ in 0..10 {
        let r = Request::post("/v1/session")
            .header("content-type", "text/plain")
            .header("sec-fetch-site", "cross-site")
            .body(Body::from(r#"{"token": "optl_00000000_00"}"#))
            .unwrap();
        let a = send(&router, from(r, hospital)).await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.body);
        assert_eq!(code(&a), "cross_site_request");
        let r = Request::post("/v1/session")
            .header("content-type", "application/json")
            .header("origin", "https://evil.example")
            .header("host", "openptl.nhs.example")
            .body(Body::from(format!(r#"{{"token": "{good}"}}"#)))
            .unwrap();
        let a = send(&router, from(r, hospital)).await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.body);
        assert_eq!(code(&a), "cross_site_request");
    }
    // None of it counted: a wrong token from the address is a plain 401.
    let wrong = json!({ "token": "optl_00000000_0000" });
    let a = send(
        &router,
        from(request("POST", "/v1/session", None, Some(&wrong)), hospital),
    )
    .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.body);
    // The dashboard's own page signs in.
    let r = Request::post("/v1/session")
        .header("content-type", "application/json")
        .header("sec-fetch-site", "same-origin")
        .body(Body::from(format!(r#"{{"token": "{good}"}}"#)))
        .unwrap();
    let a = send(&router, from(r, hospital)).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
}

#[tokio::test]
async fn ended_tokens_still_polling_do_not_lock_out_an_address() {
    let app = new_app();
    let good = token(&app, Role::Coordinator, &["RXH"], None, "jane");
    let old = token(&app, Role::Coordinator, &["RXH"], None, "old");
    let router = openptl_http::router_with(app.clone(), Arc::new(FailedAuth::new(3, 60, 100)));
    let hospital = "192.0.2.10:40000";
    // A dashboard left open: its session ends (its token is revoked here;
    // an expiry is the same), and it goes on polling.
    let session = sign_in(&router, &old).await;
    let old_id = app
        .tokens()
        .list()
        .into_iter()
        .find(|t| t.label == "old" && t.parent.is_none())
        .unwrap()
        .id;
    app.tokens().revoke(&old_id, app.clock().now()).unwrap();
    for _ in 0..10 {
        for secret in [&session, &old] {
            let a = send(
                &router,
                from(request("GET", "/v1/ptl", Some(secret), None), hospital),
            )
            .await;
            assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.body);
        }
        let a = send(
            &router,
            from(
                with_cookie(request("GET", "/v1/session", None, None), &session, &[]),
                hospital,
            ),
        )
        .await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.body);
    }
    // Not counted: the address still has its whole allowance of unknown
    // secrets (3), then 429; a valid token goes on working all along.
    for expected in [401, 401, 401, 429] {
        let a = send(
            &router,
            from(request("GET", "/v1/ptl", Some("optl_1_2"), None), hospital),
        )
        .await;
        assert_eq!(a.status.as_u16(), expected, "{}", a.body);
    }
    let a = send(
        &router,
        from(request("GET", "/v1/ptl", Some(&good), None), hospital),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
}

#[tokio::test]
async fn sign_ins_take_from_the_tokens_rate_limit() {
    // One request a second, bursts of two.
    let app = Arc::new(new_app_unshared().with_rate_limit(1.0));
    let jane = token(&app, Role::Coordinator, &["RXH"], None, "jane");
    let router = openptl_http::router(app.clone());
    let body = json!({ "token": jane });
    for _ in 0..2 {
        let a = send(&router, request("POST", "/v1/session", None, Some(&body))).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    }
    let a = send(&router, request("POST", "/v1/session", None, Some(&body))).await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS, "{}", a.body);
    assert_eq!(code(&a), "rate_limited");
    assert!(a.headers.contains_key("retry-after"));
    // Refused before a session was made: two sessions, not three.
    let sessions = app
        .tokens()
        .list()
        .into_iter()
        .filter(|t| t.parent.is_some())
        .count();
    assert_eq!(sessions, 2);
}

#[tokio::test]
async fn an_unauthenticated_append_body_is_never_read() {
    let app = new_app();
    let admin = token(&app, Role::Admin, &[], None, "admin");
    let router = openptl_http::router(app);
    let big = || Body::from(vec![b' '; 16 * 1024 * 1024 + 1]);
    // Without a valid token the body is not read (it would be too large):
    // the answer is 401.
    let r = Request::post("/v1/events")
        .header("authorization", "Bearer wrong-token")
        .body(big())
        .unwrap();
    let a = send(&router, r).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.body);
    // With one, it is read up to 16 MiB: 413 payload_too_large.
    let r = Request::post("/v1/events")
        .header("authorization", format!("Bearer {admin}"))
        .body(big())
        .unwrap();
    let a = send(&router, r).await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", a.body);
    assert_eq!(code(&a), "payload_too_large");
}

/// A body of many tiny JSON values is refused before it is parsed (parsed,
/// each value costs tens of bytes: `[0,0,…]` would take some 30 times its
/// size), while a full batch of real events still fits.
#[tokio::test]
async fn an_append_of_many_tiny_values_is_refused_before_it_is_parsed() {
    let app = new_app();
    let admin = token(&app, Role::Admin, &[], None, "admin");
    let router = openptl_http::router(app);
    let mut junk = b"{\"events\":[".to_vec();
    junk.extend(std::iter::repeat_n(&b"0,"[..], 300_000).flatten());
    junk.extend_from_slice(b"0]}");
    let r = Request::post("/v1/events")
        .header("authorization", format!("Bearer {admin}"))
        .header("content-type", "application/json")
        .body(Body::from(junk))
        .unwrap();
    let a = send(&router, r).await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", a.body);
    assert_eq!(a.body["error"]["details"]["field"], "body");
    // Commas and colons inside strings are text, not values (a quote in
    // the text, escaped, must not end the string for the count).
    let note = ",,,,:,,,,\" ".repeat(180);
    let events: Vec<Value> = (0..500)
        .flat_map(|i| {
            let id = format!("P-full-{i}");
            let note = json!({ "pathway_id": id, "type": "tracking_note_added",
                               "occurred_on": "2025-03-04", "data": { "text": note } });
            [referral(&id, "RXH"), note]
        })
        .collect();
    let (status, body) = post(&router, &admin, &json!({ "events": events })).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

/// A wrong method, or a path parameter that is not text, is answered in
/// the JSON error shape, like every other error.
#[tokio::test]
async fn a_wrong_method_or_a_path_not_text_is_a_json_error() {
    let app = new_app();
    let admin = token(&app, Role::Admin, &[], None, "admin");
    let router = openptl_http::router(app);
    let a = send(&router, request("PUT", "/v1/events", Some(&admin), None)).await;
    assert_eq!(a.status, StatusCode::METHOD_NOT_ALLOWED, "{}", a.body);
    assert_eq!(code(&a), "method_not_allowed");
    for (path, field) in [
        ("/v1/pathways/%FF", "pathway_id"),
        ("/v1/pathways/%FF/events", "pathway_id"),
        ("/v1/standards/%FF", "standard"),
        ("/v1/forecast/%FF", "standard"),
        ("/v1/tokens/%FF", "id"),
    ] {
        let method = if path.starts_with("/v1/tokens") {
            "DELETE"
        } else {
            "GET"
        };
        let a = send(&router, request(method, path, Some(&admin), None)).await;
        assert_eq!(
            a.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{path}: {}",
            a.body
        );
        assert_eq!(a.body["error"]["details"]["field"], field, "{path}");
    }
    // Without a token, still 401 first.
    let a = send(&router, request("GET", "/v1/pathways/%FF", None, None)).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.body);
    // A token request names the field at fault.
    for (body, field) in [
        (json!({ "role": "boss", "label": "x" }), "role"),
        (
            json!({ "role": "analyst", "label": "x", "expires_at": "tomorrow" }),
            "expires_at",
        ),
    ] {
        let a = send(
            &router,
            request("POST", "/v1/tokens", Some(&admin), Some(&body)),
        )
        .await;
        assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", a.body);
        assert_eq!(a.body["error"]["details"]["field"], field, "{}", a.body);
    }
}

/// POST /v1/events as `token`; (status, body).
async fn post(router: &Router, token: &str, body: &Value) -> (StatusCode, Value) {
    let a = send(
        router,
        request("POST", "/v1/events", Some(token), Some(body)),
    )
    .await;
    (a.status, a.body)
}

#[tokio::test]
async fn an_event_id_tells_nothing_about_another_trusts_pathway() {
    let app = new_app();
    let admin = token(&app, Role::Admin, &[], None, "admin");
    let coordinator = token(&app, Role::Coordinator, &["RXH"], None, "coord-rxh");
    let analyst = token(&app, Role::Analyst, &["RXH"], None, "analyst");
    let router = openptl_http::router(app.clone());
    let referral_id = "5b0c0e2a-0000-4000-8000-000000000001";
    let note_id = "5b0c0e2a-0000-4000-8000-000000000002";
    let mut theirs = referral("PB", "RHM");
    theirs["event_id"] = json!(referral_id);
    let their_note = |id: &str, pathway: &str, text: &str| {
        json!({ "event_id": id, "pathway_id": pathway, "type": "tracking_note_added",
                "occurred_on": "2025-04-01", "data": { "text": text } })
    };
    let (status, body) = post(
        &router,
        &admin,
        &json!({ "events": [theirs, their_note(note_id, "PB", "Chased")] }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let fresh = "5b0c0e2a-0000-4000-8000-0000000000ff";
    // RXH's coordinator replays RHM's referral exactly: not a replay answer
    // (which would show the pathway's version and position), but what a
    // referral of a taken pathway id gets with a fresh event id.
    let replay = post(&router, &coordinator, &theirs).await;
    let mut fresh_referral = theirs.clone();
    fresh_referral["event_id"] = json!(fresh);
    assert_eq!(replay, post(&router, &coordinator, &fresh_referral).await);
    assert_ne!(replay.0, StatusCode::OK, "{}", replay.1);
    // Reusing RHM's note id with other content: not duplicate_event_id, but
    // exactly what a note on a pathway that does not exist gets.
    let reused = post(&router, &coordinator, &their_note(note_id, "PB", "Probe")).await;
    assert_eq!(reused.0, StatusCode::UNPROCESSABLE_ENTITY, "{}", reused.1);
    assert_eq!(reused.1["error"]["code"], "pathway_not_started");
    assert_eq!(
        reused,
        post(&router, &coordinator, &their_note(fresh, "NOPE", "Probe")).await
    );
    // A note on a pathway that does not exist, with an id stored on RHM's
    // pathway (import ids can be guessed): exactly what a fresh id gets.
    for stored in [note_id, referral_id] {
        for text in ["Probe", "Chased"] {
            let probe = post(&router, &coordinator, &their_note(stored, "NOPE", text)).await;
            assert_eq!(
                probe.1["error"]["code"], "pathway_not_started",
                "{}",
                probe.1
            );
            assert_eq!(
                probe,
                post(&router, &coordinator, &their_note(fresh, "NOPE", text)).await
            );
        }
    }
    // The coordinator's own events on its own pathway are still replays.
    let mut mine = referral("MINE", "RXH");
    mine["event_id"] = json!("5b0c0e2a-0000-4000-8000-000000000010");
    let my_note = their_note("5b0c0e2a-0000-4000-8000-000000000011", "MINE", "Mine");
    for expected in [StatusCode::CREATED, StatusCode::OK] {
        let (status, body) = post(&router, &coordinator, &mine).await;
        assert_eq!(status, expected, "{body}");
        let (status, body) = post(&router, &coordinator, &my_note).await;
        assert_eq!(status, expected, "{body}");
    }
    // Reusing RHM's id on its own pathway is refused (ids are unique in the
    // whole log), saying nothing about where the id is used.
    let reused = post(&router, &coordinator, &their_note(note_id, "MINE", "Mine")).await;
    assert_eq!(
        reused.1["error"]["code"], "duplicate_event_id",
        "{}",
        reused.1
    );
    // A read-only role is refused (403) before any id is looked up.
    let probe = post(&router, &analyst, &their_note(note_id, "PB", "Chased")).await;
    assert_eq!(probe.0, StatusCode::FORBIDDEN, "{}", probe.1);
    assert_eq!(
        probe,
        post(&router, &analyst, &their_note(fresh, "NOPE", "Chased")).await
    );
    // The owner's own retry is still a replay.
    let (status, body) = post(&router, &admin, &their_note(note_id, "PB", "Chased")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn an_alliance_viewer_never_sees_an_nhs_number_in_full() {
    let app = new_app();
    let admin = token(&app, Role::Admin, &[], None, "admin");
    let viewer = token(&app, Role::AllianceViewer, &[], Some("demo"), "viewer");
    let coordinator = token(&app, Role::Coordinator, &["RXH"], None, "coord");
    let router = openptl_http::router(app.clone());
    let referral_id = "6c0c0e2a-0000-4000-8000-000000000001";
    let mut first = referral("P1", "RXH");
    first["event_id"] = json!(referral_id);
    let corrected_nhs = "4010232137";
    let (status, body) = post(
        &router,
        &admin,
        &json!({ "events": [
            first,
            { "pathway_id": "P1", "type": "event_corrected", "occurred_on": "2025-03-04",
              "data": { "corrects": referral_id, "reason": "Typo in the NHS number",
                        "new_data": { "nhs_number": corrected_nhs, "trust": "RXH", "tumour_site": "lower_gi", "route": "urgent_suspected_cancer" } } },
            { "pathway_id": "P1", "type": "diagnosis_communicated", "occurred_on": "2025-03-20", "data": { "outcome": "cancer_diagnosed" } },
        ] }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let get = |token: String, uri: &'static str, accept: &'static str| {
        let router = router.clone();
        async move {
            let mut r = request("GET", uri, Some(&token), None);
            r.headers_mut().insert("accept", accept.parse().unwrap());
            let a = send(&router, r).await;
            assert_eq!(a.status, StatusCode::OK, "{uri}: {}", a.body);
            a.body.to_string()
        }
    };
    let json = "application/json";
    let surfaces = [
        ("/v1/pathways/P1", json),
        ("/v1/pathways/P1?as_of=2025-03-10", json),
        ("/v1/pathways/P1/events", json),
        ("/v1/ptl", json),
        ("/v1/ptl", "text/csv"),
        ("/v1/ptl?as_of=2025-04-06", "text/csv"),
        ("/v1/returns/cwt?period=2025-03", "text/csv"),
        ("/v1/returns/cwt?period=2025-03&format=json", json),
    ];
    for (uri, accept) in surfaces {
        let shown = get(viewer.clone(), uri, accept).await;
        assert!(
            !shown.contains(NHS) && !shown.contains(corrected_nhs),
            "{uri} as an alliance viewer shows an NHS number: {shown}"
        );
        let full = get(coordinator.clone(), uri, accept).await;
        assert!(
            full.contains(corrected_nhs) || full.contains(NHS),
            "{uri} as a coordinator: {full}"
        );
    }
    // Masked as the PTL masks: the last four digits stay.
    let view: Value =
        serde_json::from_str(&get(viewer.clone(), "/v1/pathways/P1", json).await).unwrap();
    assert_eq!(view["nhs_number"], "*** *** 2137", "{view}");
    let history: Value =
        serde_json::from_str(&get(viewer, "/v1/pathways/P1/events", json).await).unwrap();
    assert_eq!(history["events"][0]["data"]["nhs_number"], "*** *** 5919");
    assert_eq!(
        history["events"][1]["data"]["new_data"]["nhs_number"],
        "*** *** 2137"
    );
}

/// Signs in with `secret`; the session cookie's secret.
async fn sign_in(router: &Router, secret: &str) -> String {
    let a = send(
        router,
        request(
            "POST",
            "/v1/session",
            None,
            Some(&json!({ "token": secret })),
        ),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let cookie = a.headers["set-cookie"].to_str().unwrap();
    let value = cookie
        .strip_prefix("openptl_token=")
        .and_then(|rest| rest.split(';').next())
        .unwrap();
    value.to_string()
}

fn with_cookie(mut r: Request<Body>, session: &str, headers: &[(&str, &str)]) -> Request<Body> {
    r.headers_mut().insert(
        "cookie",
        format!("other=1; openptl_token={session}").parse().unwrap(),
    );
    for (name, value) in headers {
        r.headers_mut().insert(
            axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            axum::http::HeaderValue::from_str(value).unwrap(),
        );
    }
    r
}

#[tokio::test]
async fn sign_out_ends_the_session_server_side() {
    let app = new_app();
    let jane = token(&app, Role::Coordinator, &["RXH"], None, "jane");
    let router = openptl_http::router(app.clone());
    let session = sign_in(&router, &jane).await;
    assert_ne!(session, jane, "the cookie never holds the token itself");
    // The session acts as jane, by cookie or as a bearer token.
    let who = send(
        &router,
        with_cookie(request("GET", "/v1/session", None, None), &session, &[]),
    )
    .await;
    assert_eq!(who.body["actor"], "jane", "{}", who.body);
    let a = send(&router, request("GET", "/v1/ptl", Some(&session), None)).await;
    assert_eq!(a.status, StatusCode::OK);
    // Signing out revokes it: the same secret is refused everywhere after.
    let out = send(
        &router,
        with_cookie(
            request("DELETE", "/v1/session", None, None),
            &session,
            &[("sec-fetch-site", "same-origin")],
        ),
    )
    .await;
    assert_eq!(out.status, StatusCode::NO_CONTENT);
    assert!(out.headers["set-cookie"]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
    let a = send(&router, request("GET", "/v1/ptl", Some(&session), None)).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.body);
    let a = send(
        &router,
        with_cookie(request("GET", "/v1/session", None, None), &session, &[]),
    )
    .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    // Jane's own token goes on working; signing in again works.
    let a = send(&router, request("GET", "/v1/ptl", Some(&jane), None)).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_ne!(sign_in(&router, &jane).await, session);
}

#[tokio::test]
async fn cookie_writes_from_another_site_are_refused() {
    let app = new_app();
    let jane = token(&app, Role::Coordinator, &["RXH"], None, "jane");
    let router = openptl_http::router(app.clone());
    let session = sign_in(&router, &jane).await;
    let write = |id: &str| request("POST", "/v1/events", None, Some(&referral(id, "RXH")));
    let host = ("host", "ptl.example.nhs.uk");
    for headers in [
        vec![("sec-fetch-site", "cross-site")],
        vec![("sec-fetch-site", "same-site")],
        vec![host, ("origin", "https://evil.example")],
        vec![host, ("origin", "null")],
    ] {
        let a = send(&router, with_cookie(write("X1"), &session, &headers)).await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{headers:?}: {}", a.body);
        assert_eq!(code(&a), "cross_site_request");
    }
    // Signing out from another site is refused too.
    let a = send(
        &router,
        with_cookie(
            request("DELETE", "/v1/session", None, None),
            &session,
            &[("sec-fetch-site", "cross-site")],
        ),
    )
    .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    // The dashboard's own pages may write; so may a client that is no browser.
    let ok = [
        vec![("sec-fetch-site", "same-origin")],
        vec![host, ("origin", "https://ptl.example.nhs.uk")],
        vec![],
    ];
    for (i, headers) in ok.iter().enumerate() {
        let id = format!("OK{i}");
        let a = send(&router, with_cookie(write(&id), &session, headers)).await;
        assert_eq!(a.status, StatusCode::CREATED, "{headers:?}: {}", a.body);
    }
    // A bearer token is not a cookie: no such check.
    let mut r = request(
        "POST",
        "/v1/events",
        Some(&jane),
        Some(&referral("B1", "RXH")),
    );
    r.headers_mut()
        .insert("sec-fetch-site", "cross-site".parse().unwrap());
    let a = send(&router, r).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
}

#[tokio::test]
async fn past_date_views_queue_boundedly() {
    let app = Arc::new(new_app_unshared().with_past_view_queue(0));
    let admin = token(&app, Role::Admin, &[], None, "admin");
    let router = openptl_http::router(app.clone());
    let (status, body) = post(&router, &admin, &referral("P1", "RXH")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // A long evaluation holds the turn; one view waits for it (queue 0 plus
    // the one that would run next).
    let turn = app.hold_past_view_turn().await;
    let waiting = tokio::spawn({
        let (router, admin) = (router.clone(), admin.clone());
        async move {
            send(
                &router,
                request("GET", "/v1/ptl?as_of=2025-04-01", Some(&admin), None),
            )
            .await
            .status
        }
    });
    while app.past_views_waiting() < 1 {
        tokio::task::yield_now().await;
    }
    // Any further past-date view is refused at once, whatever its kind.
    for uri in [
        "/v1/ptl?as_of=2025-04-02",
        "/v1/standards/fds?as_of=2025-04-02",
        "/v1/pathways/P1?as_of=2025-04-02",
    ] {
        let a = send(&router, request("GET", uri, Some(&admin), None)).await;
        if uri.starts_with("/v1/pathways") {
            // One pathway is cheap: never queued.
            assert_eq!(a.status, StatusCode::OK, "{uri}: {}", a.body);
            continue;
        }
        assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS, "{uri}: {}", a.body);
        assert_eq!(code(&a), "busy");
        let retry: u64 = a.headers["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=60).contains(&retry));
    }
    // Today's views are not affected.
    let a = send(&router, request("GET", "/v1/ptl", Some(&admin), None)).await;
    assert_eq!(a.status, StatusCode::OK);
    drop(turn);
    assert_eq!(waiting.await.unwrap(), StatusCode::OK);
    assert_eq!(app.past_views_waiting(), 0);
    let a = send(
        &router,
        request("GET", "/v1/ptl?as_of=2025-04-02", Some(&admin), None),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
}
