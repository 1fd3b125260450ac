use std::path::PathBuf;

/// Why a catalog operation failed.
///
/// Classes: bad input (`InvalidName`, `Invalid`, `Checksum`), not found (`NotFound`), conflict
/// (`Busy`, `Changed`), unavailable (`Source`, `Io`).
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The model is not in the catalog (or not in the registry when pulling).
    #[error("model `{name}` not found; {hint}")]
    NotFound { name: String, hint: String },
    /// The name is not a valid model name.
    #[error("invalid model name `{name}`: {reason}")]
    InvalidName { name: String, reason: String },
    /// The downloaded content does not match its expected checksum; nothing was kept.
    #[error(
        "checksum mismatch for {what}: expected sha256 {expected}, got {actual}; the download was discarded, try again"
    )]
    Checksum {
        what: String,
        expected: String,
        actual: String,
    },
    /// The file is not something Hearth can use (not a valid GGUF, unsafe archive, ...).
    #[error("{what} is not usable: {reason}")]
    Invalid { what: String, reason: String },
    /// A file operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The source (pip, the Hugging Face Hub) failed.
    #[error("{0}")]
    Source(String),
    /// Another operation holds the model (e.g. a pull in progress while removing).
    #[error("model `{0}` is busy (a pull or removal is in progress); try again when it finishes")]
    Busy(String),
    /// An adopted (imported in place) file changed since it was imported.
    #[error(
        "the file behind `{name}` ({path}) changed since it was imported ({what}); run `hearth import` again"
    )]
    Changed {
        name: String,
        path: PathBuf,
        what: String,
    },
}

impl CatalogError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io {
            action,
            path,
            source,
        }
    }

    pub(crate) fn not_found(name: &str) -> Self {
        Self::NotFound {
            name: name.to_owned(),
            hint: format!(
                "run `hearth pull {name}` to download it, or `hearth list` to see what is installed"
            ),
        }
    }
}
