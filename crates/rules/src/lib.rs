//! The rules of OpenPTL, with no I/O: the event catalogue and its validation,
//! and the clock engine that turns a pathway's events into its clocks,
//! milestones and status. "Today" is always an argument.
//!
//! Everything that decides a breach date lives in this crate, once.

mod codes;
pub mod config;
pub mod counted;
pub mod cwt;
pub mod d31;
pub mod date;
pub mod error;
pub mod event;
pub mod first_seen;
pub mod fit;
pub mod forecast;
pub mod history;
pub mod ids;
pub mod milestone_list;
pub mod pathway;
pub mod period;
pub mod ptl;
pub mod report;
pub mod rng;
pub mod tally;
pub mod validate;

pub use codes::*;
pub use config::RulesConfig;
pub use d31::{ModalityGroup, TreatmentGroup};
pub use error::RuleError;
pub use event::{EventData, EventType, PayloadError};
pub use first_seen::{first_seen, FirstSeen, SeenAt, SeenBy, SeenMedium};
pub use history::{effective_events, EffectiveEvent, RecordedEvent};
pub use ids::{NhsNumber, OdsCode, PathwayId};
pub use pathway::{evaluate, PathwayState};
pub use period::TreatmentPeriod;
pub use ptl::{PtlRow, Rag, WaitBand, WaitingPeriod};
pub use report::Period;
pub use validate::{check_event, NewEvent};
