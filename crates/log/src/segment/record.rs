//! The on-disk record of the segment log (SPEC 9) — a forever format.
//!
//! ```text
//! offset size  field
//! 0      4     magic "OPTL"
//! 4      1     format version (1)
//! 5      4     record length in bytes, header to CRC inclusive (u32 BE)
//! 9      8     global position (u64 BE)
//! 17     8     stream version (u64 BE)
//! 25     16    event id (UUID bytes)
//! 41     2     schema version (u16 BE)
//! 43     8     recorded_at, microseconds since the Unix epoch (i64 BE)
//! 51     2+n   stream id (u16 BE length, UTF-8)
//! ..     2+n   event type (u16 BE length, UTF-8)
//! ..     2+n   actor (u16 BE length, UTF-8)
//! ..     4+n   payload (u32 BE length, MessagePack with named fields)
//! ..     32    SHA-256 of the previous record's bytes (zeros for the first)
//! ..     4     CRC32C of every byte above (u32 BE)
//! ```
//!
//! Since format version 2 (decision 189) every batch of more than one
//! record (the records of one append, answered together) begins with a
//! **batch mark**, which is not an event and not in the hash chain:
//!
//! ```text
//! offset size  field
//! 0      4     magic "OPTL"
//! 4      1     2 (a batch mark)
//! 5      4     its length, 21 (u32 BE)
//! 9      8     the position of the batch's last record (u64 BE)
//! 17     4     CRC32C of every byte above (u32 BE)
//! ```
//!
//! A crash in the middle of a write (a group commit: many batches in one
//! `write`) can leave some of a batch's records whole on disk; the batch
//! was not acknowledged, and its mark says how far it should have reached,
//! so the start-up scan cuts it off from its mark (a batch is atomic, SPEC
//! 4.1). The batches before it in the write are whole and stay: a client
//! that sends one again (it got no answer) is answered with a replay. A
//! batch of one record needs no mark: a record is whole or torn. Event
//! records keep format version 1, byte for byte, so their hashes (and the
//! PostgreSQL log's, which chains the same encoding) do not change. A
//! binary that reads only version 1 refuses a log holding marks as written
//! by a newer OpenPTL.

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::{RecordRef, StoredRecord};

pub const MAGIC: &[u8; 4] = b"OPTL";
/// The format version of event records.
pub const FORMAT_VERSION: u8 = 1;
/// The version byte of a batch mark: the newest format this binary reads.
pub const MARK_VERSION: u8 = 2;
/// The length of a batch mark.
pub const MARK_LEN: usize = 21;
/// Bytes before the variable part: magic, version, length.
pub const PREFIX: usize = 9;
const FIXED: usize = 9 + 8 + 8 + 16 + 2 + 8 + 2 + 2 + 2 + 4 + 32 + 4;
/// Refuse absurd lengths instead of allocating them (a damaged length field).
pub const MAX_RECORD: usize = 64 * 1024 * 1024;

pub type Hash = [u8; 32];

