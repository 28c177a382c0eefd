//! The gRPC API (`proto/openptl/v1/openptl.proto`) for integration engines:
//! `Append` a batch, `ReadStream` one pathway, `Subscribe` to the global log
//! (catch-up, then live). It is another way into the same [`App`]: appends
//! become the HTTP API's JSON envelopes and go through the same checks; the
//! same bearer tokens, roles and trust scopes apply; errors carry the HTTP
//! API's error body and stable code.
//!
//! Bounded like the HTTP API ([`Limits`]): the bearer token is checked and
//! the call's turn taken from the headers alone ([`Gate`], a tonic
//! interceptor), before a byte of the message is decoded; a message is at
//! most [`MAX_MESSAGE_BYTES`] (what [`MAX_BATCH`] generous events need); at
//! most [`MAX_BATCH`] events per `Append`, counted before they are decoded
//! ([`codec`]); a time limit and a cap on calls
//! in flight; a cap on open connections ([`Limits::connections`]); a cap on
//! live subscriptions, and a subscription ends within a second of its token
//! being revoked or expiring.

// `tonic::Status` is what every handler answers with; boxing it would only
// add an allocation to each refusal.
#![allow(clippy::result_large_err)]

pub mod codec;
pub mod convert;
mod incoming;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use openptl_app::access::Principal;
use openptl_app::auth::ClientKey;
use openptl_app::auth::FailedAuth;
use openptl_app::{ApiError, Kind};
use openptl_app::{App, AppError, MAX_BATCH};
use openptl_log::Subscription;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio_stream::Stream;
use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::{Code, Request, Response, Status};

use crate::convert::{data_from_json, envelope_to_json, Unmappable};
use crate::proto::open_ptl_server::{OpenPtl, OpenPtlServer};
use crate::proto::{
    AppendRequest, AppendResponse, Appended, ReadStreamRequest, ReadStreamResponse, StoredEvent,
    SubscribeRequest,
};

/// The generated protobuf types, server and client.
pub mod proto {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("openptl.v1");
}

pub use tonic;

/// Records read from the log per step of a subscription.
const SUBSCRIPTION_PAGE: usize = 512;
/// Events buffered per subscriber before the log reader waits for it.
const SUBSCRIBER_BUFFER: usize = 256;

/// What the gRPC server bounds (docs/operations.md).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Longest a call may take before it is answered `CANCELLED` ("Timeout
    /// expired") (`Append`, `ReadStream`; a subscription's stream is not
    /// timed).
    pub timeout: Duration,
    /// Calls in flight on one connection (more wait for a turn).
    pub calls_per_connection: usize,
    /// `Append` and `ReadStream` calls in flight in all; beyond it
    /// `RESOURCE_EXHAUSTED` at once.
    pub calls: usize,
    /// Live `Subscribe` streams in all; beyond it `RESOURCE_EXHAUSTED`.
    pub subscriptions: usize,
    /// Open gRPC connections; more wait in the kernel's accept queue.
    pub connections: usize,
    /// Open gRPC connections from one client address (IPv6: its /64); more
    /// are closed at once.
    pub connections_per_client: usize,
}

/// As the HTTP API's request time limit.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// Calls in flight per connection by default.
pub const DEFAULT_CALLS_PER_CONNECTION: usize = 32;
/// Calls in flight in all by default.
pub const DEFAULT_CALLS: usize = 256;
/// Live subscriptions by default: a few per integration engine or warehouse.
pub const DEFAULT_SUBSCRIPTIONS: usize = 64;
/// Open gRPC connections by default (integration engines hold a few each).
pub const DEFAULT_CONNECTIONS: usize = 256;
/// Bytes one event may take, generously: the largest event the rules allow
/// in plain text (a tracking note of 2,000 characters with a 200-character
/// next action and a 100-character owner) is about 2.4 KB in protobuf.
pub const EVENT_BYTES: usize = 3 * 1024;
/// The largest message the service decodes: [`MAX_BATCH`] generous events.
/// Larger ones are refused `OUT_OF_RANGE` before they are decoded (an empty
/// envelope is 2 bytes on the wire but about 240 in memory, so the limit
/// bounds what one call can cost).
pub const MAX_MESSAGE_BYTES: usize = MAX_BATCH * EVENT_BYTES;
/// How often a live subscription re-checks its token.
const TOKEN_RECHECK: Duration = Duration::from_secs(1);

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout: DEFAULT_TIMEOUT,
            calls_per_connection: DEFAULT_CALLS_PER_CONNECTION,
            calls: DEFAULT_CALLS,
            subscriptions: DEFAULT_SUBSCRIPTIONS,
            connections: DEFAULT_CONNECTIONS,
            connections_per_client: openptl_app::connections::DEFAULT_MAX_CONNECTIONS_PER_CLIENT,
        }
    }
}

