//! The gRPC API (`proto/openptl/v1/openptl.proto`) for integration engines:
//! `Append` a batch, `ReadStream` one pathway, `Subscribe` to the global log
//! (catch-up, then live). It is another way into the same [`App`]: appends
//! become the HTTP API's JSON envelopes and go through the same checks; the
//! same bearer tokens, roles and trust scopes apply; errors carry the HTTP
//! API's error body and stable code.
//!
//! Bounded like the HTTP API ([`Limits`]): at most [`MAX_BATCH`] events per
//! `Append`, a time limit and a cap on calls in flight, a cap on live
//! subscriptions, and a subscription ends within a second of its token
//! being revoked or expiring.

// `tonic::Status` is what every handler answers with; boxing it would only
// add an allocation to each refusal.
#![allow(clippy::result_large_err)]

pub mod convert;

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use openptl_app::access::Principal;
use openptl_app::{App, AppError, MAX_BATCH};
use openptl_http::auth::ClientKey;
use openptl_http::{ApiError, FailedAuth};
use openptl_log::Subscription;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio_stream::Stream;
use tonic::metadata::MetadataValue;
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
}

/// As the HTTP API's request time limit.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// Calls in flight per connection by default.
pub const DEFAULT_CALLS_PER_CONNECTION: usize = 32;
/// Calls in flight in all by default.
pub const DEFAULT_CALLS: usize = 256;
/// Live subscriptions by default: a few per integration engine or warehouse.
pub const DEFAULT_SUBSCRIPTIONS: usize = 64;
/// How often a live subscription re-checks its token.
const TOKEN_RECHECK: Duration = Duration::from_secs(1);

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout: DEFAULT_TIMEOUT,
            calls_per_connection: DEFAULT_CALLS_PER_CONNECTION,
            calls: DEFAULT_CALLS,
            subscriptions: DEFAULT_SUBSCRIPTIONS,
        }
    }
}

/// The gRPC service on an [`App`].
pub struct Service {
    app: Arc<App>,
    /// Becomes true when the service shuts down: subscriptions then end.
    stop: watch::Receiver<bool>,
    /// Failed bearer tokens per client address.
    failures: Arc<FailedAuth>,
    /// Turns for `Append` and `ReadStream` calls ([`Limits::calls`]).
    calls: Arc<Semaphore>,
    /// Turns for live subscriptions ([`Limits::subscriptions`]).
    subscriptions: Arc<Semaphore>,
}

/// The tonic server for `app`, ready to add to a `tonic::transport::Server`;
/// its subscriptions end when `stop` becomes true; failed bearer tokens are
/// counted per client address in `failures`.
pub fn server(
    app: Arc<App>,
    failures: Arc<FailedAuth>,
    limits: Limits,
    stop: watch::Receiver<bool>,
) -> OpenPtlServer<Service> {
    OpenPtlServer::new(Service {
        app,
        stop,
        failures,
        calls: Arc::new(Semaphore::new(limits.calls.max(1))),
        subscriptions: Arc::new(Semaphore::new(limits.subscriptions)),
    })
}

/// Serves the gRPC API on `listener` until `stop` becomes true (then ends
/// every subscription and finishes the calls in flight).
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
            tokio_stream::wrappers::TcpListenerStream::new(listener),
            async move {
                let _ = until.wait_for(|stopped| *stopped).await;
            },
        )
        .await
}

/// A gRPC status carrying the HTTP API's error body and stable code.
pub fn status(error: ApiError) -> Status {
    let (http, code, body) = error.describe();
    let grpc = match (http.as_u16(), code) {
        (_, "version_conflict") => Code::Aborted,
        (_, "pathway_exists" | "duplicate_event_id" | "treatment_already_started") => {
            Code::AlreadyExists
        }
        (_, "pathway_closed") => Code::FailedPrecondition,
        (400 | 422, _) => Code::InvalidArgument,
        (401, _) => Code::Unauthenticated,
        (403, _) => Code::PermissionDenied,
        (404, _) => Code::NotFound,
        (409, _) => Code::Aborted,
        (429, _) => Code::ResourceExhausted,
        (503, _) => Code::Unavailable,
        _ => Code::Internal,
    };
    let mut status = Status::new(grpc, body.to_string());
    if let Ok(value) = MetadataValue::try_from(code) {
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

impl Service {
    /// A turn for an `Append` or `ReadStream` call, or `RESOURCE_EXHAUSTED`.
    fn call_turn(&self) -> Result<OwnedSemaphorePermit, Status> {
        self.calls
            .clone()
            .try_acquire_owned()
            .map_err(|_| exhausted("calls in progress"))
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

    fn principal<T>(&self, request: &Request<T>) -> Result<Principal, Status> {
        let secret = Self::secret(request);
        let client = request
            .remote_addr()
            .map_or(ClientKey::UNKNOWN, |a| ClientKey::of(a.ip()));
        openptl_http::auth::authenticate(&self.app, &self.failures, client, secret.as_deref())
            .map_err(status)
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<StoredEvent, Status>> + Send>>;

#[tonic::async_trait]
impl OpenPtl for Service {
    async fn append(
        &self,
        request: Request<AppendRequest>,
    ) -> Result<Response<AppendResponse>, Status> {
        let _turn = self.call_turn()?;
        let principal = self.principal(&request)?;
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
        request: Request<ReadStreamRequest>,
    ) -> Result<Response<ReadStreamResponse>, Status> {
        let _turn = self.call_turn()?;
        let principal = self.principal(&request)?;
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
            .map_err(|e| app_status(AppError::Internal(e.0)))?;
        Ok(Response::new(ReadStreamResponse { events }))
    }

    type SubscribeStream = EventStream;

    async fn subscribe(
        &self,
        request: Request<SubscribeRequest>,
    ) -> Result<Response<EventStream>, Status> {
        let principal = self.principal(&request)?;
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
        let secret = Self::secret(&request).unwrap_or_default();
        let after = request.into_inner().after_position;
        self.app.audit(&principal, "subscribe", None, None);
        let (tx, rx) = tokio::sync::mpsc::channel(SUBSCRIBER_BUFFER);
        let app = self.app.clone();
        let stop = self.stop.clone();
        tokio::spawn(async move {
            // The subscription's turn is held while it lives.
            let _turn = turn;
            let ended = tx.clone();
            tokio::select! {
                () = follow(app.clone(), principal, after, tx, stop) => {}
                () = token_ends(&app, &secret) => {
                    let _ = ended.send(Err(status(ApiError::Unauthenticated))).await;
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
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
        if app.tokens.authenticate(secret, app.clock.now()).is_none() {
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
    let mut subscription = Subscription::from(app.log.clone(), after + 1, SUBSCRIPTION_PAGE);
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
                let _ = tx
                    .send(Err(app_status(AppError::Storage(e.to_string()))))
                    .await;
                return;
            }
        };
        let Some(last) = records.last().map(|r| r.position) else {
            continue;
        };
        while !app.projection.wait_for(last, Duration::from_secs(5)).await {
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
    let event = openptl_app::projection::decode(record.as_ref())?;
    let event_type = event.data.event_type().as_str();
    let data = event.data.to_json();
    // A correction's new data is typed by the event it corrects.
    let corrected = match corrected_id(&data) {
        Some(id) => app
            .log
            .find_event(id)
            .await
            .map_err(|e| AppError::Storage(e.to_string()))?
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
                .map_err(|e| AppError::Internal(e.0))?,
        ),
    })
}
