//! The seeded synthetic alliance (SPEC 8) used by `serve --demo`, `generate`
//! and benchmarks: realistic proportions of sites and routes, waits drawn so
//! that about three quarters of FDS clocks and seven in ten 62-day clocks are
//! met, with DNAs, declines, transfers, notes, corrections and late entries.
//! Treated patients go on to subsequent treatments (about half have at
//! least one, some waiting for an earliest clinically appropriate date) and
//! a few percent of pathways are recurrences (SPEC 2.12), so the combined
//! 31-day figure looks like a real trust's: most periods within 31 days,
//! some breaches.
//!
//! Deterministic for a seed and date, forever: it draws from our own
//! SplitMix64 (`openptl_rules::rng`) rather than a crate whose algorithm
//! may change between versions.

use chrono::{Days, NaiveDate};
use openptl_app::App;
use openptl_rules::date::format as date;
use openptl_rules::rng::SplitMix64;
use serde_json::{json, Value};
use uuid::Uuid;

/// Referrals are spread over this many days before `as_of`.
const REFERRAL_WINDOW_DAYS: u64 = 240;

const TRUSTS: [&str; 6] = ["RXH", "RHM", "RTH", "RA7", "RBD", "RDU"];

/// (tumour site, weight, diagnostic test)
const SITES: [(&str, u32, &str); 16] = [
    ("lower_gi", 200, "colonoscopy"),
    ("breast", 160, "mammogram"),
    ("skin", 150, "dermatoscopy"),
    ("prostate", 90, "mpmri"),
    ("urological_other", 50, "ct"),
    ("lung", 60, "ct"),
    ("upper_gi", 60, "endoscopy_ogd"),
    ("gynaecological", 60, "ultrasound"),
    ("head_and_neck", 50, "nasendoscopy"),
    ("haematological", 20, "blood_test"),
    ("non_specific_symptoms", 30, "ct"),
    ("testicular", 10, "ultrasound"),
    ("brain_cns", 10, "mri"),
    ("sarcoma", 10, "mri"),
    ("children", 10, "ultrasound"),
    ("other", 20, "ct"),
];

/// The demo's draws: SplitMix64, tiny, fast and fixed forever.
struct Rng(SplitMix64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(SplitMix64::new(seed))
    }
    fn next(&mut self) -> u64 {
        self.0.next_u64()
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo + 1) as u64) as i64
    }
    fn chance(&mut self, p: f64) -> bool {
        self.0.unit() <= p
    }
}

/// A valid NHS number in the 999 test range (never issued to patients).
fn nhs_number(rng: &mut Rng) -> String {
    loop {
        let digits: Vec<u32> = [9, 9, 9]
            .into_iter()
            .chain((0..6).map(|_| rng.below(10) as u32))
            .collect();
        let sum: u32 = digits
            .iter()
            .enumerate()
            .map(|(i, d)| d * (10 - i as u32))
            .sum();
        let check = match 11 - sum % 11 {
            11 => 0,
            10 => continue,
            c => c,
        };
        return digits
            .iter()
            .chain(std::iter::once(&check))
            .map(|d| char::from(b'0' + *d as u8))
            .collect();
    }
}

struct PathwayBuilder {
    id: String,
    referred: NaiveDate,
    as_of: NaiveDate,
    seed: u64,
    /// (record date, envelope): the order the events are keyed in.
    events: Vec<(NaiveDate, Value)>,
    /// Draws for late entries, apart from the main stream so the pathways
    /// themselves do not change when lateness does.
    late: Rng,
}

impl PathwayBuilder {
    fn day(&self, offset: i64) -> NaiveDate {
        if offset >= 0 {
            self.referred + Days::new(offset as u64)
        } else {
            self.referred - Days::new((-offset) as u64)
        }
    }

