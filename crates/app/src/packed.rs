//! Pathway states packed into a few dozen bytes: how the projection holds
//! every pathway's current state.
//!
//! An evaluated [`PathwayState`] takes about 400 bytes inline plus its
//! milestones, notes and transfers on the heap, some 700–800 bytes in all;
//! packed, 60–120 bytes. Unpacking one takes well under a microsecond, so a
//! PTL page unpacks its hundred rows, a pathway view its one state, and the
//! aggregate views every state they need, a slice at a time on every core.
//!
//! The same bytes are what a projection snapshot stores for every pathway.
//! They are derived data, never a forever format: a snapshot records its
//! format and binary version and is refolded from the log when either
//! differs, so this layout may change with any release (bump
//! [`crate::snapshot::FORMAT`]).
//!
//! Layout: the layout byte, the state's date span (two day numbers) and
//! the version, then the state's fields in order. Integers are LEB128
//! varints (signed ones zigzagged); the referral date is a day number
//! (signed: input may hold dates before year 1), every other date a signed
//! offset from it; an optional value is a 0/1 byte then the value (optional
//! dates fold the flag into the offset: 0 for none); enums are their index in `ALL`;
//! milestone names are indexes into the rules' milestone names (0 and the
//! text for a name the rules do not have); a treatment period whose clock
//! equals `clocks.d31` (the first period, always) stores a flag instead of
//! the clock again. Unpacking checks every value and
//! never panics: cut or malformed bytes give an error. (A flipped bit can
//! still read as another valid state; snapshots guard their bytes with
//! CRCs, and memory holds only what `pack` wrote.)
//!
//! Invariant: `unpack(pack(s)) == s` for every state (property-tested).

use std::sync::Arc;

use chrono::{Datelike, NaiveDate};
use foldhash::HashMap;
use openptl_rules::pathway::{
    Allocation, Clock, Clocks, Milestone, NextBreach, Note, RecordFacts, Transfer,
};
use openptl_rules::{
    ClockKind, ClockStatus, FitBand, MilestoneStatus, Modality, NhsNumber, OdsCode, PathwayState,
    PathwayStatus, PeriodStartReason, Route, RulesConfig, SeenAt, SeenMedium, StopReason,
    TreatmentKind, TreatmentPeriod, TreatmentSetting, TumourSite,
};

use crate::projection::Current;
use crate::varint;

/// The layout version, the first byte of every packed state.
const LAYOUT: u8 = 3;

/// A packed pathway state, with the number of events it was evaluated
/// from, and its [`PathwayState::date_span`] at hand (a view of a period
/// passes over the pathways outside it without unpacking them).
#[derive(Clone, PartialEq, Eq)]
pub struct Packed {
    bytes: Box<[u8]>,
    span: (NaiveDate, NaiveDate),
}

impl std::fmt::Debug for Packed {
    // Never the bytes: they hold an NHS number.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Packed({} bytes)", self.bytes.len())
    }
}

impl Packed {
    /// The packed bytes (what a snapshot stores).
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The number of events the state was evaluated from.
    pub fn version(&self) -> u64 {
        let mut r = Reader {
            bytes: &self.bytes,
            at: 0,
            base: 0,
        };
        r.head().map_or(0, |(version, _)| version)
    }

    /// The earliest and latest date the state holds.
    pub fn span(&self) -> (NaiveDate, NaiveDate) {
        self.span
    }

    /// Packed bytes as a snapshot gave them back (the rest is checked when
    /// unpacked).
    pub fn from_bytes(bytes: &[u8]) -> Result<Packed, String> {
        let mut r = Reader {
            bytes,
            at: 0,
            base: 0,
        };
        let (_, span) = r.head()?;
        Ok(Packed {
            bytes: bytes.into(),
            span,
        })
    }
}

/// Packs and unpacks states under one rules configuration: it knows the
/// milestone names, so a state stores an index rather than the text, and an
/// unpacked state shares the configuration's names.
#[derive(Debug)]
pub struct Packer {
    names: Vec<Arc<str>>,
    index: HashMap<Arc<str>, u32>,
}

