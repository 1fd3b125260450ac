//! Hugging Face Hub downloads: `{endpoint}/{owner}/{repo}/resolve/{revision}/{file}`.

use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::path::Path;
use std::time::Duration;

use crate::error::CatalogError;
use crate::fsutil::{OnBytes, copy_hashing};
use crate::pip::MAX_MEMBER_BYTES;

/// Where and how to reach the Hub.
#[derive(Clone, Debug)]
pub struct HubConfig {
    /// Base URL, default `https://huggingface.co` (no trailing slash needed).
    pub endpoint: String,
    /// Access token for gated or private repositories (sent as `Authorization: Bearer`).
    pub token: Option<String>,
    /// Git revision (branch, tag or commit), default `main`.
    pub revision: String,
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            endpoint: "https://huggingface.co".to_owned(),
            token: None,
            revision: "main".to_owned(),
        }
    }
}

/// Quantizations tried, in order, when a hub reference names none (`:latest`).
const DEFAULT_QUANTS: &[&str] = &["Q4_K_M", "Q4_0", "Q8_0"];
const MAX_API_BODY: u64 = 16 << 20;

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(30)))
        // Keep the token on same-host HTTPS redirects (renamed repositories); never send it to
        // the CDN a file download redirects to.
        .redirect_auth_headers(ureq::config::RedirectAuthHeaders::SameHost)
        .user_agent(concat!("hearth/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

fn base(cfg: &HubConfig) -> &str {
    cfg.endpoint.trim_end_matches('/')
}

fn get(
    agent: &ureq::Agent,
    cfg: &HubConfig,
    url: &str,
) -> Result<ureq::http::Response<ureq::Body>, CatalogError> {
    let mut req = agent.get(url);
    if let Some(tok) = &cfg.token {
        req = req.header("Authorization", &format!("Bearer {tok}"));
    }
    req.call().map_err(|e| {
        CatalogError::Source(format!(
            "cannot reach {url}: {e}; check the network connection or the hub endpoint"
        ))
    })
}

fn status_error(status: u16, url: &str, name: &str) -> CatalogError {
    match status {
        404 => CatalogError::NotFound {
            name: name.to_owned(),
            hint: format!(
                "the hub answered 404 for {url}; check the owner, repository and file name"
            ),
        },
        401 | 403 => CatalogError::Source(format!(
            "the hub refused access to {url} (HTTP {status}); the repository may be gated or private: accept its terms \
             on the website and configure a hub token"
        )),
        _ => CatalogError::Source(format!(
            "the hub answered HTTP {status} for {url}; try again later"
        )),
    }
}

/// The URL a file is downloaded from.
pub fn resolve_url(cfg: &HubConfig, owner: &str, repo: &str, file: &str) -> String {
    format!(
        "{}/{owner}/{repo}/resolve/{}/{file}",
        base(cfg),
        cfg.revision
    )
}

/// Turn a tag into a file name: a `.gguf` tag is the file itself; otherwise list the repository
/// and pick the one `.gguf` whose name contains the quantization.
pub(crate) fn resolve_file(
    cfg: &HubConfig,
    owner: &str,
    repo: &str,
    tag: &str,
    name: &str,
) -> Result<String, CatalogError> {
    if tag.to_ascii_lowercase().ends_with(".gguf") {
        return Ok(tag.to_owned());
    }
    let url = format!(
        "{}/api/models/{owner}/{repo}/revision/{}",
        base(cfg),
        cfg.revision
    );
    let resp = get(&agent(), cfg, &url)?;
    let status = resp.status().as_u16();
    if status != 200 {
        return Err(status_error(status, &url, name));
    }
    let body = resp
        .into_body()
        .with_config()
        .limit(MAX_API_BODY)
        .read_to_vec()
        .map_err(|e| CatalogError::Source(format!("cannot read {url}: {e}")))?;
    let files = sibling_ggufs(&body)
        .map_err(|e| CatalogError::Source(format!("unexpected answer from {url}: {e}")))?;
    pick_quant(&files, tag).map_err(|reason| CatalogError::NotFound {
        name: name.to_owned(),
        hint: format!("{reason}; name the file explicitly: hf.co/{owner}/{repo}:FILE.gguf"),
    })
}

/// The `.gguf` files listed in a `/api/models/...` answer (`siblings[].rfilename`).
pub(crate) fn sibling_ggufs(body: &[u8]) -> Result<Vec<String>, String> {
    let v: serde_json::Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let siblings = v
        .get("siblings")
        .and_then(|s| s.as_array())
        .ok_or("no `siblings` list")?;
    Ok(siblings
        .iter()
        .filter_map(|s| s.get("rfilename").and_then(|f| f.as_str()))
        .filter(|f| {
            f.to_ascii_lowercase().ends_with(".gguf") && !f.to_ascii_lowercase().contains("mmproj")
        })
        .map(str::to_owned)
        .collect())
}

/// Choose the file for `tag` among `files`.
pub(crate) fn pick_quant(files: &[String], tag: &str) -> Result<String, String> {
    if files.is_empty() {
        return Err("the repository has no .gguf file".to_owned());
    }
    let matching = |q: &str| -> Vec<&String> {
        let q = q.to_ascii_uppercase();
        files
            .iter()
            .filter(|f| {
                let stem = f.rsplit('/').next().unwrap_or(f).to_ascii_uppercase();
                let stem = stem.trim_end_matches(".GGUF");
                ends_with_token(stem, &q)
            })
            .collect()
    };
    let candidates: Vec<&String> = if tag == crate::name::LATEST {
        if files.len() == 1 {
            files.iter().collect()
        } else {
            DEFAULT_QUANTS
                .iter()
                .map(|q| matching(q))
                .find(|m| !m.is_empty())
                .unwrap_or_default()
        }
    } else {
        matching(tag)
    };
    match candidates.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(format!(
            "no .gguf file matches `{tag}` (files: {})",
            files
                .iter()
                .take(20)
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        )),
        many => Err(format!(
            "several files match `{tag}`: {}",
            many.iter()
                .take(20)
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// `stem` ends with `q` as a whole token (preceded by `-`, `.` or `_`, or equal).
fn ends_with_token(stem: &str, q: &str) -> bool {
    stem == q
        || stem
            .strip_suffix(q)
            .is_some_and(|rest| rest.ends_with(['-', '.', '_']))
}

/// Download `url` into `out`, hashing it. Checks the status and `Content-Length`.
/// Returns (hex sha256, size).
pub(crate) fn download(
    cfg: &HubConfig,
    url: &str,
    name: &str,
    out: &Path,
    on_total: &dyn Fn(Option<u64>),
    on_bytes: OnBytes<'_>,
) -> Result<(String, u64), CatalogError> {
    let resp = get(&agent(), cfg, url)?;
    let status = resp.status().as_u16();
    if !(200..300).contains(&status) {
        return Err(status_error(status, url, name));
    }
    let declared = resp
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if let Some(n) = declared
        && n > MAX_MEMBER_BYTES
    {
        return Err(CatalogError::Source(format!(
            "{url} is {n} bytes, more than Hearth accepts"
        )));
    }
    on_total(declared);
    let file = File::create(out).map_err(CatalogError::io("cannot create", out))?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    let mut reader = resp.into_body().into_reader();
    let limit = declared.unwrap_or(MAX_MEMBER_BYTES);
    let (digest, size) = copy_hashing(&mut reader, &mut w, limit, on_bytes).map_err(|e| {
        CatalogError::Source(format!("the download of {url} failed: {e}; try again"))
    })?;
    w.flush().map_err(CatalogError::io("cannot write", out))?;
    let file = w
        .into_inner()
        .map_err(|e| CatalogError::io("cannot write", out)(e.into_error()))?;
    file.sync_all()
        .map_err(CatalogError::io("cannot sync", out))?;
    if let Some(n) = declared
        && n != size
    {
        return Err(CatalogError::Source(format!(
            "the download of {url} was cut short: got {size} of {n} bytes; try again"
        )));
    }
    Ok((digest, size))
}
