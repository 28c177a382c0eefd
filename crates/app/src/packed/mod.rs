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
//! format and binary ([`crate::snapshot::BINARY`]: its version and the build
//! of its evaluating code) and is refolded from the log when either
//! differs, so this layout may change with any release (bump
//! [`crate::snapshot::FORMAT`]).
//!
//! Layout: the layout byte, the state's date span (two day numbers), the
//! version, the events' [`Settled`] dates (an option of two offsets from
//! the span's first day), whether it is on the PTL, and the earlier states past views move
//! ([`Earlier`]: a count, then each one's last day as an offset and the
//! first day its events are settled by as days before it, whether it is
//! on the PTL, its first and last CWT record month, and its own packed
//! bytes' length (a head without settled dates), then those bytes
//! compressed as an LZ4 block against the state's own fields, which they
//! mostly repeat, with their compressed length), then the state's fields
//! in order. Integers are LEB128
//! varints (signed ones zigzagged); the referral date is a day number
//! (signed: input may hold dates before year 1), every other date a signed
//! offset from it; an optional value is a 0/1 byte then the value (optional
//! dates fold the flag into the offset: 0 for none); enums are their index in `ALL`;
//! an FDS exclusion is its date then, when there is one, its reason;
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
use openptl_rules::fit::{FitResult, GiTest, LowerGiFacts, TestStage};
use openptl_rules::pathway::{
    Allocation, Clock, Clocks, Earlier, FdsExclusion, Milestone, NextBreach, Note, RecordFacts,
    Settled, Transfer,
};
use openptl_rules::{
    ClockKind, ClockStatus, DiagnosticTest, ExclusionReason, FitBand, MilestoneStatus, Modality,
    NhsNumber, NhsNumberStatus, OdsCode, PathwayState, PathwayStatus, Period, PeriodStartReason,
    Route, RulesConfig, SeenAt, SeenMedium, StopReason, TreatmentKind, TreatmentPeriod,
    TreatmentSetting, TumourSite,
};

use openptl_rules::forecast::{clock_observations, Observation, ObservedWith};

use crate::evaluate::Current;
use crate::varint;

/// The layout version, the first byte of every packed state.
const LAYOUT: u8 = 9;

/// A packed pathway state, with the number of events it was evaluated
/// from, and at hand (not read from its bytes: [`glance`]) its
/// [`PathwayState::date_span`], whether it is on the PTL, the date its
/// events are settled by and its tumour site: a view of a period passes
/// over the pathways outside it, and a past view over those settled by
/// its date, or of another site than its list shows, without reading
/// them.
#[derive(Clone, PartialEq, Eq)]
pub struct Packed {
    bytes: Box<[u8]>,
    glance: Glance,
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
        self.head().map_or(0, |head| head.version)
    }

    /// What its first bytes say.
    fn head(&self) -> Result<bytes::Head<'_>, Unreadable> {
        Reader::new(&self.bytes).head()
    }

    /// The settled dates of the events the state was evaluated from
    /// ([`Settled`]; `None` when not known).
    pub fn settled(&self) -> Option<Settled> {
        self.head().ok()?.settled
    }

    /// Whether the state is on the PTL, and the date its events are
    /// settled by ([`Settled::from`]) when known, without reading its
    /// bytes (but for a state with dates outside 1950 to mid-2129).
    pub fn on_ptl_settled_from(&self) -> (bool, Option<NaiveDate>) {
        match self.glance.near() {
            true => self.glance.on_ptl_settled_from(),
            false => self.head().map_or((false, None), |head| {
                (head.on_ptl, head.settled.map(|s| s.from))
            }),
        }
    }

    /// The packed bytes of the earlier state that moves to `as_of`, and
    /// whether it is on the PTL (`None`: none kept does).
    pub fn earlier(&self, as_of: NaiveDate) -> Option<(bool, Vec<u8>)> {
        match earlier_of(&self.bytes, as_of, None)? {
            EarlierState::Moves(on_ptl, bytes) => Some((on_ptl, bytes)),
            EarlierState::NoRecordsIn => None,
        }
    }

    /// How many of its bytes are earlier states.
    pub fn earlier_bytes(&self) -> usize {
        self.head().map_or(0, |head| head.earlier.len())
    }

    /// The earliest and latest date the state holds.
    pub fn span(&self) -> (NaiveDate, NaiveDate) {
        match self.glance.near() {
            true => self.glance.span(),
            false => span_of(&self.bytes),
        }
    }

    /// Packed bytes as a snapshot gave them back (the rest is checked when
    /// unpacked).
    pub fn from_bytes(bytes: &[u8]) -> Result<Packed, Unreadable> {
        let mut r = Reader::new(bytes);
        let head = r.head()?;
        let site = site_after_head(&mut r)?;
        Ok(Packed {
            bytes: bytes.into(),
            glance: Glance::of(head.span, head.on_ptl, head.settled.map(|s| s.from), site),
        })
    }

    /// The state's tumour site, without reading its bytes.
    pub fn tumour_site(&self) -> TumourSite {
        self.glance.site()
    }
}