impl Packer {
    pub fn new(config: &RulesConfig) -> Packer {
        let mut names: Vec<Arc<str>> = config
            .milestones
            .template
            .iter()
            .flat_map(|t| &t.milestone)
            .map(|m| m.name.clone())
            .collect();
        names.sort();
        names.dedup();
        let index = names
            .iter()
            .enumerate()
            .map(|(i, name)| (name.clone(), i as u32 + 1))
            .collect();
        Packer { names, index }
    }

    /// `state` and its version, packed.
    pub fn pack(&self, state: &PathwayState, version: u64) -> Packed {
        let mut w = Writer {
            out: Vec::with_capacity(128),
            base: day(state.referred_on),
        };
        let span = state.date_span();
        w.byte(LAYOUT);
        w.int(day(span.0).into());
        w.int(day(span.1).into());
        w.uint(version);
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
            treatment_periods,
            next_breach,
            transferred,
            transfers,
            handover_date,
            last_note,
            first_seen,
            record,
        } = state;
        w.out.extend_from_slice(nhs_number.as_str().as_bytes());
        w.ods(trust);
        w.ods(referring_trust);
        w.byte(tumour_site.index());
        w.byte(route.index());
        w.int(day(*referred_on).into());
        w.byte(status.index());
        w.flag(*on_ptl);
        w.date(*as_of);
        w.byte(fit_band.index());
        w.opt_date(*fit_on);
        w.opt_date(*fds_excluded_on);
        for clock in [fds, d31, d62] {
            w.clock(clock);
        }
        w.uint(milestones.len() as u64);
        for m in milestones {
            let Milestone {
                name,
                due_day,
                due_date,
                met_on,
                status,
            } = m;
            match self.index.get(name) {
                Some(i) => w.uint(*i as u64),
                None => {
                    w.uint(0);
                    w.text(name);
                }
            }
            w.int(*due_day);
            w.date(*due_date);
            w.opt_date(*met_on);
            w.byte(status.index());
        }
        w.uint(treatment_periods.len() as u64);
        for p in treatment_periods {
            let TreatmentPeriod {
                treatment,
                plan_id,
                modality,
                start_reason,
                care_setting,
                clock,
            } = p;
            w.byte(treatment.index());
            w.option(plan_id.as_ref(), |w, t| w.text(t));
            w.byte(modality.index());
            w.byte(start_reason.index());
            w.option(care_setting.as_ref(), |w, c| w.byte(c.index()));
            let same_as_d31 = clock == d31;
            w.flag(same_as_d31);
            if !same_as_d31 {
                w.clock(clock);
            }
        }
        w.option(next_breach.as_ref(), |w, b| {
            let NextBreach {
                clock,
                plan_id,
                date,
            } = b;
            w.byte(clock.index());
            w.option(plan_id.as_ref(), |w, t| w.text(t));
            w.date(*date);
        });
        w.flag(*transferred);
        w.uint(transfers.len() as u64);
        for t in transfers {
            w.date(t.occurred_on);
            w.ods(&t.from_trust);
            w.ods(&t.to_trust);
        }
        w.opt_date(*handover_date);
        w.option(last_note.as_ref(), |w, n| {
            let Note {
                occurred_on,
                text,
                next_action,
                next_action_due,
                owner,
                escalated,
            } = n;
            w.date(*occurred_on);
            w.text(text);
            w.option(next_action.as_ref(), |w, t| w.text(t));
            w.opt_date(*next_action_due);
            w.option(owner.as_ref(), |w, t| w.text(t));
            w.flag(*escalated);
        });
        w.option(first_seen.as_ref(), |w, f| {
            let SeenAt {
                date,
                medium,
                trust,
            } = f;
            w.date(*date);
            w.byte(medium.index());
            w.ods(trust);
        });
        let RecordFacts {
            referrer_given,
            primary_diagnosis,
            first_seen_adjustment_days,
        } = record;
        w.flag(*referrer_given);
        w.option(primary_diagnosis.as_ref(), |w, t| w.text(t));
        w.int(*first_seen_adjustment_days);
        Packed {
            bytes: w.out.into_boxed_slice(),
            span,
        }
    }

    /// The state and version back; an error for bytes not packed here.
    pub fn unpack(&self, packed: &Packed) -> Result<(PathwayState, u64), String> {
        let mut r = Reader {
            bytes: &packed.bytes,
            at: 0,
            base: 0,
        };
        let (version, _) = r.head()?;
        let digits: &[u8; 10] = r.take(10)?.try_into().expect("ten bytes");
        let nhs_number = NhsNumber::from_digits(digits).ok_or("a packed NHS number fails")?;
        let trust = r.ods()?;
        let referring_trust = r.ods()?;
        let tumour_site = r.code(TumourSite::from_index)?;
        let route = r.code(Route::from_index)?;
        let referred_on = r.day()?;
        r.base = day(referred_on);
        let status = r.code(PathwayStatus::from_index)?;
        let on_ptl = r.flag()?;
        let as_of = r.date()?;
        let fit_band = r.code(FitBand::from_index)?;
        let fit_on = r.opt_date()?;
        let fds_excluded_on = r.opt_date()?;
        let clocks = Clocks {
            fds: r.clock()?,
            d31: r.clock()?,
            d62: r.clock()?,
        };
        let count = r.count()?;
        let mut milestones = Vec::with_capacity(count);
        for _ in 0..count {
            let name = match r.uint()? {
                0 => Arc::from(r.text()?),
                i => self
                    .names
                    .get(i as usize - 1)
                    .cloned()
                    .ok_or("a packed milestone name is unknown")?,
            };
            milestones.push(Milestone {
                name,
                due_day: r.int()?,
                due_date: r.date()?,
                met_on: r.opt_date()?,
                status: r.code(MilestoneStatus::from_index)?,
            });
        }
        let count = r.count()?;
        let mut treatment_periods = Vec::with_capacity(count);
        for _ in 0..count {
            treatment_periods.push(TreatmentPeriod {
                treatment: r.code(TreatmentKind::from_index)?,
                plan_id: r.option(|r| r.text().map(|t| Arc::from(t.as_str())))?,
                modality: r.code(Modality::from_index)?,
                start_reason: r.code(PeriodStartReason::from_index)?,
                care_setting: r.option(|r| r.code(TreatmentSetting::from_index))?,
                clock: if r.flag()? {
                    clocks.d31.clone()
                } else {
                    r.clock()?
                },
            });
        }
        let next_breach = r.option(|r| {
            Ok(NextBreach {
                clock: r.code(ClockKind::from_index)?,
                plan_id: r.option(|r| r.text().map(|t| Arc::from(t.as_str())))?,
                date: r.date()?,
            })
        })?;
        let transferred = r.flag()?;
        let count = r.count()?;
        let mut transfers = Vec::with_capacity(count);
        for _ in 0..count {
            transfers.push(Transfer {
                occurred_on: r.date()?,
                from_trust: r.ods()?,
                to_trust: r.ods()?,
            });
        }
        let handover_date = r.opt_date()?;
        let last_note = r.option(|r| {
            Ok(Note {
                occurred_on: r.date()?,
                text: r.text()?,
                next_action: r.option(|r| r.text())?,
                next_action_due: r.opt_date()?,
                owner: r.option(|r| r.text())?,
                escalated: r.flag()?,
            })
        })?;
        let first_seen = r.option(|r| {
            Ok(SeenAt {
                date: r.date()?,
                medium: r.code(SeenMedium::from_index)?,
                trust: r.ods()?,
            })
        })?;
        let record = RecordFacts {
            referrer_given: r.flag()?,
            primary_diagnosis: r.option(|r| r.text())?,
            first_seen_adjustment_days: r.int()?,
        };
        if r.at != r.bytes.len() {
            return Err("a packed state has bytes left over".into());
        }
        let state = PathwayState {
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
            clocks,
            milestones,
            treatment_periods,
            next_breach,
            transferred,
            transfers,
            handover_date,
            last_note,
            first_seen,
            record,
        };
        Ok((state, version))
    }

    /// A [`Current`] back, always without its PTL row (`row: None`, on the
    /// PTL or not): callers that show a row make it with `PtlRow::of`.
    pub fn current(&self, packed: &Packed) -> Result<Current, String> {
        let (state, version) = self.unpack(packed)?;
        Ok(Current {
            state,
            row: None,
            version,
        })
    }
}

