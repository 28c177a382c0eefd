//! The breach-risk estimator: a discrete-time hazard model by stratum.
//!
//! For each day `t` of a clock, two hazards: `h(t)`, the chance that a
//! clock still running at the start of day `t` stops on it in a way its
//! standard counts (met or breached), and `c(t)`, that the pathway's
//! closure ends it (a competing risk: a 62-day clock of a patient whose
//! cancer is ruled out never counts). Each is the clocks that ended so on
//! day `t` over the clocks at risk on it. Running clocks are censored: a
//! clock that has waited `d` days so far is at risk on days `0..d` only (it
//! may still stop today), so it informs the hazards of the days it has
//! lived through and nothing after them. With plenty of clocks the chance
//! of still running, `Π (1 − h − c)`, is exactly the Kaplan–Meier estimate.
//!
//! Strata nest: clock kind, then tumour site, then route, then trust; and
//! beside them, past the due day of the milestone the clock is judged by,
//! whether it was met on time or late (kind × site × late, then route, then
//! trust). A stratum's hazard is shrunk toward its parent's,
//! `h = (stops + k·h_parent) / (at risk + k)` (and `c` alike), so a small
//! stratum borrows
//! from the larger one and a large one speaks for itself (`k` is
//! [`ModelOptions::prior_weight`]). The root is smoothed the same way
//! toward its own previous day, which also carries it past the last day
//! any clock reached.
//!
//! The risk of a running clock on day `d` with target `T` is the chance it
//! is still running after its target day, `Π_{t=d..=T} (1 − h(t) − c(t))`
//! (it breaches its target, whatever ends it later): 1 for a clock already
//! past its target, 0 for a stopped or ended one.

use foldhash::{HashMap, HashMapExt};

use serde::Serialize;

use super::observe::{Mark, Observation, Outcome};
use crate::codes::*;
use crate::ids::OdsCode;

/// Days of hazard kept; later days reuse the last.
const HORIZON: usize = 400;

/// How strongly a stratum is pulled toward its parent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelOptions {
    /// `k`: the number of clocks' worth of weight the parent's hazard has in
    /// a stratum's (0 = no pooling).
    pub prior_weight: f64,
}

impl Default for ModelOptions {
    fn default() -> Self {
        ModelOptions { prior_weight: 20.0 }
    }
}

/// A stratum: `None` fields are pooled over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    kind: ClockKind,
    site: Option<TumourSite>,
    /// Past the milestone's due day: was it late?
    late: Option<bool>,
    route: Option<Route>,
    trust: Option<OdsCode>,
}

impl Key {
    fn depth(&self) -> usize {
        1 + usize::from(self.site.is_some())
            + usize::from(self.late.is_some())
            + usize::from(self.route.is_some())
            + usize::from(self.trust.is_some())
    }

    fn parent(&self) -> Option<Key> {
        let mut p = *self;
        if p.trust.take().is_some()
            || p.route.take().is_some()
            || p.late.take().is_some()
            || p.site.take().is_some()
        {
            Some(p)
        } else {
            None
        }
    }

    /// The stratum and its ancestors, most specific first.
    fn chain(self) -> impl Iterator<Item = Key> {
        std::iter::successors(Some(self), Key::parent)
    }

