//! Password policy and storage.
//!
//! Policy (ASVS 5.0 V6.2): at least 8 and at most 128 characters counted as Unicode scalar values
//! (6.2.1, 6.2.9), any composition (6.2.5), used exactly as received — no trimming, normalising,
//! case folding or truncation (6.2.8) — and not one of 11 611 common passwords (6.2.4, see
//! `data/README.md`), optionally not containing the user name (6.2.11's context-specific words).
//! Passwords never expire (6.2.10): nothing here knows a password's age.
//!
//! Storage (ASVS 11.4.2): argon2id in PHC string form with OWASP's parameters (m = 19 456 KiB,
//! t = 2, p = 1) and a 128-bit random salt; verification compares in constant time (11.2.4) and
//! [`PasswordHasher::needs_rehash`] says when stored parameters are older than the current ones.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::LazyLock;

use argon2::password_hash::{PasswordHash, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, PasswordHasher as _, Version};

use crate::Error;
use crate::util::random_bytes;

/// Fewest characters (Unicode scalar values) a password may have (ASVS 6.2.1).
pub const MIN_LEN: usize = 8;
/// Most characters a password may have; 128 ≥ 64 (ASVS 6.2.9) and bounds the hashing work.
pub const MAX_LEN: usize = 128;

static COMMON_TEXT: &str = include_str!("../data/common-passwords.txt");
static COMMON: LazyLock<BTreeSet<&'static str>> =
    LazyLock::new(|| COMMON_TEXT.lines().filter(|l| !l.is_empty()).collect());

/// How many passwords the common-password list holds.
pub fn common_password_count() -> usize {
    COMMON.len()
}

/// Whether `password`, compared case-insensitively, is on the common-password list (ASVS 6.2.4).
pub fn is_common(password: &str) -> bool {
    let lower = password.to_lowercase();
    COMMON.contains(lower.as_str())
}

/// Why a new password is refused. The message tells the user what to do instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordProblem {
    #[error("use at least {min} characters (this password has {got})")]
    TooShort { min: usize, got: usize },
    #[error("use at most {max} characters (this password has {got})")]
    TooLong { max: usize, got: usize },
    #[error(
        "this password is on a list of commonly used passwords; choose a longer phrase that is not a well-known password"
    )]
    Common,
    #[error("do not use your user name in your password")]
    ContainsUsername,
}

/// What a new password is checked against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordPolicy {
    /// Refuse passwords that contain the user name (case-insensitively), for user names of at
    /// least 3 characters.
    pub reject_username: bool,
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        Self {
            reject_username: true,
        }
    }
}

impl PasswordPolicy {
    /// Checks a password being set (registration, change, reset). The password is judged exactly
    /// as given: `" secret "` is ten characters and differs from `"secret"` (ASVS 6.2.8).
    pub fn check(&self, password: &str, username: Option<&str>) -> Result<(), PasswordProblem> {
        let got = password.chars().count();
        if got < MIN_LEN {
            return Err(PasswordProblem::TooShort { min: MIN_LEN, got });
        }
        if got > MAX_LEN {
            return Err(PasswordProblem::TooLong { max: MAX_LEN, got });
        }
        if is_common(password) {
            return Err(PasswordProblem::Common);
        }
        if self.reject_username
            && let Some(name) = username
            && name.chars().count() >= 3
            && password.to_lowercase().contains(&name.to_lowercase())
        {
            return Err(PasswordProblem::ContainsUsername);
        }
        Ok(())
    }
}

/// argon2id cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashParams {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Passes over memory.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl HashParams {
    /// OWASP Password Storage Cheat Sheet's argon2id setting: m = 19 MiB, t = 2, p = 1.
    pub const OWASP: Self = Self {
        memory_kib: 19_456,
        iterations: 2,
        parallelism: 1,
    };
}

/// Hashes and verifies passwords with argon2id under one current parameter set.
#[derive(Clone)]
pub struct PasswordHasher {
    params: HashParams,
    argon: Argon2<'static>,
}

impl fmt::Debug for PasswordHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswordHasher")
            .field("params", &self.params)
            .finish()
    }
}

impl Default for PasswordHasher {
    fn default() -> Self {
        Self::owasp()
    }
}

/// Output length of new hashes, bytes.
const OUTPUT_LEN: usize = 32;

impl PasswordHasher {
    /// A hasher with the given parameters; refuses parameters argon2 does not accept.
    pub fn new(params: HashParams) -> Result<Self, Error> {
        let p = Params::new(
            params.memory_kib,
            params.iterations,
            params.parallelism,
            Some(OUTPUT_LEN),
        )
        .map_err(|e| Error::bad(format!("argon2 parameters {params:?} are invalid: {e}")))?;
        Ok(Self {
            params,
            argon: Argon2::new(Algorithm::Argon2id, Version::V0x13, p),
        })
    }

    /// The OWASP setting ([`HashParams::OWASP`]).
    pub fn owasp() -> Self {
        let p = HashParams::OWASP;
        // These constants are within argon2's limits; the fallback is never taken.
        let params = Params::new(p.memory_kib, p.iterations, p.parallelism, Some(OUTPUT_LEN))
            .unwrap_or_default();
        Self {
            params: p,
            argon: Argon2::new(Algorithm::Argon2id, Version::V0x13, params),
        }
    }