    /// Adds an event `offset` days after the referral if it has happened by `as_of`.
    fn add(&mut self, offset: i64, event_type: &str, data: Value) -> bool {
        let day = self.day(offset);
        if day > self.as_of {
            return false;
        }
        let n = self.events.len();
        let event_id = Uuid::new_v5(
            &Uuid::NAMESPACE_OID,
            format!("openptl-demo/{}/{}/{n}", self.seed, self.id).as_bytes(),
        );
        let envelope = json!({
            "event_id": event_id.to_string(),
            "pathway_id": self.id,
            "type": event_type,
            "occurred_on": date(day),
            "data": data,
        });
        // Recorded no earlier than the referral. Some entries that nothing
        // else depends on arrive days late (keyed in after later events).
        let mut recorded = day.max(self.referred);
        let late_entry_allowed = matches!(
            event_type,
            "triage_completed" | "diagnostic_reported" | "mdt_discussed" | "tracking_note_added"
        );
        if late_entry_allowed && self.late.chance(0.15) {
            recorded = recorded + Days::new(self.late.range(1, 7) as u64);
        }
        self.events.push((recorded, envelope));
        true
    }
}

/// Synthetic envelopes for `pathways` pathways, in the order they would be recorded.
pub fn generate(pathways: usize, seed: u64, as_of: NaiveDate) -> Vec<Value> {
    generate_range(0..pathways, seed, as_of)
}

/// The pathways numbered `range` (0-based) of a bigger data set, so large
/// sets can be produced a slice at a time. Slices of one seed never overlap.
pub fn generate_range(range: std::ops::Range<usize>, seed: u64, as_of: NaiveDate) -> Vec<Value> {
    generate_range_over(range, seed, as_of, REFERRAL_WINDOW_DAYS)
}

/// As [`generate_range`], with referrals spread over the last
/// `referral_days` days (a shorter spread leaves more pathways open).
pub fn generate_range_over(
    range: std::ops::Range<usize>,
    seed: u64,
    as_of: NaiveDate,
    referral_days: u64,
) -> Vec<Value> {
    generate_with(range, seed, as_of, referral_days, Waits::Alike)
}

/// How long patients wait to be told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waits {
    /// The same for every site and trust (the demo, the benchmarks).
    Alike,
    /// By site, trust and whether the key test came late (the forecast
    /// backtest, so there is something to learn; decision 152). Drawn from
    /// a stream of their own: every other draw stays as `Alike` makes it.
    BySite,
}