/// The gRPC service on an [`App`].
pub struct Service {
    app: Arc<App>,
    /// Becomes true when the service shuts down: subscriptions then end.
    stop: watch::Receiver<bool>,
    /// Turns for live subscriptions ([`Limits::subscriptions`]).
    subscriptions: Arc<Semaphore>,
}

/// What [`Gate`] found out about a call, from its headers alone: who it
/// is, its bearer secret, and its turn ([`Limits::calls`]), held while the
/// request (and so the handler that takes it) lives.
#[derive(Clone)]
struct Admitted {
    principal: Principal,
    secret: Arc<str>,
    turn: Arc<OwnedSemaphorePermit>,
}

/// The interceptor every call passes before its message is decoded: checks
/// the bearer token (counting failures per client address, as HTTP does)
/// and takes a turn from [`Limits::calls`]. A refused call costs the server
/// its headers only.
#[derive(Clone)]
pub struct Gate {
    app: Arc<App>,
    failures: Arc<FailedAuth>,
    calls: Arc<Semaphore>,
}

impl tonic::service::Interceptor for Gate {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let secret = secret(&request);
        let client = request
            .remote_addr()
            .map_or(ClientKey::UNKNOWN, |a| ClientKey::of(a.ip()));
        let principal =
            openptl_app::auth::authenticate(&self.app, &self.failures, client, secret.as_deref())
                .map_err(status)?;
        let turn = self
            .calls
            .clone()
            .try_acquire_owned()
            .map_err(|_| exhausted("calls in progress"))?;
        request.extensions_mut().insert(Admitted {
            principal,
            secret: secret.unwrap_or_default().into(),
            turn: Arc::new(turn),
        });
        Ok(request)
    }
}

/// The bearer secret of a call, if any.
fn secret<T>(request: &Request<T>) -> Option<String> {
    request
        .metadata()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim().to_string())
}

/// The tonic service for `app` behind its [`Gate`], ready to add to a
/// `tonic::transport::Server`; its subscriptions end when `stop` becomes
/// true; failed bearer tokens are counted per client address in `failures`.
pub fn server(
    app: Arc<App>,
    failures: Arc<FailedAuth>,
    limits: Limits,
    stop: watch::Receiver<bool>,
) -> InterceptedService<OpenPtlServer<Service>, Gate> {
    let gate = Gate {
        app: app.clone(),
        failures,
        calls: Arc::new(Semaphore::new(limits.calls.max(1))),
    };
    let service = OpenPtlServer::new(Service {
        app,
        stop,
        subscriptions: Arc::new(Semaphore::new(limits.subscriptions)),
    })
    .max_decoding_message_size(MAX_MESSAGE_BYTES);
    InterceptedService::new(service, gate)
}

/// Serves the gRPC API on `listener` until `stop` becomes true (then ends
/// every subscription and finishes the calls in flight). At most
/// [`Limits::connections`] connections are open at once (more wait in the
/// kernel's accept queue), at most [`Limits::connections_per_client`] from
/// one address.
pub async fn serve(
    app: Arc<App>,
    failures: Arc<FailedAuth>,
    limits: Limits,
    listener: tokio::net::TcpListener,
    stop: watch::Receiver<bool>,
) -> Result<(), tonic::transport::Error> {
    let mut until = stop.clone();
    tonic::transport::Server::builder()
        .timeout(limits.timeout)
        .concurrency_limit_per_connection(limits.calls_per_connection.max(1))
        .add_service(server(app, failures, limits, stop))
        .serve_with_incoming_shutdown(
            incoming::Capped::new(listener, limits.connections, limits.connections_per_client),
            async move {
                let _ = until.wait_for(|stopped| *stopped).await;
            },
        )
        .await
}

