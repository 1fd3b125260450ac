//! The audit log: append (hash-chained through the store's serialised append), tail, verify,
//! JSON-lines export, retention.
//!
//! The chain hash is `hearth_auth::audit::chain_hash` over the event's canonical encoding, its
//! sequence number included (the store computes it inside its append transaction and hands it to
//! the hash function); `verify` checks that sequence numbers run without gaps from the checkpoint
//! and that each hash follows from the one before, which detects any deleted, inserted,
//! reordered or changed event (ASVS 16.4.2).

use std::io::Write;
use std::time::SystemTime;

use hearth_auth::Sha256Hash;
use hearth_auth::audit::{AuditEvent, chain_hash};
use hearth_store::{Event, NewEvent, to_millis};
use serde::Serialize;

use crate::{Accounts, AccountsError, Client, Principal, Result};

/// The chain hash of event number `seq` after `prev`.
pub(crate) fn event_hash(seq: u64, prev: &[u8; 32], e: &NewEvent) -> [u8; 32] {
    let ae = AuditEvent {
        seq,
        time_ms: to_millis(e.time),
        actor: e.actor.clone(),
        action: e.action.clone(),
        target: e.target.clone(),
        outcome: e.outcome.clone(),
        client: e.client_address.clone().unwrap_or_default(),
        detail: e.detail.clone(),
    };
    chain_hash(&Sha256Hash(*prev), &ae).0
}

/// One event as exported and listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditRecord {
    pub seq: u64,
    /// RFC 3339, UTC.
    pub time: String,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub outcome: String,
    pub client_address: Option<String>,
    pub detail: String,
    pub prev_hash: String,
    pub hash: String,
}

fn hex(b: &[u8; 32]) -> String {
    Sha256Hash(*b).to_hex()
}

impl From<&Event> for AuditRecord {
    fn from(e: &Event) -> Self {
        Self {
            seq: e.seq,
            time: hearth_time::rfc3339(e.time, hearth_time::Precision::GoNanos),
            actor: e.actor.clone(),
            action: e.action.clone(),
            target: e.target.clone(),
            outcome: e.outcome.clone(),
            client_address: e.client_address.clone(),
            detail: e.detail.clone(),
            prev_hash: hex(&e.prev_hash),
            hash: hex(&e.hash),
        }
    }
}

/// The result of checking the whole chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// Events checked.
    pub checked: u64,
    /// The sequence number verification started after (the retention checkpoint), 0 if none.
    pub from_seq: u64,
    /// The first event that breaks the chain, if any.
    pub broken_at: Option<u64>,
    /// What is wrong there.
    pub problem: Option<String>,
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.broken_at.is_none()
    }
}

/// Events read per page while verifying or exporting.
const PAGE: u32 = 1000;

impl Accounts {
    /// Appends one event.
    pub(crate) async fn audit_event(
        &self,
        actor: &str,
        action: &str,
        target: &str,
        outcome: &str,
        client: &Client,
        detail: &str,
    ) -> Result<()> {
        let e = NewEvent {
            time: SystemTime::now(),
            actor: actor.to_owned(),
            action: action.to_owned(),
            target: target.to_owned(),
            outcome: outcome.to_owned(),
            client_address: client.addr_text(),
            detail: detail.to_owned(),
        };
        self.stores.audit.append(&e, &event_hash).await?;
        Ok(())
    }

    pub(crate) async fn audit_system(
        &self,
        action: &str,
        target: &str,
        outcome: &str,
        detail: &str,
    ) -> Result<()> {
        self.audit_event(
            "system",
            action,
            target,
            outcome,
            &Client::default(),
            detail,
        )
        .await
    }

    /// Records an access decision made outside this crate (the server's route checks).
    pub async fn audit_access(
        &self,
        who: Option<&Principal>,
        action: &str,
        target: &str,
        allowed: bool,
        client: &Client,
    ) -> Result<()> {
        let actor = who.map_or_else(|| "anonymous".to_owned(), Principal::actor);
        let outcome = if allowed { "allowed" } else { "denied" };
        self.audit_event(&actor, action, target, outcome, client, "")
            .await
    }

