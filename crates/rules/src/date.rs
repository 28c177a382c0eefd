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
    let mut out = String::with_capacity(10);
    write_to(&mut out, date);
    out
}

/// Appends `YYYY-MM-DD` to `out`.
pub fn write_to(out: &mut String, date: NaiveDate) {
    match digits(date) {
        Some(digits) => out.push_str(as_text(&digits)),
        None => {
            use std::fmt::Write;
            let _ = write!(out, "{}", date.format("%Y-%m-%d"));
        }
    }
}

/// The ten bytes of `YYYY-MM-DD` for a year of four digits (every date the
/// service holds); `None` for the others, which chrono writes with a sign.
/// Written directly: chrono reads its format string on every call, which
/// was a twentieth of a month's CWT submission.
fn digits(date: NaiveDate) -> Option<[u8; 10]> {
    use chrono::Datelike;
    let year = u32::try_from(date.year()).ok().filter(|y| *y <= 9999)?;
    let (month, day) = (date.month(), date.day());
    let digit = |n: u32| b'0' + (n % 10) as u8;
    Some([
        digit(year / 1000),
        digit(year / 100),
        digit(year / 10),
        digit(year),
        b'-',
        digit(month / 10),
        digit(month),
        b'-',
        digit(day / 10),
        digit(day),
    ])
}

fn as_text(digits: &[u8; 10]) -> &str {
    std::str::from_utf8(digits).unwrap_or_default()
}

const EXPECTED: &str = "must be a date written YYYY-MM-DD";

pub fn serialize<S: Serializer>(date: &NaiveDate, s: S) -> Result<S::Ok, S::Error> {
    match digits(*date) {
        Some(digits) => s.serialize_str(as_text(&digits)),
        None => s.collect_str(&date.format("%Y-%m-%d")),
    }
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

        /// Written exactly as chrono's `%Y-%m-%d` writes it, as text and
        /// as JSON, for every date chrono holds (years of four digits
        /// directly, the others through chrono).
        #[test]
        fn dates_are_written_as_chrono_writes_them(days in -100_000_000i64..100_000_000) {
            let date = chrono::NaiveDate::from_ymd_opt(1970, 1, 1)
                .unwrap()
                .checked_add_signed(chrono::Duration::days(days));
            if let Some(date) = date {
                let chrono = date.format("%Y-%m-%d").to_string();
                proptest::prop_assert_eq!(super::format(date), chrono.clone());
                let mut out = String::from("x");
                super::write_to(&mut out, date);
                proptest::prop_assert_eq!(out, format!("x{chrono}"));
                let json = super::serialize(&date, serde_json::value::Serializer).unwrap();
                proptest::prop_assert_eq!(json, serde_json::Value::String(chrono));
            }
        }
    }

    #[test]
    fn the_edges_of_four_digit_years_are_written_as_chrono_writes_them() {
        for (y, m, d) in [
            (0, 1, 1),
            (9, 12, 31),
            (999, 2, 28),
            (9999, 12, 31),
            (10000, 1, 1),
            (-1, 6, 15),
            (2024, 2, 29),
        ] {
            let date = chrono::NaiveDate::from_ymd_opt(y, m, d).unwrap();
            assert_eq!(
                super::format(date),
                date.format("%Y-%m-%d").to_string(),
                "{y}-{m}-{d}"
            );
        }
    }
}
