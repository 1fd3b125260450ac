//! Time-based one-time passwords (RFC 6238 over RFC 4226 HOTP): HMAC-SHA1, 6 digits, 30-second
//! steps, 160-bit secrets from the CSPRNG (ASVS 6.5.3), base32 (RFC 4648, no padding) for the
//! authenticator app, an `otpauth://` URI and its QR code as SVG.
//!
//! Verification accepts the current step and one step either side (clock drift), returns the step
//! that matched, and refuses any step at or before the last one used: each code works once
//! (ASVS 6.5.1) and lives at most one step beyond its own 30 seconds (6.5.5). The caller stores the
//! returned step and passes it back next time. The server's clock is the time source (6.5.8).

use std::fmt;

use hmac::{Hmac, Mac as _};
use sha1::Sha1;

use crate::Error;
use crate::util::{constant_time_eq, percent_encode, random_bytes};

/// Secret length in bytes (160 bits, RFC 4226's recommendation).
pub const SECRET_LEN: usize = 20;
/// Step length in seconds.
pub const STEP_SECS: u64 = 30;
/// Digits per code.
pub const DIGITS: u32 = 6;
/// Steps accepted on either side of the current one.
pub const WINDOW: u64 = 1;

/// A TOTP shared secret. Its `Debug` does not show the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct TotpSecret([u8; SECRET_LEN]);

impl fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TotpSecret(..)")
    }
}

impl TotpSecret {
    /// A fresh random secret.
    pub fn generate() -> Result<Self, Error> {
        Ok(Self(random_bytes()?))
    }

    pub fn from_bytes(bytes: [u8; SECRET_LEN]) -> Self {
        Self(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; SECRET_LEN] {
        &self.0
    }

    /// Base32 without padding (32 characters), as authenticator apps take it.
    pub fn to_base32(&self) -> String {
        base32_encode(&self.0)
    }

    /// Parses the base32 form (case-insensitive, padding and spaces ignored); must be 160 bits.
    pub fn from_base32(text: &str) -> Result<Self, Error> {
        let cleaned: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        let bytes = base32_decode(&cleaned)?;
        let arr: [u8; SECRET_LEN] = bytes
            .try_into()
            .map_err(|_| Error::bad("a TOTP secret is 160 bits: 32 base32 characters"))?;
        Ok(Self(arr))
    }
}

const B32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// RFC 4648 base32 (section 6 alphabet) without `=` padding.
pub fn base32_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let mut buffer: u16 = 0;
    let mut bits = 0u32;
    for &b in bytes {
        buffer = (buffer << 8) | u16::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(B32[usize::from((buffer >> bits) & 31)]));
        }
        buffer &= (1 << bits) - 1;
    }
    if bits > 0 {
        out.push(char::from(B32[usize::from((buffer << (5 - bits)) & 31)]));
    }
    out
}

/// Decodes RFC 4648 base32: case-insensitive, trailing `=` padding optional; refuses other
/// characters, impossible lengths and non-zero leftover bits.
pub fn base32_decode(text: &str) -> Result<Vec<u8>, Error> {
    let bad = || Error::bad("not valid base32: use the letters A–Z and digits 2–7");
    let body = text.trim_end_matches('=');
    let padding = text.len() - body.len();
    if padding > 0 && (!text.len().is_multiple_of(8) || padding > 6) {
        return Err(bad());
    }
    // Lengths that no byte string encodes to.
    if matches!(body.len() % 8, 1 | 3 | 6) {
        return Err(bad());
    }
    let mut out = Vec::with_capacity(body.len() * 5 / 8);
    let mut buffer: u32 = 0;
    let mut bits = 0u32;
    for c in body.bytes() {
        let v = match c.to_ascii_uppercase() {
            c @ b'A'..=b'Z' => c - b'A',
            c @ b'2'..=b'7' => c - b'2' + 26,
            _ => return Err(bad()),
        };
        buffer = (buffer << 5) | u32::from(v);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push(((buffer >> bits) & 0xff) as u8);
        }
        buffer &= (1 << bits) - 1;
    }
    if buffer != 0 {
        return Err(bad());
    }
    Ok(out)
}