/// A gRPC status carrying the service's error body and stable code (the
/// one table, `openptl_app::problem`, that HTTP reports too).
pub fn status(error: ApiError) -> Status {
    let problem = error.problem();
    let grpc = match (problem.kind, problem.code) {
        (_, "version_conflict") => Code::Aborted,
        (_, "pathway_exists" | "duplicate_event_id" | "treatment_already_started") => {
            Code::AlreadyExists
        }
        (_, "pathway_closed") => Code::FailedPrecondition,
        (Kind::BadRequest | Kind::Invalid | Kind::UnsupportedMediaType, _) => Code::InvalidArgument,
        (Kind::TooLarge, _) => Code::OutOfRange,
        (Kind::Unauthenticated, _) => Code::Unauthenticated,
        (Kind::Forbidden, _) => Code::PermissionDenied,
        (Kind::NotFound, _) => Code::NotFound,
        (Kind::MethodNotAllowed, _) => Code::Unimplemented,
        (Kind::Conflict, _) => Code::Aborted,
        (Kind::TooManyRequests, _) => Code::ResourceExhausted,
        (Kind::Unavailable, _) => Code::Unavailable,
        (Kind::Internal, _) => Code::Internal,
    };
    let mut status = Status::new(grpc, problem.body().to_string());
    if let Ok(value) = MetadataValue::try_from(problem.code) {
        status.metadata_mut().insert("openptl-error-code", value);
    }
    status
}

fn app_status(error: AppError) -> Status {
    status(ApiError::App(error))
}

fn unmappable(error: Unmappable) -> Status {
    status(ApiError::InvalidJson(error.0))
}

/// `RESOURCE_EXHAUSTED` with the HTTP API's `busy` body.
fn exhausted(what: &str) -> Status {
    let mut status = Status::new(
        Code::ResourceExhausted,
        json_error(
            "busy",
            &format!("The service has as many {what} as it takes now; try again in a few seconds."),
        ),
    );
    status
        .metadata_mut()
        .insert("openptl-error-code", MetadataValue::from_static("busy"));
    status
}

fn json_error(code: &str, message: &str) -> String {
    serde_json::json!({ "error": { "code": code, "message": message, "details": {} } }).to_string()
}

/// What the [`Gate`] admitted a call as (always there behind the gate).
#[allow(clippy::result_large_err)] // tonic's own error type, as handlers return
fn admitted<T>(request: &mut Request<T>) -> Result<Admitted, Status> {
    request
        .extensions_mut()
        .remove::<Admitted>()
        .ok_or_else(|| status(ApiError::Unauthenticated))
}

type EventStream = Pin<Box<dyn Stream<Item = Result<StoredEvent, Status>> + Send>>;

#[tonic::async_trait]
impl OpenPtl for Service {
    async fn append(
        &self,
        mut request: Request<AppendRequest>,
    ) -> Result<Response<AppendResponse>, Status> {
        let Admitted {
            principal, turn, ..
        } = admitted(&mut request)?;
        let _turn = turn;
        let events = request.into_inner().events;
        if events.len() > MAX_BATCH {
            return Err(status(ApiError::App(AppError::InvalidQuery {
                field: "events".into(),
                problem: format!(
                    "holds {} events; send at most {MAX_BATCH} per call",
                    events.len()
                ),
            })));
        }
        let envelopes = events
            .iter()
            .map(envelope_to_json)
            .collect::<Result<Vec<_>, _>>()
            .map_err(unmappable)?;
        // One event reports errors as a single POST does; more, as a batch
        // (with the failing event's index).
        let batch = envelopes.len() != 1;
        let outcome = self
            .app
            .append(envelopes, &principal, batch)
            .await
            .map_err(app_status)?;
        Ok(Response::new(AppendResponse {
            appended: outcome
                .appended
                .into_iter()
                .map(|a| Appended {
                    event_id: a.event_id.to_string(),
                    pathway_id: a.pathway_id,
                    version: a.version,
                    position: a.position,
                })
                .collect(),
            replayed: outcome.all_replayed,
        }))
    }

