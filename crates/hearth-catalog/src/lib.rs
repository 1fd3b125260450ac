//! The model store under `$HEARTH_HOME/models/`.
//!
//! Layout: `blobs/sha256-<hex>` (content-addressed weights), `manifests/<name>.json` (one per
//! named model, written atomically and only after its blob is complete and verified),
//! `tmp/` (work in progress, each under a held lock file; stale work is removed on open),
//! `locks/` (per-name and store-wide lock files).
//!
//! Blobs uploaded through the API (`put_blob`, checked against their sha256) wait in `blobs/`
//! until `create` names them in a manifest.
//!
//! Invariants (as absences): a blob without a manifest is never listed; no manifest names a blob
//! that was not verified; no code here reads environment variables; an adopted file is never
//! deleted or modified.
#![forbid(unsafe_code)]

mod catalog;
mod error;
mod fsutil;
mod hub;
mod name;
mod pip;
mod registry;

pub use catalog::{
    Catalog, CatalogConfig, CreateFrom, EntryStatus, ImportMode, MAX_EXTRAS_BYTES, ModelEntry,
    ModelExtras, ModelSource, PullPhase, PullProgress, blob_hex,
};
pub use error::CatalogError;
pub use hub::{HubConfig, resolve_url};
pub use name::{LATEST, MAX_NAME_LEN, ModelName};
pub use pip::PipConfig;
pub use registry::{
    CL100K, DEFAULT_MODEL, EMBED_MODEL, ModelFormat, Registry, RegistryEntry, RegistrySource,
    WheelMember,
};

#[cfg(test)]
mod tests;
