//! Connections to PostgreSQL for the PostgreSQL log: TLS as libpq reads
//! `sslmode` (rustls, decision 81), the session timeouts every connection
//! sets, and connections that come back by themselves with bounded
//! exponential backoff after the database went away (decision 80).

use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::Client;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::LogError;

/// How long one connection attempt may take, all of it (TCP, TLS, start-up,
/// session settings), unless the URL sets `connect_timeout`: an append
/// during an outage is answered within this.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The wait after a first failed connection attempt; it doubles with each
/// failure up to [`BACKOFF_MAX`], plus up to a quarter of jitter (nodes that
/// lost the database together do not knock together).
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Session settings every connection gets, unless the URL's `options`
/// names them (`options=-c lock_timeout=2s`): no node waits forever for the
/// head lock, no statement runs forever, and a node frozen inside a
/// transaction loses it (and the head lock with it).
const SESSION_DEFAULTS: &[(&str, &str)] = &[
    ("lock_timeout", "5s"),
    ("statement_timeout", "30s"),
    ("idle_in_transaction_session_timeout", "60s"),
    // Appends serialize on the head row's lock: under REPEATABLE READ (a
    // server default some sites set) two nodes appending at once would
    // fail each other's transactions.
    ("default_transaction_isolation", "read committed"),
];

/// TCP keepalives and the longest unacknowledged send, unless the URL sets
/// them: a connection whose peer vanished (a firewall's state dropped, a
/// failover behind a virtual address) fails within a minute instead of
/// the kernel's quarter of an hour.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(30);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_RETRIES: u32 = 3;
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(30);

/// The longest one read may take before its connection is given up (a
/// connection gone silent without closing): beyond the server's own
/// `statement_timeout`, so a slow query is the server's error first.
pub(super) const READ_CEILING: Duration = Duration::from_secs(40);

pub(super) fn storage(e: tokio_postgres::Error) -> LogError {
    LogError::storage(format!("PostgreSQL: {}", describe(&e)))
}

/// A driver error with its cause: the server's severity, code and message
/// (never its DETAIL, which can quote stored values), or the I/O error.
pub(super) fn describe(e: &tokio_postgres::Error) -> String {
    use std::error::Error as _;
    match (e.as_db_error(), e.source()) {
        (Some(db), _) => format!("{} {}: {}", db.severity(), db.code().code(), db.message()),
        (None, Some(cause)) => format!("{e}: {cause}"),
        (None, None) => e.to_string(),
    }
}

/// `sslmode` of the URL, as libpq reads it (`allow` is not offered).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Plain TCP.
    Disable,
    /// TLS if the server offers it, the server not authenticated (the
    /// default, as libpq's).
    Prefer,
    /// TLS or no connection; the server is authenticated only when
    /// `sslrootcert` names a CA file (then as `verify-ca`), as libpq does.
    Require,
    /// TLS with a certificate from a trusted CA (`sslrootcert`, else the
    /// Mozilla roots), any host name.
    VerifyCa,
    /// As `verify-ca`, and the certificate names the host connected to.
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> Result<SslMode, LogError> {
        match value {
            "disable" => Ok(SslMode::Disable),
            "prefer" => Ok(SslMode::Prefer),
            "require" => Ok(SslMode::Require),
            "verify-ca" => Ok(SslMode::VerifyCa),
            "verify-full" => Ok(SslMode::VerifyFull),
            other => Err(LogError::storage(format!(
                "the PostgreSQL URL: sslmode `{other}` is not one of disable, prefer, require, verify-ca, verify-full"
            ))),
        }
    }

    /// What tokio-postgres itself is told: whether to ask for TLS and
    /// whether to insist; the verifying is the connector's.
    fn for_driver(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => "require",
        }
    }
}

