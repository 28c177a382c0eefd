//! Breach forecasts (issue 24): the chance that a running clock breaches
//! its target, learnt from the alliance's own clocks, and the month-end
//! figure of each standard it implies. Read-only and advisory: nothing here
//! changes a clock, a standard or a return (those stay `pathway`'s and
//! `report`'s), and "today" is always an argument, so a forecast made as of
//! a past date uses only what was known then and can be backtested.
//!
//! `observe` turns pathway states into [`Observation`]s (one a clock),
//! `hazard` is the estimator (a discrete-time hazard by stratum with
//! shrinkage toward the parent stratum, which is a Kaplan–Meier estimate
//! where a stratum has plenty of clocks), `month_end` the projection of a
//! month's figure with its 80% interval. docs/forecast.md explains them.

pub mod hazard;
pub mod month_end;
pub mod observe;
pub mod row;

pub use hazard::{Model, ModelCounts, ModelOptions, Risk};
pub use month_end::{project, MonthEndOptions, MonthEndProjection, ProjectedFigure};
pub use observe::{
    clock_observations, named_observations, observations, Mark, Observation, ObservedWith, Outcome,
};
pub use row::{permille, row_risk, RowRisk};
