//! Recovery codes: a second factor for when the authenticator app is lost.
//!
//! [`CODE_COUNT`] codes are issued at once, shown once, and each works once (ASVS 6.5.1; the store
//! deletes or marks the matched hash). Each code is 28 symbols of Crockford's base32 alphabet
//! (no `i`, `l`, `o`, `u`) from the CSPRNG — 140 bits (ASVS 6.5.3, 6.5.4, 11.5.1) — written in
//! seven groups of four: `7k2m-9qvd-…`. Because each code carries at least 112 bits, a plain
//! SHA-256 of the normalised code is an adequate stored form (ASVS 6.5.2); no slow hash is needed.
//! Normalising ignores case, spaces and hyphens, and reads `i`/`l` as `1` and `o` as `0`, so
//! codes survive being copied by hand.

use crate::util::{Sha256Hash, random_bytes};
use crate::{Error, constant_time_eq};

/// How many codes one batch holds.
pub const CODE_COUNT: usize = 10;
/// Symbols per code.
pub const SYMBOLS: usize = 28;
/// Symbols per displayed group.
pub const GROUP: usize = 4;
/// Entropy of one code, bits.
pub const BITS: usize = SYMBOLS * 5;

const CROCKFORD: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

/// A fresh batch of [`CODE_COUNT`] codes in display form. Show them once; store
/// [`hash`] of each.
pub fn generate() -> Result<Vec<String>, Error> {
    (0..CODE_COUNT).map(|_| generate_one()).collect()
}

fn generate_one() -> Result<String, Error> {
    // 28 symbols × 5 bits = 140 bits = 17.5 bytes; take 18 bytes and use 140 of the 144 bits.
    let bytes: [u8; 18] = random_bytes()?;
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    let mut symbols = Vec::with_capacity(SYMBOLS);
    for b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 && symbols.len() < SYMBOLS {
            bits -= 5;
            symbols.push(CROCKFORD[((acc >> bits) & 31) as usize]);
        }
        acc &= (1 << bits) - 1;
    }
    let mut out = String::with_capacity(SYMBOLS + SYMBOLS / GROUP);
    for (i, s) in symbols.iter().enumerate() {
        if i > 0 && i % GROUP == 0 {
            out.push('-');
        }
        out.push(char::from(*s));
    }
    Ok(out)
}

/// The canonical form of a typed code (28 lowercase Crockford symbols), or `None` when it cannot
/// be a recovery code.
pub fn normalise(input: &str) -> Option<String> {
    if input.len() > 4 * SYMBOLS {
        return None;
    }
    let mut out = String::with_capacity(SYMBOLS);
    for c in input.chars() {
        let c = match c.to_ascii_lowercase() {
            ' ' | '-' | '\t' => continue,
            'i' | 'l' => '1',
            'o' => '0',
            c if c.is_ascii() && CROCKFORD.contains(&(c as u8)) => c,
            _ => return None,
        };
        out.push(c);
    }
    (out.len() == SYMBOLS).then_some(out)
}

/// The stored form of a code: SHA-256 of its normalised text. `None` when `code` is malformed.
pub fn hash(code: &str) -> Option<Sha256Hash> {
    normalise(code).map(|n| Sha256Hash::of(n.as_bytes()))
}

/// Which of the `stored` hashes (unused codes) `input` matches. Compares against every entry in
/// constant time per entry. The caller must then remove that entry (single use, ASVS 6.5.1).
pub fn find(input: &str, stored: &[Sha256Hash]) -> Option<usize> {
    let h = hash(input)?;
    let mut found = None;
    for (i, s) in stored.iter().enumerate() {
        if constant_time_eq(&h.0, &s.0) && found.is_none() {
            found = Some(i);
        }
    }
    found
}