/// `%xx` escapes of a URL query value decoded (a file path in `sslrootcert`).
fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Takes `sslmode` and `sslrootcert` out of a URL (`postgres://…?…`) or a
/// key=value string, which tokio-postgres would refuse or read otherwise:
/// gives the rest, with the `sslmode` tokio-postgres understands put back.
fn take_tls_params(url: &str) -> Result<(String, SslMode, Option<String>), LogError> {
    let mut mode = SslMode::Prefer;
    let mut root_cert = None;
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("sslmode", v)) => mode = SslMode::parse(&percent_decode(v))?,
                Some(("sslrootcert", v)) => root_cert = Some(percent_decode(v)),
                _ => kept.push(pair.to_string()),
            }
        }
        kept.push(format!("sslmode={}", mode.for_driver()));
        Ok((format!("{base}?{}", kept.join("&")), mode, root_cert))
    } else {
        let mut kept = Vec::new();
        for token in url.split_whitespace() {
            match token.split_once('=') {
                Some(("sslmode", v)) => mode = SslMode::parse(v.trim_matches('\''))?,
                Some(("sslrootcert", v)) => root_cert = Some(v.trim_matches('\'').to_string()),
                _ => kept.push(token.to_string()),
            }
        }
        kept.push(format!("sslmode={}", mode.for_driver()));
        Ok((kept.join(" "), mode, root_cert))
    }
}

fn tls_error(e: impl std::fmt::Display) -> LogError {
    LogError::storage(format!("PostgreSQL TLS settings: {e}"))
}

/// The rustls connector for an `sslmode` (decision 80): ring for the
/// cryptography, the Mozilla roots (`webpki-roots`) unless `sslrootcert`
/// names a PEM file of CA certificates (`system` also means the Mozilla
/// roots here).
fn tls_connector(mode: SslMode, root_cert: Option<&str>) -> Result<MakeRustlsConnect, LogError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(tls_error)?;
    let root_cert = root_cert.filter(|r| !r.is_empty());
    if mode == SslMode::VerifyCa && root_cert.is_none_or(|r| r == "system") {
        // The chain alone, against every public root, with any host name:
        // any certificate a public CA issued for any domain would pass.
        return Err(tls_error(
            "sslmode=verify-ca needs sslrootcert=FILE (the CA that signed the server's certificate); with the public roots use sslmode=verify-full",
        ));
    }
    let verify = match mode {
        SslMode::Disable | SslMode::Prefer => None,
        // libpq: `require` with a CA file verifies the chain, as verify-ca.
        SslMode::Require => root_cert.map(|_| false),
        SslMode::VerifyCa => Some(false),
        SslMode::VerifyFull => Some(true),
    };
    let verifier: Arc<dyn ServerCertVerifier> = match verify {
        None => Arc::new(NoServerAuth(provider)),
        Some(check_name) => {
            let mut roots = RootCertStore::empty();
            match root_cert {
                Some(path) if path != "system" => {
                    let certs = CertificateDer::pem_file_iter(path)
                        .map_err(|e| tls_error(format!("sslrootcert `{path}`: {e}")))?
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(|e| tls_error(format!("sslrootcert `{path}`: {e}")))?;
                    let (added, _) = roots.add_parsable_certificates(certs);
                    if added == 0 {
                        return Err(tls_error(format!(
                            "sslrootcert `{path}` holds no usable certificate"
                        )));
                    }
                }
                _ => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
            }
            let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .map_err(tls_error)?;
            if check_name {
                webpki
            } else {
                Arc::new(AnyName(webpki))
            }
        }
    };
    let config = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

/// `prefer` and `require` without a CA file: encrypted, the server's
/// certificate not checked (libpq's meaning), its handshake signature still.
#[derive(Debug)]
struct NoServerAuth(Arc<CryptoProvider>);

