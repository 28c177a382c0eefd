//! Projection snapshots: the projected states written to one file so a
//! restart reads them back instead of folding the whole log again.
//!
//! A snapshot is derived data, like the sled index: it is used only when it
//! provably belongs to this log, this binary and these rules, and is ignored
//! (with a log line saying why) otherwise; the projection then folds from
//! position 0. It never holds anything the log does not.
//!
//! File layout:
//!
//! ```text
//! "OPTLSNAP"                      magic
//! u32 BE n, n bytes               header (MessagePack): format, binary ([`BINARY`]),
//!                                 rules fingerprint, position, event id at the
//!                                 position, date evaluated on, pathway count
//! repeated: u32 BE n, n bytes,    a chunk of pathways (MessagePack) and the
//!           u32 BE CRC32C         CRC32C of its bytes
//! u32 BE 0                        end
//! ```
//!
//! Written to a temporary file, fsync'd, then renamed over the last one, so a
//! crash leaves the old snapshot or the new one, never half of one. States
//! are stored packed ([`crate::packed`]), as the projection holds them, so
//! restoring is a copy per pathway (plus the PTL keys of the open ones).

use std::borrow::Cow;
use std::io::Write;
use std::path::Path;

use chrono::{Datelike, NaiveDate};
use openptl_rules::RulesConfig;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Raised whenever the snapshot layout or the packed layout changes. A
/// snapshot of any other format, newer (a downgrade) or older (an upgrade),
/// is ignored with a log line and the log is folded: it is derived data, so
/// refusing to start would help nobody (decision 92).
pub const FORMAT: u32 = 10;
const MAGIC: &[u8; 8] = b"OPTLSNAP";
/// Pathways per chunk (chunks decode in parallel).
pub const CHUNK: usize = 8192;

/// What a snapshot must match to be used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Header {
    pub format: u32,
    /// The binary that wrote it: new code may evaluate differently.
    pub binary: String,
    /// Of the rules configuration: other targets give other states.
    pub rules: String,
    /// The last log position folded in.
    pub position: u64,
    /// The event id stored at `position`: ties the snapshot to this log.
    pub event_id: [u8; 16],
    /// The date the states were evaluated on (days from the common era).
    pub today: i32,
    pub pathways: u64,
}

impl Header {
    pub fn new(
        config: &RulesConfig,
        position: u64,
        event_id: uuid::Uuid,
        today: NaiveDate,
        pathways: u64,
    ) -> Header {
        Header {
            format: FORMAT,
            binary: BINARY.to_string(),
            rules: fingerprint(config),
            position,
            event_id: *event_id.as_bytes(),
            today: today.num_days_from_ce(),
            pathways,
        }
    }

    pub fn today(&self) -> Option<NaiveDate> {
        NaiveDate::from_num_days_from_ce_opt(self.today)
    }
}

/// This binary as derived data names it: its version and the build of the
/// code that evaluates pathways (`build.rs`: a hash of the rules and
/// application crates' sources and of `Cargo.lock`). New code may evaluate
/// differently under the same version number (decision 169).
pub const BINARY: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    "+",
    env!("OPENPTL_EVALUATING_BUILD")
);

/// A fingerprint of the rules configuration (its every field, in order).
pub fn fingerprint(config: &RulesConfig) -> String {
    let digest = Sha256::digest(format!("{config:?}").as_bytes());
    digest[..12].iter().map(|b| format!("{b:02x}")).collect()
}

/// One pathway as stored (borrowing from the snapshot's bytes when read).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredPathway<'a> {
    #[serde(borrow)]
    pub id: Cow<'a, str>,
    pub positions: Vec<u64>,
    /// The trust it is at and every trust it has been at, borrowed from
    /// the input (serde borrows a `Cow` only as a field's whole type).
    #[serde(borrow, deserialize_with = "borrowed_trusts")]
    pub trusts: Option<StoredTrusts<'a>>,
    #[serde(borrow)]
    pub state: Option<StoredState<'a>>,
}

/// A pathway's evaluated state, packed ([`crate::packed`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredState<'a> {
    /// Whether it is on the PTL (its PTL keys are made again on restore).
    pub on_ptl: bool,
    #[serde(borrow, with = "bytes")]
    pub packed: Cow<'a, [u8]>,
}

/// The trust a pathway is at, and every trust it has been at.
pub type StoredTrusts<'a> = (Cow<'a, str>, Vec<Cow<'a, str>>);

