//! Who may do what (issue 7): roles, the principal a request acts as, and
//! the checks every endpoint applies. How a principal is established
//! (bearer tokens today, OpenID Connect later) is not this module's concern:
//! any way in produces a [`Principal`], and handlers only ask it questions.
//!
//! | role | patient data | writes | aggregates |
//! |---|---|---|---|
//! | `coordinator` | its trusts (NHS numbers shown) | any event on its trusts' pathways | its trusts |
//! | `manager` | its trusts (NHS numbers shown) | tracking notes only | its trusts |
//! | `alliance_viewer` | every trust of its alliance (NHS numbers masked) | none | its alliance |
//! | `analyst` | none (no PTL, no pathway; extracts without identifiers) | none | its trusts |
//! | `admin` | every trust (superuser: tokens, audit, and everything else, so scripts can drive a fresh server) | any | all |
//!
//! A pathway is readable by a trust that holds it now or held it before a
//! transfer (the sending trust keeps read access to the history); it is
//! writable only by its current trust. A pathway the caller may not read is
//! reported as not found, so its existence is not leaked.

use std::collections::BTreeSet;

use openptl_rules::EventType;
use serde::{Deserialize, Serialize};

/// The roles of issue 7.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Coordinator,
    Manager,
    AllianceViewer,
    Analyst,
    Admin,
}

impl Role {
    pub const ALL: &'static [Role] = &[
        Role::Coordinator,
        Role::Manager,
        Role::AllianceViewer,
        Role::Analyst,
        Role::Admin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Coordinator => "coordinator",
            Role::Manager => "manager",
            Role::AllianceViewer => "alliance_viewer",
            Role::Analyst => "analyst",
            Role::Admin => "admin",
        }
    }

    pub fn parse(code: &str) -> Option<Role> {
        Role::ALL.iter().copied().find(|r| r.as_str() == code)
    }
}

/// Which trusts a principal covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrustScope {
    All,
    Only(BTreeSet<String>),
}

impl TrustScope {
    pub fn covers(&self, trust: &str) -> bool {
        match self {
            TrustScope::All => true,
            TrustScope::Only(set) => set.contains(trust),
        }
    }
}

/// Who a request acts as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Recorded as the actor of every event it appends, and in the access log.
    pub actor: String,
    pub role: Role,
    pub trusts: TrustScope,
}

/// Why a principal may not do something.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// The role may never do this (403).
    Forbidden,
    /// The pathway is outside the principal's trusts (reported as 404).
    NotVisible,
}

impl Principal {
    /// The principal of in-process tools (import, demo loader): everything.
    pub fn system(actor: &str) -> Principal {
        Principal {
            actor: actor.to_string(),
            role: Role::Admin,
            trusts: TrustScope::All,
        }
    }

    /// May see patient-level data (PTL rows, pathways, histories).
    pub fn reads_patients(&self) -> bool {
        self.role != Role::Analyst
    }

    /// Sees NHS numbers in full in lists and extracts.
    pub fn sees_nhs_numbers(&self) -> bool {
        matches!(self.role, Role::Coordinator | Role::Manager | Role::Admin)
    }

    /// Sees any patient identifier (pathway id, NHS number) in extracts.
    pub fn sees_identifiers(&self) -> bool {
        self.reads_patients()
    }

    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// May read a pathway that belongs or belonged to `trusts_ever`.
    pub fn may_read_pathway<'a>(&self, mut trusts_ever: impl Iterator<Item = &'a str>) -> bool {
        self.reads_patients() && trusts_ever.any(|t| self.trusts.covers(t))
    }

    /// May append an event of `event_type` to a pathway whose current trust
    /// is `current` (for a new pathway, the referral's trust), having
    /// belonged to `trusts_ever`.
    pub fn may_write<'a>(
        &self,
        event_type: EventType,
        current: &str,
        trusts_ever: impl Iterator<Item = &'a str>,
    ) -> Result<(), Denied> {
        let writes = match self.role {
            Role::Admin | Role::Coordinator => true,
            Role::Manager => event_type == EventType::TrackingNoteAdded,
            // Read-only roles are refused whatever the pathway: nothing leaks.
            Role::AllianceViewer | Role::Analyst => return Err(Denied::Forbidden),
        };
        if self.trusts.covers(current) {
            return if writes {
                Ok(())
            } else {
                Err(Denied::Forbidden)
            };
        }
        // Not its pathway now: a former holder may read but not write.
        if self.may_read_pathway(trusts_ever) {
            Err(Denied::Forbidden)
        } else {
            Err(Denied::NotVisible)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(role: Role, trusts: &[&str]) -> Principal {
        Principal {
            actor: "t".into(),
            role,
            trusts: TrustScope::Only(trusts.iter().map(|t| t.to_string()).collect()),
        }
    }

    #[test]
    fn writes_follow_role_and_current_trust() {
        let note = EventType::TrackingNoteAdded;
        let dtt = EventType::DecisionToTreat;
        let rxh = principal(Role::Coordinator, &["RXH"]);
        assert_eq!(rxh.may_write(dtt, "RXH", ["RXH"].into_iter()), Ok(()));
        // Transferred away: the sender reads but cannot write.
        assert_eq!(
            rxh.may_write(dtt, "RHM", ["RXH", "RHM"].into_iter()),
            Err(Denied::Forbidden)
        );
        assert_eq!(
            rxh.may_write(dtt, "RHM", ["RHM"].into_iter()),
            Err(Denied::NotVisible)
        );
        let manager = principal(Role::Manager, &["RXH"]);
        assert_eq!(manager.may_write(note, "RXH", ["RXH"].into_iter()), Ok(()));
        assert_eq!(
            manager.may_write(dtt, "RXH", ["RXH"].into_iter()),
            Err(Denied::Forbidden)
        );
        let viewer = principal(Role::AllianceViewer, &["RXH", "RHM"]);
        assert_eq!(
            viewer.may_write(note, "RXH", ["RXH"].into_iter()),
            Err(Denied::Forbidden)
        );
        let analyst = principal(Role::Analyst, &["RXH"]);
        assert!(!analyst.may_read_pathway(["RXH"].into_iter()));
        assert_eq!(
            analyst.may_write(note, "RXH", ["RXH"].into_iter()),
            Err(Denied::Forbidden)
        );
        assert!(Principal::system("x")
            .may_write(dtt, "ANY", std::iter::empty())
            .is_ok());
    }
}