/// As [`generate_range_over`], with waits drawn as `waits` says.
pub fn generate_with(
    range: std::ops::Range<usize>,
    seed: u64,
    as_of: NaiveDate,
    referral_days: u64,
    waits: Waits,
) -> Vec<Value> {
    let mut rng =
        Rng::new(seed ^ 0x0A11_1A4C_E000_0000 ^ (range.start as u64).wrapping_mul(0x9E37_79B9));
    let total_weight: u32 = SITES.iter().map(|s| s.1).sum();
    let mut all: Vec<(NaiveDate, usize, usize, Value)> = Vec::new();
    for p in range {
        let mut pick = rng.below(total_weight as u64) as u32;
        let &(site, _, test) = SITES
            .iter()
            .find(|s| {
                if pick < s.1 {
                    true
                } else {
                    pick -= s.1;
                    false
                }
            })
            .expect("weights cover the range");
        let trust = TRUSTS[rng.below(TRUSTS.len() as u64) as usize];
        // A few percent of pathways are a recurrence or metastatic disease
        // of a cancer treated before (31-day clock only).
        let recurrence = rng.chance(0.03);
        let route = match rng.below(100) {
            _ if recurrence => "recurrence",
            0..=4 => "other",
            5..=8 if matches!(site, "lower_gi" | "breast" | "gynaecological" | "lung") => {
                "screening"
            }
            9..=38 if site == "breast" => "breast_symptomatic",
            _ => "urgent_suspected_cancer",
        };
        let mut b = PathwayBuilder {
            id: format!("DEMO-{:06}", p + 1),
            referred: as_of - Days::new(rng.below(referral_days.max(1))),
            as_of,
            seed,
            events: Vec::new(),
            late: Rng::new(seed ^ (p as u64).wrapping_mul(0x5851_F42D_4C95_7F2D)),
        };
        let mut referral = json!({ "nhs_number": nhs_number(&mut rng), "trust": trust, "tumour_site": site, "route": route });
        // Most numbers come traced from the trust's PAS; a few do not say.
        // (By place, not drawn: the demo's other draws stay as they were.)
        if p % 20 != 0 {
            referral["nhs_number_status"] = json!("verified");
        }
        if route == "screening" {
            referral["screening_programme"] = json!(match site {
                "lower_gi" => "bowel",
                "gynaecological" => "cervical",
                s => s,
            });
        }
        b.add(0, "referral_received", referral);
        if recurrence {
            treat_recurrence(&mut b, &mut rng);
            continue_pathway(&mut b, &mut rng, &mut all, p);
            continue;
        }
        if site == "lower_gi" && route != "other" && rng.chance(0.85) {
            let value = [3.0, 7.5, 12.0, 48.0, 95.0, 150.0, 400.0][rng.below(7) as usize];
            let before = rng.range(0, 30);
            // FIT as a lower GI manager sees it (issue 25): about three in
            // four referrals with a FIT before referral, some "not
            // appropriate", some tested only after referral. Drawn apart
            // from the main stream, so no other pathway changes.
            let mut fit = Rng::new(seed ^ 0xF17 ^ (p as u64).wrapping_mul(0x2545_F491_4F6C_DD1D));
            let (offset, data) = if fit.chance(0.05) {
                (-before, json!({ "not_appropriate": true }))
            } else if fit.chance(0.07) {
                (fit.range(1, 4), json!({ "value_ug_per_g": value }))
            } else {
                (-before, json!({ "value_ug_per_g": value }))
            };
            b.add(offset, "fit_result_recorded", data);
        }
        // The day a routine referral was upgraded: nothing is told before
        // it (an upgrade after a ruling out is refused, decisions 174, 192;
        // on the same day the upgrade is recorded first).
        let mut upgraded_on = 0;
        if route == "other" {
            b.add(
                rng.range(3, 12),
                "appointment_attended",
                json!({ "kind": "first_outpatient" }),
            );
            if !rng.chance(0.5) {
                continue_pathway(&mut b, &mut rng, &mut all, p);
                continue;
            }
            upgraded_on = rng.range(12, 20);
            b.add(upgraded_on, "consultant_upgraded", json!({}));
        }
        // A few patients are excluded from the FDS (choice or clinical reasons),
        // early, before anyone is told anything.
        if route != "other" && rng.chance(0.015) {
            let reason = ["patient_choice", "clinical_reason", "other"][rng.below(3) as usize];
            b.add(rng.range(3, 7), "fds_excluded", json!({ "reason": reason }));
        }
        // Triage, first appointment (sometimes after a DNA), the site's key test.
        b.add(
            rng.range(0, 5),
            "triage_completed",
            json!({ "outcome": "straight_to_test" }),
        );
        let mut seen_on = rng.range(4, 12);
        if rng.chance(0.05) {
            b.add(
                seen_on,
                "appointment_missed",
                json!({ "kind": "first_outpatient", "reason": "did_not_attend" }),
            );
            seen_on += rng.range(4, 10);
        }
        if route != "other" {
            // How the patient was first seen (SPEC 2.12, CANPTL): mostly
            // face to face, one in five virtual, a few not recorded. From
            // the pathway's number, so the random draws stay as they were.
            let seen = match p % 20 {
                0 => json!({ "kind": "first_outpatient" }),
                1..=4 => json!({ "kind": "first_outpatient", "mode": "virtual" }),
                _ => json!({ "kind": "first_outpatient", "mode": "face_to_face" }),
            };
            b.add(seen_on, "appointment_attended", seen);
        }
        let test_on = seen_on + rng.range(0, 10);
        b.add(test_on - 2, "diagnostic_requested", json!({ "test": test }));
        b.add(test_on, "diagnostic_performed", json!({ "test": test }));
        b.add(
            test_on + rng.range(1, 6),
            "diagnostic_reported",
            json!({ "test": test }),
        );
        // About three in four told within 28 days; a few wait for months
        // (complex diagnostics), the tail of the 63-104 and 105+ bands.
        let told_on = if rng.chance(0.72) {
            rng.range(test_on.max(8), 28.max(test_on + 1))
        } else if rng.chance(0.9) {
            rng.range(29, 55)
        } else {
            rng.range(60, 170)
        };
        let told_on = match waits {
            Waits::Alike => told_on,
            Waits::BySite => {
                let mut own =
                    Rng::new(seed ^ 0x5173 ^ (p as u64).wrapping_mul(0x9E6C_63D0_676A_9A99));
                told_by_site(&mut own, site, trust, test_on)
            }
        };
        let told_on = told_on.max(upgraded_on);
        let diagnosed = rng.chance(0.12);
        if !b.add(
            told_on,
            "diagnosis_communicated",
            json!({
                "outcome": if diagnosed { "cancer_diagnosed" } else { "cancer_ruled_out" },
                "method": (["face_to_face", "telephone", "letter"][rng.below(3) as usize]),
            }),
        ) {
            let today_offset = (as_of - b.referred).num_days();
            note(&mut b, &mut rng, told_on.min(today_offset));
            continue_pathway(&mut b, &mut rng, &mut all, p);
            continue;
        }
        if !diagnosed {
            if rng.chance(0.6) {
                b.add(
                    told_on.max(test_on + 6) + rng.range(0, 3),
                    "pathway_closed",
                    json!({ "reason": "cancer_ruled_out" }),
                );
            }
            continue_pathway(&mut b, &mut rng, &mut all, p);
            continue;
        }
        b.add(
            told_on + rng.range(1, 5),
            "mdt_discussed",
            json!({ "outcome": "treat" }),
        );
        if rng.chance(0.15) {
            let to = TRUSTS[(TRUSTS.iter().position(|t| *t == trust).unwrap()
                + 1
                + rng.below(5) as usize)
                % 6];
            b.add(
                told_on + rng.range(2, 8),
                "pathway_transferred",
                json!({ "to_trust": to }),
            );
        }
        let modality = [
            "surgery",
            "anticancer_drug",
            "radiotherapy",
            "chemoradiotherapy",
        ][rng.below(4) as usize];
        let decided_on = told_on + rng.range(5, 21);
        b.add(
            decided_on,
            "decision_to_treat",
            json!({ "modality": modality }),
        );
        if rng.chance(0.05) {
            let offered = decided_on + rng.range(3, 10);
            b.add(
                decided_on + 2,
                "treatment_offer_declined",
                json!({
                    "offered_on": date(b.day(offered)),
                    "available_from": date(b.day(offered + rng.range(5, 14))),
                    "setting": "admitted",
                }),
            );
        }
        let treated_on = decided_on
            + if rng.chance(0.85) {
                rng.range(5, 25)
            } else {
                rng.range(20, 45)
            };
        if b.add(
            treated_on,
            "treatment_started",
            json!({ "modality": modality }),
        ) {
            subsequent_treatments(&mut b, &mut rng, modality, treated_on);
        } else {
            let today_offset = (as_of - b.referred).num_days();
            note(&mut b, &mut rng, today_offset);
        }
        continue_pathway(&mut b, &mut rng, &mut all, p);
    }
    all.sort_by_key(|a| (a.0, a.1, a.2));
    all.into_iter().map(|(_, _, _, v)| v).collect()
}

