//! Integration tests of `hearth-auth`, one file per module. Golden values come from the RFCs'
//! test vectors or from independent implementations (Python's hashlib/hmac/struct, argon2-cffi),
//! never from this crate's own output. ASVS 5.0 requirement numbers are named in test names or
//! comments where a test shows one.
#![expect(clippy::unwrap_used, reason = "tests fail loudly")]

mod audit;
mod hostile;
mod login;
mod oidc;
mod password;
mod policy;
mod recovery;
mod throttle;
mod token;
mod totp;
