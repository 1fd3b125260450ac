//! The audit log's hash chain: each event's hash covers the previous event's hash, so changing,
//! deleting, inserting or reordering stored events is detectable (ASVS 16.4.2; the events
//! themselves carry who, what, when, where: 16.2.1, UTC milliseconds: 16.2.2).
//!
//! `hash(n) = SHA-256(hash(n−1) ‖ encode(event n))`, with `hash(0)` = 32 zero bytes. The encoding
//! is canonical and unambiguous: a version tag, then `seq` and `time_ms` as 8-byte big-endian
//! integers, then each text field (actor, action, target, outcome, client, detail) as a 4-byte
//! big-endian length and its UTF-8 bytes. No field can bleed into the next, so no two different
//! events encode alike. Text is stored as given and encoded by length, never by delimiters, so
//! hostile content cannot forge a record boundary (16.4.1).
//!
//! [`verify`] recomputes the chain from a [`Checkpoint`] (the genesis, or the last event of a
//! prefix removed by retention) and returns the first broken `seq`. Truncation at the end is
//! only detectable against a head checkpoint kept elsewhere: compare it with the checkpoint
//! [`verify`] returns.

use crate::util::Sha256Hash;

/// Version tag at the start of every encoding.
const TAG: &[u8] = b"hearth-audit-v1\0";

/// Whether the audited action succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    Success,
    Failure,
    /// Refused by authorization or throttling.
    Denied,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Denied => "denied",
        }
    }
}

/// One audit event, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AuditEvent {
    /// 1, 2, 3, … without gaps.
    pub seq: u64,
    /// Milliseconds since the Unix epoch, UTC.
    pub time_ms: i64,
    /// Who: user id or name, `key:<id>`, `system`, or empty when unknown.
    pub actor: String,
    /// What: `login.success`, `key.create`, `user.role`, …
    pub action: String,
    /// On what: user, key id, model name.
    pub target: String,
    /// `success` / `failure` / `denied`.
    pub outcome: String,
    /// Client address.
    pub client: String,
    /// Free-form detail (never secrets).
    pub detail: String,
}

/// The canonical byte encoding of an event (see the module docs).
pub fn encode(e: &AuditEvent) -> Vec<u8> {
    let fields = [
        &e.actor, &e.action, &e.target, &e.outcome, &e.client, &e.detail,
    ];
    let mut out =
        Vec::with_capacity(TAG.len() + 16 + fields.iter().map(|f| f.len() + 4).sum::<usize>());
    out.extend_from_slice(TAG);
    out.extend_from_slice(&e.seq.to_be_bytes());
    out.extend_from_slice(&e.time_ms.to_be_bytes());
    for f in fields {
        // Fields longer than 4 GiB cannot be stored; saturate rather than wrap.
        let len = u32::try_from(f.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(f.as_bytes());
    }
    out
}

/// `SHA-256(prev ‖ encode(event))`.
pub fn chain_hash(prev: &Sha256Hash, event: &AuditEvent) -> Sha256Hash {
    let mut data = Vec::with_capacity(32 + 64);
    data.extend_from_slice(&prev.0);
    data.extend_from_slice(&encode(event));
    Sha256Hash::of(&data)
}

/// An event with its chain hash, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainedEvent {
    pub event: AuditEvent,
    pub hash: Sha256Hash,
}

/// A trusted point in the chain: the `seq` and hash of the last event before the ones to verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    pub seq: u64,
    pub hash: Sha256Hash,
}

impl Checkpoint {
    /// Before the first event: seq 0, hash all zeros.
    pub const GENESIS: Checkpoint = Checkpoint {
        seq: 0,
        hash: Sha256Hash([0; 32]),
    };
}

/// Appends events: keeps the head and hands out the next `seq` and hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chain {
    head: Checkpoint,
}

impl Chain {
    /// Continues from `head` (the last stored event, or [`Checkpoint::GENESIS`]).
    pub fn new(head: Checkpoint) -> Self {
        Self { head }
    }

    pub fn head(&self) -> Checkpoint {
        self.head
    }

    /// Seals `event`: sets its `seq` to the next number and computes its hash.
    pub fn append(&mut self, mut event: AuditEvent) -> ChainedEvent {
        event.seq = self.head.seq.saturating_add(1);
        let hash = chain_hash(&self.head.hash, &event);
        self.head = Checkpoint {
            seq: event.seq,
            hash,
        };
        ChainedEvent { event, hash }
    }
}

/// Where and why the chain breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Broken {
    /// The event at position `seq` is missing, or out of place (a deletion, insertion or
    /// reordering); `found` is the `seq` stored there.
    #[error(
        "audit chain broken at seq {seq}: found event {found} where {seq} should be (an event was deleted, inserted or moved)"
    )]
    Sequence { seq: u64, found: u64 },
    /// The event at `seq` does not hash to its stored hash, or does not follow from the one
    /// before (its content or a predecessor was changed).
    #[error(
        "audit chain broken at seq {seq}: its hash does not match (the event or one before it was changed)"
    )]
    Hash { seq: u64 },
}

impl Broken {
    /// The first `seq` that fails.
    pub fn seq(&self) -> u64 {
        match *self {
            Broken::Sequence { seq, .. } | Broken::Hash { seq } => seq,
        }
    }
}

/// Verifies `events` (in stored order) as the continuation of `from`. Returns the new head, or the
/// first broken `seq`.
pub fn verify(events: &[ChainedEvent], from: Checkpoint) -> Result<Checkpoint, Broken> {
    let mut head = from;
    for ce in events {
        let expected = head.seq.saturating_add(1);
        if ce.event.seq != expected {
            return Err(Broken::Sequence {
                seq: expected,
                found: ce.event.seq,
            });
        }
        let h = chain_hash(&head.hash, &ce.event);
        if h != ce.hash {
            return Err(Broken::Hash { seq: expected });
        }
        head = Checkpoint {
            seq: expected,
            hash: h,
        };
    }
    Ok(head)
}