/// A pathway's trusts, each code borrowed from the input.
fn borrowed_trusts<'de: 'a, 'a, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<StoredTrusts<'a>>, D::Error> {
    let trusts: Option<(&'de str, Vec<&'de str>)> = Deserialize::deserialize(d)?;
    Ok(trusts.map(|(now, ever)| {
        (
            Cow::Borrowed(now),
            ever.into_iter().map(Cow::Borrowed).collect(),
        )
    }))
}

/// MessagePack `bin` for packed bytes (serde's default would write an array
/// of integers), borrowed from the input when it can be.
mod bytes {
    use std::borrow::Cow;

    // serde's `with` hands over a reference to the field as it is.
    #[allow(clippy::ptr_arg)]
    pub fn serialize<S: serde::Serializer>(v: &Cow<'_, [u8]>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    pub fn deserialize<'de: 'a, 'a, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<Cow<'a, [u8]>, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Cow<'de, [u8]>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_borrowed_bytes<E>(self, v: &'de [u8]) -> Result<Self::Value, E> {
                Ok(Cow::Borrowed(v))
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<Self::Value, E> {
                Ok(Cow::Owned(v.to_vec()))
            }
            fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Self::Value, E> {
                Ok(Cow::Owned(v))
            }
        }
        d.deserialize_bytes(Visitor)
    }
}

/// Writes a snapshot to `path` (through a temporary file, fsync'd and
/// renamed). `chunks` yields the pathways a chunk at a time.
///
/// A write that fails (a full disk, say) leaves the last snapshot as it
/// was and removes its temporary file: the space a partial snapshot took
/// would otherwise be missing for the log's appends.
pub fn write<'a>(
    path: &Path,
    header: &Header,
    chunks: impl Iterator<Item = Vec<StoredPathway<'a>>>,
) -> std::io::Result<u64> {
    let tmp = path.with_extension("tmp");
    let written = write_through(path, &tmp, header, chunks);
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

fn write_through<'a>(
    path: &Path,
    tmp: &Path,
    header: &Header,
    chunks: impl Iterator<Item = Vec<StoredPathway<'a>>>,
) -> std::io::Result<u64> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(tmp)?);
    let encode = |value: &dyn erased::Encode| value.encode().map_err(std::io::Error::other);
    out.write_all(MAGIC)?;
    let head = encode(header)?;
    out.write_all(&(head.len() as u32).to_be_bytes())?;
    out.write_all(&head)?;
    let mut written = (MAGIC.len() + 4 + head.len()) as u64;
    for chunk in chunks {
        let bytes = encode(&chunk)?;
        out.write_all(&(bytes.len() as u32).to_be_bytes())?;
        out.write_all(&bytes)?;
        out.write_all(&crc32c::crc32c(&bytes).to_be_bytes())?;
        written += bytes.len() as u64 + 8;
    }
    out.write_all(&0u32.to_be_bytes())?;
    let file = out.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(tmp, path)?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(written + 4)
}

/// Small indirection so `write` can encode headers and chunks alike.
mod erased {
    pub trait Encode {
        fn encode(&self) -> Result<Vec<u8>, rmp_serde::encode::Error>;
    }
    impl<T: serde::Serialize> Encode for T {
        fn encode(&self) -> Result<Vec<u8>, rmp_serde::encode::Error> {
            rmp_serde::to_vec(self)
        }
    }
}

/// A snapshot read back: its header and its still-encoded chunks (ranges
/// of the file's bytes, not copies: the file is hundreds of MiB at scale).
#[derive(Debug)]
pub struct Read {
    pub header: Header,
    bytes: Vec<u8>,
    ranges: Vec<std::ops::Range<usize>>,
}

impl Read {
    /// The encoded chunks, in order.
    pub fn chunks(&self) -> Vec<&[u8]> {
        self.ranges.iter().map(|r| &self.bytes[r.clone()]).collect()
    }
}

/// Reads a snapshot's header and chunks, checking magic and CRCs.
/// Why a snapshot was not used (it is derived: the service folds the log
/// instead, and says why).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NotUsed(String);

impl From<&str> for NotUsed {
    fn from(why: &str) -> NotUsed {
        NotUsed(why.to_string())
    }
}

impl From<String> for NotUsed {
    fn from(why: String) -> NotUsed {
        NotUsed(why)
    }
}

impl From<crate::packed::Unreadable> for NotUsed {
    fn from(e: crate::packed::Unreadable) -> NotUsed {
        NotUsed(format!("a packed pathway: {e}"))
    }
}

