//! LEB128 varints and zigzag, shared by the projection's packed forms
//! ([`crate::packed`], [`crate::positions`]): small numbers in few bytes.

/// Appends `v`, seven bits a byte, lowest first; the top bit of a byte says
/// another follows.
pub fn write(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// The varint at the start of `bytes` and how many bytes it took; `None`
/// when the bytes end first or it runs past what a u64 holds.
pub fn read(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for (i, b) in bytes.iter().take(10).enumerate() {
        v |= u64::from(b & 0x7f) << (7 * i);
        if *b < 0x80 {
            return Some((v, i + 1));
        }
    }
    None
}

/// A signed number as an unsigned one that stays small when the number is
/// near zero either way (0, -1, 1, -2 … → 0, 1, 2, 3 …).
pub fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// The inverse of [`zigzag`].
pub fn unzigzag(v: u64) -> i64 {
    (v >> 1) as i64 ^ -((v & 1) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn numbers_read_back(v in any::<u64>(), s in any::<i64>(), tail in any::<u8>()) {
            let mut out = Vec::new();
            write(&mut out, v);
            let len = out.len();
            out.push(tail);
            prop_assert_eq!(read(&out), Some((v, len)));
            prop_assert_eq!(read(&out[..len - 1]), None);
            prop_assert_eq!(unzigzag(zigzag(s)), s);
            prop_assert!(zigzag(s.clamp(-64, 63)) < 128);
        }
    }
}