/// Appends the encoded record to `out`; returns the record's hash (the next
/// record's `prev_hash`).
pub fn encode(record: &StoredRecord, prev_hash: &Hash, out: &mut Vec<u8>) -> Hash {
    let start = out.len();
    let len = FIXED
        + record.stream_id.len()
        + record.event_type.len()
        + record.actor.len()
        + record.payload.len();
    out.extend_from_slice(MAGIC);
    out.push(FORMAT_VERSION);
    out.extend_from_slice(&(len as u32).to_be_bytes());
    out.extend_from_slice(&record.position.to_be_bytes());
    out.extend_from_slice(&record.version.to_be_bytes());
    out.extend_from_slice(record.event_id.as_bytes());
    out.extend_from_slice(&record.schema_version.to_be_bytes());
    out.extend_from_slice(&record.recorded_at.timestamp_micros().to_be_bytes());
    for text in [&record.stream_id, &record.event_type, &record.actor] {
        out.extend_from_slice(&(text.len() as u16).to_be_bytes());
        out.extend_from_slice(text.as_bytes());
    }
    out.extend_from_slice(&(record.payload.len() as u32).to_be_bytes());
    out.extend_from_slice(&record.payload);
    out.extend_from_slice(prev_hash);
    let crc = crc32c::crc32c(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
    debug_assert_eq!(out.len() - start, len);
    Sha256::digest(&out[start..]).into()
}

/// Why a record with these fields cannot be written in this format (a text
/// field longer than its 2-byte length can say, or the whole longer than
/// [`MAX_RECORD`], which the start-up scan would take for damage), if it
/// cannot. Checked before anything is written.
pub fn unfit(stream_id: &str, event_type: &str, actor: &str, payload: usize) -> Option<String> {
    for (name, text) in [
        ("stream id", stream_id),
        ("event type", event_type),
        ("actor", actor),
    ] {
        if text.len() > usize::from(u16::MAX) {
            return Some(format!(
                "its {name} is {} bytes, more than the {} a record holds",
                text.len(),
                u16::MAX
            ));
        }
    }
    let len = FIXED + stream_id.len() + event_type.len() + actor.len() + payload;
    (len > MAX_RECORD)
        .then(|| format!("it is {len} bytes, more than the {MAX_RECORD} a record may be"))
}

/// Appends a batch mark for a batch whose last record is at `last_position`.
pub fn encode_mark(last_position: u64, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(MAGIC);
    out.push(MARK_VERSION);
    out.extend_from_slice(&(MARK_LEN as u32).to_be_bytes());
    out.extend_from_slice(&last_position.to_be_bytes());
    let crc = crc32c::crc32c(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

/// How many bytes a batch mark at the start of `bytes` takes (0 when none
/// starts there): how readers of records already checked pass over marks.
/// Decided by the first 5 bytes; the caller checks there are that many.
pub fn mark_len(bytes: &[u8]) -> usize {
    if bytes.len() > 4 && &bytes[0..4] == MAGIC && bytes[4] == MARK_VERSION {
        MARK_LEN
    } else {
        0
    }
}

/// The batch mark at the start of `bytes`, checked: the position of its
/// batch's last record. `Ok(None)` when no mark starts there (a record,
/// or damage that [`check`] describes).
pub fn mark(bytes: &[u8]) -> Result<Option<u64>, Damage> {
    if mark_len(bytes) == 0 {
        return Ok(None);
    }
    if bytes.len() < MARK_LEN {
        return Err(Damage::Truncated);
    }
    let len = u32::from_be_bytes(bytes[5..9].try_into().unwrap()) as usize;
    if len != MARK_LEN {
        return Err(Damage::Corrupt(format!(
            "impossible batch mark length {len}"
        )));
    }
    let crc = u32::from_be_bytes(bytes[17..21].try_into().unwrap());
    if crc32c::crc32c(&bytes[..17]) != crc {
        return Err(Damage::Corrupt("CRC mismatch in a batch mark".into()));
    }
    Ok(Some(u64::from_be_bytes(bytes[9..17].try_into().unwrap())))
}

/// Why bytes are not a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Damage {
    /// Fewer bytes than the record needs: a torn write at the tail.
    Truncated,
    /// The bytes are all there but wrong.
    Corrupt(String),
    /// A record of a later format version than this binary reads (the
    /// magic is right): written by a newer OpenPTL. Never taken for a torn
    /// write, so a downgrade refuses to start rather than cut the log.
    Newer(u8),
}

impl Damage {
    /// What is wrong, for a message naming the file and offset.
    pub fn problem(&self) -> String {
        match self {
            Damage::Truncated => "record cut short".to_string(),
            Damage::Corrupt(p) => p.clone(),
            Damage::Newer(v) => format!(
                "record format version {v}, written by a newer OpenPTL (this binary reads versions {FORMAT_VERSION} to {MARK_VERSION}): run that version or a later one"
            ),
        }
    }
}

/// A record read back, with the chain fields needed to verify it.
pub struct Decoded {
    pub record: StoredRecord,
    pub prev_hash: Hash,
    pub len: usize,
}

/// The SHA-256 of a record's bytes: the next record's `prev_hash`. Only the
/// chain checks need it, so reads do not pay for it.
pub fn hash(record_bytes: &[u8]) -> Hash {
    Sha256::digest(record_bytes).into()
}

/// The length a record starting at `bytes` claims, once the prefix is there.
pub fn claimed_len(bytes: &[u8]) -> Result<usize, Damage> {
    if bytes.len() < PREFIX {
        return Err(Damage::Truncated);
    }
    if &bytes[0..4] != MAGIC {
        return Err(Damage::Corrupt("bad magic".into()));
    }
    if bytes[4] > MARK_VERSION {
        return Err(Damage::Newer(bytes[4]));
    }
    if bytes[4] == MARK_VERSION {
        return Err(Damage::Corrupt(
            "a batch mark where a record was expected".into(),
        ));
    }
    if bytes[4] != FORMAT_VERSION {
        return Err(Damage::Corrupt(format!(
            "unknown record format version {}",
            bytes[4]
        )));
    }
    let len = u32::from_be_bytes(bytes[5..9].try_into().unwrap()) as usize;
    if !(FIXED..=MAX_RECORD).contains(&len) {
        return Err(Damage::Corrupt(format!("impossible record length {len}")));
    }
    Ok(len)
}

/// The record at the start of `bytes` once its length and CRC are right:
/// its bytes before the CRC, and its whole length.
fn checked_body(bytes: &[u8]) -> Result<(&[u8], usize), Damage> {
    let len = claimed_len(bytes)?;
    if bytes.len() < len {
        return Err(Damage::Truncated);
    }
    let body = &bytes[..len - 4];
    let crc = u32::from_be_bytes(bytes[len - 4..len].try_into().unwrap());
    if crc32c::crc32c(body) != crc {
        return Err(Damage::Corrupt("CRC mismatch".into()));
    }
    Ok((body, len))
}

/// What a check of a record without decoding it gives.
pub struct Checked {
    pub position: u64,
    pub event_id: Uuid,
    pub recorded_at_micros: i64,
    pub prev_hash: Hash,
    pub len: usize,
}

/// Checks (magic, length, CRC) the record at the start of `bytes` without
/// decoding its fields: the start-up scan of every record.
pub fn check(bytes: &[u8]) -> Result<Checked, Damage> {
    let (body, len) = checked_body(bytes)?;
    let at = |from: usize| u64::from_be_bytes(body[from..from + 8].try_into().unwrap());
    Ok(Checked {
        position: at(PREFIX),
        event_id: Uuid::from_bytes(body[PREFIX + 16..PREFIX + 32].try_into().unwrap()),
        recorded_at_micros: at(PREFIX + 8 + 8 + 16 + 2) as i64,
        prev_hash: body[body.len() - 32..].try_into().unwrap(),
        len,
    })
}

/// What a record's first fields give without checking its CRC.
pub struct Head<'a> {
    pub position: u64,
    /// The stream id's bytes (UTF-8 once the record is checked).
    pub stream_id: &'a [u8],
    pub len: usize,
}

/// Where the stream id's length is (after the fixed fields).
const STREAM_ID_AT: usize = PREFIX + 8 + 8 + 16 + 2 + 8;

/// The position, stream id and length of the record at the start of
/// `bytes`, read without checking its CRC: how a visit passes over the
/// records it does not keep.
pub fn head(bytes: &[u8]) -> Result<Head<'_>, Damage> {
    let len = claimed_len(bytes)?;
    if bytes.len() < len {
        return Err(Damage::Truncated);
    }
    let n = u16::from_be_bytes([bytes[STREAM_ID_AT], bytes[STREAM_ID_AT + 1]]) as usize;
    let stream_id = bytes
        .get(STREAM_ID_AT + 2..STREAM_ID_AT + 2 + n)
        .filter(|_| STREAM_ID_AT + 2 + n <= len)
        .ok_or_else(|| Damage::Corrupt("field lengths do not add up".into()))?;
    Ok(Head {
        position: u64::from_be_bytes(bytes[PREFIX..PREFIX + 8].try_into().expect("8 bytes")),
        stream_id,
        len,
    })
}