impl ServerCertVerifier for NoServerAuth {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca`: the chain must lead to a trusted CA; the name is not
/// checked (the chain is checked first, so a name error means it held).
#[derive(Debug)]
struct AnyName(Arc<rustls::client::WebPkiServerVerifier>);

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

pub(super) type PgConnection = tokio_postgres::Connection<
    tokio_postgres::Socket,
    <MakeRustlsConnect as MakeTlsConnect<tokio_postgres::Socket>>::Stream,
>;

/// How a node reaches PostgreSQL: the URL read once (TLS, timeouts), and
/// the session settings every new connection gets.
#[derive(Clone)]
pub struct PgConnector {
    config: tokio_postgres::Config,
    tls: MakeRustlsConnect,
    ssl_mode: SslMode,
    /// `SET …;` run on every new connection ([`SESSION_DEFAULTS`] the URL
    /// leaves alone).
    session: String,
    /// The ceiling on one whole connection attempt.
    attempt: Duration,
}

impl PgConnector {
    /// Reads a URL (`postgres://user@host:port/db?sslmode=verify-full&…`)
    /// or a key=value string; connects nowhere yet.
    pub fn parse(url: &str) -> Result<PgConnector, LogError> {
        let (rest, ssl_mode, root_cert) = take_tls_params(url)?;
        let mut config: tokio_postgres::Config = rest
            .parse()
            .map_err(|e| LogError::storage(format!("the PostgreSQL URL: {e}")))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        let says = |name: &str| url.contains(name);
        if !says("keepalives_idle") {
            config.keepalives_idle(KEEPALIVE_IDLE);
        }
        if !says("keepalives_interval") {
            config.keepalives_interval(KEEPALIVE_INTERVAL);
        }
        if !says("keepalives_retries") {
            config.keepalives_retries(KEEPALIVE_RETRIES);
        }
        if config.get_tcp_user_timeout().is_none() {
            config.tcp_user_timeout(TCP_USER_TIMEOUT);
        }
        let attempt = config
            .get_connect_timeout()
            .copied()
            .unwrap_or(CONNECT_TIMEOUT);
        let named = options_named(config.get_options().unwrap_or(""));
        let session = SESSION_DEFAULTS
            .iter()
            .filter(|(name, _)| !named.iter().any(|n| n == name))
            .map(|(name, value)| format!("SET {name} = '{value}';"))
            .collect::<Vec<_>>()
            .join(" ");
        Ok(PgConnector {
            config,
            tls: tls_connector(ssl_mode, root_cert.as_deref())?,
            ssl_mode,
            session,
            attempt,
        })
    }

    /// The `sslmode` read from the URL.
    pub fn ssl_mode(&self) -> SslMode {
        self.ssl_mode
    }

    /// One connection attempt, all of it within the attempt ceiling: hands
    /// the connection to `drive` (which must poll it), then runs the session
    /// settings and `then`.
    pub(super) async fn connect_driving(
        &self,
        drive: impl FnOnce(PgConnection),
        then: &str,
    ) -> Result<Client, LogError> {
        let attempt = async {
            let (client, connection) = self
                .config
                .connect(self.tls.clone())
                .await
                .map_err(storage)?;
            drive(connection);
            let setup = format!("{} {then}", self.session);
            if !setup.trim().is_empty() {
                client.batch_execute(&setup).await.map_err(storage)?;
            }
            Ok(client)
        };
        tokio::time::timeout(self.attempt, attempt)
            .await
            .map_err(|_| {
                LogError::storage(format!(
                    "PostgreSQL: no connection within {} ms",
                    self.attempt.as_millis()
                ))
            })?
    }

    /// A connection driven by a task of its own, which ends with it.
    pub async fn client(&self) -> Result<Client, LogError> {
        self.connect_with("").await
    }

    pub(super) async fn connect_with(&self, then: &str) -> Result<Client, LogError> {
        self.connect_driving(
            |connection| {
                tokio::spawn(async move {
                    if let Err(e) = connection.await {
                        tracing::warn!(error = %describe(&e), "a PostgreSQL connection ended");
                    }
                });
            },
            then,
        )
        .await
    }
}

/// Bounded exponential backoff between connection attempts.
/// The settings an `options` string names (`-c name=value` or
/// `--name=value`), so a default is left out only for a setting the URL
/// really sets (not one whose name merely contains it, as
/// `deadlock_timeout` contains `lock_timeout`).
fn options_named(options: &str) -> Vec<String> {
    let mut named = Vec::new();
    let mut words = options.split_whitespace();
    while let Some(word) = words.next() {
        let setting = if word == "-c" {
            words.next()
        } else {
            word.strip_prefix("-c").or_else(|| word.strip_prefix("--"))
        };
        if let Some((name, _)) = setting.and_then(|s| s.split_once('=')) {
            named.push(name.replace('-', "_"));
        }
    }
    named
}

pub(super) struct Backoff {
    delay: Duration,
    next: Instant,
}

impl Backoff {
    pub(super) fn new() -> Backoff {
        Backoff {
            delay: BACKOFF_MIN,
            next: Instant::now(),
        }
    }

