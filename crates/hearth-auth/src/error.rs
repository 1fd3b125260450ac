/// Everything that can go wrong in `hearth-auth`, classified the way callers map it.
///
/// Messages say what to do. None of them carries a secret (ASVS 16.2.5, 16.5.1).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The caller's input is malformed or refused by policy (HTTP 400/422).
    #[error("{0}")]
    BadInput(String),
    /// A new password breaks the password policy; the message says how to pick a better one.
    #[error("{0}")]
    WeakPassword(crate::password::PasswordProblem),
    /// The operating system's random number generator failed (HTTP 503).
    #[error(
        "the operating system's random number generator failed ({0}); try again, and check that the system has an entropy source"
    )]
    Unavailable(String),
    /// A stored value (password hash, parameters) is corrupt, or a library failed in a way that
    /// valid input cannot cause (HTTP 500).
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    pub(crate) fn bad(msg: impl Into<String>) -> Self {
        Self::BadInput(msg.into())
    }
}

impl From<crate::password::PasswordProblem> for Error {
    fn from(p: crate::password::PasswordProblem) -> Self {
        Self::WeakPassword(p)
    }
}
