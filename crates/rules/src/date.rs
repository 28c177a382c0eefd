//! Calendar dates on the wire: strictly `YYYY-MM-DD`, nothing looser, so that
//! `2025-3-3` or `03/03/2025` are rejected instead of guessed.

use chrono::NaiveDate;
use serde::{Deserialize, Deserializer, Serializer};

/// Parses exactly `YYYY-MM-DD` (a real calendar date).
pub fn parse(input: &str) -> Option<NaiveDate> {
    let b = input.as_bytes();
    let shape = b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
    if !shape {
        return None;
    }
    // The shape is checked: read the digits directly (chrono's format-string
    // parser was ≈ 4 % of a projection rebuild).
    let number = |digits: &[u8]| {
        digits
            .iter()
            .fold(0u32, |n, d| n * 10 + u32::from(d - b'0'))
    };
    NaiveDate::from_ymd_opt(number(&b[0..4]) as i32, number(&b[5..7]), number(&b[8..10]))
}

/// `YYYY-MM-DD`.
pub fn format(date: NaiveDate) -> String {
    date.format("%Y-%m-%d").to_string()
}

const EXPECTED: &str = "must be a date written YYYY-MM-DD";

pub fn serialize<S: Serializer>(date: &NaiveDate, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&date.format("%Y-%m-%d"))
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<NaiveDate, D::Error> {
    let raw = <std::borrow::Cow<'de, str>>::deserialize(d)?;
    parse(&raw).ok_or_else(|| serde::de::Error::custom(EXPECTED))
}

/// The same for `Option<NaiveDate>` fields (absent or null is `None`).
pub mod option {
    use super::*;

    pub fn serialize<S: Serializer>(date: &Option<NaiveDate>, s: S) -> Result<S::Ok, S::Error> {
        match date {
            Some(date) => super::serialize(date, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<NaiveDate>, D::Error> {
        let raw = <Option<std::borrow::Cow<'de, str>>>::deserialize(d)?;
        raw.map(|raw| parse(&raw).ok_or_else(|| serde::de::Error::custom(EXPECTED)))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_iso_dates() {
        assert!(super::parse("2024-02-29").is_some());
        for bad in [
            "2025-02-29",
            "2025-3-3",
            "03/03/2025",
            "2025-03-03T00:00",
            "",
            "20250303",
            "2025-13-01",
        ] {
            assert!(super::parse(bad).is_none(), "{bad}");
        }
    }

    proptest::proptest! {
        /// Agrees with chrono's own `%Y-%m-%d` parser on every string of
        /// the right shape, and formats back to the same text.
        #[test]
        fn digits_read_as_chrono_reads_them(y in 0u32..10000, m in 0u32..100, d in 0u32..100) {
            let text = format!("{y:04}-{m:02}-{d:02}");
            let ours = super::parse(&text);
            let chrono = chrono::NaiveDate::parse_from_str(&text, "%Y-%m-%d").ok();
            proptest::prop_assert_eq!(ours, chrono);
            if let Some(date) = ours {
                proptest::prop_assert_eq!(super::format(date), text);
            }
        }
    }
}