fn day(d: NaiveDate) -> i32 {
    d.num_days_from_ce()
}

/// The first day of [`DATES`]: 1 January 1950.
const FIRST_DAY: i32 = 711_858;

/// Every date from 1950 to 2149 by day number: chrono works a date out of
/// a day number with divisions and tables (a tenth of the time an
/// aggregate view spent unpacking); this is one load.
static DATES: std::sync::LazyLock<Box<[NaiveDate]>> = std::sync::LazyLock::new(|| {
    (FIRST_DAY..FIRST_DAY + 73_049)
        .map(|d| NaiveDate::from_num_days_from_ce_opt(d).expect("a day of 1950-2149"))
        .collect()
});

/// The date of a day number (days from the common era, 1 January 1 = 1).
fn date_of_day(d: i32) -> Option<NaiveDate> {
    match d
        .checked_sub(FIRST_DAY)
        .and_then(|i| DATES.get(usize::try_from(i).ok()?))
    {
        Some(date) => Some(*date),
        None => NaiveDate::from_num_days_from_ce_opt(d),
    }
}

struct Writer {
    out: Vec<u8>,
    /// The referral's day number: other dates are offsets from it.
    base: i32,
}

impl Writer {
    fn byte(&mut self, b: u8) {
        self.out.push(b);
    }

