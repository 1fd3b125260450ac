//! Model names: `family:tag` (Ollama style) and `hf.co/OWNER/REPO:FILE_OR_QUANT` hub references.

use std::fmt;

use crate::error::CatalogError;

/// Longest accepted name, in bytes (its file-name key, with `%XX` escapes and an extension,
/// stays under the usual 255-byte file-name limit).
pub const MAX_NAME_LEN: usize = 200;
const MAX_PART_LEN: usize = 96;
const MAX_HUB_TAG_LEN: usize = 160;

/// The tag a name without one gets, unless the registry names a default for its family.
pub const LATEST: &str = "latest";

/// A validated, canonical model name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ModelName {
    /// `family:tag`, lowercase `[a-z0-9._-]`.
    Local { family: String, tag: String },
    /// `hf.co/OWNER/REPO:TAG` where TAG is a `.gguf` file name or a quantization (`Q4_K_M`);
    /// `latest` means "pick the default quantization".
    Hub {
        owner: String,
        repo: String,
        tag: String,
    },
}

impl ModelName {
    /// Parse and validate `s`; a missing tag becomes `default_tag(family)` (or `latest`).
    pub fn parse_with(
        s: &str,
        default_tag: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, CatalogError> {
        let bad = |reason: &str| CatalogError::InvalidName {
            name: truncate_for_message(s),
            reason: reason.to_owned(),
        };
        if s.is_empty() {
            return Err(bad("the name is empty"));
        }
        if s.len() > MAX_NAME_LEN {
            return Err(bad(&format!("longer than {MAX_NAME_LEN} bytes")));
        }
        let hub_rest = s
            .strip_prefix("hf.co/")
            .or_else(|| s.strip_prefix("huggingface.co/"));
        if let Some(rest) = hub_rest {
            let (path, tag) = split_tag(rest).map_err(&bad)?;
            let Some((owner, repo)) = path.split_once('/') else {
                return Err(bad(
                    "a hub reference is hf.co/OWNER/REPO[:FILE.gguf or :QUANT]",
                ));
            };
            check_part(owner, "owner", true, MAX_PART_LEN).map_err(|r| bad(&r))?;
            check_part(repo, "repository", true, MAX_PART_LEN).map_err(|r| bad(&r))?;
            let tag = tag.unwrap_or(LATEST);
            check_part(tag, "tag", true, MAX_HUB_TAG_LEN).map_err(|r| bad(&r))?;
            return Ok(Self::Hub {
                owner: owner.to_owned(),
                repo: repo.to_owned(),
                tag: tag.to_owned(),
            });
        }
        let (family, tag) = split_tag(s).map_err(&bad)?;
        if family.contains('/') || family.contains('\\') {
            return Err(bad(
                "path separators are not allowed (hub references start with hf.co/)",
            ));
        }
        check_part(family, "name", false, MAX_PART_LEN).map_err(|r| bad(&r))?;
        let tag = match tag {
            Some(t) => t.to_owned(),
            None => default_tag(family).unwrap_or_else(|| LATEST.to_owned()),
        };
        check_part(&tag, "tag", false, MAX_PART_LEN).map_err(|r| bad(&r))?;
        Ok(Self::Local {
            family: family.to_owned(),
            tag,
        })
    }

    /// Parse with `latest` as the default tag.
    pub fn parse(s: &str) -> Result<Self, CatalogError> {
        Self::parse_with(s, |_| None)
    }

    pub fn tag(&self) -> &str {
        match self {
            Self::Local { tag, .. } | Self::Hub { tag, .. } => tag,
        }
    }

    pub fn is_hub(&self) -> bool {
        matches!(self, Self::Hub { .. })
    }

    /// A file-name-safe key: every byte outside `[A-Za-z0-9._-]` becomes `%XX`.
    pub(crate) fn key(&self) -> String {
        encode_key(&self.to_string())
    }
}

impl fmt::Display for ModelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Local { family, tag } => write!(f, "{family}:{tag}"),
            Self::Hub { owner, repo, tag } => write!(f, "hf.co/{owner}/{repo}:{tag}"),
        }
    }
}

pub(crate) fn encode_key(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn split_tag(s: &str) -> Result<(&str, Option<&str>), &'static str> {
    match s.split_once(':') {
        None => Ok((s, None)),
        Some((_, t)) if t.contains(':') => Err("at most one `:` is allowed"),
        Some((n, t)) => Ok((n, Some(t))),
    }
}

fn check_part(p: &str, what: &str, mixed_case: bool, max: usize) -> Result<(), String> {
    if p.is_empty() {
        return Err(format!("the {what} is empty"));
    }
    if p.len() > max {
        return Err(format!("the {what} is longer than {max} bytes"));
    }
    if p.contains("..") {
        return Err(format!("the {what} contains `..`"));
    }
    if p.contains('/') || p.contains('\\') {
        return Err(format!("the {what} contains a path separator"));
    }
    let ok = |c: char| {
        c.is_ascii_digit()
            || c.is_ascii_lowercase()
            || (mixed_case && c.is_ascii_uppercase())
            || matches!(c, '.' | '_' | '-')
    };
    if let Some(c) = p.chars().find(|c| !ok(*c)) {
        let allowed = if mixed_case {
            "letters, digits, `.`, `_` and `-`"
        } else {
            "lowercase letters, digits, `.`, `_` and `-`"
        };
        return Err(format!(
            "the {what} contains {c:?}; only {allowed} are allowed"
        ));
    }
    if !p.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(format!("the {what} must start with a letter or digit"));
    }
    Ok(())
}

fn truncate_for_message(s: &str) -> String {
    let mut end = s.len().min(80);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    let mut out: String = s[..end]
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if end < s.len() {
        out.push('…');
    }
    out
}