/// The day a patient is told, by site (skin and breast fast, the
/// endoscopy and imaging sites slower), trust (one slower, one faster)
/// and whether the key test came after day 14.
fn told_by_site(rng: &mut Rng, site: &str, trust: &str, test_on: i64) -> i64 {
    let mut within = match site {
        "skin" | "breast" => 0.88,
        "lower_gi" | "prostate" | "lung" | "upper_gi" => 0.66,
        _ => 0.76,
    };
    if test_on > 14 {
        within -= 0.3;
    }
    match trust {
        "RTH" => within -= 0.1,
        "RXH" => within += 0.05,
        _ => {}
    }
    if rng.chance(within) {
        rng.range(test_on.max(8), 28.max(test_on + 1))
    } else if rng.chance(0.85) {
        rng.range(29, 55)
    } else {
        rng.range(56, 150)
    }
}

/// Days from the start of a treatment period to its treatment: most within
/// 31 days, a tail beyond (the national 31-day figure is in the low 90s).
fn treatment_wait(rng: &mut Rng) -> i64 {
    if rng.chance(0.86) {
        rng.range(3, 28)
    } else {
        rng.range(22, 50)
    }
}

/// A recurrence (route `recurrence`): imaging, MDT, a first treatment of the
/// recurrence, and sometimes more.
fn treat_recurrence(b: &mut PathwayBuilder, rng: &mut Rng) {
    let imaging_on = rng.range(2, 12);
    b.add(
        imaging_on,
        "diagnostic_performed",
        json!({ "test": "pet_ct" }),
    );
    b.add(
        imaging_on + rng.range(2, 8),
        "mdt_discussed",
        json!({ "outcome": "treat_recurrence" }),
    );
    let modality = [
        "anticancer_drug",
        "anticancer_drug",
        "radiotherapy",
        "surgery",
        "palliative_care",
    ][rng.below(5) as usize];
    let decided_on = imaging_on + rng.range(8, 20);
    b.add(
        decided_on,
        "decision_to_treat",
        json!({ "modality": modality }),
    );
    let treated_on = decided_on + treatment_wait(rng);
    if b.add(
        treated_on,
        "treatment_started",
        json!({ "modality": modality }),
    ) {
        subsequent_treatments(b, rng, modality, treated_on);
    } else {
        let today_offset = (b.as_of - b.referred).num_days();
        note(b, rng, today_offset);
    }
}