    fn flag(&mut self, f: bool) {
        self.out.push(f as u8);
    }

    fn uint(&mut self, v: u64) {
        varint::write(&mut self.out, v);
    }

    fn int(&mut self, v: i64) {
        self.uint(varint::zigzag(v));
    }

    fn date(&mut self, d: NaiveDate) {
        self.int((day(d) - self.base) as i64);
    }

    /// 0 for none, else the offset's zigzag plus one.
    fn opt_date(&mut self, d: Option<NaiveDate>) {
        match d {
            None => self.uint(0),
            Some(d) => self.uint(varint::zigzag((day(d) - self.base).into()) + 1),
        }
    }

    fn text(&mut self, t: &str) {
        self.uint(t.len() as u64);
        self.out.extend_from_slice(t.as_bytes());
    }

    fn ods(&mut self, code: &OdsCode) {
        self.text(code.as_str());
    }

    fn option<T>(&mut self, value: Option<T>, f: impl FnOnce(&mut Writer, T)) {
        match value {
            None => self.byte(0),
            Some(v) => {
                self.byte(1);
                f(self, v);
            }
        }
    }

    fn clock(&mut self, c: &Clock) {
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
        self.byte(status.index());
        self.opt_date(*start);
        self.opt_date(*stop);
        self.option(stop_reason.as_ref(), |w, r| w.byte(r.index()));
        self.int(*adjustment_days);
        self.int(*days);
        self.int(*target_days);
        self.opt_date(*target_date);
        self.option(allocation.as_ref(), |w, shares| {
            w.uint(shares.len() as u64);
            for a in shares {
                w.ods(&a.trust);
                w.out.extend_from_slice(&a.share.to_le_bytes());
                w.flag(a.breached);
            }
        });
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
    base: i32,
}

const SHORT: &str = "a packed state is cut short";

impl<'a> Reader<'a> {
    /// The layout byte, the date span and the version.
    fn head(&mut self) -> Result<(u64, (NaiveDate, NaiveDate)), String> {
        if self.byte()? != LAYOUT {
            return Err("a packed state of another layout".into());
        }
        let span = (self.day()?, self.day()?);
        Ok((self.uint()?, span))
    }

    /// A date written as its day number (any date chrono has, before year
    /// 1 included: the numbers are signed).
    fn day(&mut self) -> Result<NaiveDate, String> {
        i32::try_from(self.int()?)
            .ok()
            .and_then(date_of_day)
            .ok_or_else(|| "a packed date is out of range".to_string())
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.at.checked_add(n).filter(|e| *e <= self.bytes.len());
        let end = end.ok_or(SHORT)?;
        let taken = &self.bytes[self.at..end];
        self.at = end;
        Ok(taken)
    }

    fn byte(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn flag(&mut self) -> Result<bool, String> {
        match self.byte()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err("a packed flag is neither 0 nor 1".into()),
        }
    }

    fn code<T>(&mut self, from_index: fn(u8) -> Option<T>) -> Result<T, String> {
        from_index(self.byte()?).ok_or_else(|| "a packed code is unknown".into())
    }