    fn leaf(o: &Observation, late: Option<bool>) -> Key {
        Key {
            kind: o.kind,
            site: Some(o.tumour_site),
            late,
            route: Some(o.route),
            trust: Some(o.trust),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
struct Counts {
    /// How many clocks are counted in it (each once, however many of its
    /// days): a stratum is learnt exactly when some clock counts in it.
    clocks: i32,
    /// Difference array of clocks at risk (+1 where a stretch starts, −1
    /// after it ends).
    at_risk: ByDay,
    stops: ByDay,
    closes: ByDay,
}

/// Counts by day, as long as the last day counted (a stratum's clocks
/// seldom reach the horizon; the counts kept for past dates hold a
/// thousand strata). Equal whatever zeros trail.
#[derive(Debug, Clone, Default)]
struct ByDay(Vec<i32>);

impl ByDay {
    fn get(&self, day: usize) -> i32 {
        self.0.get(day).copied().unwrap_or(0)
    }

    fn add_at(&mut self, day: usize, n: i32) {
        if self.0.len() <= day {
            self.0.resize(day + 1, 0);
        }
        self.0[day] += n;
    }

    fn add(&mut self, other: &ByDay) {
        if self.0.len() < other.0.len() {
            self.0.resize(other.0.len(), 0);
        }
        for (a, b) in self.0.iter_mut().zip(&other.0) {
            *a += b;
        }
    }

    /// Without the zeros that trail.
    fn counted(&self) -> &[i32] {
        let last = self.0.iter().rposition(|n| *n != 0).map_or(0, |i| i + 1);
        &self.0[..last]
    }
}

impl PartialEq for ByDay {
    fn eq(&self, other: &ByDay) -> bool {
        self.counted() == other.counted()
    }
}

impl Counts {
    fn add(&mut self, other: &Counts) {
        self.clocks += other.clocks;
        self.at_risk.add(&other.at_risk);
        self.stops.add(&other.stops);
        self.closes.add(&other.closes);
    }

    fn span(&mut self, from: i64, to: i64, sign: i32) {
        let (from, to) = (clamp(from), clamp(to));
        if from < to {
            self.at_risk.add_at(from, sign);
            self.at_risk.add_at(to, -sign);
        }
    }
}

fn clamp(day: i64) -> usize {
    day.clamp(0, HORIZON as i64) as usize
}

/// One stratum's learnt hazards and the clocks at risk each day.
struct Stratum {
    /// (counted stop, closure) hazards by day.
    hazard: Vec<(f64, f64)>,
    at_risk: Vec<u32>,
}

impl Stratum {
    fn hazard(&self, day: i64) -> (f64, f64) {
        self.hazard[clamp(day).min(HORIZON - 1)]
    }
}

/// A running clock's breach risk and its main reason in words.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Risk {
    /// Probability of breaching its target, 0 to 1.
    pub probability: f64,
    pub reason: String,
}

/// The learnt hazards of every stratum seen.
pub struct Model {
    strata: HashMap<Key, Stratum>,
}

/// The stretches of days an observation was at risk, by its flag then, and
/// the day it ended (if it did: stopped in its standard, or closed).
/// Days `from..to` at risk, late on the milestone or not (`None`: not yet known).
type Stretch = (i64, i64, Option<bool>);

/// The day a clock stopped, and whether it was late on its milestone then.
type Stop = (i64, Option<bool>);

/// A clock's stretches at risk, at most two (to its milestone's due day,
/// then past it with the milestone's flag), and its stop: kept inline, as
/// a past view counts hundreds of thousands of clocks.
fn stretches(o: &Observation) -> ([Option<Stretch>; 2], Option<Stop>) {
    // An ended clock was at risk on its last day too; a running one only on
    // the days it has lived through.
    let end = match o.outcome {
        Outcome::Stopped | Outcome::Closed => o.days + 1,
        Outcome::Running => o.days,
    };
    let flag_at = |t: i64| o.mark.as_ref().filter(|m| t > m.due_day).map(Mark::late);
    let out = match &o.mark {
        Some(m) if m.due_day + 1 < end => [
            Some((0, m.due_day + 1, None)),
            Some((m.due_day + 1, end, Some(m.late()))),
        ],
        _ => [Some((0, end, None)), None],
    };
    let stop = (o.outcome != Outcome::Running).then(|| (o.days, flag_at(o.days)));
    (out, stop)
}

/// The counts a [`Model`] is learnt from, gathered one clock at a time
/// (or on several threads, then merged): each clock's days are counted in
/// its own most specific strata only, and summed into every ancestor once,
/// when the model is learnt. The counts are integers, so the model learnt
/// is the same however the clocks were split or ordered; a clock can be
/// taken away again, which gives the counts of the clocks left exactly
/// (the clocks of ended pathways are kept so, counted once for every past
/// date: decision 158).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ModelCounts {
    /// By most specific stratum: its pooled one (`late: None`) and, for the
    /// days past its milestone's due day, the one of its flag. A stratum
    /// no clock counts in any more is removed, so equal clocks give equal
    /// counts whatever was added and taken away on the way.
    leaves: HashMap<Key, Counts>,
}

impl ModelCounts {
    pub fn new() -> ModelCounts {
        ModelCounts::default()
    }

    /// Whether it counts no clock.
    pub fn is_empty(&self) -> bool {
        self.leaves.is_empty()
    }