    /// The current parameters.
    pub fn params(&self) -> HashParams {
        self.params
    }

    /// The PHC string (`$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`) of `password` under a fresh
    /// 128-bit random salt. Does not apply the policy: call [`PasswordPolicy::check`] first for new
    /// passwords. Refuses passwords longer than [`MAX_LEN`] characters (bounded work).
    pub fn hash(&self, password: &str) -> Result<String, Error> {
        if password.chars().count() > MAX_LEN {
            return Err(Error::WeakPassword(PasswordProblem::TooLong {
                max: MAX_LEN,
                got: password.chars().count(),
            }));
        }
        let salt_bytes: [u8; 16] = random_bytes()?;
        let salt = SaltString::encode_b64(&salt_bytes)
            .map_err(|e| Error::Internal(format!("salt encoding: {e}")))?;
        self.argon
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| Error::Internal(format!("argon2 hashing failed: {e}")))
    }

    /// Whether `password` matches the stored PHC string `phc`, whatever parameters the string
    /// names (argon2id, argon2i or argon2d). The hash comparison is constant-time. A password longer
    /// than [`MAX_LEN`] never matches (nothing that long can have been stored). `Err` when `phc`
    /// is not a valid argon2 PHC string: the stored value is corrupt.
    pub fn verify(&self, password: &str, phc: &str) -> Result<bool, Error> {
        let parsed = parse_phc(phc)?;
        if password.chars().count() > MAX_LEN {
            return Ok(false);
        }
        match Argon2::default().verify_password(password.as_bytes(), &parsed) {
            Ok(()) => Ok(true),
            Err(argon2::password_hash::Error::Password) => Ok(false),
            Err(e) => Err(Error::Internal(format!(
                "the stored password hash cannot be checked ({e}); reset this user's password"
            ))),
        }
    }

    /// Spends the same work as [`Self::verify`] against a fixed hash, for sign-ins naming an
    /// unknown account, so response time does not reveal which accounts exist (ASVS 6.3.8).
    /// Always `false`.
    pub fn verify_dummy(&self, password: &str) -> bool {
        // A hash of a random, discarded password under the current parameters; failures are
        // ignored because the result is always "no match".
        static DUMMY: LazyLock<String> = LazyLock::new(|| {
            PasswordHasher::owasp()
                .hash("hearth dummy password, never matches")
                .unwrap_or_default()
        });
        let phc = if self.params == HashParams::OWASP {
            DUMMY.clone()
        } else {
            self.hash("hearth dummy password, never matches")
                .unwrap_or_default()
        };
        let _ = self.verify(password, &phc);
        false
    }

    /// Whether a stored hash should be replaced by a new one (at the next successful sign-in):
    /// it is not argon2id v19, or its parameters or output length differ from the current ones.
    /// Corrupt strings need rehashing too.
    pub fn needs_rehash(&self, phc: &str) -> bool {
        let Ok(parsed) = parse_phc(phc) else {
            return true;
        };
        if parsed.algorithm != Algorithm::Argon2id.ident() || parsed.version != Some(0x13) {
            return true;
        }
        let Ok(params) = Params::try_from(&parsed) else {
            return true;
        };
        let output_ok = parsed.hash.is_some_and(|h| h.len() == OUTPUT_LEN);
        !(output_ok
            && params.m_cost() == self.params.memory_kib
            && params.t_cost() == self.params.iterations
            && params.p_cost() == self.params.parallelism)
    }
}

/// Largest PHC string accepted (bounded parsing of stored values).
const MAX_PHC_LEN: usize = 512;
/// Most memory a stored hash may ask for when verifying (1 GiB).
const MAX_MEMORY_KIB: u32 = 1 << 20;
/// Most passes a stored hash may ask for when verifying.
const MAX_ITERATIONS: u32 = 64;

fn parse_phc(phc: &str) -> Result<PasswordHash<'_>, Error> {
    if phc.len() > MAX_PHC_LEN {
        return Err(Error::Internal(
            "the stored password hash is too long to be an argon2 PHC string; reset this user's password"
                .into(),
        ));
    }
    let parsed = PasswordHash::new(phc).map_err(|e| {
        Error::Internal(format!(
            "the stored password hash is not a PHC string ({e}); reset this user's password"
        ))
    })?;
    let known = [
        Algorithm::Argon2id.ident(),
        Algorithm::Argon2i.ident(),
        Algorithm::Argon2d.ident(),
    ];
    if !known.contains(&parsed.algorithm) {
        return Err(Error::Internal(format!(
            "the stored password hash uses {}, not argon2; reset this user's password",
            parsed.algorithm
        )));
    }
    // Bound the work a corrupt or planted stored value can demand.
    if let Ok(p) = Params::try_from(&parsed)
        && (p.m_cost() > MAX_MEMORY_KIB || p.t_cost() > MAX_ITERATIONS || p.p_cost() > 16)
    {
        return Err(Error::Internal(format!(
            "the stored password hash asks for m={} KiB, t={}, p={}, beyond the limits this server accepts; reset this user's password",
            p.m_cost(),
            p.t_cost(),
            p.p_cost()
        )));
    }
    Ok(parsed)
}
