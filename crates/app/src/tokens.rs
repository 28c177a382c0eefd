//! Bearer tokens (issue 7): random secrets handed out once, stored only as
//! SHA-256 hashes, with a role, trusts, an optional expiry and revocation.
//!
//! The store is a JSON file in the data directory (`tokens.json`), written
//! atomically (temporary file, fsync, rename, directory fsync). The service
//! re-reads it when it changes, so `openptl token create` works beside a
//! running service. Tokens are not events: they are configuration, and
//! creating or revoking one is logged (without the secret).
//!
//! A secret looks like `optl_<id>_<64 hex digits>`: the id finds the record,
//! the hash of the whole secret proves it.
//!
//! The dashboard's sign-in does not put the token it was given in the
//! cookie: it creates a **session token** ([`TokenStore::create_session`]),
//! a child of that token that acts as it, lives at most 12 hours, ends with
//! its parent, and is revoked and forgotten at sign-out.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::PoisonError;
use std::time::{Instant, SystemTime};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::access::{Principal, Role, TrustScope};
use openptl_log::Failure;

/// One token, as stored (never the secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub id: String,
    pub label: String,
    pub role: Role,
    /// ODS codes, or `["*"]` for every trust.
    pub trusts: Vec<String>,
    /// The alliance whose trusts an `alliance_viewer` reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alliance: Option<String>,
    pub created_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<DateTime<Utc>>,
    /// SHA-256 of the secret, hex.
    #[serde(rename = "sha256")]
    pub hash: String,
    /// For a dashboard session token: the id of the token it was signed in
    /// with (it acts as that token and ends with it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
}

/// Live session tokens one token may have at once: signing in again beyond
/// this ends the oldest session (the file stays small however often a
/// dashboard signs in).
pub const MAX_SESSIONS_PER_TOKEN: usize = 16;

/// What a new token is for.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    pub role: Role,
    #[serde(default)]
    pub trusts: Vec<String>,
    #[serde(default)]
    pub alliance: Option<String>,
    #[serde(default)]
    pub label: Option<String>,
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("{0}")]
    Invalid(String),
    #[error("no token with id {0}")]
    NotFound(String),
    #[error("the token store could not be written: {0}")]
    Storage(#[source] Failure),
}

/// The tokens file's format version, written as its `version` field. A
/// file without one was written before versions (it is version 1). A file
/// of a later version, written by a newer OpenPTL, is refused and never
/// rewritten: tokens are not derived data (decision 92).
pub const TOKENS_FORMAT: u32 = 1;

fn first_format() -> u32 {
    1
}

#[derive(Serialize, Deserialize)]
struct TokenFile {
    #[serde(default = "first_format")]
    version: u32,
    tokens: Vec<TokenRecord>,
}

/// The version of a tokens file, read before anything else in it (a newer
/// file may hold tokens this binary cannot read).
#[derive(Deserialize)]
struct Versioned {
    #[serde(default = "first_format")]
    version: u32,
}

struct Loaded {
    tokens: BTreeMap<String, TokenRecord>,
    modified: Option<SystemTime>,
    checked: Option<Instant>,
}

/// The token store: a file (or memory only, for tests).
pub struct TokenStore {
    path: Option<PathBuf>,
    loaded: Mutex<Loaded>,
}

fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).expect("the operating system provides randomness");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// Compares without stopping at the first difference.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

impl TokenStore {
    /// A store kept in `path` (created on first write).
    pub fn open(path: &Path) -> Result<TokenStore, TokenError> {
        let store = TokenStore {
            path: Some(path.to_path_buf()),
            loaded: Mutex::new(Loaded {
                tokens: BTreeMap::new(),
                modified: None,
                checked: None,
            }),
        };
        store.reload(true)?;
        Ok(store)
    }