    /// Counts one clock as known on the date learnt from.
    pub fn add(&mut self, o: &Observation) {
        self.add_signed(o, 1);
    }

    /// Counts one clock (`sign` 1) or takes it away again (`sign` −1).
    pub fn add_signed(&mut self, o: &Observation, sign: i32) {
        let (spans, stop) = stretches(o);
        let spans = spans.into_iter().flatten();
        let stop = stop
            .filter(|(d, _)| *d >= 0 && (*d as usize) < HORIZON)
            .map(|(day, late)| (day as usize, late));
        // Every day and the stop count in the pooled stratum; the days past
        // the due day, and a stop then, also in the stratum of the flag.
        let days = |s: Stretch| (s.0, s.1);
        let pooled = Key::leaf(o, None);
        self.count_in(
            pooled,
            o.outcome,
            spans.clone().map(days),
            stop.map(|s| s.0),
            sign,
        );
        for late in [false, true] {
            let mut flagged = spans.clone().filter(|s| s.2 == Some(late)).peekable();
            let stopped = stop.filter(|s| s.1 == Some(late)).map(|s| s.0);
            if flagged.peek().is_some() || stopped.is_some() {
                let key = Key::leaf(o, Some(late));
                self.count_in(key, o.outcome, flagged.map(days), stopped, sign);
            }
        }
    }

    /// Counts one clock's days at risk, its stop or closure on `stop`, and
    /// the clock itself (`sign` 1) in the stratum `key`, or takes them away
    /// (`sign` −1), removing the stratum when no clock is left in it: one
    /// look-up of the stratum (a past view counts every clock it moves).
    fn count_in(
        &mut self,
        key: Key,
        outcome: Outcome,
        days: impl Iterator<Item = (i64, i64)>,
        stop: Option<usize>,
        sign: i32,
    ) {
        use std::collections::hash_map::Entry;
        let mut e = match self.leaves.entry(key) {
            Entry::Occupied(e) => e,
            Entry::Vacant(e) => e.insert_entry(Counts::default()),
        };
        let c = e.get_mut();
        for (from, to) in days {
            c.span(from, to, sign);
        }
        match (stop, outcome) {
            (Some(day), Outcome::Stopped) => c.stops.add_at(day, sign),
            (Some(day), _) => c.closes.add_at(day, sign),
            (None, _) => {}
        }
        c.clocks += sign;
        if c.clocks == 0 {
            e.remove();
        }
    }

    /// How many most specific strata it counts clocks in, and about how
    /// many bytes it holds (for the logs: kept counts cost memory).
    pub fn size(&self) -> (usize, usize) {
        let entry = std::mem::size_of::<(Key, Counts)>();
        let days = |d: &ByDay| d.0.capacity() * std::mem::size_of::<i32>();
        let bytes = self
            .leaves
            .values()
            .map(|c| entry + days(&c.at_risk) + days(&c.stops) + days(&c.closes))
            .sum();
        (self.leaves.len(), bytes)
    }

    /// Gives back the memory its counts by day grew into but do not use
    /// (counts kept for long).
    pub fn shrink_to_fit(&mut self) {
        for c in self.leaves.values_mut() {
            for days in [&mut c.at_risk, &mut c.stops, &mut c.closes] {
                let used = days.counted().len();
                days.0.truncate(used);
                days.0.shrink_to_fit();
            }
        }
        self.leaves.shrink_to_fit();
    }

    /// Adds another's counts to these.
    pub fn merge(&mut self, other: ModelCounts) {
        if self.leaves.len() < other.leaves.len() {
            let mine = std::mem::replace(self, other);
            return self.merge(mine);
        }
        for (key, counts) in other.leaves {
            match self.leaves.entry(key) {
                std::collections::hash_map::Entry::Occupied(mut e) => {
                    e.get_mut().add(&counts);
                    if e.get().clocks == 0 {
                        e.remove();
                    }
                }
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert(counts);
                }
            }
        }
    }