    fn uint(&mut self) -> Result<u64, String> {
        let (v, used) = varint::read(&self.bytes[self.at..])
            .ok_or("a packed number is cut short or too long")?;
        self.at += used;
        Ok(v)
    }

    fn int(&mut self) -> Result<i64, String> {
        self.uint().map(varint::unzigzag)
    }

    fn count(&mut self) -> Result<usize, String> {
        let n = self.uint()?;
        // Every item takes at least one byte: a larger count is damage.
        if n > (self.bytes.len() - self.at) as u64 {
            return Err(SHORT.into());
        }
        Ok(n as usize)
    }

    fn offset_date(&self, offset: i64) -> Result<NaiveDate, String> {
        i32::try_from(offset)
            .ok()
            .and_then(|o| self.base.checked_add(o))
            .and_then(date_of_day)
            .ok_or_else(|| "a packed date is out of range".into())
    }

    fn date(&mut self) -> Result<NaiveDate, String> {
        let offset = self.int()?;
        self.offset_date(offset)
    }

    fn opt_date(&mut self) -> Result<Option<NaiveDate>, String> {
        match self.uint()? {
            0 => Ok(None),
            v => self.offset_date(varint::unzigzag(v - 1)).map(Some),
        }
    }

    fn text(&mut self) -> Result<String, String> {
        let n = self.count()?;
        let bytes = self.take(n)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| "a packed text is not UTF-8".into())
    }

    fn ods(&mut self) -> Result<OdsCode, String> {
        let n = self.count()?;
        std::str::from_utf8(self.take(n)?)
            .ok()
            .and_then(OdsCode::parse_referrer)
            .ok_or_else(|| "a packed ODS code fails".into())
    }