    async fn read_stream(
        &self,
        mut request: Request<ReadStreamRequest>,
    ) -> Result<Response<ReadStreamResponse>, Status> {
        let Admitted {
            principal, turn, ..
        } = admitted(&mut request)?;
        let _turn = turn;
        let pathway_id = request.into_inner().pathway_id;
        let views = self
            .app
            .pathway_events(&pathway_id, None, &principal)
            .await
            .map_err(app_status)?;
        let type_of = |id: uuid::Uuid| {
            views
                .iter()
                .find(|v| v.event_id == id)
                .map(|v| v.event_type.as_str())
        };
        let events = views
            .iter()
            .map(|v| {
                let corrected = corrected_id(&v.data).and_then(type_of);
                Ok(StoredEvent {
                    position: v.position,
                    pathway_id: pathway_id.clone(),
                    version: v.version,
                    event_id: v.event_id.to_string(),
                    occurred_on: openptl_rules::date::format(v.occurred_on),
                    recorded_at: timestamp(v.recorded_at),
                    actor: v.actor.clone(),
                    data: Some(data_from_json(v.event_type.as_str(), &v.data, corrected)?),
                })
            })
            .collect::<Result<Vec<_>, Unmappable>>()
            .map_err(|e| app_status(AppError::internal(e.0)))?;
        Ok(Response::new(ReadStreamResponse { events }))
    }

    type SubscribeStream = EventStream;

    async fn subscribe(
        &self,
        mut request: Request<SubscribeRequest>,
    ) -> Result<Response<EventStream>, Status> {
        // A subscription is not a call in progress: it gives its call turn
        // back and holds a subscription's turn instead.
        let Admitted {
            principal, secret, ..
        } = admitted(&mut request)?;
        if !principal.sees_nhs_numbers() {
            return Err(status(ApiError::Forbidden(format!(
                "a {} may not follow the patient-level event feed",
                principal.role.as_str()
            ))));
        }
        let turn = self
            .subscriptions
            .clone()
            .try_acquire_owned()
            .map_err(|_| exhausted("live subscriptions"))?;
        let after = request.into_inner().after_position;
        self.app
            .audit(&principal, "subscribe", None, None)
            .map_err(|e| status(ApiError::App(e)))?;
        let (tx, rx) = tokio::sync::mpsc::channel(SUBSCRIBER_BUFFER);
        let app = self.app.clone();
        let stop = self.stop.clone();
        // The token's end ends the outgoing stream itself: not an error
        // queued behind the buffered events (which a subscriber that does
        // not read would never reach, holding the turn forever).
        let (revoked, ended) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            // The subscription's turn is held while it lives.
            let _turn = turn;
            // Keeps the events open until the revocation is sent, so the
            // stream cannot end quietly first.
            let _open = tx.clone();
            tokio::select! {
                () = follow(app.clone(), principal, after, tx, stop) => {}
                () = token_ends(&app, &secret) => {
                    let _ = revoked.send(status(ApiError::Unauthenticated));
                }
            }
        });
        Ok(Response::new(Box::pin(Revocable {
            events: tokio_stream::wrappers::ReceiverStream::new(rx),
            ended: Some(ended),
            done: false,
        })))
    }
}

/// A subscription's outgoing stream: its events until `ended` says the
/// token ended; then that status, at once (buffered events are dropped),
/// and nothing more.
struct Revocable {
    events: tokio_stream::wrappers::ReceiverStream<Result<StoredEvent, Status>>,
    ended: Option<tokio::sync::oneshot::Receiver<Status>>,
    done: bool,
}

impl Stream for Revocable {
    type Item = Result<StoredEvent, Status>;

    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        if self.done {
            return Poll::Ready(None);
        }
        if let Some(ended) = self.ended.as_mut() {
            match Pin::new(ended).poll(cx) {
                Poll::Ready(Ok(status)) => {
                    self.done = true;
                    return Poll::Ready(Some(Err(status)));
                }
                // The feeder ended without a revocation: events decide.
                Poll::Ready(Err(_)) => self.ended = None,
                Poll::Pending => {}
            }
        }
        Pin::new(&mut self.events).poll_next(cx)
    }
}

/// The event id an `event_corrected`'s data names.
fn corrected_id(data: &serde_json::Value) -> Option<uuid::Uuid> {
    data.get("corrects")?.as_str()?.parse().ok()
}