/// RFC 4226 HOTP value of `key` at `counter`, `digits` long (1..=9), zero-padded.
pub fn hotp(key: &[u8], counter: u64, digits: u32) -> String {
    let digits = digits.clamp(1, 9);
    let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(key) else {
        // HMAC takes keys of any length; unreachable.
        return String::new();
    };
    mac.update(&counter.to_be_bytes());
    let h = mac.finalize().into_bytes();
    let offset = usize::from(h[19] & 0x0f);
    let bin = (u32::from(h[offset] & 0x7f) << 24)
        | (u32::from(h[offset + 1]) << 16)
        | (u32::from(h[offset + 2]) << 8)
        | u32::from(h[offset + 3]);
    let code = bin % 10u32.pow(digits);
    format!("{code:0width$}", width = digits as usize)
}

/// The TOTP step that `unix_secs` falls in.
pub fn step_at(unix_secs: u64) -> u64 {
    unix_secs / STEP_SECS
}

/// RFC 6238 TOTP of `key` at `unix_secs` with the given step length and digits (the general
/// form, for the RFC's test vectors).
pub fn totp(key: &[u8], unix_secs: u64, step_secs: u64, digits: u32) -> String {
    hotp(key, unix_secs / step_secs.max(1), digits)
}

impl TotpSecret {
    /// The 6-digit code at `unix_secs`.
    pub fn code_at(&self, unix_secs: u64) -> String {
        totp(&self.0, unix_secs, STEP_SECS, DIGITS)
    }
}

/// The result of checking a submitted code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TotpCheck {
    /// The code matches `step`; store it as the last used step.
    Valid { step: u64 },
    /// The code matches a step already used (or older): a replay. Log it (ASVS 6.5.1).
    Replayed { step: u64 },
    /// The code matches no step in the window, or is not 6 digits.
    Invalid,
}

/// Checks `code` (6 ASCII digits; surrounding whitespace and inner spaces are ignored) against
/// the steps around `now_unix`, refusing steps `<= last_used_step`.
pub fn verify(
    secret: &TotpSecret,
    code: &str,
    now_unix: u64,
    last_used_step: Option<u64>,
) -> TotpCheck {
    let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    if code.len() != DIGITS as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
        return TotpCheck::Invalid;
    }
    let now_step = step_at(now_unix);
    let mut found = None;
    // Check every step in the window (no early exit) so timing does not say which one matched.
    for step in now_step.saturating_sub(WINDOW)..=now_step.saturating_add(WINDOW) {
        let expected = hotp(&secret.0, step, DIGITS);
        if constant_time_eq(expected.as_bytes(), code.as_bytes()) && found.is_none() {
            found = Some(step);
        }
    }
    match found {
        None => TotpCheck::Invalid,
        Some(step) if last_used_step.is_some_and(|last| step <= last) => {
            TotpCheck::Replayed { step }
        }
        Some(step) => TotpCheck::Valid { step },
    }
}

/// The `otpauth://totp/` URI (Google Authenticator key-URI format) that enrols `secret` in an
/// app: label `issuer:account`, with the issuer repeated as a parameter.
pub fn otpauth_uri(secret: &TotpSecret, issuer: &str, account: &str) -> String {
    format!(
        "otpauth://totp/{}:{}?secret={}&issuer={}&algorithm=SHA1&digits={DIGITS}&period={STEP_SECS}",
        percent_encode(issuer),
        percent_encode(account),
        secret.to_base32(),
        percent_encode(issuer),
    )
}

/// Longest text [`qr_svg`] encodes.
pub const MAX_QR_TEXT: usize = 1024;

/// A QR code (error correction level M) of `text` as a standalone SVG document, black on white,
/// at least 240 px square.
pub fn qr_svg(text: &str) -> Result<String, Error> {
    use qrcode::render::svg;
    if text.len() > MAX_QR_TEXT {
        return Err(Error::bad(format!(
            "text for a QR code must be at most {MAX_QR_TEXT} bytes; use a shorter issuer or account name"
        )));
    }
    let code = qrcode::QrCode::with_error_correction_level(text.as_bytes(), qrcode::EcLevel::M)
        .map_err(|e| Error::bad(format!("cannot make a QR code of this text: {e}")))?;
    Ok(code
        .render::<svg::Color<'_>>()
        .min_dimensions(240, 240)
        .dark_color(svg::Color("#000000"))
        .light_color(svg::Color("#ffffff"))
        .build())
}