    /// Whether the next attempt is due.
    pub(super) fn due(&self) -> bool {
        Instant::now() >= self.next
    }

    /// How long until the next attempt is due.
    pub(super) fn wait(&self) -> Duration {
        self.next.saturating_duration_since(Instant::now())
    }

    pub(super) fn failed(&mut self) {
        // Jitter without a random source of its own: the clock's nanoseconds.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let jitter = self.delay.mul_f64(f64::from(nanos % 1000) / 4000.0);
        self.next = Instant::now() + self.delay + jitter;
        self.delay = (self.delay * 2).min(BACKOFF_MAX);
    }

    pub(super) fn succeeded(&mut self) {
        *self = Backoff::new();
    }
}

/// A connection that comes back: reads share it (tokio-postgres pipelines
/// concurrent queries), and a lost one is opened again by the next read
/// once the backoff allows (until then reads fail at once).
pub(super) struct Link {
    connector: Arc<PgConnector>,
    state: tokio::sync::Mutex<LinkState>,
}

struct LinkState {
    client: Option<Arc<Client>>,
    backoff: Backoff,
    last_error: String,
}

impl Link {
    pub(super) fn new(connector: Arc<PgConnector>, client: Client) -> Link {
        Link {
            connector,
            state: tokio::sync::Mutex::new(LinkState {
                client: Some(Arc::new(client)),
                backoff: Backoff::new(),
                last_error: String::new(),
            }),
        }
    }

    /// Runs `read` (a query on `client`, had from [`Link::client`]) within
    /// [`READ_CEILING`]. A read that gets no answer in time gives its
    /// connection up, so the next read opens another: a connection gone
    /// silent without closing (a half-open TCP) once held every read of
    /// the node, appends included, for good.
    pub(super) async fn read<T>(
        &self,
        client: &Arc<Client>,
        read: impl std::future::Future<Output = Result<T, tokio_postgres::Error>>,
    ) -> Result<T, LogError> {
        match tokio::time::timeout(READ_CEILING, read).await {
            Ok(answer) => answer.map_err(storage),
            Err(_) => {
                let why = format!(
                    "a read got no answer within {} s; its connection is given up",
                    READ_CEILING.as_secs()
                );
                tracing::warn!(reason = %why, "PostgreSQL read connection silent; reconnecting");
                let mut state = self.state.lock().await;
                if state
                    .client
                    .as_ref()
                    .is_some_and(|c| Arc::ptr_eq(c, client))
                {
                    state.client = None;
                }
                Err(LogError::storage(format!("PostgreSQL: {why}")))
            }
        }
    }