/// After a first treatment on day `treated_on`: about half of patients go on
/// to a subsequent treatment (adjuvant drugs or radiotherapy after surgery,
/// surgery after neoadjuvant treatment…), some to a second; a decision after
/// surgery often waits for the patient's recovery (an ECAD).
fn subsequent_treatments(b: &mut PathwayBuilder, rng: &mut Rng, first: &str, treated_on: i64) {
    if !rng.chance(0.5) {
        return;
    }
    let mut previous = first;
    let mut after = treated_on;
    for n in 1..=2 {
        let (plan, modality) = match previous {
            "surgery" => [
                ("adjuvant-chemo", "anticancer_drug"),
                ("adjuvant-rt", "radiotherapy"),
            ][rng.below(2) as usize],
            "anticancer_drug" => [
                ("surgery", "surgery"),
                ("rt", "radiotherapy"),
                ("hormone", "anticancer_drug"),
            ][rng.below(3) as usize],
            "radiotherapy" => [
                ("hormone", "anticancer_drug"),
                ("monitoring", "active_monitoring"),
            ][rng.below(2) as usize],
            _ => {
                [("surgery", "surgery"), ("maintenance", "anticancer_drug")][rng.below(2) as usize]
            }
        };
        let plan_id = format!("{plan}-{n}");
        let decided_on = after + rng.range(7, 30);
        let mut decision =
            json!({ "modality": modality, "treatment": "subsequent", "plan_id": plan_id });
        let mut start = decided_on;
        // After surgery, six in ten wait for recovery; a few others too.
        if (previous == "surgery" || rng.chance(0.15)) && rng.chance(0.6) {
            let ecad = after + rng.range(28, 49);
            if ecad > decided_on {
                start = ecad;
                decision["earliest_clinically_appropriate_date"] = json!(date(b.day(ecad)));
            }
        }
        if !b.add(decided_on, "decision_to_treat", decision) {
            return;
        }
        let given_on = start + treatment_wait(rng);
        if !b.add(
            given_on,
            "treatment_started",
            json!({ "modality": modality, "treatment": "subsequent", "plan_id": plan_id }),
        ) {
            let today_offset = (b.as_of - b.referred).num_days();
            note(b, rng, today_offset);
            return;
        }
        if !rng.chance(0.25) {
            return;
        }
        previous = modality;
        after = given_on;
    }
}