fn timestamp(at: chrono::DateTime<chrono::Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// Resolves once `secret` no longer authenticates (revoked, expired, or
/// its parent token revoked), checked every [`TOKEN_RECHECK`].
async fn token_ends(app: &App, secret: &str) {
    let mut tick = tokio::time::interval(TOKEN_RECHECK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if app
            .tokens()
            .authenticate(secret, app.clock().now())
            .is_none()
        {
            return;
        }
    }
}

/// Feeds one subscriber from the log until it hangs up: every record after
/// `after` whose pathway it may read, in order. A record is sent only once
/// the projection shows it, so visibility is judged on what it knows.
async fn follow(
    app: Arc<App>,
    principal: Principal,
    after: u64,
    tx: tokio::sync::mpsc::Sender<Result<StoredEvent, Status>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut subscription = Subscription::from(
        app.log().clone(),
        after.saturating_add(1),
        SUBSCRIPTION_PAGE,
    );
    loop {
        let batch = tokio::select! {
            batch = subscription.next() => batch,
            _ = tx.closed() => return,
            _ = stop.wait_for(|stopped| *stopped) => return,
        };
        let records = match batch {
            Ok(Some(batch)) => batch.records,
            Ok(None) => return,
            Err(e) => {
                let _ = tx.send(Err(app_status(AppError::from(e)))).await;
                return;
            }
        };
        let Some(last) = records.last().map(|r| r.position) else {
            continue;
        };
        while !app
            .projection()
            .wait_for(last, Duration::from_secs(5))
            .await
        {
            if tx.is_closed() {
                return;
            }
        }
        for record in records {
            if !app.may_read(&record.stream_id, &principal) {
                continue;
            }
            let event = match stored_event(&app, &record).await {
                Ok(event) => event,
                Err(e) => {
                    tracing::error!(position = record.position, error = %e, "a stored event could not be sent");
                    let _ = tx.send(Err(app_status(e))).await;
                    return;
                }
            };
            if tx.send(Ok(event)).await.is_err() {
                return;
            }
        }
    }
}

/// A stored record as the protobuf message.
async fn stored_event(
    app: &App,
    record: &openptl_log::StoredRecord,
) -> Result<StoredEvent, AppError> {
    let event = openptl_app::decode(record.as_ref())?;
    let event_type = event.data.event_type().as_str();
    let data = event.data.to_json();
    // A correction's new data is typed by the event it corrects.
    let corrected = match corrected_id(&data) {
        Some(id) => app
            .log()
            .find_event(id)
            .await
            .map_err(AppError::from)?
            .map(|r| r.event_type),
        None => None,
    };
    Ok(StoredEvent {
        position: record.position,
        pathway_id: record.stream_id.clone(),
        version: record.version,
        event_id: record.event_id.to_string(),
        occurred_on: openptl_rules::date::format(event.occurred_on),
        recorded_at: timestamp(record.recorded_at),
        actor: record.actor.clone(),
        data: Some(
            data_from_json(event_type, &data, corrected.as_deref())
                .map_err(|e| AppError::internal(e.0))?,
        ),
    })
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;
    use crate::proto::event_data::Kind;
    use crate::proto::{Envelope, EventData, TrackingNoteAdded};

    /// The largest event the rules take in plain text, a thousand times,
    /// fits in one message.
    #[test]
    fn a_thousand_of_the_largest_events_fit_in_one_message() {
        let largest = Envelope {
            event_id: Some(uuid::Uuid::new_v4().to_string()),
            pathway_id: "x".repeat(64),
            occurred_on: "2025-04-07".into(),
            expected_version: Some(u64::MAX),
            data: Some(EventData {
                kind: Some(Kind::TrackingNoteAdded(TrackingNoteAdded {
                    text: "x".repeat(2000),
                    next_action: Some("x".repeat(200)),
                    next_action_due: Some("2025-04-08".into()),
                    owner: Some("x".repeat(100)),
                    escalated: Some(true),
                })),
            }),
        };
        let one = largest.encoded_len();
        assert!(one < EVENT_BYTES, "{one}");
        let request = AppendRequest {
            events: vec![largest; MAX_BATCH],
        };
        assert!(request.encoded_len() <= MAX_MESSAGE_BYTES);
    }
}