/// The tumour site of the state whose head `r` has just read: its NHS
/// number and two trusts passed over.
fn site_after_head(r: &mut Reader<'_>) -> Result<TumourSite, Unreadable> {
    r.take(10)?; // the NHS number
    r.skip_text()?; // the trust
    r.skip_text()?; // the referring trust
    r.code(TumourSite::from_index)
}

/// What a past view asks of packed bytes kept elsewhere (the replaced
/// states, decision 162) without copying them into a [`Packed`]: whether
/// the state is on the PTL, its settled dates and its date span (`None`:
/// the head is unreadable; [`Packed::on_ptl_settled_from`] of a `Packed`).
pub fn head_of(bytes: &[u8]) -> Option<(bool, Option<Settled>, (NaiveDate, NaiveDate))> {
    let head = Reader::new(bytes).head().ok()?;
    Some((head.on_ptl, head.settled, head.span))
}

/// The earlier state kept with a pathway that moves to a date, as
/// [`earlier_of`] finds it.
#[derive(Debug, PartialEq, Eq)]
pub enum EarlierState {
    /// Whether it is on the PTL, and its packed bytes.
    Moves(bool, Vec<u8>),
    /// It has no CWT records in the month asked about (so a view of that
    /// month's records passes over it, left packed).
    NoRecordsIn,
}

/// The earlier state kept in packed bytes (a pathway's, or a copy kept
/// elsewhere) that moves to `as_of` (`None`: none kept does). When
/// `recorded` names a month, one without CWT records in it is not
/// unpacked: each earlier state keeps its first and last record month
/// ([`openptl_rules::cwt::record_months`]), which moving it to a date
/// does not change (decision 171).
pub fn earlier_of(
    bytes: &[u8],
    as_of: NaiveDate,
    recorded: Option<Period>,
) -> Option<EarlierState> {
    let head = Reader::new(bytes).head().ok()?;
    Reader::earlier(head.earlier, day(head.span.0), head.fields, as_of, recorded)
        .ok()
        .flatten()
}

/// The date span in packed bytes' head (a copy of [`Packed::as_bytes`]);
/// every date for bytes that are not a packed state (so a view takes them
/// and reports them unreadable).
pub fn span_of(bytes: &[u8]) -> (NaiveDate, NaiveDate) {
    let mut r = Reader::new(bytes);
    r.head()
        .map_or((NaiveDate::MIN, NaiveDate::MAX), |head| head.span)
}

/// What of a packed state its clocks are observed with
/// ([`Packer::unpack_clock_fields`]): a past view takes today's clocks of
/// hundreds of thousands of pathways away from the counts it keeps, and
/// unpacking their whole states was half the cost of that.
#[derive(Debug)]
pub struct ClockFields {
    trust: OdsCode,
    tumour_site: TumourSite,
    route: Route,
    clocks: Clocks,
    milestones: Vec<Milestone>,
    /// Each treatment period's clock (`None`: the same as `clocks.d31`).
    periods: Vec<Option<Clock>>,
}

