//! Brute-force throttling of sign-in and second-factor attempts, per account and per client
//! address (ASVS 6.3.1; documented for 6.1.1 below).
//!
//! The policy is a pure function of the recent failure times and the current time
//! ([`decide`]), so it works the same over failures kept in memory ([`Throttle`]) or loaded from
//! the store. With the default [`ThrottlePolicy`]: the first 5 failures within 15 minutes cost
//! nothing; after that each further attempt must wait `30 s × 2^(failures − 5)` after the latest
//! failure, capped at 15 minutes — at most about a dozen guesses per hour per account or address.
//! Throttling delays rather than locks, so an attacker cannot lock a victim out for long
//! (malicious lockout), and a success clears the account's counter but never the address's.
//!
//! IPv6 clients are keyed by their /64 prefix (one subscriber usually holds a whole /64).

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

/// The throttling rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottlePolicy {
    /// Failures older than this are forgotten.
    pub window: Duration,
    /// Failures within the window that cost nothing.
    pub free_failures: u32,
    /// The wait after the first failure beyond the free ones; doubles with each further one.
    pub base_delay: Duration,
    /// The longest wait.
    pub max_delay: Duration,
}

impl Default for ThrottlePolicy {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(15 * 60),
            free_failures: 5,
            base_delay: Duration::from_secs(30),
            max_delay: Duration::from_secs(15 * 60),
        }
    }
}

/// Whether an attempt may go ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// Refuse without checking the credential; tell the client to retry after this long.
    Deny {
        retry_after: Duration,
    },
}

impl Decision {
    pub fn is_allow(self) -> bool {
        self == Decision::Allow
    }

    /// The stricter of two decisions (the longer wait).
    pub fn and(self, other: Decision) -> Decision {
        match (self, other) {
            (Decision::Allow, d) | (d, Decision::Allow) => d,
            (Decision::Deny { retry_after: a }, Decision::Deny { retry_after: b }) => {
                Decision::Deny {
                    retry_after: a.max(b),
                }
            }
        }
    }
}

/// The decision for an attempt at `now` given the times of earlier failures (any order; times in
/// the future count as now).
pub fn decide(policy: &ThrottlePolicy, failures: &[SystemTime], now: SystemTime) -> Decision {
    let recent = || {
        failures.iter().filter(|t| {
            now.duration_since(**t)
                .map_or(true, |age| age < policy.window)
        })
    };
    let count = u32::try_from(recent().count()).unwrap_or(u32::MAX);
    if count < policy.free_failures {
        return Decision::Allow;
    }
    let Some(latest) = recent().max() else {
        return Decision::Allow;
    };
    let excess = count - policy.free_failures; // 0 for the first throttled attempt
    let delay = policy
        .base_delay
        .checked_mul(1u32.checked_shl(excess).unwrap_or(u32::MAX))
        .unwrap_or(policy.max_delay)
        .min(policy.max_delay);
    let waited = now.duration_since(*latest).unwrap_or(Duration::ZERO);
    if waited >= delay {
        Decision::Allow
    } else {
        Decision::Deny {
            retry_after: delay - waited,
        }
    }
}

/// What an attempt is keyed by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Account(String),
    Address(IpAddr),
}

/// Client address as throttled: IPv4 as is, IPv6 reduced to its /64 prefix (IPv4-mapped IPv6
/// addresses count as IPv4).
pub fn address_key(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V4(_) => addr,
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return IpAddr::V4(v4);
            }
            let mut seg = v6.segments();
            for s in &mut seg[4..] {
                *s = 0;
            }
            IpAddr::V6(seg.into())
        }
    }
}

/// Failures kept per key; more never change the decision once the delay is at its cap.
const MAX_FAILURES_PER_KEY: usize = 64;

/// In-memory throttle state with bounded memory: at most `capacity` accounts and `capacity`
/// addresses (separate tables, so a flood of addresses cannot evict account entries). When a
/// table is full, entries whose failures have all expired go first, then the entry whose latest
/// failure is oldest.
#[derive(Debug, Clone)]
pub struct Throttle {
    policy: ThrottlePolicy,
    capacity: usize,
    accounts: HashMap<Key, VecDeque<SystemTime>>,
    addresses: HashMap<Key, VecDeque<SystemTime>>,
}

impl Throttle {
    pub fn new(policy: ThrottlePolicy, capacity: usize) -> Self {
        Self {
            policy,
            capacity: capacity.max(1),
            accounts: HashMap::new(),
            addresses: HashMap::new(),
        }
    }

    pub fn policy(&self) -> &ThrottlePolicy {
        &self.policy
    }

    /// The decision for an attempt on `account` (normalised user name; `None` when not known yet)
    /// from `addr`: the stricter of the two.
    pub fn check(&self, account: Option<&str>, addr: Option<IpAddr>, now: SystemTime) -> Decision {
        let for_key = |table: &HashMap<Key, VecDeque<SystemTime>>, key: Key| {
            table.get(&key).map_or(Decision::Allow, |f| {
                let v: Vec<SystemTime> = f.iter().copied().collect();
                decide(&self.policy, &v, now)
            })
        };
        let a = account.map_or(Decision::Allow, |n| {
            for_key(&self.accounts, Key::Account(n.to_owned()))
        });
        let b = addr.map_or(Decision::Allow, |ip| {
            for_key(&self.addresses, Key::Address(address_key(ip)))
        });
        a.and(b)
    }

    /// Records a failed attempt against both keys.
    pub fn record_failure(&mut self, account: Option<&str>, addr: Option<IpAddr>, now: SystemTime) {
        let (policy, capacity) = (self.policy, self.capacity);
        if let Some(n) = account {
            push(
                &mut self.accounts,
                Key::Account(n.to_owned()),
                now,
                &policy,
                capacity,
            );
        }
        if let Some(ip) = addr {
            push(
                &mut self.addresses,
                Key::Address(address_key(ip)),
                now,
                &policy,
                capacity,
            );
        }
    }

    /// Clears the account's failures after a complete sign-in. The address keeps its failures
    /// (one client spraying many accounts must not clear its record by using its own).
    pub fn record_success(&mut self, account: &str) {
        self.accounts.remove(&Key::Account(account.to_owned()));
    }

    /// Entries held (accounts, addresses).
    pub fn len(&self) -> (usize, usize) {
        (self.accounts.len(), self.addresses.len())
    }

    pub fn is_empty(&self) -> bool {
        self.accounts.is_empty() && self.addresses.is_empty()
    }
}

fn push(
    table: &mut HashMap<Key, VecDeque<SystemTime>>,
    key: Key,
    now: SystemTime,
    policy: &ThrottlePolicy,
    capacity: usize,
) {
    if !table.contains_key(&key) && table.len() >= capacity {
        // Drop everything expired; if still full, the entry with the oldest latest failure.
        table.retain(|_, f| {
            f.back().is_some_and(|t| {
                now.duration_since(*t)
                    .map_or(true, |age| age < policy.window)
            })
        });
        if table.len() >= capacity {
            let oldest = table
                .iter()
                .min_by_key(|(_, f)| f.back().copied())
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                table.remove(&k);
            }
        }
    }
    let failures = table.entry(key).or_default();
    failures.push_back(now);
    while failures.len() > MAX_FAILURES_PER_KEY {
        failures.pop_front();
    }
}