    /// Every stratum's counts: each most specific one's summed into its
    /// ancestors (a flagged one's only into those of its flag, its days
    /// being counted in the pooled chain already).
    fn strata(self) -> HashMap<Key, Counts> {
        let mut all: HashMap<Key, Counts> = HashMap::with_capacity(self.leaves.len() * 2);
        for (leaf, counts) in &self.leaves {
            for key in leaf.chain().skip(1) {
                // A flagged leaf's pooled ancestors are its pooled leaf's
                // (always counted too): present, with nothing of its own.
                let entry = all.entry(key).or_default();
                if leaf.late.is_none() || key.late.is_some() {
                    entry.add(counts);
                }
            }
        }
        for (leaf, counts) in self.leaves {
            match all.entry(leaf) {
                std::collections::hash_map::Entry::Occupied(mut e) => e.get_mut().add(&counts),
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert(counts);
                }
            }
        }
        all
    }

    /// Learns the hazards from the clocks counted.
    pub fn fit(self, options: ModelOptions) -> Model {
        Self::fit_strata(self.strata(), options)
    }

    /// Learns the hazards from every stratum's counts.
    fn fit_strata(counts: HashMap<Key, Counts>, options: ModelOptions) -> Model {
        let mut keys: Vec<Key> = counts.keys().copied().collect();
        keys.sort_by_key(Key::depth);
        let k = options.prior_weight.max(0.0);
        let mut strata: HashMap<Key, Stratum> = HashMap::with_capacity(keys.len());
        for key in keys {
            let c = &counts[&key];
            let mut at_risk = Vec::with_capacity(HORIZON);
            let mut running = 0i64;
            for t in 0..HORIZON {
                running += i64::from(c.at_risk.get(t));
                at_risk.push(running.max(0) as u32);
            }
            let parent = key.parent().and_then(|p| strata.get(&p));
            let mut hazard = Vec::with_capacity(HORIZON);
            for (t, &n) in at_risk.iter().enumerate() {
                let n = f64::from(n);
                let (stops, closes) = (f64::from(c.stops.get(t)), f64::from(c.closes.get(t)));
                let prior: (f64, f64) = match parent {
                    Some(p) => p.hazard[t],
                    None => hazard.last().copied().unwrap_or((0.0, 0.0)),
                };
                let shrunk = |e: f64, prior: f64| {
                    if n + k > 0.0 {
                        (e + k * prior) / (n + k)
                    } else {
                        prior
                    }
                };
                let h = shrunk(stops, prior.0).clamp(0.0, 1.0);
                let c = shrunk(closes, prior.1).clamp(0.0, 1.0 - h);
                hazard.push((h, c));
            }
            strata.insert(key, Stratum { hazard, at_risk });
        }
        Model { strata }
    }
}