impl ClockFields {
    /// The state's [`openptl_rules::forecast::observations`].
    pub fn observations(&self) -> impl Iterator<Item = Observation> + '_ {
        let with = ObservedWith {
            trust: self.trust,
            tumour_site: self.tumour_site,
            route: self.route,
            milestones: &self.milestones,
        };
        let d31 = &self.clocks.d31;
        let periods = self.periods.iter().map(move |p| p.as_ref().unwrap_or(d31));
        clock_observations(with, (&self.clocks.fds, &self.clocks.d62), periods)
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
        Packer::of_names(names)
    }

    /// A packer of `names` (sorted, each once), stored by index from 1.
    fn of_names(names: Vec<Arc<str>>) -> Packer {
        let index = names
            .iter()
            .enumerate()
            .map(|(i, name)| (name.clone(), i as u32 + 1))
            .collect();
        Packer { names, index }
    }

    /// A packer whose unpacked states share milestone names of its own,
    /// for one core's many states: states unpacked on two cores from one
    /// packer count references to the same names, and those counts going
    /// back and forth between the cores were a quarter of unpacking a
    /// state (decision 205).
    pub fn with_own_names(&self) -> Packer {
        Packer::of_names(self.names.iter().map(|n| Arc::from(&**n)).collect())
    }

    /// `state`, its version and its events' settled dates, packed.
    pub fn pack(&self, state: &PathwayState, version: u64, settled: Option<Settled>) -> Packed {
        self.pack_with_earlier(state, version, settled, &[])
    }

    /// `state`, its version and settled dates, with earlier states of the
    /// pathway that past views can move ([`Earlier`], and each state on
    /// its date, evaluated from as many events), packed.
    pub fn pack_with_earlier(
        &self,
        state: &PathwayState,
        version: u64,
        settled: Option<Settled>,
        earlier: &[(Earlier, PathwayState)],
    ) -> Packed {
        Packed {
            // An allocation of its own length: the writer's grew, and the
            // allocator keeps a block shrunk by less than half where it is
            // (decision 145).
            bytes: Box::from(&self.bytes_of(state, version, settled, earlier)[..]),
            glance: Glance::of(
                state.date_span(),
                state.on_ptl,
                settled.map(|s| s.from),
                state.tumour_site,
            ),
        }
    }

    /// What [`Packer::pack_with_earlier`] packs, as written (an earlier
    /// state's bytes are compressed from these, never kept as they are).
    fn bytes_of(
        &self,
        state: &PathwayState,
        version: u64,
        settled: Option<Settled>,
        earlier: &[(Earlier, PathwayState)],
    ) -> Vec<u8> {
        let span = state.date_span();
        // The fields first: the earlier states are compressed against them.
        let mut f = Writer {
            out: Vec::with_capacity(128),
            base: day(state.referred_on),
        };
        write_fields(&mut f, state, &self.index);
        let fields = f.out;
        let mut w = Writer {
            out: Vec::with_capacity(fields.len() + 16),
            base: day(state.referred_on),
        };
        w.byte(LAYOUT);
        w.int(day(span.0).into());
        w.int(day(span.1).into());
        w.uint(version);
        w.option(settled, |w, s| {
            w.int(i64::from(day(s.first)) - i64::from(day(span.0)));
            w.int(i64::from(day(s.from)) - i64::from(day(span.0)));
        });
        w.flag(state.on_ptl);
        w.uint(earlier.len() as u64);
        for (e, state) in earlier {
            w.int(i64::from(day(e.until)) - i64::from(day(span.0)));
            // Its range's first day, back from its last (a few days): the
            // one settled date a past view asks of it, so its own head
            // holds none.
            w.int(i64::from(day(e.until)) - i64::from(day(e.settled.from)));
            w.flag(state.on_ptl);
            w.record_months(openptl_rules::cwt::record_months(state), Period::of(span.0));
            let inner = self.bytes_of(state, version, None, &[]);
            let compressed = lz4_flex::block::compress_with_dict(&inner, &fields);
            w.uint(inner.len() as u64);
            w.uint(compressed.len() as u64);
            w.out.extend_from_slice(&compressed);
        }
        w.out.extend_from_slice(&fields);
        w.out
    }
}

