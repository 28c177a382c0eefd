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
//! u32 BE n, n bytes               header (MessagePack): format, binary version,
//!                                 rules fingerprint, position, event id at the
//!                                 position, date evaluated on, pathway count
//! repeated: u32 BE n, n bytes,    a chunk of pathways (MessagePack) and the
//!           u32 BE CRC32C         CRC32C of its bytes
//! u32 BE 0                        end
//! ```
//!
//! Written to a temporary file, fsync'd, then renamed over the last one, so a
//! crash leaves the old snapshot or the new one, never half of one. The
//! states are stored through mirror types below: `PathwayState`'s serde form
//! is the JSON view (masked, shaped by clock status), not a storage form.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use chrono::{Datelike, NaiveDate};
use openptl_rules::pathway::{Allocation, Clock, Clocks, Milestone, NextBreach, Note, Transfer};
use openptl_rules::{
    ClockKind, ClockStatus, FitBand, MilestoneStatus, NhsNumber, OdsCode, PathwayState,
    PathwayStatus, Route, RulesConfig, StopReason, TumourSite,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Raised whenever the snapshot layout or the mirror types change.
pub const FORMAT: u32 = 1;
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
            binary: env!("CARGO_PKG_VERSION").to_string(),
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

/// A fingerprint of the rules configuration (its every field, in order).
pub fn fingerprint(config: &RulesConfig) -> String {
    let digest = Sha256::digest(format!("{config:?}").as_bytes());
    digest[..12].iter().map(|b| format!("{b:02x}")).collect()
}

/// Every milestone name of the rules, to share with restored states.
pub fn milestone_names(config: &RulesConfig) -> HashMap<&str, Arc<str>> {
    config
        .milestones
        .template
        .iter()
        .flat_map(|t| &t.milestone)
        .map(|m| (&*m.name, m.name.clone()))
        .collect()
}

/// One pathway as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredPathway {
    pub id: String,
    pub positions: Vec<u64>,
    pub trusts: Option<(String, Vec<String>)>,
    pub current: Option<StoredCurrent>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredCurrent {
    pub version: u64,
    pub state: StoredState,
}

/// Writes a snapshot to `path` (through a temporary file, fsync'd and
/// renamed). `chunks` yields the pathways a chunk at a time.
pub fn write(
    path: &Path,
    header: &Header,
    chunks: impl Iterator<Item = Vec<StoredPathway>>,
) -> std::io::Result<u64> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension("tmp");
    let mut out = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&tmp)?);
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
    std::fs::rename(&tmp, path)?;
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
pub fn read(path: &Path) -> Result<Read, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    // The range of the next `n` bytes, moving past them.
    let mut at = 0usize;
    let mut take = |n: usize| -> Result<std::ops::Range<usize>, String> {
        if bytes.len() - at < n {
            return Err("the file is cut short".to_string());
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
    let header: Header =
        rmp_serde::from_slice(&bytes[take(n)?]).map_err(|e| format!("unreadable header: {e}"))?;
    let mut ranges = Vec::new();
    loop {
        let n = u32_at(take(4)?);
        if n == 0 {
            break;
        }
        let chunk = take(n)?;
        let crc = u32_at(take(4)?) as u32;
        if crc32c::crc32c(&bytes[chunk.clone()]) != crc {
            return Err(format!("chunk {} fails its CRC", ranges.len() + 1));
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
pub fn decode_chunk(bytes: &[u8]) -> Result<Vec<StoredPathway>, String> {
    rmp_serde::from_slice(bytes).map_err(|e| format!("unreadable chunk: {e}"))
}

fn day(d: NaiveDate) -> i32 {
    d.num_days_from_ce()
}

fn date(days: i32) -> Result<NaiveDate, String> {
    NaiveDate::from_num_days_from_ce_opt(days).ok_or_else(|| format!("day {days} out of range"))
}

fn opt_date(days: Option<i32>) -> Result<Option<NaiveDate>, String> {
    days.map(date).transpose()
}

/// A stored ODS code back (any stored code: a trust's or a referrer's).
fn ods(code: String) -> Result<OdsCode, String> {
    OdsCode::parse_referrer(&code).ok_or_else(|| "a stored ODS code no longer parses".to_string())
}

/// [`PathwayState`] as stored: every field, dates as day numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredState {
    nhs_number: String,
    trust: String,
    referring_trust: String,
    tumour_site: TumourSite,
    route: Route,
    referred_on: i32,
    status: PathwayStatus,
    on_ptl: bool,
    as_of: i32,
    fit_band: FitBand,
    fit_on: Option<i32>,
    fds_excluded_on: Option<i32>,
    clocks: [StoredClock; 3],
    milestones: Vec<StoredMilestone>,
    next_breach: Option<(ClockKind, i32)>,
    transferred: bool,
    transfers: Vec<(i32, String, String)>,
    handover_date: Option<i32>,
    last_note: Option<StoredNote>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct StoredClock {
    status: ClockStatus,
    start: Option<i32>,
    stop: Option<i32>,
    stop_reason: Option<StopReason>,
    adjustment_days: i64,
    days: i64,
    target_days: i64,
    target_date: Option<i32>,
    allocation: Option<Vec<(String, f64, bool)>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct StoredMilestone {
    name: String,
    due_day: i64,
    due_date: i32,
    met_on: Option<i32>,
    status: MilestoneStatus,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct StoredNote {
    occurred_on: i32,
    text: String,
    next_action: Option<String>,
    next_action_due: Option<i32>,
    owner: Option<String>,
    escalated: bool,
}

impl StoredClock {
    fn of(c: &Clock) -> StoredClock {
        let Clock {
            status,
            start,
            stop,
            stop_reason,
            adjustment_days,
            days,
            target_days,
            target_date,
            allocation,
        } = c;
        StoredClock {
            status: *status,
            start: start.map(day),
            stop: stop.map(day),
            stop_reason: *stop_reason,
            adjustment_days: *adjustment_days,
            days: *days,
            target_days: *target_days,
            target_date: target_date.map(day),
            allocation: allocation.as_ref().map(|shares| {
                shares
                    .iter()
                    .map(|a| (a.trust.as_str().to_string(), a.share, a.breached))
                    .collect()
            }),
        }
    }

    fn restore(self) -> Result<Clock, String> {
        Ok(Clock {
            status: self.status,
            start: opt_date(self.start)?,
            stop: opt_date(self.stop)?,
            stop_reason: self.stop_reason,
            adjustment_days: self.adjustment_days,
            days: self.days,
            target_days: self.target_days,
            target_date: opt_date(self.target_date)?,
            allocation: self
                .allocation
                .map(|shares| {
                    shares
                        .into_iter()
                        .map(|(trust, share, breached)| {
                            Ok(Allocation {
                                trust: ods(trust)?,
                                share,
                                breached,
                            })
                        })
                        .collect::<Result<Vec<_>, String>>()
                })
                .transpose()?,
        })
    }
}

impl StoredState {
    /// Every field of `state`, destructured so a new field is a compile error here.
    pub fn of(state: &PathwayState) -> StoredState {
        let PathwayState {
            nhs_number,
            trust,
            referring_trust,
            tumour_site,
            route,
            referred_on,
            status,
            on_ptl,
            as_of,
            fit_band,
            fit_on,
            fds_excluded_on,
            clocks: Clocks { fds, d31, d62 },
            milestones,
            next_breach,
            transferred,
            transfers,
            handover_date,
            last_note,
        } = state;
        StoredState {
            nhs_number: nhs_number.as_str().to_string(),
            trust: trust.as_str().to_string(),
            referring_trust: referring_trust.as_str().to_string(),
            tumour_site: *tumour_site,
            route: *route,
            referred_on: day(*referred_on),
            status: *status,
            on_ptl: *on_ptl,
            as_of: day(*as_of),
            fit_band: *fit_band,
            fit_on: fit_on.map(day),
            fds_excluded_on: fds_excluded_on.map(day),
            clocks: [
                StoredClock::of(fds),
                StoredClock::of(d31),
                StoredClock::of(d62),
            ],
            milestones: milestones
                .iter()
                .map(|m| {
                    let Milestone {
                        name,
                        due_day,
                        due_date,
                        met_on,
                        status,
                    } = m;
                    StoredMilestone {
                        name: name.to_string(),
                        due_day: *due_day,
                        due_date: day(*due_date),
                        met_on: met_on.map(day),
                        status: *status,
                    }
                })
                .collect(),
            next_breach: next_breach.as_ref().map(|b| (b.clock, day(b.date))),
            transferred: *transferred,
            transfers: transfers
                .iter()
                .map(|t| {
                    (
                        day(t.occurred_on),
                        t.from_trust.as_str().to_string(),
                        t.to_trust.as_str().to_string(),
                    )
                })
                .collect(),
            handover_date: handover_date.map(day),
            last_note: last_note.as_ref().map(|n| {
                let Note {
                    occurred_on,
                    text,
                    next_action,
                    next_action_due,
                    owner,
                    escalated,
                } = n;
                StoredNote {
                    occurred_on: day(*occurred_on),
                    text: text.clone(),
                    next_action: next_action.clone(),
                    next_action_due: next_action_due.map(day),
                    owner: owner.clone(),
                    escalated: *escalated,
                }
            }),
        }
    }

    /// The state back; an error when a stored value no longer parses.
    /// Milestone names are shared with the rules configuration's (`names`).
    pub fn restore(self, names: &HashMap<&str, Arc<str>>) -> Result<PathwayState, String> {
        let [fds, d31, d62] = self.clocks;
        Ok(PathwayState {
            nhs_number: NhsNumber::parse(&self.nhs_number)
                .ok_or_else(|| "a stored NHS number no longer parses".to_string())?,
            trust: ods(self.trust)?,
            referring_trust: ods(self.referring_trust)?,
            tumour_site: self.tumour_site,
            route: self.route,
            referred_on: date(self.referred_on)?,
            status: self.status,
            on_ptl: self.on_ptl,
            as_of: date(self.as_of)?,
            fit_band: self.fit_band,
            fit_on: opt_date(self.fit_on)?,
            fds_excluded_on: opt_date(self.fds_excluded_on)?,
            clocks: Clocks {
                fds: fds.restore()?,
                d31: d31.restore()?,
                d62: d62.restore()?,
            },
            milestones: self
                .milestones
                .into_iter()
                .map(|m| {
                    Ok(Milestone {
                        name: names
                            .get(m.name.as_str())
                            .cloned()
                            .unwrap_or_else(|| Arc::from(m.name)),
                        due_day: m.due_day,
                        due_date: date(m.due_date)?,
                        met_on: opt_date(m.met_on)?,
                        status: m.status,
                    })
                })
                .collect::<Result<_, String>>()?,
            next_breach: self
                .next_breach
                .map(|(clock, d)| {
                    Ok::<_, String>(NextBreach {
                        clock,
                        date: date(d)?,
                    })
                })
                .transpose()?,
            transferred: self.transferred,
            transfers: self
                .transfers
                .into_iter()
                .map(|(on, from, to)| {
                    Ok(Transfer {
                        occurred_on: date(on)?,
                        from_trust: ods(from)?,
                        to_trust: ods(to)?,
                    })
                })
                .collect::<Result<_, String>>()?,
            handover_date: opt_date(self.handover_date)?,
            last_note: self
                .last_note
                .map(|n| {
                    Ok::<_, String>(Note {
                        occurred_on: date(n.occurred_on)?,
                        text: n.text,
                        next_action: n.next_action,
                        next_action_due: opt_date(n.next_action_due)?,
                        owner: n.owner,
                        escalated: n.escalated,
                    })
                })
                .transpose()?,
        })
    }
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

    fn pathway(id: &str, positions: Vec<u64>) -> StoredPathway {
        StoredPathway {
            id: id.into(),
            positions,
            trusts: Some(("RXH".into(), vec!["RXH".into()])),
            current: None,
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
        assert!(!path.with_extension("tmp").exists());

        let mut bytes = std::fs::read(&path).unwrap();
        let n = bytes.len();
        bytes[n - 8] ^= 0x01;
        std::fs::write(&path, &bytes).unwrap();
        assert!(super::read(&path).unwrap_err().contains("CRC"));
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