impl Model {
    /// Learns the hazards from the clocks as known on one date.
    pub fn fit<'o>(
        observations: impl IntoIterator<Item = &'o Observation>,
        options: ModelOptions,
    ) -> Model {
        let mut counts = ModelCounts::new();
        for o in observations {
            counts.add(o);
        }
        counts.fit(options)
    }

    /// How many strata it learnt (for the logs).
    pub fn strata(&self) -> usize {
        self.strata.len()
    }

    /// The most specific stratum learnt for a key, else its nearest ancestor.
    fn stratum(&self, key: Key) -> Option<&Stratum> {
        key.chain().find_map(|k| self.strata.get(&k))
    }

    /// The flag a running clock is known to have on its milestone by day
    /// `d`: met on time already, or late once its due day has passed.
    fn known_flag(o: &Observation) -> Option<bool> {
        let m = o.mark.as_ref()?;
        if m.met_day
            .is_some_and(|met| met <= m.due_day && met <= o.days)
        {
            Some(false)
        } else if o.days > m.due_day {
            Some(true)
        } else {
            None
        }
    }

    /// The hazards (counted stop, closure) that apply to `o` on day `t`
    /// (`t ≥ o.days`).
    fn hazard(&self, o: &Observation, t: i64) -> (f64, f64) {
        let flag = Self::known_flag(o);
        let due = o.mark.as_ref().map_or(i64::MAX, |m| m.due_day);
        let late = flag.filter(|_| t > due);
        self.stratum(Key::leaf(o, late))
            .map_or((0.0, 0.0), |s| s.hazard(t))
    }

    /// For a clock running on day `o.days`, the chance of each of its next
    /// `days_ahead + 1` days (today included) being the day it stops in a
    /// way its standard counts (a closure first takes it out).
    pub fn stop_chances(&self, o: &Observation, days_ahead: i64) -> Vec<f64> {
        let mut alive = 1.0;
        (o.days..=o.days + days_ahead.max(0))
            .map(|t| {
                let (h, c) = self.hazard(o, t);
                let p = alive * h;
                alive *= 1.0 - h - c;
                p
            })
            .collect()
    }

    /// The chance that `o` breaches its target: 0 once it has stopped (or
    /// ended), 1 once it has waited beyond its target, else the chance it
    /// is still running after its target day.
    pub fn probability(&self, o: &Observation) -> f64 {
        match o.outcome {
            Outcome::Stopped | Outcome::Closed => 0.0,
            Outcome::Running if o.past_target() => 1.0,
            Outcome::Running => {
                // `hazard(o, t)` day by day, with its two strata looked up
                // once (up to its milestone's due day, and after it): the
                // same factors in the same order, without a stratum look-up
                // a day (the PTL's breach-risk keys score every open clock).
                let flag = Self::known_flag(o);
                let due = o.mark.as_ref().map_or(i64::MAX, |m| m.due_day);
                let before = self.stratum(Key::leaf(o, None));
                let after = self.stratum(Key::leaf(o, flag));
                (o.days..=o.target_days)
                    .map(|t| {
                        let stratum = if t > due { after } else { before };
                        let (h, c) = stratum.map_or((0.0, 0.0), |s| s.hazard(t));
                        1.0 - h - c
                    })
                    .product::<f64>()
                    .clamp(0.0, 1.0)
            }
        }
    }

    /// [`Self::probability`] with its main reason in words.
    pub fn risk(&self, o: &Observation) -> Risk {
        let probability = self.probability(o);
        let site = words(o.tumour_site.as_str());
        let percent = (probability * 100.0).round();
        let reason = match o.outcome {
            Outcome::Stopped | Outcome::Closed => "clock stopped".to_string(),
            Outcome::Running if o.past_target() => {
                format!(
                    "already past its {}-day target on day {}",
                    o.target_days, o.days
                )
            }
            Outcome::Running => {
                let flag = Self::known_flag(o);
                let similar = self
                    .stratum(Key {
                        kind: o.kind,
                        site: Some(o.tumour_site),
                        late: flag,
                        route: None,
                        trust: None,
                    })
                    .map_or(0, |s| s.at_risk[clamp(o.days).min(HORIZON - 1)]);
                let situation = match (flag, &o.mark) {
                    (Some(true), Some(m)) => format!(
                        "{} not met by day {}, now day {}",
                        words(&m.name),
                        m.due_day,
                        o.days
                    ),
                    (Some(false), Some(m)) => format!(
                        "{} met on time, now day {} of {}",
                        words(&m.name),
                        o.days,
                        o.target_days
                    ),
                    _ => format!("day {} of {}", o.days, o.target_days),
                };
                format!(
                    "{situation}; about {percent}% of such {site} pathways ({similar} seen at this point) went on to breach"
                )
            }
        };
        Risk {
            probability,
            reason,
        }
    }
}