impl From<openptl_log::LogError> for NotUsed {
    fn from(e: openptl_log::LogError) -> NotUsed {
        NotUsed(e.to_string())
    }
}

pub fn read(path: &Path) -> Result<Read, NotUsed> {
    let bytes = std::fs::read(path)
        .map_err(|e| NotUsed::from(format!("reading {}: {e}", path.display())))?;
    // The range of the next `n` bytes, moving past them.
    let mut at = 0usize;
    let mut take = |n: usize| -> Result<std::ops::Range<usize>, NotUsed> {
        if bytes.len() - at < n {
            return Err("the file is cut short".into());
        }
        at += n;
        Ok(at - n..at)
    };
    if bytes[take(MAGIC.len())?] != MAGIC[..] {
        return Err("not a projection snapshot".into());
    }
    let u32_at = |r: std::ops::Range<usize>| {
        u32::from_be_bytes(bytes[r].try_into().expect("4 bytes")) as usize
    };
    let n = u32_at(take(4)?);
    let header: Header = rmp_serde::from_slice(&bytes[take(n)?])
        .map_err(|e| NotUsed::from(format!("unreadable header: {e}")))?;
    let mut ranges = Vec::new();
    loop {
        let n = u32_at(take(4)?);
        if n == 0 {
            break;
        }
        let chunk = take(n)?;
        let crc = u32_at(take(4)?) as u32;
        if crc32c::crc32c(&bytes[chunk.clone()]) != crc {
            return Err(format!("chunk {} fails its CRC", ranges.len() + 1).into());
        }
        ranges.push(chunk);
    }
    Ok(Read {
        header,
        bytes,
        ranges,
    })
}

/// Decodes one chunk of pathways.
pub fn decode_chunk(bytes: &[u8]) -> Result<Vec<StoredPathway<'_>>, NotUsed> {
    rmp_serde::from_slice(bytes).map_err(|e| NotUsed::from(format!("unreadable chunk: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Header {
        Header::new(
            &RulesConfig::defaults(),
            3,
            uuid::Uuid::from_u128(7),
            NaiveDate::from_ymd_opt(2025, 4, 7).unwrap(),
            2,
        )
    }

    fn pathway(id: &str, positions: Vec<u64>) -> StoredPathway<'_> {
        StoredPathway {
            id: id.into(),
            positions,
            trusts: Some(("RXH".into(), vec!["RXH".into()])),
            state: Some(StoredState {
                on_ptl: id == "A",
                packed: vec![1, 2, 200].into(),
            }),
        }
    }

    #[test]
    fn a_snapshot_reads_back_and_damage_is_caught() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("projection.snapshot");
        let chunks = vec![vec![pathway("A", vec![1, 3])], vec![pathway("B", vec![2])]];
        write(&path, &header(), chunks.clone().into_iter()).unwrap();
        let read = read(&path).unwrap();
        assert_eq!(read.header, header());
        let back: Vec<Vec<StoredPathway>> = read
            .chunks()
            .iter()
            .map(|c| decode_chunk(c).unwrap())
            .collect();
        assert_eq!(back, chunks);
        // Ids, trust codes and states borrowed from the bytes read.
        let borrowed = |c: &Cow<'_, str>| matches!(c, Cow::Borrowed(_));
        for p in back.iter().flatten() {
            let (now, ever) = p.trusts.as_ref().unwrap();
            assert!(borrowed(&p.id) && borrowed(now) && ever.iter().all(borrowed));
            let state = p.state.as_ref().unwrap();
            assert!(matches!(state.packed, Cow::Borrowed(_)));
        }
        assert!(!path.with_extension("tmp").exists());

        let mut bytes = std::fs::read(&path).unwrap();
        let n = bytes.len();
        bytes[n - 8] ^= 0x01;
        std::fs::write(&path, &bytes).unwrap();
        assert!(super::read(&path).unwrap_err().to_string().contains("CRC"));
        std::fs::write(&path, &bytes[..n / 2]).unwrap();
        assert!(super::read(&path).is_err());
    }

    #[test]
    fn the_rules_fingerprint_follows_the_configuration() {
        let config = RulesConfig::defaults();
        let mut other = config.clone();
        other.targets.fds_days += 1;
        assert_eq!(fingerprint(&config), fingerprint(&RulesConfig::defaults()));
        assert_ne!(fingerprint(&config), fingerprint(&other));
    }
}
