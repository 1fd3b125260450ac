//! Bearer secrets: web session tokens, API keys and CSRF tokens.
//!
//! - Session tokens are 256 random bits (ASVS 7.2.3, 11.5.1) as 43 base64url characters. The store
//!   keeps only their SHA-256 ([`SessionToken::hash`]): a high-entropy secret needs no slow hash,
//!   and a leaked table does not give working tokens. A new token is made at each sign-in (7.2.4).
//! - API keys read `hearth_<id>_<secret>`: `id` (16 Crockford base32 symbols, 80 bits) is the
//!   public lookup handle shown in key lists, `secret` 256 random bits in base64url. Parsing is
//!   strict; the store keeps SHA-256 of the secret; [`ApiKey::matches`] compares in constant time.
//! - [`SessionLifetime`] decides whether a stored session is still usable: an idle timeout and an
//!   absolute lifetime after which the user must sign in again (ASVS 7.3.1, 7.3.2). Defaults
//!   follow NIST SP 800-63B's AAL2 re-authentication: 30 minutes idle, 12 hours absolute (7.1.1).
//! - CSRF tokens are HMAC-SHA256 of the session id under a server key, so they are bound to one
//!   session, need no storage, and verify in constant time (ASVS 3.5.1).

use std::fmt;
use std::time::{Duration, SystemTime};

use hmac::{Hmac, Mac as _};
use sha2::Sha256;

use crate::Error;
use crate::util::{
    Sha256Hash, b64url, b64url_decode, constant_time_eq, is_b64url_char, random_bytes,
};

/// Characters of a 256-bit value in unpadded base64url.
pub const SECRET_CHARS: usize = 43;

fn parse_secret(text: &str) -> Option<[u8; 32]> {
    if text.len() != SECRET_CHARS || !text.bytes().all(is_b64url_char) {
        return None;
    }
    // The decoder refuses non-canonical trailing bits, so each secret has exactly one spelling.
    b64url_decode(text)?.try_into().ok()
}

/// A web session token. `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionToken(String);

impl fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionToken(..)")
    }
}

impl SessionToken {
    /// A fresh random token.
    pub fn generate() -> Result<Self, Error> {
        Ok(Self(b64url(&random_bytes::<32>()?)))
    }

    /// Parses a token presented by a client (cookie value): exactly 43 base64url characters that
    /// decode to 32 bytes.
    pub fn parse(text: &str) -> Result<Self, Error> {
        parse_secret(text)
            .map(|_| Self(text.to_owned()))
            .ok_or_else(|| Error::bad("malformed session token; sign in again"))
    }

    /// The token text, for the `Set-Cookie` header only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The stored form and lookup key: SHA-256 of the token text.
    pub fn hash(&self) -> Sha256Hash {
        Sha256Hash::of(self.0.as_bytes())
    }
}

/// How long a web session lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLifetime {
    /// Without a request for this long, the session ends (ASVS 7.3.1).
    pub idle: Duration,
    /// However active, the session ends this long after sign-in (ASVS 7.3.2).
    pub absolute: Duration,
}

impl Default for SessionLifetime {
    fn default() -> Self {
        Self {
            idle: Duration::from_secs(30 * 60),
            absolute: Duration::from_secs(12 * 60 * 60),
        }
    }
}

/// Whether a stored session may be used now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionStatus {
    /// Usable; the caller records `now` as its last use.
    Active,
    /// Unused for longer than the idle timeout: delete it, ask to sign in again.
    IdleExpired,
    /// Older than the absolute lifetime: delete it, ask to sign in again.
    AbsoluteExpired,
}

impl SessionLifetime {
    /// The status at `now` of a session created at `created` and last used at `last_used`.
    /// Times in the future (clock steps) count as now, so they never extend a session.
    pub fn status(
        &self,
        created: SystemTime,
        last_used: SystemTime,
        now: SystemTime,
    ) -> SessionStatus {
        let age = |t: SystemTime| now.duration_since(t).unwrap_or(Duration::ZERO);
        if age(created) >= self.absolute {
            SessionStatus::AbsoluteExpired
        } else if age(last_used) >= self.idle {
            SessionStatus::IdleExpired
        } else {
            SessionStatus::Active
        }
    }