/// A state's fields, in order, after its head.
fn write_fields(w: &mut Writer, state: &PathwayState, index: &HashMap<Arc<str>, u32>) {
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
        fds_exclusion,
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
        lower_gi,
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
    w.opt_date(fds_exclusion.map(|e| e.date));
    if let Some(exclusion) = fds_exclusion {
        w.byte(exclusion.reason.index());
    }
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
        match index.get(name) {
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
            treated_by,
            clock,
        } = p;
        w.byte(treatment.index());
        w.option(plan_id.as_ref(), |w, t| w.text(t));
        w.byte(modality.index());
        w.byte(start_reason.index());
        w.option(care_setting.as_ref(), |w, c| w.byte(c.index()));
        w.option(treated_by.as_ref(), |w, t| w.ods(t));
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
        nhs_number_status,
        primary_diagnosis,
        first_seen_adjustment_days,
        transfer_to_treatment,
    } = record;
    w.flag(*referrer_given);
    w.option(*nhs_number_status, |w, s| w.byte(s.index()));
    w.option(primary_diagnosis.as_ref(), |w, t| w.text(t));
    w.int(*first_seen_adjustment_days);
    w.opt_date(*transfer_to_treatment);
    let LowerGiFacts {
        fit_results,
        triaged_on,
        tests,
    } = lower_gi;
    w.uint(fit_results.len() as u64);
    for FitResult { on, band } in fit_results {
        w.date(*on);
        w.byte(band.index());
    }
    w.opt_date(*triaged_on);
    w.uint(tests.len() as u64);
    for GiTest { on, test, stage } in tests {
        w.date(*on);
        w.byte(test.index());
        w.flag(*stage == TestStage::Performed);
    }
}

impl Packer {
    /// The state and version back; an error for bytes not packed here.
    pub fn unpack(&self, packed: &Packed) -> Result<(PathwayState, u64), Unreadable> {
        self.unpack_bytes(&packed.bytes)
    }