    fn option<T>(
        &mut self,
        f: impl FnOnce(&mut Reader<'a>) -> Result<T, String>,
    ) -> Result<Option<T>, String> {
        match self.byte()? {
            0 => Ok(None),
            1 => f(self).map(Some),
            _ => Err("a packed option is neither 0 nor 1".into()),
        }
    }

    fn clock(&mut self) -> Result<Clock, String> {
        Ok(Clock {
            status: self.code(ClockStatus::from_index)?,
            start: self.opt_date()?,
            stop: self.opt_date()?,
            stop_reason: self.option(|r| r.code(StopReason::from_index))?,
            adjustment_days: self.int()?,
            days: self.int()?,
            target_days: self.int()?,
            target_date: self.opt_date()?,
            allocation: self.option(|r| {
                let count = r.count()?;
                let mut shares = Vec::with_capacity(count);
                for _ in 0..count {
                    shares.push(Allocation {
                        trust: r.ods()?,
                        share: f64::from_le_bytes(r.take(8)?.try_into().expect("eight bytes")),
                        breached: r.flag()?,
                    });
                }
                Ok(shares)
            })?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use proptest::strategy::ValueTree;

    fn date() -> impl Strategy<Value = NaiveDate> {
        // Mostly near a referral (corrections move dates either way), and
        // now and then anything chrono has: input may carry any year.
        let near = (-4000i64..4000)
            .prop_map(|d| NaiveDate::from_ymd_opt(2025, 6, 1).unwrap() + chrono::Duration::days(d));
        let any = (NaiveDate::MIN.num_days_from_ce()..=NaiveDate::MAX.num_days_from_ce())
            .prop_map(|d| NaiveDate::from_num_days_from_ce_opt(d).unwrap());
        let edges = prop::sample::select(vec![
            NaiveDate::MIN,
            NaiveDate::MAX,
            NaiveDate::from_ymd_opt(0, 1, 1).unwrap(),
        ]);
        prop_oneof![8 => near, 1 => any, 1 => edges]
    }

    fn ods() -> impl Strategy<Value = OdsCode> {
        "[A-Z0-9]{3,6}".prop_map(|c| OdsCode::parse_referrer(&c).unwrap())
    }

    fn nhs() -> impl Strategy<Value = NhsNumber> {
        prop::sample::select(vec!["9434765919", "9876543210", "4010232137", "0000000000"])
            .prop_map(|n| NhsNumber::parse(n).unwrap())
    }

    fn text() -> impl Strategy<Value = String> {
        prop_oneof![".{0,12}", ".{0,300}"]
    }

    fn days() -> impl Strategy<Value = i64> {
        prop_oneof![-400i64..400, any::<i64>()]
    }

    fn clock() -> impl Strategy<Value = Clock> {
        let allocation =
            (ods(), 0.0f64..=1.0, any::<bool>()).prop_map(|(trust, share, b)| Allocation {
                trust,
                share,
                breached: b,
            });
        (
            prop::sample::select(ClockStatus::ALL),
            prop::option::of(date()),
            prop::option::of(date()),
            prop::option::of(prop::sample::select(StopReason::ALL)),
            (days(), days(), days()),
            prop::option::of(date()),
            prop::option::of(prop::collection::vec(allocation, 0..4)),
        )
            .prop_map(
                |(
                    status,
                    start,
                    stop,
                    stop_reason,
                    (adj, days, target),
                    target_date,
                    allocation,
                )| {
                    Clock {
                        status,
                        start,
                        stop,
                        stop_reason,
                        adjustment_days: adj,
                        days,
                        target_days: target,
                        target_date,
                        allocation,
                    }
                },
            )
    }

    fn milestone(names: Vec<Arc<str>>) -> impl Strategy<Value = Milestone> {
        let name = prop_oneof![
            prop::sample::select(names),
            text().prop_map(|t| Arc::from(t.as_str()))
        ];
        (
            name,
            days(),
            date(),
            prop::option::of(date()),
            prop::sample::select(MilestoneStatus::ALL),
        )
            .prop_map(|(name, due_day, due_date, met_on, status)| Milestone {
                name,
                due_day,
                due_date,
                met_on,
                status,
            })
    }

    fn note() -> impl Strategy<Value = Note> {
        (
            date(),
            text(),
            prop::option::of(text()),
            prop::option::of(date()),
            prop::option::of(text()),
            any::<bool>(),
        )
            .prop_map(
                |(occurred_on, text, next_action, next_action_due, owner, escalated)| Note {
                    occurred_on,
                    text,
                    next_action,
                    next_action_due,
                    owner,
                    escalated,
                },
            )
    }

    fn state(names: Vec<Arc<str>>) -> impl Strategy<Value = PathwayState> {
        let who = (
            nhs(),
            ods(),
            ods(),
            prop::sample::select(TumourSite::ALL),
            prop::sample::select(Route::ALL),
            date(),
            prop::sample::select(PathwayStatus::ALL),
            any::<bool>(),
            date(),
        );
        let fit = (
            prop::sample::select(FitBand::ALL),
            prop::option::of(date()),
            prop::option::of(date()),
        );
        let transfer =
            (date(), ods(), ods()).prop_map(|(occurred_on, from_trust, to_trust)| Transfer {
                occurred_on,
                from_trust,
                to_trust,
            });
        let plan = || prop::option::of(text().prop_map(|t| Arc::<str>::from(t.as_str())));
        let next_breach = (prop::sample::select(ClockKind::ALL), plan(), date()).prop_map(
            |(clock, plan_id, date)| NextBreach {
                clock,
                plan_id,
                date,
            },
        );
        let period = (
            prop::sample::select(TreatmentKind::ALL),
            plan(),
            prop::sample::select(Modality::ALL),
            prop::sample::select(PeriodStartReason::ALL),
            prop::option::of(clock()),
            prop::option::of(prop::sample::select(TreatmentSetting::ALL)),
        );
        let seen = prop::option::of(
            (date(), prop::sample::select(SeenMedium::ALL), ods()).prop_map(
                |(date, medium, trust)| SeenAt {
                    date,
                    medium,
                    trust,
                },
            ),
        );
        let record = (any::<bool>(), prop::option::of(text()), days()).prop_map(
            |(referrer_given, primary_diagnosis, first_seen_adjustment_days)| RecordFacts {
                referrer_given,
                primary_diagnosis,
                first_seen_adjustment_days,
            },
        );
        let rest = (
            prop::option::of(next_breach),
            any::<bool>(),
            prop::collection::vec(transfer, 0..3),
            prop::option::of(date()),
            prop::option::of(note()),
        );
        (
            who,
            fit,
            (clock(), clock(), clock()),
            prop::collection::vec(milestone(names), 0..9),
            rest,
            prop::collection::vec(period, 0..4),
            (seen, record),
        )
            .prop_map(
                |(
                    (nhs, trust, referrer, site, route, referred_on, status, on_ptl, as_of),
                    (fit_band, fit_on, fds_excluded_on),
                    (fds, d31, d62),
                    milestones,
                    (next_breach, transferred, transfers, handover_date, last_note),
                    periods,
                    (first_seen, record),
                )| PathwayState {
                    nhs_number: nhs,
                    trust,
                    referring_trust: referrer,
                    tumour_site: site,
                    route,
                    referred_on,
                    status,
                    on_ptl,
                    as_of,
                    fit_band,
                    fit_on,
                    fds_excluded_on,
                    // A period without a clock of its own is the first (`d31`).
                    treatment_periods: periods
                        .into_iter()
                        .map(
                            |(treatment, plan_id, modality, start_reason, clock, care_setting)| {
                                TreatmentPeriod {
                                    treatment,
                                    plan_id,
                                    modality,
                                    start_reason,
                                    care_setting,
                                    clock: clock.unwrap_or_else(|| d31.clone()),
                                }
                            },
                        )
                        .collect(),
                    clocks: Clocks { fds, d31, d62 },
                    milestones,
                    next_breach,
                    transferred,
                    transfers,
                    handover_date,
                    last_note,
                    first_seen,
                    record,
                },
            )
    }

    fn names() -> Vec<Arc<str>> {
        Packer::new(&RulesConfig::defaults()).names
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]

        #[test]
        fn every_state_unpacks_to_itself(state in state(names()), version in any::<u64>()) {
            let packer = Packer::new(&RulesConfig::defaults());
            let packed = packer.pack(&state, version);
            prop_assert_eq!(packed.span(), state.date_span());
            let packed = Packed::from_bytes(packed.as_bytes()).unwrap();
            prop_assert_eq!(packed.span(), state.date_span());
            let (back, v) = packer.unpack(&packed).unwrap();
            prop_assert_eq!(v, version);
            // NhsNumber has no Debug of its digits; compare it on its own.
            prop_assert_eq!(back.nhs_number.as_str(), state.nhs_number.as_str());
            prop_assert_eq!(back, state);
        }

        #[test]
        fn damaged_bytes_are_refused_or_read_as_some_state(
            state in state(names()),
            at in any::<prop::sample::Index>(),
            cut in any::<bool>(),
        ) {
            let packer = Packer::new(&RulesConfig::defaults());
            let bytes = packer.pack(&state, 3).as_bytes().to_vec();
            let at = at.index(bytes.len());
            let damaged = if cut {
                bytes[..at].to_vec()
            } else {
                let mut b = bytes.clone();
                b[at] ^= 0x5a;
                b
            };
            // Never a panic; a cut is always caught.
            let out = Packed::from_bytes(&damaged).and_then(|p| packer.unpack(&p));
            if cut {
                prop_assert!(out.is_err());
            }
        }
    }

    #[test]
    fn the_date_table_agrees_with_chrono() {
        assert_eq!(
            NaiveDate::from_num_days_from_ce_opt(FIRST_DAY),
            NaiveDate::from_ymd_opt(1950, 1, 1)
        );
        assert_eq!(DATES.last().copied(), NaiveDate::from_ymd_opt(2149, 12, 31));
        for d in (FIRST_DAY - 1000..FIRST_DAY + 80_000).chain([1, -5, i32::MAX, i32::MIN]) {
            assert_eq!(
                date_of_day(d),
                NaiveDate::from_num_days_from_ce_opt(d),
                "day {d}"
            );
        }
    }

    #[test]
    fn milestone_names_are_shared_with_the_rules() {
        let config = RulesConfig::defaults();
        let packer = Packer::new(&config);
        let name = config.milestones.template[0].milestone[0].name.clone();
        let mut state = state(names())
            .new_tree(&mut proptest::test_runner::TestRunner::deterministic())
            .unwrap()
            .current();
        state.milestones.truncate(0);
        state.milestones.push(Milestone {
            name: name.clone(),
            due_day: 3,
            due_date: state.referred_on,
            met_on: None,
            status: MilestoneStatus::Pending,
        });
        let (back, _) = packer.unpack(&packer.pack(&state, 1)).unwrap();
        assert!(Arc::ptr_eq(&back.milestones[0].name, &name));
    }
}