    fn require_audit(&self, who: &Principal) -> Result<()> {
        if who.has(crate::Permission::ViewAudit) {
            Ok(())
        } else {
            Err(AccountsError::Forbidden("read the audit log".into()))
        }
    }

    /// The last `n` events, oldest first.
    pub async fn audit_tail(&self, who: &Principal, n: u32) -> Result<Vec<AuditRecord>> {
        self.require_audit(who)?;
        let events = self.stores.audit.tail(n.min(10_000)).await?;
        Ok(events.iter().map(AuditRecord::from).collect())
    }

    /// Checks the whole chain from the retention checkpoint.
    pub async fn audit_verify(&self, who: &Principal) -> Result<VerifyReport> {
        self.require_audit(who)?;
        let checkpoint = self.stores.audit.checkpoint().await?;
        let (mut seq, mut prev) = checkpoint.map_or((0, [0; 32]), |c| (c.seq, c.hash));
        let mut report = VerifyReport {
            checked: 0,
            from_seq: seq,
            broken_at: None,
            problem: None,
        };
        loop {
            let page = self.stores.audit.events(seq + 1, PAGE).await?;
            if page.is_empty() {
                return Ok(report);
            }
            for e in &page {
                let expected = seq + 1;
                let problem = if e.seq != expected {
                    Some(format!(
                        "found event {} where {expected} should be (an event was deleted or inserted)",
                        e.seq
                    ))
                } else if e.prev_hash != prev {
                    Some("its previous-hash does not match the event before it".to_owned())
                } else if event_hash(e.seq, &prev, &e.as_new()) != e.hash {
                    Some("its hash does not match its content (the event was changed)".to_owned())
                } else {
                    None
                };
                if let Some(p) = problem {
                    report.broken_at = Some(expected);
                    report.problem = Some(p);
                    return Ok(report);
                }
                seq = e.seq;
                prev = e.hash;
                report.checked += 1;
            }
        }
    }

    /// Writes every retained event as one JSON object per line; answers how many.
    pub async fn audit_export<W: Write + Send>(&self, who: &Principal, out: &mut W) -> Result<u64> {
        self.require_audit(who)?;
        let mut from = self.stores.audit.checkpoint().await?.map_or(0, |c| c.seq) + 1;
        let mut n = 0u64;
        loop {
            let page = self.stores.audit.events(from, PAGE).await?;
            let Some(last) = page.last() else {
                return Ok(n);
            };
            from = last.seq + 1;
            for e in &page {
                let line = serde_json::to_string(&AuditRecord::from(e))
                    .map_err(|e| AccountsError::Internal(e.to_string()))?;
                writeln!(out, "{line}").map_err(|e| {
                    AccountsError::Unavailable(format!("cannot write the export: {e}"))
                })?;
                n += 1;
            }
        }
    }

    /// Deletes events older than the configured retention (keeping a checkpoint); answers how
    /// many. Expired sessions and old login failures are pruned too.
    pub async fn apply_retention(&self) -> Result<u64> {
        let now = SystemTime::now();
        self.stores.sessions.delete_expired_sessions(now).await?;
        if let Some(window) = now.checked_sub(self.config.throttle.window) {
            self.stores.login_attempts.prune_failures(window).await?;
        }
        let Some(keep) = self.config.audit_retention else {
            return Ok(0);
        };
        let Some(before) = now.checked_sub(keep) else {
            return Ok(0);
        };
        let n = self.stores.audit.delete_events_before(before).await?;
        if n > 0 {
            self.audit_system(
                "audit.retention",
                "",
                "success",
                &format!("deleted {n} events"),
            )
            .await?;
        }
        Ok(n)
    }
}