    pub(super) async fn client(&self) -> Result<Arc<Client>, LogError> {
        let mut state = self.state.lock().await;
        if let Some(client) = &state.client {
            if !client.is_closed() {
                return Ok(client.clone());
            }
            tracing::warn!("the PostgreSQL read connection was lost; reconnecting");
            state.client = None;
        }
        if !state.backoff.due() {
            return Err(LogError::storage(format!(
                "PostgreSQL is unreachable (next attempt in {} ms): {}",
                state.backoff.wait().as_millis(),
                state.last_error
            )));
        }
        match self.connector.client().await {
            Ok(client) => {
                state.backoff.succeeded();
                let client = Arc::new(client);
                state.client = Some(client.clone());
                tracing::info!("PostgreSQL read connection open again");
                Ok(client)
            }
            Err(e) => {
                state.backoff.failed();
                state.last_error = e.to_string();
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sslmode_and_sslrootcert_are_taken_out_of_urls() {
        let cases: &[(&str, &str, SslMode, Option<&str>)] = &[
            (
                "postgres://u@h/db",
                "postgres://u@h/db?sslmode=prefer",
                SslMode::Prefer,
                None,
            ),
            (
                "postgres://u@h:5432/db?sslmode=disable",
                "postgres://u@h:5432/db?sslmode=disable",
                SslMode::Disable,
                None,
            ),
            (
                "postgresql://u@h/db?application_name=x&sslmode=require",
                "postgresql://u@h/db?application_name=x&sslmode=require",
                SslMode::Require,
                None,
            ),
            (
                "postgres://u@h/db?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem",
                "postgres://u@h/db?sslmode=require",
                SslMode::VerifyFull,
                Some("/etc/ca.pem"),
            ),
            (
                "postgres://u@h/db?sslrootcert=/etc/ca.pem&sslmode=verify-ca&connect_timeout=2",
                "postgres://u@h/db?connect_timeout=2&sslmode=require",
                SslMode::VerifyCa,
                Some("/etc/ca.pem"),
            ),
            (
                "host=h user=u sslmode=verify-full sslrootcert=/etc/ca.pem",
                "host=h user=u sslmode=require",
                SslMode::VerifyFull,
                Some("/etc/ca.pem"),
            ),
            (
                "host=h user=u",
                "host=h user=u sslmode=prefer",
                SslMode::Prefer,
                None,
            ),
        ];
        for (url, rest, mode, root) in cases {
            let (got_rest, got_mode, got_root) = take_tls_params(url).unwrap();
            assert_eq!(
                (got_rest.as_str(), got_mode, got_root.as_deref()),
                (*rest, *mode, *root),
                "{url}"
            );
        }
        assert!(take_tls_params("postgres://u@h/db?sslmode=allow").is_err());
        assert!(take_tls_params("postgres://u@h/db?sslmode=bogus").is_err());
    }

    #[test]
    fn a_connector_builds_for_every_sslmode() {
        for mode in ["disable", "prefer", "require", "verify-full"] {
            let url = format!("postgres://postgres@127.0.0.1:5432/test?sslmode={mode}");
            let connector = PgConnector::parse(&url).unwrap();
            assert_eq!(connector.ssl_mode(), SslMode::parse(mode).unwrap());
            assert_eq!(connector.attempt, CONNECT_TIMEOUT);
        }
        // A CA file that is not there is refused at once, not at connect.
        let missing = "postgres://h/db?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem";
        assert!(PgConnector::parse(missing).is_err());
        // `system`: the built-in roots.
        PgConnector::parse("postgres://h/db?sslmode=verify-full&sslrootcert=system").unwrap();
        // verify-ca checks no host name: only against a CA file of one's own.
        for url in [
            "postgres://h/db?sslmode=verify-ca",
            "postgres://h/db?sslmode=verify-ca&sslrootcert=system",
        ] {
            let refused = PgConnector::parse(url).err().expect("refused").to_string();
            assert!(refused.contains("sslrootcert=FILE"), "{refused}");
        }
    }

    #[test]
    fn session_timeouts_default_unless_the_url_sets_them() {
        let plain = PgConnector::parse("postgres://h/db").unwrap();
        for (name, value) in SESSION_DEFAULTS {
            assert!(plain.session.contains(&format!("SET {name} = '{value}';")));
        }
        let set = PgConnector::parse(
            "postgres://h/db?options=-c%20lock_timeout%3D200ms&connect_timeout=2",
        )
        .unwrap();
        assert!(!set.session.contains("lock_timeout"));
        assert!(set.session.contains("SET statement_timeout"));
        // Another setting whose name holds `lock_timeout` leaves it set.
        let other =
            PgConnector::parse("postgres://h/db?options=-c%20deadlock_timeout%3D2s").unwrap();
        assert!(other.session.contains("SET lock_timeout = '5s';"));
        let long = PgConnector::parse("postgres://h/db?options=--statement-timeout%3D1s").unwrap();
        assert!(!long.session.contains("statement_timeout"));
        assert_eq!(set.attempt, Duration::from_secs(2));
    }

    #[test]
    fn backoff_doubles_to_its_ceiling_and_resets() {
        let mut backoff = Backoff::new();
        assert!(backoff.due());
        let mut waits = Vec::new();
        for _ in 0..10 {
            backoff.failed();
            waits.push(backoff.wait());
        }
        assert!(!backoff.due());
        assert!(waits[0] <= BACKOFF_MIN + BACKOFF_MIN / 4);
        assert!(waits[1] >= BACKOFF_MIN * 2 - Duration::from_millis(5));
        assert!(waits.iter().all(|w| *w <= BACKOFF_MAX + BACKOFF_MAX / 4));
        assert!(waits[9] >= BACKOFF_MAX - Duration::from_millis(5));
        backoff.succeeded();
        assert!(backoff.due());
    }
}
