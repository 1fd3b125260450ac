//! The pure security core of Hearth accounts: no storage, no HTTP, no async runtime.
//!
//! Everything here is synchronous and, where time or randomness matters, takes them as arguments
//! (`now: SystemTime`) or draws secrets from the operating system's CSPRNG (`getrandom`), so the
//! store crates and the server compose these pieces and the tests drive them deterministically.
//!
//! Target: OWASP ASVS 5.0 level 2. Requirement numbers are named where a function implements one.
//!
//! | module | job |
//! |---|---|
//! | [`password`] | policy (8..=128 scalar values, common-password list), argon2id PHC hashing |
//! | [`totp`] | RFC 6238 codes, base32, `otpauth://` URI, QR code as SVG, single-use verification |
//! | [`recovery`] | ten one-time recovery codes, stored as SHA-256 |
//! | [`token`] | session tokens, API keys `hearth_<id>_<secret>`, CSRF tokens |
//! | [`policy`] | roles, permissions, groups, API-key scopes, effective rights |
//! | [`throttle`] | brute-force limiter per account and client address |
//! | [`login`] | the sign-in state machine |
//! | [`audit`] | the tamper-evident hash chain of audit events |
//! | [`oidc`] | OpenID Connect protocol pieces (PKCE, URLs, documents, ID-token claims) |
#![forbid(unsafe_code)]

pub mod audit;
mod error;
pub mod login;
pub mod oidc;
pub mod password;
pub mod policy;
pub mod recovery;
pub mod throttle;
pub mod token;
pub mod totp;
mod util;

pub use error::Error;
pub use policy::Role;
pub use util::{Sha256Hash, constant_time_eq};

#[cfg(test)]
mod tests;