/// A code as words, acronyms in capitals ("lower_gi" → "lower GI").
fn words(code: &str) -> String {
    code.split('_')
        .map(|w| match w {
            "gi" | "ct" | "mri" | "cns" | "ogd" | "fit" => w.to_uppercase(),
            _ => w.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The first way the model was learnt, kept as the oracle: every day of
    /// a clock counted straight into each stratum of its chains.
    fn counted_by_chains(observations: &[Observation]) -> HashMap<Key, Counts> {
        let mut counts: HashMap<Key, Counts> = HashMap::new();
        for o in observations {
            let (spans, stop) = stretches(o);
            for (from, to, late) in spans.into_iter().flatten() {
                for key in Key::leaf(o, None).chain() {
                    counts.entry(key).or_default().span(from, to, 1);
                }
                if let Some(late) = late {
                    for key in Key::leaf(o, Some(late))
                        .chain()
                        .filter(|k| k.late.is_some())
                    {
                        counts.entry(key).or_default().span(from, to, 1);
                    }
                }
            }
            if let Some((day, late)) = stop.filter(|(d, _)| *d >= 0 && (*d as usize) < HORIZON) {
                let mut keys: Vec<Key> = Key::leaf(o, None).chain().collect();
                if let Some(late) = late {
                    keys.extend(
                        Key::leaf(o, Some(late))
                            .chain()
                            .filter(|k| k.late.is_some()),
                    );
                }
                for key in keys {
                    let c = counts.entry(key).or_default();
                    if o.outcome == Outcome::Stopped {
                        c.stops.add_at(day as usize, 1);
                    } else {
                        c.closes.add_at(day as usize, 1);
                    }
                }
            }
        }
        counts
    }

    fn observation() -> impl Strategy<Value = Observation> {
        let trusts = ["RAA", "RBB", "RCC"].map(|t| OdsCode::parse(t).unwrap());
        (
            0..ClockKind::ALL.len(),
            0..3usize,
            0..3usize,
            0..trusts.len(),
            -3i64..420,
            0..3usize,
            proptest::option::of((-2i64..80, proptest::option::of(-2i64..120))),
        )
            .prop_map(
                move |(kind, site, route, trust, days, outcome, mark)| Observation {
                    kind: ClockKind::ALL[kind],
                    tumour_site: TumourSite::ALL[site],
                    route: Route::ALL[route],
                    trust: trusts[trust],
                    start: chrono::NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
                    days,
                    target_days: 62,
                    outcome: [Outcome::Stopped, Outcome::Running, Outcome::Closed][outcome],
                    mark: mark.map(|(due_day, met_day)| Mark {
                        name: "test".into(),
                        due_day,
                        met_day,
                    }),
                },
            )
    }

    fn same(a: &Model, b: &Model) -> Result<(), TestCaseError> {
        prop_assert_eq!(a.strata.len(), b.strata.len());
        for (key, s) in &a.strata {
            let t = b.strata.get(key);
            prop_assert!(t.is_some(), "{:?} learnt by one only", key);
            let t = t.unwrap();
            prop_assert_eq!(&s.at_risk, &t.at_risk, "{:?}", key);
            let bits = |h: &[(f64, f64)]| -> Vec<(u64, u64)> {
                h.iter().map(|(a, b)| (a.to_bits(), b.to_bits())).collect()
            };
            prop_assert_eq!(bits(&s.hazard), bits(&t.hazard), "{:?}", key);
        }
        Ok(())
    }

    proptest! {
        /// Counting each clock in its own most specific strata and summing
        /// them into their ancestors when learning (on any number of
        /// threads, merged in any order) learns exactly the model that
        /// counting every stratum of each clock's chains does.
        #[test]
        fn counts_split_and_merged_learn_the_same_model(
            observations in proptest::collection::vec(observation(), 0..60),
            parts in proptest::collection::vec(0..3usize, 60),
            weight in 0.0f64..30.0,
        ) {
            let options = ModelOptions { prior_weight: weight };
            let oracle = {
                // The oracle's counts are per stratum already: learnt as
                // they are, with nothing left to sum.
                ModelCounts::fit_strata(counted_by_chains(&observations), options)
            };
            let mut split: Vec<ModelCounts> = (0..3).map(|_| ModelCounts::new()).collect();
            for (o, part) in observations.iter().zip(&parts) {
                split[*part].add(o);
            }
            let mut merged = ModelCounts::new();
            for part in split.into_iter().rev() {
                merged.merge(part);
            }
            same(&merged.fit(options), &oracle)?;
            same(&Model::fit(&observations, options), &oracle)?;
        }

        /// Clocks counted and then taken away again (on another thread,
        /// merged in any order) leave exactly the counts, and the model,
        /// of the clocks left: the strata only they counted in are gone.
        #[test]
        fn clocks_taken_away_leave_the_counts_of_the_rest(
            kept in proptest::collection::vec(observation(), 0..40),
            gone in proptest::collection::vec(observation(), 0..20),
            gone_first in any::<bool>(),
            weight in 0.0f64..30.0,
        ) {
            let options = ModelOptions { prior_weight: weight };
            let mut direct = ModelCounts::new();
            kept.iter().for_each(|o| direct.add(o));
            let mut all = ModelCounts::new();
            kept.iter().chain(&gone).for_each(|o| all.add(o));
            let mut taken_away = ModelCounts::new();
            gone.iter().for_each(|o| taken_away.add_signed(o, -1));
            let merged = if gone_first {
                taken_away.merge(all);
                taken_away
            } else {
                all.merge(taken_away);
                all
            };
            prop_assert_eq!(&merged, &direct);
            same(&merged.fit(options), &direct.fit(options))?;
        }
    }
}