    /// [`Packer::unpack`] of packed bytes (a copy of [`Packed::as_bytes`]).
    pub fn unpack_bytes(&self, bytes: &[u8]) -> Result<(PathwayState, u64), Unreadable> {
        let mut r = Reader::new(bytes);
        let version = r.head()?.version;
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
        let fds_exclusion = match r.opt_date()? {
            Some(date) => Some(FdsExclusion {
                date,
                reason: r.code(ExclusionReason::from_index)?,
            }),
            None => None,
        };
        let clocks = r.clocks()?;
        let milestones = self.milestones(&mut r)?;
        let count = r.count()?;
        let mut treatment_periods = Vec::with_capacity(count);
        for _ in 0..count {
            treatment_periods.push(TreatmentPeriod {
                treatment: r.code(TreatmentKind::from_index)?,
                plan_id: r.option(|r| r.text().map(|t| Arc::from(t.as_str())))?,
                modality: r.code(Modality::from_index)?,
                start_reason: r.code(PeriodStartReason::from_index)?,
                care_setting: r.option(|r| r.code(TreatmentSetting::from_index))?,
                treated_by: r.option(|r| r.ods())?,
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
            nhs_number_status: r.option(|r| r.code(NhsNumberStatus::from_index))?,
            primary_diagnosis: r.option(|r| r.text())?,
            first_seen_adjustment_days: r.int()?,
            transfer_to_treatment: r.opt_date()?,
        };
        let count = r.count()?;
        let mut fit_results = Vec::with_capacity(count);
        for _ in 0..count {
            fit_results.push(FitResult {
                on: r.date()?,
                band: r.code(FitBand::from_index)?,
            });
        }
        let triaged_on = r.opt_date()?;
        let count = r.count()?;
        let mut tests = Vec::with_capacity(count);
        for _ in 0..count {
            tests.push(GiTest {
                on: r.date()?,
                test: r.code(DiagnosticTest::from_index)?,
                stage: if r.flag()? {
                    TestStage::Performed
                } else {
                    TestStage::Requested
                },
            });
        }
        let lower_gi = LowerGiFacts {
            fit_results,
            triaged_on,
            tests,
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
            fds_exclusion,
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
            lower_gi,
        };
        Ok((state, version))
    }

    /// The milestones of a state, read where they lie.
    fn milestones(&self, r: &mut Reader) -> Result<Vec<Milestone>, Unreadable> {
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
        Ok(milestones)
    }

    /// The tumour site of the state packed in `bytes`, read without the
    /// rest: a view of one site's pathways passes over the others' states
    /// before unpacking them (decision 212).
    pub fn tumour_site_of(&self, bytes: &[u8]) -> Result<TumourSite, Unreadable> {
        let mut r = Reader::new(bytes);
        r.head()?;
        site_after_head(&mut r)
    }

    /// What of the state packed in `bytes` its clocks are observed with
    /// ([`ClockFields`]), read without the rest: the fields before its
    /// clocks are passed over, and nothing after its treatment periods is
    /// read (decision 208).
    pub fn unpack_clock_fields(&self, bytes: &[u8]) -> Result<ClockFields, Unreadable> {
        let mut r = Reader::new(bytes);
        r.head()?;
        r.take(10)?; // the NHS number
        let trust = r.ods()?;
        r.skip_text()?; // the referring trust
        let tumour_site = r.code(TumourSite::from_index)?;
        let route = r.code(Route::from_index)?;
        let referred_on = r.day()?;
        r.base = day(referred_on);
        r.byte()?; // the status
        r.flag()?; // on the PTL
        r.date()?; // as of
        r.byte()?; // the FIT band
        r.opt_date()?; // the FIT date
        if r.opt_date()?.is_some() {
            r.byte()?; // the FDS exclusion's reason
        }
        let clocks = r.clocks()?;
        let milestones = self.milestones(&mut r)?;
        let count = r.count()?;
        let mut periods = Vec::with_capacity(count);
        for _ in 0..count {
            r.byte()?; // the treatment
            r.option(|r| r.skip_text())?; // the plan id
            r.byte()?; // the modality
            r.byte()?; // the start reason
            r.option(|r| r.byte())?; // the care setting
            r.option(|r| r.skip_text())?; // treated by (an ODS code)
            periods.push(match r.flag()? {
                true => None,
                false => Some(r.clock()?),
            });
        }
        Ok(ClockFields {
            trust,
            tumour_site,
            route,
            clocks,
            milestones,
            periods,
        })
    }

    /// A [`Current`] back, always without its PTL row (`row: None`, on the
    /// PTL or not): callers that show a row make it with `PtlRow::of`.
    pub fn current(&self, packed: &Packed) -> Result<Current, Unreadable> {
        let (state, version) = self.unpack(packed)?;
        Ok(Current {
            state,
            row: None,
            version,
        })
    }
}

mod bytes;
mod glance;
#[cfg(test)]
mod tests;

use bytes::{day, Reader, Writer};
use glance::Glance;

/// Packed bytes that do not read back as a pathway's state: damage or a
/// bug, never the user's doing. Says where the reading stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unreadable(String);

impl From<&str> for Unreadable {
    fn from(why: &str) -> Unreadable {
        Unreadable(why.to_string())
    }
}

impl From<String> for Unreadable {
    fn from(why: String) -> Unreadable {
        Unreadable(why)
    }
}
