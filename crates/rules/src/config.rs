//! The rules configuration: targets, thresholds, RAG bands and the BPTP
//! milestone templates (SPEC 2.9). Loaded from TOML text (the caller reads the
//! file) and checked as a whole, so a bad file is refused at start-up rather
//! than producing wrong milestones later.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

use crate::codes::{AppointmentKind, DiagnosticTest, TumourSite};
use crate::event::{EventData, EventType};
use crate::ids::OdsCode;

/// The defaults shipped with the service.
pub const DEFAULT_RULES_TOML: &str = include_str!("../defaults/rules.toml");

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulesConfig {
    pub targets: Targets,
    pub thresholds: Thresholds,
    pub fit: FitRules,
    pub rag: Rag,
    pub milestones: MilestoneTemplates,
    /// Named sets of trusts (SPEC 1): the `alliance` filter of every view.
    #[serde(default)]
    pub alliances: BTreeMap<String, Vec<OdsCode>>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Targets {
    pub fds_days: i64,
    pub d31_days: i64,
    pub d62_days: i64,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Thresholds {
    pub fds_standard: f64,
    pub fds_operational: f64,
    pub d31_standard: f64,
    pub d62_standard: f64,
    pub d62_operational: f64,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FitRules {
    pub days_before_referral: i64,
    pub indicator_days: i64,
    /// The FIT report's target (issue 25): at least this percentage of lower
    /// GI urgent referrals accompanied by a FIT result. Optional in the file.
    #[serde(default = "FitRules::default_with_fit_target")]
    pub target_with_fit_percent: f64,
    /// Fewer than this percentage of colonoscopies without a FIT result.
    #[serde(default = "FitRules::default_colonoscopy_target")]
    pub target_colonoscopies_without_fit_percent: f64,
}

impl FitRules {
    fn default_with_fit_target() -> f64 {
        80.0
    }

    fn default_colonoscopy_target() -> f64 {
        20.0
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rag {
    pub fds: RagBands,
    pub d62: RagBands,
    /// The SPEC gives no 31-day colours; these apply only to a PTL row whose
    /// one running clock is the 31-day clock (ours).
    #[serde(default = "RagBands::d31_default")]
    pub d31: RagBands,
}

/// The last day of each colour; anything beyond `red` is black.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RagBands {
    pub green: i64,
    pub amber: i64,
    pub red: i64,
}

impl RagBands {
    fn d31_default() -> RagBands {
        RagBands {
            green: 10,
            amber: 20,
            red: 31,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MilestoneTemplates {
    pub default: Template,
    #[serde(default)]
    pub template: Vec<Template>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Template {
    #[serde(default)]
    pub tumour_sites: Vec<TumourSite>,
    pub milestone: Vec<MilestoneRule>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MilestoneRule {
    /// Shared by every pathway's milestone of this name (no copy each).
    pub name: std::sync::Arc<str>,
    pub due_day: i64,
    pub met_by: Vec<Matcher>,
}

/// One way of meeting a milestone: an event type, optionally narrowed.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Matcher {
    pub event: EventType,
    #[serde(default)]
    pub tests: Vec<DiagnosticTest>,
    #[serde(default)]
    pub kinds: Vec<AppointmentKind>,
}

impl Matcher {
    pub fn matches(&self, data: &EventData) -> bool {
        if data.event_type() != self.event {
            return false;
        }
        // Subsequent treatments never touch the milestones (SPEC 2.12).
        let subsequent = match data {
            EventData::DecisionToTreat(d) => d.subsequent_plan().is_some(),
            EventData::TreatmentStarted(t) => t.subsequent_plan().is_some(),
            EventData::TreatmentOfferDeclined(t) => t.plan_id.is_some(),
            _ => false,
        };
        if subsequent {
            return false;
        }
        let test = match data {
            EventData::DiagnosticRequested(d) => Some(d.test),
            EventData::DiagnosticPerformed(d) => Some(d.test),
            EventData::DiagnosticReported(d) => Some(d.test),
            _ => None,
        };
        let kind = match data {
            EventData::AppointmentAttended(d) => Some(d.kind),
            EventData::AppointmentMissed(d) => Some(d.kind),
            _ => None,
        };
        (self.tests.is_empty() || test.is_some_and(|t| self.tests.contains(&t)))
            && (self.kinds.is_empty() || kind.is_some_and(|k| self.kinds.contains(&k)))
    }
}

/// A configuration that could not be used; the message names the problem.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("rules configuration: {0}")]
pub struct ConfigError(pub String);

impl RulesConfig {
    /// Parses and checks a whole configuration.
    pub fn from_toml(text: &str) -> Result<RulesConfig, ConfigError> {
        let mut config: RulesConfig =
            toml::from_str(text).map_err(|e| ConfigError(e.to_string()))?;
        config.check()?;
        for template in std::iter::once(&mut config.milestones.default)
            .chain(config.milestones.template.iter_mut())
        {
            template.milestone.sort_by_key(|m| m.due_day);
        }
        Ok(config)
    }

    /// The shipped defaults.
    pub fn defaults() -> RulesConfig {
        RulesConfig::from_toml(DEFAULT_RULES_TOML)
            .expect("the shipped rules configuration is valid")
    }

    /// The milestone template of a tumour site.
    pub fn template_for(&self, site: TumourSite) -> &Template {
        self.milestones
            .template
            .iter()
            .find(|t| t.tumour_sites.contains(&site))
            .unwrap_or(&self.milestones.default)
    }

    fn check(&self) -> Result<(), ConfigError> {
        let fail = |msg: String| Err(ConfigError(msg));
        let t = &self.targets;
        for (name, days) in [
            ("fds_days", t.fds_days),
            ("d31_days", t.d31_days),
            ("d62_days", t.d62_days),
        ] {
            if !(1..=365).contains(&days) {
                return fail(format!("targets.{name} must be between 1 and 365 days"));
            }
        }
        if !(0..=365).contains(&self.fit.days_before_referral)
            || !(0..=365).contains(&self.fit.indicator_days)
        {
            return fail("fit days must be between 0 and 365".into());
        }
        for (name, v) in [
            ("target_with_fit_percent", self.fit.target_with_fit_percent),
            (
                "target_colonoscopies_without_fit_percent",
                self.fit.target_colonoscopies_without_fit_percent,
            ),
        ] {
            if !(0.0..=100.0).contains(&v) {
                return fail(format!("fit.{name} is a percentage between 0 and 100"));
            }
        }
        for (name, bands) in [
            ("fds", &self.rag.fds),
            ("d62", &self.rag.d62),
            ("d31", &self.rag.d31),
        ] {
            if !(0 <= bands.green && bands.green < bands.amber && bands.amber < bands.red) {
                return fail(format!("rag.{name} must have 0 <= green < amber < red"));
            }
        }
        let th = &self.thresholds;
        for v in [
            th.fds_standard,
            th.fds_operational,
            th.d31_standard,
            th.d62_standard,
            th.d62_operational,
        ] {
            if !(0.0..=100.0).contains(&v) {
                return fail("thresholds are percentages between 0 and 100".into());
            }
        }
        if !self.milestones.default.tumour_sites.is_empty() {
            return fail("milestones.default applies to every site without a template: it takes no tumour_sites".into());
        }
        let mut seen_sites = BTreeSet::new();
        for (i, template) in self.milestones.template.iter().enumerate() {
            if template.tumour_sites.is_empty() {
                return fail(format!("milestones.template[{i}] names no tumour_sites"));
            }
            for site in &template.tumour_sites {
                if !seen_sites.insert(*site) {
                    return fail(format!(
                        "tumour site `{site}` has more than one milestone template"
                    ));
                }
            }
        }
        for (label, template) in std::iter::once(("default".to_string(), &self.milestones.default))
            .chain(
                self.milestones
                    .template
                    .iter()
                    .enumerate()
                    .map(|(i, t)| (format!("template[{i}]"), t)),
            )
        {
            check_template(&label, template)?;
        }
        Ok(())
    }
}

fn check_template(label: &str, template: &Template) -> Result<(), ConfigError> {
    let fail = |msg: String| Err(ConfigError(format!("milestones.{label}: {msg}")));
    if template.milestone.is_empty() {
        return fail("has no milestones".into());
    }
    let mut names = BTreeMap::new();
    for m in &template.milestone {
        let name_ok = !m.name.is_empty()
            && m.name.len() <= 64
            && m.name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !name_ok {
            return fail(format!(
                "milestone name `{}` must be snake_case, 1 to 64 characters",
                m.name
            ));
        }
        if names.insert(&*m.name, ()).is_some() {
            return fail(format!("milestone `{}` appears twice", m.name));
        }
        if !(0..=365).contains(&m.due_day) {
            return fail(format!(
                "milestone `{}`: due_day must be between 0 and 365",
                m.name
            ));
        }
        if m.met_by.is_empty() {
            return fail(format!("milestone `{}` has no met_by events", m.name));
        }
        for matcher in &m.met_by {
            if matcher.event.is_amendment() || matcher.event == EventType::ReferralReceived {
                return fail(format!(
                    "milestone `{}` cannot be met by `{}`",
                    m.name, matcher.event
                ));
            }
            let diagnostic = matches!(
                matcher.event,
                EventType::DiagnosticRequested
                    | EventType::DiagnosticPerformed
                    | EventType::DiagnosticReported
            );
            let appointment = matches!(
                matcher.event,
                EventType::AppointmentAttended | EventType::AppointmentMissed
            );
            if !matcher.tests.is_empty() && !diagnostic {
                return fail(format!(
                    "milestone `{}`: `tests` only narrows diagnostic events",
                    m.name
                ));
            }
            if !matcher.kinds.is_empty() && !appointment {
                return fail(format!(
                    "milestone `{}`: `kinds` only narrows appointment events",
                    m.name
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_load_and_are_sorted() {
        let config = RulesConfig::defaults();
        let prostate: Vec<_> = config
            .template_for(TumourSite::Prostate)
            .milestone
            .iter()
            .map(|m| (&*m.name, m.due_day))
            .collect();
        assert_eq!(
            prostate,
            [
                ("triage", 3),
                ("mri", 9),
                ("biopsy", 16),
                ("diagnosis_communicated", 28)
            ]
        );
        assert_eq!(
            config.template_for(TumourSite::Sarcoma).milestone[0].due_day,
            28
        );
        assert_eq!(
            config.template_for(TumourSite::Testicular).milestone[0].due_day,
            21
        );
        assert_eq!(
            config.template_for(TumourSite::HeadAndNeck).milestone[0]
                .name
                .as_ref(),
            "first_appointment"
        );
    }

    #[test]
    fn bad_configurations_are_refused_with_a_reason() {
        let cases = [
            ("due_day = 3", "due_day = -1", "due_day"),
            (
                "tumour_sites = [\"testicular\"]",
                "tumour_sites = [\"prostate\"]",
                "more than one",
            ),
            (
                "{ event = \"triage_completed\" }",
                "{ event = \"triage_done\" }",
                "triage_done",
            ),
            ("fds_days = 28", "fds_days = 0", "fds_days"),
            (
                "{ event = \"triage_completed\" }",
                "{ event = \"triage_completed\", tests = [\"ct\"] }",
                "tests",
            ),
            ("green = 7", "green = 20", "rag.fds"),
        ];
        for (from, to, expect) in cases {
            let text = DEFAULT_RULES_TOML.replacen(from, to, 1);
            assert_ne!(text, DEFAULT_RULES_TOML, "{from}");
            let err = RulesConfig::from_toml(&text).unwrap_err();
            assert!(err.0.contains(expect), "{to}: {err}");
        }
    }
}
