//! A small gRPC client of OpenPTL: appends a referral and a tracking note,
//! reads the pathway back, then follows the log (catch-up, then live) and
//! prints every event it may see.
//!
//! ```text
//! OPENPTL_BOOTSTRAP_ADMIN_TOKEN=change-me-long-secret cargo run --release -- serve --demo &
//! OPENPTL_TOKEN=change-me-long-secret cargo run --example grpc_client -- http://127.0.0.1:50051
//! ```
//!
//! Stop it with Ctrl-C; run it again with `--after N` (the last position it
//! printed) to resume without gaps or duplicates.

use openptl_grpc::proto::event_data::Kind;
use openptl_grpc::proto::open_ptl_client::OpenPtlClient;
use openptl_grpc::proto::{
    AppendRequest, Envelope, EventData, ReadStreamRequest, ReferralReceived, SubscribeRequest,
    TrackingNoteAdded,
};
use openptl_grpc::tonic::Request;

fn authed<T>(message: T, token: &str) -> Result<Request<T>, Box<dyn std::error::Error>> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse()?);
    Ok(request)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let endpoint = args
        .next()
        .unwrap_or_else(|| "http://127.0.0.1:50051".to_string());
    let after: u64 = match (args.next().as_deref(), args.next()) {
        (Some("--after"), Some(n)) => n.parse()?,
        _ => 0,
    };
    let token =
        std::env::var("OPENPTL_TOKEN").map_err(|_| "set OPENPTL_TOKEN to a bearer token")?;
    let mut client = OpenPtlClient::connect(endpoint).await?;

    // Append a new pathway (a fresh id each run) and a note, as one batch.
    let today = chrono::Utc::now().date_naive();
    let pathway = format!("EXAMPLE-{}", uuid::Uuid::new_v4().simple());
    let event = |occurred_on: chrono::NaiveDate, kind: Kind| Envelope {
        event_id: Some(uuid::Uuid::new_v4().to_string()),
        pathway_id: pathway.clone(),
        occurred_on: occurred_on.format("%Y-%m-%d").to_string(),
        expected_version: None,
        data: Some(EventData { kind: Some(kind) }),
    };
    let events = vec![
        event(
            today - chrono::Duration::days(3),
            Kind::ReferralReceived(ReferralReceived {
                nhs_number: "943 476 5919".into(),
                trust: "RXH".into(),
                tumour_site: "breast".into(),
                route: "urgent_suspected_cancer".into(),
                screening_programme: None,
                referrer: None,
                nhs_number_status: None,
            }),
        ),
        event(
            today,
            Kind::TrackingNoteAdded(TrackingNoteAdded {
                text: "Clinic booked".into(),
                next_action: Some("Confirm attendance".into()),
                next_action_due: None,
                owner: None,
                escalated: None,
            }),
        ),
    ];
    match client
        .append(authed(AppendRequest { events }, &token)?)
        .await
    {
        Ok(reply) => {
            for a in reply.into_inner().appended {
                println!(
                    "appended {} v{} at position {}",
                    a.pathway_id, a.version, a.position
                );
            }
        }
        // The status message is the HTTP API's error body.
        Err(status) => println!("append refused ({:?}): {}", status.code(), status.message()),
    }

    let stream = client
        .read_stream(authed(
            ReadStreamRequest {
                pathway_id: pathway.clone(),
            },
            &token,
        )?)
        .await;
    if let Ok(stream) = stream {
        println!("{pathway} has {} events", stream.into_inner().events.len());
    }

    // Follow the log: everything after `after`, then live.
    let mut feed = client
        .subscribe(authed(
            SubscribeRequest {
                after_position: after,
            },
            &token,
        )?)
        .await?
        .into_inner();
    while let Some(event) = feed.message().await? {
        // The event type is the name of the one field set in `data`.
        let kind = event
            .data
            .and_then(|d| d.kind)
            .and_then(|k| serde_json::to_value(k).ok())
            .and_then(|v| v.as_object().and_then(|m| m.keys().next().cloned()))
            .unwrap_or_default();
        println!(
            "{:>8} {} v{} {} {}",
            event.position, event.pathway_id, event.version, event.occurred_on, kind
        );
    }
    Ok(())
}