    /// A store in memory only.
    pub fn in_memory() -> TokenStore {
        TokenStore {
            path: None,
            loaded: Mutex::new(Loaded {
                tokens: BTreeMap::new(),
                modified: None,
                checked: None,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Loaded> {
        self.loaded.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Re-reads the file if it changed (checked at most once a second unless forced).
    fn reload(&self, force: bool) -> Result<(), TokenError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let mut loaded = self.lock();
        if !force && loaded.checked.is_some_and(|t| t.elapsed().as_secs() < 1) {
            return Ok(());
        }
        loaded.checked = Some(Instant::now());
        let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
        if !force && modified == loaded.modified {
            return Ok(());
        }
        let tokens = match std::fs::read(path) {
            Ok(bytes) => {
                let not_tokens = |e: serde_json::Error| {
                    TokenError::Storage(Failure::caused_by(
                        format!("{} is not a token file", path.display()),
                        e,
                    ))
                };
                let versioned: Versioned = serde_json::from_slice(&bytes).map_err(not_tokens)?;
                if versioned.version > TOKENS_FORMAT {
                    return Err(TokenError::Storage(Failure::new(format!(
                        "{} is a tokens file of format version {}, written by a newer OpenPTL (this binary reads version {TOKENS_FORMAT}): run that version or a later one; the file is left as it is",
                        path.display(),
                        versioned.version
                    ))));
                }
                let file: TokenFile = serde_json::from_slice(&bytes).map_err(not_tokens)?;
                file.tokens.into_iter().map(|t| (t.id.clone(), t)).collect()
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => {
                return Err(TokenError::Storage(Failure::caused_by(
                    path.display().to_string(),
                    e,
                )))
            }
        };
        loaded.tokens = tokens;
        loaded.modified = modified;
        Ok(())
    }

    /// Holds an exclusive lock on the store across processes (the CLI beside
    /// the service) from re-reading to writing, so no change is lost.
    fn exclusive(&self) -> Result<Option<std::fs::File>, TokenError> {
        let Some(path) = &self.path else {
            return Ok(None);
        };
        let lock_path = path.with_extension("json.lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| {
                TokenError::Storage(Failure::caused_by(lock_path.display().to_string(), e))
            })?;
        file.lock().map_err(|e| {
            TokenError::Storage(Failure::caused_by(lock_path.display().to_string(), e))
        })?;
        Ok(Some(file))
    }

    fn save(&self, tokens: &BTreeMap<String, TokenRecord>) -> Result<(), TokenError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let file = TokenFile {
            version: TOKENS_FORMAT,
            tokens: tokens.values().cloned().collect(),
        };
        let bytes = serde_json::to_vec_pretty(&file)
            .map_err(|e| TokenError::Storage(Failure::caused_by("the tokens file", e)))?;
        let tmp = path.with_extension("json.tmp");
        let storage = |e: std::io::Error| {
            TokenError::Storage(Failure::caused_by(path.display().to_string(), e))
        };
        {
            use std::io::Write;
            let mut options = std::fs::OpenOptions::new();
            options.create(true).write(true).truncate(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(0o600);
            }
            let written = options.open(&tmp).and_then(|mut f| {
                f.write_all(&bytes)?;
                f.sync_all()
            });
            if let Err(e) = written {
                // A full disk, say: the tokens file is untouched; the part
                // written goes, so it does not hold the space.
                let _ = std::fs::remove_file(&tmp);
                return Err(storage(e));
            }
        }
        std::fs::rename(&tmp, path).map_err(storage)?;
        if let Some(dir) = path.parent() {
            if let Ok(d) = std::fs::File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    }

    /// Creates a token; returns its record and the secret (shown once).
    pub fn create(
        &self,
        new: NewToken,
        now: DateTime<Utc>,
    ) -> Result<(TokenRecord, String), TokenError> {
        self.create_with_secret(new, now, None)
    }

    /// As [`TokenStore::create`], with a given secret (the bootstrap admin
    /// token of SPEC 10): re-creating it with the same secret is a no-op.
    pub fn create_with_secret(
        &self,
        new: NewToken,
        now: DateTime<Utc>,
        secret: Option<&str>,
    ) -> Result<(TokenRecord, String), TokenError> {
        check(&new)?;
        let _lock = self.exclusive()?;
        self.reload(true)?;
        let mut loaded = self.lock();
        if let Some(secret) = secret {
            if secret.len() < 16 {
                return Err(TokenError::Invalid(
                    "a given token must be at least 16 characters".into(),
                ));
            }
            let hash = sha256_hex(secret);
            if let Some(existing) = loaded.tokens.values().find(|t| same(&t.hash, &hash)) {
                return Ok((existing.clone(), secret.to_string()));
            }
        }
        let id = loop {
            let id = random_hex(4);
            if !loaded.tokens.contains_key(&id) {
                break id;
            }
        };
        let secret = secret.map_or_else(|| format!("optl_{id}_{}", random_hex(32)), str::to_string);
        let record = TokenRecord {
            id: id.clone(),
            label: new.label.clone().unwrap_or_else(|| format!("token-{id}")),
            role: new.role,
            trusts: new.trusts.clone(),
            alliance: new.alliance.clone(),
            created_at: now,
            expires_at: new.expires_at,
            revoked_at: None,
            hash: sha256_hex(&secret),
            parent: None,
        };
        let mut tokens = loaded.tokens.clone();
        tokens.insert(id, record.clone());
        self.save(&tokens)?;
        loaded.tokens = tokens;
        loaded.modified = self
            .path
            .as_ref()
            .and_then(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
        tracing::info!(token = %record.id, role = record.role.as_str(), "access token created");
        Ok((record, secret))
    }

    /// Revokes a token (it stops working at once; the record stays).
    pub fn revoke(&self, id: &str, now: DateTime<Utc>) -> Result<TokenRecord, TokenError> {
        let _lock = self.exclusive()?;
        self.reload(true)?;
        let mut loaded = self.lock();
        let mut tokens = loaded.tokens.clone();
        let record = tokens
            .get_mut(id)
            .ok_or_else(|| TokenError::NotFound(id.to_string()))?;
        record.revoked_at.get_or_insert(now);
        let record = record.clone();
        self.save(&tokens)?;
        loaded.tokens = tokens;
        tracing::info!(token = %id, "access token revoked");
        Ok(record)
    }

    /// Creates a session token for the dashboard, signed in with `parent`:
    /// it acts as `parent` and expires after `ttl` (or with `parent`, if
    /// sooner). Expired and revoked sessions are forgotten, and `parent`'s
    /// oldest session if it has [`MAX_SESSIONS_PER_TOKEN`] already.
    pub fn create_session(
        &self,
        parent: &TokenRecord,
        now: DateTime<Utc>,
        ttl: chrono::Duration,
    ) -> Result<(TokenRecord, String), TokenError> {
        let _lock = self.exclusive()?;
        self.reload(true)?;
        let mut loaded = self.lock();
        let mut tokens = loaded.tokens.clone();
        // Signing in with a session's secret opens a session of its token.
        let parent = match &parent.parent {
            Some(id) => tokens
                .get(id)
                .cloned()
                .ok_or_else(|| TokenError::NotFound(id.clone()))?,
            None => parent.clone(),
        };
        // Sessions that ended are kept a while (so a dashboard still polling
        // with one is told it ended), and go first when there are too many.
        let kept = chrono::Duration::hours(ENDED_SESSION_KEPT_HOURS);
        tokens.retain(|_, t| {
            t.parent.is_none()
                || (t.revoked_at.is_none() && t.expires_at.is_none_or(|e| now < e + kept))
        });
        let mut sessions: Vec<(bool, DateTime<Utc>, String)> = tokens
            .values()
            .filter(|t| t.parent.as_deref() == Some(parent.id.as_str()))
            .map(|t| (usable(t, now), t.created_at, t.id.clone()))
            .collect();
        sessions.sort();
        let excess = (sessions.len() + 1).saturating_sub(MAX_SESSIONS_PER_TOKEN);
        for (_, _, id) in sessions.iter().take(excess) {
            tokens.remove(id);
        }
        let id = loop {
            let id = random_hex(4);
            if !tokens.contains_key(&id) {
                break id;
            }
        };
        let secret = format!("optl_{id}_{}", random_hex(32));
        let expires_at = match parent.expires_at {
            Some(e) => e.min(now + ttl),
            None => now + ttl,
        };
        let record = TokenRecord {
            id: id.clone(),
            label: parent.label.clone(),
            role: parent.role,
            trusts: parent.trusts.clone(),
            alliance: parent.alliance.clone(),
            created_at: now,
            expires_at: Some(expires_at),
            revoked_at: None,
            hash: sha256_hex(&secret),
            parent: Some(parent.id.clone()),
        };
        tokens.insert(id, record.clone());
        self.save(&tokens)?;
        loaded.tokens = tokens;
        loaded.modified = self
            .path
            .as_ref()
            .and_then(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
        Ok((record, secret))
    }

    /// Ends a session token (sign-out): it stops working at once and its
    /// record is forgotten. A token that is not a session is left alone
    /// (false).
    pub fn end_session(&self, id: &str) -> Result<bool, TokenError> {
        let _lock = self.exclusive()?;
        self.reload(true)?;
        let mut loaded = self.lock();
        if loaded.tokens.get(id).is_none_or(|t| t.parent.is_none()) {
            return Ok(false);
        }
        let mut tokens = loaded.tokens.clone();
        tokens.remove(id);
        self.save(&tokens)?;
        loaded.tokens = tokens;
        loaded.modified = self
            .path
            .as_ref()
            .and_then(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
        Ok(true)
    }

    pub fn list(&self) -> Vec<TokenRecord> {
        let _ = self.reload(false);
        self.lock().tokens.values().cloned().collect()
    }

    /// Whether any usable token exists (for the start-up warning).
    pub fn any_usable(&self, now: DateTime<Utc>) -> bool {
        self.list().iter().any(|t| usable(t, now))
    }

    /// The record behind a presented secret, if it is valid now.
    pub fn authenticate(&self, secret: &str, now: DateTime<Utc>) -> Option<TokenRecord> {
        self.check_secret(secret, now).ok()
    }

    /// The record behind a presented secret if it is valid now; else
    /// whether it is no token at all ([`Refusal::Unknown`]: a guess, a typo)
    /// or a real one that has ended ([`Refusal::Ended`]: expired, revoked,
    /// or a session whose token has ended; the secret matched its record).
    pub fn check_secret(&self, secret: &str, now: DateTime<Utc>) -> Result<TokenRecord, Refusal> {
        if let Err(e) = self.reload(false) {
            tracing::error!(error = %e, "the token store could not be read");
        }
        let hash = sha256_hex(secret);
        let loaded = self.lock();
        // Find by id when the secret has our shape; else (a bootstrap secret) by hash.
        let by_id = secret
            .strip_prefix("optl_")
            .and_then(|rest| rest.split_once('_'))
            .and_then(|(id, _)| loaded.tokens.get(id));
        let record = match by_id {
            Some(r) => Some(r),
            None => loaded.tokens.values().find(|t| same(&t.hash, &hash)),
        }
        .ok_or(Refusal::Unknown)?;
        if !same(&record.hash, &hash) {
            return Err(Refusal::Unknown);
        }
        // A session ends with the token it was signed in with.
        let parent_usable = record
            .parent
            .as_ref()
            .is_none_or(|p| loaded.tokens.get(p).is_some_and(|p| usable(p, now)));
        if usable(record, now) && parent_usable {
            Ok(record.clone())
        } else {
            Err(Refusal::Ended)
        }
    }
}

/// Why a presented secret does not authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// It is no token's secret.
    #[error("no token has this secret")]
    Unknown,
    /// It is the secret of a token that has ended (expired or revoked, or
    /// a session whose own token ended).
    #[error("the token has expired or been revoked")]
    Ended,
}

/// How long a dashboard session's record is kept after it expires, so a
/// dashboard left open that goes on polling with it is told its session
/// ended ([`Refusal::Ended`], not counted as a failed authentication)
/// rather than that its secret is unknown.
pub const ENDED_SESSION_KEPT_HOURS: i64 = 24;

fn usable(t: &TokenRecord, now: DateTime<Utc>) -> bool {
    t.revoked_at.is_none() && t.expires_at.is_none_or(|e| now < e)
}

fn check(new: &NewToken) -> Result<(), TokenError> {
    let all = new.trusts.iter().any(|t| t == "*");
    if all && new.trusts.len() > 1 {
        return Err(TokenError::Invalid("`*` (every trust) stands alone".into()));
    }
    for t in new.trusts.iter().filter(|t| *t != "*") {
        if openptl_rules::OdsCode::parse(t).is_none() {
            return Err(TokenError::Invalid(format!(
                "`{t}` is not an ODS code (3 to 5 letters and digits)"
            )));
        }
    }
    match new.role {
        Role::Admin => {}
        Role::AllianceViewer => {
            if new.alliance.is_none() {
                return Err(TokenError::Invalid(
                    "an alliance_viewer token needs `alliance`".into(),
                ));
            }
        }
        _ => {
            if new.trusts.is_empty() {
                return Err(TokenError::Invalid(format!(
                    "a {} token needs `trusts` (ODS codes, or \"*\" for every trust)",
                    new.role.as_str()
                )));
            }
        }
    }
    if let Some(label) = &new.label {
        if label.is_empty() || label.len() > 100 || label.chars().any(char::is_control) {
            return Err(TokenError::Invalid(
                "`label` must be 1 to 100 printable characters".into(),
            ));
        }
    }
    Ok(())
}

impl TokenRecord {
    /// The principal this token acts as; `alliances` resolves an alliance name.
    pub fn principal(
        &self,
        alliances: &BTreeMap<String, Vec<openptl_rules::OdsCode>>,
    ) -> Principal {
        let trusts = if self.role == Role::Admin || self.trusts.iter().any(|t| t == "*") {
            TrustScope::All
        } else {
            let mut set: std::collections::BTreeSet<String> =
                self.trusts.iter().map(|t| t.to_ascii_uppercase()).collect();
            if let Some(members) = self.alliance.as_ref().and_then(|a| alliances.get(a)) {
                set.extend(members.iter().map(|m| m.as_str().to_string()));
            }
            TrustScope::Only(set)
        };
        Principal {
            actor: self.label.clone(),
            role: self.role,
            trusts,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        "2026-01-01T00:00:00Z".parse().unwrap()
    }

    fn coordinator() -> NewToken {
        NewToken {
            role: Role::Coordinator,
            trusts: vec!["RXH".into()],
            alliance: None,
            label: Some("jane".into()),
            expires_at: Some("2026-02-01T00:00:00Z".parse().unwrap()),
        }
    }

    #[test]
    fn a_tokens_file_without_a_version_is_read_and_a_newer_one_is_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.json");
        // As written before versions: no `version` field.
        let store = TokenStore::open(&path).unwrap();
        store.create(coordinator(), now()).unwrap();
        let mut file: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(file["version"], 1);
        file.as_object_mut().unwrap().remove("version");
        std::fs::write(&path, serde_json::to_vec(&file).unwrap()).unwrap();
        let store = TokenStore::open(&path).unwrap();
        assert_eq!(store.list().len(), 1);
        store.create(coordinator(), now()).unwrap();
        assert_eq!(TokenStore::open(&path).unwrap().list().len(), 2);

        // A newer version: refused, with a message saying so, and never rewritten.
        let newer = r#"{"version": 2, "tokens": [{"a": "shape this binary does not know"}]}"#;
        std::fs::write(&path, newer).unwrap();
        let refused = TokenStore::open(&path).err().expect("refused").to_string();
        assert!(
            refused.contains("format version 2") && refused.contains("newer OpenPTL"),
            "{refused}"
        );
        assert!(store.create(coordinator(), now()).is_err());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), newer);
    }

    #[test]
    fn tokens_authenticate_until_they_expire_or_are_revoked() {
        let dir = std::env::temp_dir().join(format!("openptl-tokens-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("tokens.json");
        let store = TokenStore::open(&path).unwrap();
        let (record, secret) = store.create(coordinator(), now()).unwrap();
        assert!(secret.starts_with(&format!("optl_{}_", record.id)));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains(&secret), "the secret is never stored");
        assert_eq!(store.authenticate(&secret, now()).unwrap().id, record.id);
        assert!(store.authenticate(&format!("{secret}x"), now()).is_none());
        assert!(store.authenticate("optl_nope_00", now()).is_none());
        let later: DateTime<Utc> = "2026-02-01T00:00:00Z".parse().unwrap();
        assert!(store.authenticate(&secret, later).is_none(), "expired");
        // Another store on the same file (the CLI beside the service) sees it.
        let other = TokenStore::open(&path).unwrap();
        other.revoke(&record.id, now()).unwrap();
        let reopened = TokenStore::open(&path).unwrap();
        assert!(reopened.authenticate(&secret, now()).is_none(), "revoked");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn sessions_act_as_their_token_and_end_with_it_or_at_sign_out() {
        let store = TokenStore::in_memory();
        let (parent, secret) = store.create(coordinator(), now()).unwrap();
        let (session, session_secret) = store
            .create_session(&parent, now(), chrono::Duration::hours(12))
            .unwrap();
        assert_ne!(secret, session_secret);
        let found = store.authenticate(&session_secret, now()).unwrap();
        assert_eq!(found.principal(&BTreeMap::new()).actor, "jane");
        assert_eq!(found.parent.as_deref(), Some(parent.id.as_str()));
        let later = now() + chrono::Duration::hours(13);
        assert!(store.authenticate(&session_secret, later).is_none());
        // Signing out ends the session, not the token.
        assert!(store.end_session(&session.id).unwrap());
        assert!(store.authenticate(&session_secret, now()).is_none());
        assert!(store.authenticate(&secret, now()).is_some());
        assert!(!store.end_session(&parent.id).unwrap(), "not a session");
        // Revoking the token ends its sessions; they never pile up.
        for _ in 0..(MAX_SESSIONS_PER_TOKEN + 5) {
            store
                .create_session(&parent, now(), chrono::Duration::hours(12))
                .unwrap();
        }
        assert_eq!(store.list().len(), 1 + MAX_SESSIONS_PER_TOKEN);
        let (_, last) = store
            .create_session(&parent, now(), chrono::Duration::hours(12))
            .unwrap();
        store.revoke(&parent.id, now()).unwrap();
        assert!(store.authenticate(&last, now()).is_none());
    }

    #[test]
    fn bad_tokens_are_refused_with_a_reason() {
        let store = TokenStore::in_memory();
        let mut t = coordinator();
        t.trusts = vec![];
        assert!(store.create(t, now()).is_err());
        let mut t = coordinator();
        t.trusts = vec!["R".into()];
        assert!(store.create(t, now()).is_err());
        let t = NewToken {
            role: Role::AllianceViewer,
            trusts: vec![],
            alliance: None,
            label: None,
            expires_at: None,
        };
        assert!(store.create(t, now()).is_err());
        // A bootstrap secret is idempotent.
        let admin = NewToken {
            role: Role::Admin,
            trusts: vec![],
            alliance: None,
            label: Some("bootstrap".into()),
            expires_at: None,
        };
        let (a, _) = store
            .create_with_secret(admin.clone(), now(), Some("bootstrap-secret-123"))
            .unwrap();
        let (b, _) = store
            .create_with_secret(admin, now(), Some("bootstrap-secret-123"))
            .unwrap();
        assert_eq!(a.id, b.id);
        assert_eq!(
            store
                .authenticate("bootstrap-secret-123", now())
                .unwrap()
                .id,
            a.id
        );
    }
}