/// A tracking note for an open pathway, sometimes escalated.
fn note(b: &mut PathwayBuilder, rng: &mut Rng, offset: i64) {
    if rng.chance(0.6) {
        let (text, action) = [
            ("Awaiting histology", "Chase histology with pathology"),
            (
                "Patient on holiday, back next week",
                "Book first appointment on return",
            ),
            ("Diagnostic capacity issue", "Escalate to service manager"),
            ("Awaiting MDT outcome", "Confirm MDT date"),
        ][rng.below(4) as usize];
        let due = date(b.day(offset + rng.range(1, 7)));
        b.add(offset, "tracking_note_added", json!({
            "text": text, "next_action": action, "next_action_due": due,
            "owner": (["MDT coordinator", "Cancer manager", "Pathway navigator"][rng.below(3) as usize]),
            "escalated": rng.chance(0.15),
        }));
    }
}

/// Occasionally corrects a date, then hands the pathway's events to `all`.
fn continue_pathway(
    b: &mut PathwayBuilder,
    rng: &mut Rng,
    all: &mut Vec<(NaiveDate, usize, usize, Value)>,
    p: usize,
) {
    if b.events.len() > 2 && rng.chance(0.02) {
        let (target_recorded, target) = b.events[b.events.len() - 1].clone();
        let target_type = target["type"].as_str().unwrap_or_default();
        let corrected_on = target["occurred_on"]
            .as_str()
            .and_then(openptl_rules::date::parse)
            .map(|d| d + Days::new(1));
        if let (true, Some(corrected_on)) = (
            matches!(target_type, "diagnostic_reported" | "tracking_note_added"),
            corrected_on,
        ) {
            if corrected_on <= b.as_of {
                let when = (corrected_on - b.referred).num_days();
                let added = b.add(
                    when,
                    "event_corrected",
                    json!({
                        "corrects": target["event_id"], "reason": "entered against the wrong date",
                        "new_occurred_on": date(corrected_on),
                    }),
                );
                // A correction is keyed in after the event it corrects.
                if let (true, Some(last)) = (added, b.events.last_mut()) {
                    last.0 = last.0.max(target_recorded);
                }
            }
        }
    }
    // Nothing but notes and corrections may follow a closure: late entries
    // are keyed in before it.
    let last_recorded = b.events.iter().map(|(d, _)| *d).max();
    if let (Some(closed), Some(last)) = (
        b.events
            .iter_mut()
            .find(|(_, e)| e["type"] == "pathway_closed"),
        last_recorded,
    ) {
        closed.0 = last;
    }
    for (n, (day, event)) in b.events.drain(..).enumerate() {
        all.push((day, p, n, event));
    }
}

/// Generates and appends the demo alliance; returns how many events were stored.
pub async fn load(
    app: &App,
    pathways: usize,
    principal: &openptl_app::access::Principal,
) -> anyhow::Result<usize> {
    let events = generate(pathways, 1, app.today());
    let mut stored = 0;
    for chunk in events.chunks(500) {
        let outcome = app
            .append(chunk.to_vec(), principal, true)
            .await
            .map_err(|e| anyhow::anyhow!("demo data was refused: {e:?}"))?;
        stored += outcome.appended.len();
    }
    Ok(stored)
}
