//! A pathway's id as the application keeps it in memory (a leaf: the
//! projection, the PTL index, the fold and the past views share it).

/// A pathway's id, inline up to 23 bytes, so ids of the usual length (a
/// trust's referral id) take no allocation of their own; a longer one
/// (SPEC 3.1 allows 64 characters) is shared text, as an `Arc<str>` is.
/// Cloning never allocates (decision 215).
pub type PathwayKey = smol_str::SmolStr;