/// Decodes and checks (magic, length, CRC) one record at the start of `bytes`.
pub fn decode(bytes: &[u8]) -> Result<Decoded, Damage> {
    let viewed = view(bytes)?;
    Ok(Decoded {
        record: viewed.record.to_stored(),
        prev_hash: viewed.prev_hash,
        len: viewed.len,
    })
}

/// A record read in place, with the chain fields needed to verify it.
pub struct Viewed<'a> {
    pub record: RecordRef<'a>,
    pub prev_hash: Hash,
    pub len: usize,
}

/// Checks (magic, length, CRC) one record at the start of `bytes` and reads
/// its fields in place.
pub fn view(bytes: &[u8]) -> Result<Viewed<'_>, Damage> {
    let (body, len) = checked_body(bytes)?;
    let mut r = Reader {
        bytes: body,
        at: PREFIX,
    };
    let position = r.u64();
    let version = r.u64();
    let event_id = Uuid::from_bytes(r.take(16).try_into().unwrap());
    let schema_version = r.u16();
    let micros = r.u64() as i64;
    let stream_id = r.text()?;
    let event_type = r.text()?;
    let actor = r.text()?;
    let payload_len = r.u32() as usize;
    if r.at + payload_len + 32 != body.len() {
        return Err(Damage::Corrupt("field lengths do not add up".into()));
    }
    let payload = r.take(payload_len);
    let prev_hash: Hash = r.take(32).try_into().unwrap();
    let recorded_at = DateTime::<Utc>::from_timestamp_micros(micros)
        .ok_or_else(|| Damage::Corrupt("recorded_at out of range".into()))?;
    let record = RecordRef {
        position,
        stream_id,
        version,
        event_id,
        event_type,
        schema_version,
        recorded_at,
        actor,
        payload,
    };
    Ok(Viewed {
        record,
        prev_hash,
        len,
    })
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> &'a [u8] {
        let end = (self.at + n).min(self.bytes.len());
        let out = &self.bytes[self.at..end];
        self.at = end;
        out
    }
    fn u16(&mut self) -> u16 {
        u16::from_be_bytes(self.take(2).try_into().unwrap_or([0; 2]))
    }
    fn u32(&mut self) -> u32 {
        u32::from_be_bytes(self.take(4).try_into().unwrap_or([0; 4]))
    }
    fn u64(&mut self) -> u64 {
        u64::from_be_bytes(self.take(8).try_into().unwrap_or([0; 8]))
    }
    fn text(&mut self) -> Result<&'a str, Damage> {
        let n = self.u16() as usize;
        if self.at + n > self.bytes.len() {
            return Err(Damage::Corrupt("field lengths do not add up".into()));
        }
        std::str::from_utf8(self.take(n)).map_err(|_| Damage::Corrupt("text is not UTF-8".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> StoredRecord {
        StoredRecord {
            position: 7,
            stream_id: "RXH-1".into(),
            version: 2,
            event_id: Uuid::from_u128(42),
            event_type: "triage_completed".into(),
            schema_version: 1,
            recorded_at: "2025-03-03T10:00:00.123456Z".parse().unwrap(),
            actor: "coordinator".into(),
            payload: vec![1, 2, 3],
        }
    }

    #[test]
    fn round_trips_and_detects_damage() {
        let mut bytes = Vec::new();
        let hash = encode(&sample(), &[9; 32], &mut bytes);
        let decoded = decode(&bytes).unwrap();
        assert_eq!(decoded.record, sample());
        let checked = check(&bytes).unwrap();
        assert_eq!(
            (checked.position, checked.prev_hash, checked.len),
            (7, [9; 32], bytes.len())
        );
        assert_eq!(
            checked.recorded_at_micros,
            sample().recorded_at.timestamp_micros()
        );
        assert_eq!(checked.event_id, sample().event_id);
        assert_eq!(decoded.prev_hash, [9; 32]);
        assert_eq!(super::hash(&bytes), hash);
        assert_eq!(decoded.len, bytes.len());
        for cut in [0, 5, 9, bytes.len() - 1] {
            assert_eq!(
                decode(&bytes[..cut]).err(),
                Some(Damage::Truncated),
                "cut at {cut}"
            );
        }
        let mut newer = bytes.clone();
        newer[4] = MARK_VERSION + 1;
        assert_eq!(check(&newer).err(), Some(Damage::Newer(MARK_VERSION + 1)));
        for i in [12, 30, bytes.len() - 40, bytes.len() - 2] {
            let mut bad = bytes.clone();
            bad[i] ^= 0x40;
            assert!(
                matches!(decode(&bad), Err(Damage::Corrupt(_))),
                "flip at {i}"
            );
            assert!(
                matches!(check(&bad), Err(Damage::Corrupt(_))),
                "flip at {i}"
            );
        }
    }

    /// The forever format: a record of version 1 and a batch mark, byte
    /// for byte (a change here breaks every log already written).
    #[test]
    fn records_and_batch_marks_keep_their_bytes() {
        let mut bytes = Vec::new();
        encode(&sample(), &[9; 32], &mut bytes);
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "4f50544c0100000084000000000000000700000000000000020000000000000000000000000000002a0001\
             00062f6d38248a4000055258482d3100107472696167655f636f6d706c65746564000b636f6f7264696e61746f72\
             000000030102030909090909090909090909090909090909090909090909090909090909090909e53eda20"
                .replace(char::is_whitespace, "")
        );
        let mut mark_bytes = Vec::new();
        encode_mark(0x0102, &mut mark_bytes);
        let hex: String = mark_bytes.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "4f50544c0200000015000000000000010253b71f41");
    }

    #[test]
    fn batch_marks_round_trip_and_are_never_taken_for_records() {
        let mut bytes = Vec::new();
        encode_mark(42, &mut bytes);
        assert_eq!(bytes.len(), MARK_LEN);
        assert_eq!(mark(&bytes), Ok(Some(42)));
        assert_eq!(mark_len(&bytes), MARK_LEN);
        assert_eq!(mark(&bytes[..MARK_LEN - 1]), Err(Damage::Truncated));
        assert!(matches!(check(&bytes), Err(Damage::Corrupt(_))));
        for i in [5, 9, 16, 20] {
            let mut bad = bytes.clone();
            bad[i] ^= 0x40;
            assert!(matches!(mark(&bad), Err(Damage::Corrupt(_))), "flip at {i}");
        }
        let mut record = Vec::new();
        encode(&sample(), &[0; 32], &mut record);
        assert_eq!((mark(&record), mark_len(&record)), (Ok(None), 0));
    }
}