    /// When the session ends if it is not used again (for the cookie's `Max-Age` and the
    /// store's cleanup): the earlier of idle and absolute expiry.
    pub fn expires_at(&self, created: SystemTime, last_used: SystemTime) -> SystemTime {
        let idle_end = last_used.checked_add(self.idle);
        let abs_end = created.checked_add(self.absolute);
        match (idle_end, abs_end) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) => a,
            (None, Some(b)) => b,
            (None, None) => created,
        }
    }
}

/// Fixed start of every API key.
pub const API_KEY_PREFIX: &str = "hearth_";
/// Symbols in an API key id.
pub const API_KEY_ID_CHARS: usize = 16;
const CROCKFORD: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

/// An API key: public id plus secret. `Debug` shows only the id.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey {
    id: String,
    secret: String,
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl ApiKey {
    /// A fresh key.
    pub fn generate() -> Result<Self, Error> {
        let id_bytes: [u8; 10] = random_bytes()?;
        let mut id = String::with_capacity(API_KEY_ID_CHARS);
        let mut acc: u32 = 0;
        let mut bits = 0u32;
        for b in id_bytes {
            acc = (acc << 8) | u32::from(b);
            bits += 8;
            while bits >= 5 {
                bits -= 5;
                id.push(char::from(CROCKFORD[((acc >> bits) & 31) as usize]));
            }
            acc &= (1 << bits) - 1;
        }
        Ok(Self {
            id,
            secret: b64url(&random_bytes::<32>()?),
        })
    }

    /// Parses `hearth_<id>_<secret>` strictly: the prefix, 16 lowercase Crockford base32 symbols,
    /// `_`, then 43 base64url characters of a 256-bit secret. Nothing before or after.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let bad = || {
            Error::bad(
                "malformed API key: expected hearth_<16 characters>_<43 characters>; copy the whole key as it was shown when created",
            )
        };
        let rest = text.strip_prefix(API_KEY_PREFIX).ok_or_else(bad)?;
        let (id, secret) = rest.split_once('_').ok_or_else(bad)?;
        if id.len() != API_KEY_ID_CHARS || !id.bytes().all(|b| CROCKFORD.contains(&b)) {
            return Err(bad());
        }
        parse_secret(secret).ok_or_else(bad)?;
        Ok(Self {
            id: id.to_owned(),
            secret: secret.to_owned(),
        })
    }

    /// The public id (lookup key, shown in lists).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The whole key, to show once at creation.
    pub fn expose(&self) -> String {
        format!("{API_KEY_PREFIX}{}_{}", self.id, self.secret)
    }

    /// The stored form: SHA-256 of the secret part.
    pub fn secret_hash(&self) -> Sha256Hash {
        Sha256Hash::of(self.secret.as_bytes())
    }

    /// Whether this key's secret matches the stored hash (constant time).
    pub fn matches(&self, stored: &Sha256Hash) -> bool {
        constant_time_eq(&self.secret_hash().0, &stored.0)
    }
}

/// The server-wide key that CSRF tokens are derived under. Keep it secret; rotating it invalidates
/// every outstanding CSRF token (not the sessions). `Debug` hides it.
#[derive(Clone)]
pub struct CsrfKey([u8; 32]);

impl fmt::Debug for CsrfKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CsrfKey(..)")
    }
}

const CSRF_DOMAIN: &[u8] = b"hearth-csrf-v1\0";

impl CsrfKey {
    pub fn generate() -> Result<Self, Error> {
        Ok(Self(random_bytes()?))
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    fn mac(&self, session_id: &str) -> [u8; 32] {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.0) else {
            // HMAC takes keys of any length; unreachable.
            return [0; 32];
        };
        mac.update(CSRF_DOMAIN);
        mac.update(session_id.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// The CSRF token for the session identified by `session_id` (e.g. the hex of the session
    /// token's hash — never the session token itself): 43 base64url characters.
    pub fn token_for(&self, session_id: &str) -> String {
        b64url(&self.mac(session_id))
    }

    /// Whether `presented` is the CSRF token of `session_id` (constant time).
    pub fn verify(&self, session_id: &str, presented: &str) -> bool {
        let Some(bytes) = parse_secret(presented) else {
            return false;
        };
        constant_time_eq(&bytes, &self.mac(session_id))
    }
}
