//! Identifier newtypes. Each has a `parse` constructor, so an invalid value
//! cannot exist anywhere past the edge of the service.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A Modulus 11 valid NHS number, held as ten ASCII digits.
///
/// `Debug` masks the number so that it can never leak into a log line or a
/// panic message by accident; the digits are only reachable through
/// [`NhsNumber::as_str`], on purpose.
///
/// Held inline (ten bytes, no allocation): every pathway state carries one.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NhsNumber([u8; 10]);

impl NhsNumber {
    /// Accepts ten digits, with any spaces between them (`943 476 5919`).
    pub fn parse(input: &str) -> Option<NhsNumber> {
        let digits: String = input.chars().filter(|c| *c != ' ').collect();
        Self::from_digits(digits.as_bytes().try_into().ok()?)
    }

    /// From ten ASCII digits (as [`NhsNumber::as_str`] gives them), checked
    /// like any other input, without allocating.
    pub fn from_digits(digits: &[u8; 10]) -> Option<NhsNumber> {
        let text = std::str::from_utf8(digits).ok()?;
        let parsed = nhs_number::NHSNumber::from_str(text).ok()?;
        (parsed.validate_check_digit() && digits.iter().all(u8::is_ascii_digit))
            .then_some(NhsNumber(*digits))
    }

    /// The ten digits. Callers decide whether the reader may see them.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("ten ASCII digits")
    }

    /// `943 476 5919`, the way staff read it; still personal data.
    pub fn formatted(&self) -> String {
        let d = self.as_str();
        format!("{} {} {}", &d[0..3], &d[3..6], &d[6..])
    }

    /// `*** *** 5919`, for list views of readers who need no more.
    pub fn masked(&self) -> String {
        format!("*** *** {}", &self.as_str()[6..])
    }
}

impl fmt::Debug for NhsNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NhsNumber(<redacted>)")
    }
}

impl Serialize for NhsNumber {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for NhsNumber {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        // The message never repeats the input: it is personal data.
        NhsNumber::parse(&raw).ok_or_else(|| {
            serde::de::Error::custom(
                "is not a valid NHS number (10 digits with a valid Modulus 11 check digit)",
            )
        })
    }
}

/// An ODS organisation code: 3 to 5 letters or digits (6 for a GP
/// practice), kept in upper case, held inline (no allocation). Unused bytes
/// are zero, so the derived order is the order of the codes as text.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OdsCode {
    bytes: [u8; 6],
    len: u8,
}

impl OdsCode {
    /// A provider (trust) code: 3–5 ASCII alphanumerics in either case.
    pub fn parse(input: &str) -> Option<OdsCode> {
        Self::parse_len(input, 5)
    }

    /// A referrer's code, which may also be a GP practice (6 characters, e.g. `A81001`).
    pub fn parse_referrer(input: &str) -> Option<OdsCode> {
        Self::parse_len(input, 6)
    }

    fn parse_len(input: &str, max: usize) -> Option<OdsCode> {
        let ok =
            (3..=max).contains(&input.len()) && input.bytes().all(|b| b.is_ascii_alphanumeric());
        ok.then(|| {
            let mut bytes = [0u8; 6];
            for (to, from) in bytes.iter_mut().zip(input.bytes()) {
                *to = from.to_ascii_uppercase();
            }
            OdsCode {
                bytes,
                len: input.len() as u8,
            }
        })
    }

    /// Serde for a referrer field (a GP practice code is allowed).
    pub fn deserialize_referrer<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<OdsCode>, D::Error> {
        let raw = <Option<std::borrow::Cow<'de, str>>>::deserialize(d)?;
        raw.map(|raw| {
            OdsCode::parse_referrer(&raw).ok_or_else(|| {
                serde::de::Error::custom("must be an ODS code of 3 to 6 letters or digits")
            })
        })
        .transpose()
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..self.len as usize]).expect("ASCII letters and digits")
    }
}

impl fmt::Debug for OdsCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OdsCode({})", self.as_str())
    }
}

impl fmt::Display for OdsCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for OdsCode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for OdsCode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        OdsCode::parse(&raw).ok_or_else(|| {
            serde::de::Error::custom("must be an ODS code of 3 to 5 letters or digits")
        })
    }
}

/// The sender's identifier of a pathway: 1–64 of `A-Z a-z 0-9 . _ -`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PathwayId(String);

impl PathwayId {
    pub fn parse(input: &str) -> Option<PathwayId> {
        let ok = (1..=64).contains(&input.len())
            && input
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        ok.then(|| PathwayId(input.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PathwayId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PathwayId({})", self.0)
    }
}

impl fmt::Display for PathwayId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for PathwayId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for PathwayId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        PathwayId::parse(&raw).ok_or_else(|| {
            serde::de::Error::custom("must be 1 to 64 characters of A-Z, a-z, 0-9, '.', '_' or '-'")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nhs_numbers_follow_modulus_11() {
        // (input, valid)
        let table = [
            ("9434765919", true),
            ("943 476 5919", true),
            ("9434765918", false), // wrong check digit
            ("943476591", false),  // nine digits
            ("94347659190", false),
            ("94347659a9", false),
            ("9434765030", false), // check digit would be 10 (never issued): 11 - (sum mod 11) == 10
            ("", false),
        ];
        for (input, valid) in table {
            assert_eq!(NhsNumber::parse(input).is_some(), valid, "{input}");
        }
    }

    #[test]
    fn nhs_number_debug_never_shows_digits() {
        let n = NhsNumber::parse("9434765919").unwrap();
        assert!(!format!("{n:?}").contains("943"));
        assert_eq!(n.formatted(), "943 476 5919");
        assert_eq!(n.masked(), "*** *** 5919");
    }

    #[test]
    fn ods_and_pathway_ids() {
        assert_eq!(OdsCode::parse("rxh").unwrap().as_str(), "RXH");
        assert!(OdsCode::parse("RX").is_none());
        assert!(OdsCode::parse("RXH123").is_none());
        assert_eq!(
            OdsCode::parse_referrer("a81001").unwrap().as_str(),
            "A81001"
        );
        assert!(OdsCode::parse_referrer("A810012").is_none());
        assert!(OdsCode::parse("R-H").is_none());
        assert!(PathwayId::parse("RXH-000123.a_b").is_some());
        assert!(PathwayId::parse("").is_none());
        assert!(PathwayId::parse(&"a".repeat(65)).is_none());
        assert!(PathwayId::parse("a b").is_none());
        assert!(PathwayId::parse("a/b").is_none());
    }
}
