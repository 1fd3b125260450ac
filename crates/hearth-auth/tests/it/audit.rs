use hearth_auth::Sha256Hash;
use hearth_auth::audit::{
    AuditEvent, Broken, Chain, ChainedEvent, Checkpoint, Outcome, chain_hash, encode, verify,
};
use proptest::prelude::*;

fn event(
    actor: &str,
    action: &str,
    target: &str,
    outcome: &str,
    client: &str,
    detail: &str,
) -> AuditEvent {
    AuditEvent {
        seq: 0,
        time_ms: 0,
        actor: actor.into(),
        action: action.into(),
        target: target.into(),
        outcome: outcome.into(),
        client: client.into(),
        detail: detail.into(),
    }
}

fn hash(hex: &str) -> Sha256Hash {
    Sha256Hash::from_hex(hex).unwrap()
}

/// Golden values from an independent encoder in Python (struct.pack(">Q"/">q"/">I") and
/// hashlib.sha256), following the format in audit.rs's docs.
#[test]
fn encoding_and_hashes_match_an_independent_encoder() {
    let mut e1 = event(
        "alice",
        "login.success",
        "alice",
        "success",
        "192.0.2.7",
        "mfa=totp",
    );
    e1.seq = 1;
    e1.time_ms = 1_763_800_000_123;
    let hex: String = encode(&e1).iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        hex,
        "6865617274682d61756469742d76310000000000000000010000019aaaac267b00000005616c6963650000000d6c6f67696e2e7375636365737300000005616c6963650000000773756363657373000000093139322e302e322e37000000086d66613d746f7470"
    );
    let h1 = chain_hash(&Checkpoint::GENESIS.hash, &e1);
    assert_eq!(
        h1,
        hash("96d328b0d5ec08e5384da35072c859b53fbf5e224d2b78ba77f40977b8898851")
    );
    let mut e2 = event("", "key.create", "k1", "failure", "2001:db8::1", "név ✓");
    e2.seq = 2;
    e2.time_ms = -5;
    assert_eq!(
        chain_hash(&h1, &e2),
        hash("0a8e93d68dfd7c7b88ffa3158244eacab293ff02e1f670634386cfa0ba4f9250")
    );

    // The Chain appender produces the same links.
    let mut chain = Chain::new(Checkpoint::GENESIS);
    let c1 = chain.append(AuditEvent {
        seq: 99,
        ..e1.clone()
    });
    assert_eq!(c1.event.seq, 1, "the chain assigns seq");
    assert_eq!(c1.hash, h1);
    let c2 = chain.append(e2.clone());
    assert_eq!(
        verify(&[c1, c2.clone()], Checkpoint::GENESIS),
        Ok(chain.head())
    );
    assert_eq!(chain.head().seq, 2);
    assert_eq!(Outcome::Denied.as_str(), "denied");
}

#[test]
fn field_boundaries_are_unambiguous() {
    // Moving text between adjacent fields changes the encoding.
    let a = event("ab", "c", "", "", "", "");
    let b = event("a", "bc", "", "", "", "");
    let c = event("", "", "", "", "", "abc");
    assert_ne!(encode(&a), encode(&b));
    assert_ne!(encode(&a), encode(&c));
    // A field holding what looks like a length prefix or a separator is just text.
    let d = event("a\0\0\0\u{1}b", "", "", "", "", "");
    let e = event("a", "b", "", "", "", "");
    assert_ne!(encode(&d), encode(&e));
    let f = event("x\nseq=2 action=login.success", "", "", "", "", "");
    assert_ne!(encode(&f), encode(&event("x", "", "", "", "", "")));
}

fn build(n: usize) -> Vec<ChainedEvent> {
    let mut chain = Chain::new(Checkpoint::GENESIS);
    (0..n)
        .map(|i| {
            let mut e = event(
                &format!("user{}", i % 3),
                "model.use",
                &format!("model{i}"),
                "success",
                "192.0.2.1",
                &format!("n={i}"),
            );
            e.time_ms = 1_700_000_000_000 + i as i64;
            chain.append(e)
        })
        .collect()
}

#[test]
fn verification_reports_the_first_broken_seq() {
    fn check(events: &[ChainedEvent], from: Checkpoint, expect: Result<u64, Broken>) {
        match (verify(events, from), expect) {
            (Ok(head), Ok(seq)) => assert_eq!(head.seq, seq),
            (got, want) => assert_eq!(got.map(|h| h.seq), want),
        }
    }
    let events = build(6);
    check(&events, Checkpoint::GENESIS, Ok(6));
    check(&[], Checkpoint::GENESIS, Ok(0));
    // Changed detail in event 3.
    let mut changed = events.clone();
    changed[2].event.detail.push('!');
    check(&changed, Checkpoint::GENESIS, Err(Broken::Hash { seq: 3 }));
    // Changed and re-hashed event 3: the break shows at 4, whose link no longer fits.
    let mut rehashed = changed.clone();
    rehashed[2].hash = chain_hash(&events[1].hash, &rehashed[2].event);
    check(&rehashed, Checkpoint::GENESIS, Err(Broken::Hash { seq: 4 }));
    // Deleted event 4.
    let mut deleted = events.clone();
    deleted.remove(3);
    check(
        &deleted,
        Checkpoint::GENESIS,
        Err(Broken::Sequence { seq: 4, found: 5 }),
    );
    // Swapped 2 and 3.
    let mut swapped = events.clone();
    swapped.swap(1, 2);
    check(
        &swapped,
        Checkpoint::GENESIS,
        Err(Broken::Sequence { seq: 2, found: 3 }),
    );
    // Retention removed 1..=3: verify the rest from the checkpoint of event 3.
    let cp = Checkpoint {
        seq: 3,
        hash: events[2].hash,
    };
    check(&events[3..], cp, Ok(6));
    check(
        &events[3..],
        Checkpoint::GENESIS,
        Err(Broken::Sequence { seq: 1, found: 4 }),
    );
    check(
        &events[3..],
        Checkpoint {
            seq: 3,
            hash: events[1].hash,
        },
        Err(Broken::Hash { seq: 4 }),
    );
    assert!(
        Broken::Hash { seq: 4 }.to_string().contains("seq 4"),
        "the message names the seq"
    );
}

#[derive(Debug, Clone)]
enum Tamper {
    Field {
        index: usize,
        field: usize,
        text: String,
    },
    Time {
        index: usize,
        delta: i64,
    },
    Delete {
        index: usize,
    },
    Swap {
        a: usize,
        b: usize,
    },
    Insert {
        index: usize,
        rehash: bool,
    },
}

fn tamper() -> impl Strategy<Value = Tamper> {
    prop_oneof![
        (0usize..100, 0usize..6, "[a-z!]{0,4}").prop_map(|(index, field, text)| Tamper::Field {
            index,
            field,
            text
        }),
        (0usize..100, prop_oneof![-1000i64..-1, 1i64..1000])
            .prop_map(|(index, delta)| Tamper::Time { index, delta }),
        (0usize..100).prop_map(|index| Tamper::Delete { index }),
        (0usize..100, 0usize..100).prop_map(|(a, b)| Tamper::Swap { a, b }),
        (0usize..100, any::<bool>()).prop_map(|(index, rehash)| Tamper::Insert { index, rehash }),
    ]
}

proptest! {
    /// Any single change, deletion (except of the newest event, which needs a head checkpoint),
    /// reordering or insertion is detected (ASVS 16.4.2).
    #[test]
    fn tampering_is_detected(n in 2usize..12, t in tamper()) {
        let events = build(n);
        prop_assert!(verify(&events, Checkpoint::GENESIS).is_ok());
        let mut bad = events.clone();
        match t {
            Tamper::Field { index, field, text } => {
                let e = &mut bad[index % n].event;
                let f = match field {
                    0 => &mut e.actor,
                    1 => &mut e.action,
                    2 => &mut e.target,
                    3 => &mut e.outcome,
                    4 => &mut e.client,
                    _ => &mut e.detail,
                };
                prop_assume!(*f != text);
                *f = text;
            }
            Tamper::Time { index, delta } => bad[index % n].event.time_ms += delta,
            Tamper::Delete { index } => {
                // Deleting the newest event is truncation: only a head checkpoint shows it.
                let i = index % (n - 1);
                bad.remove(i);
            }
            Tamper::Swap { a, b } => {
                prop_assume!(a % n != b % n);
                bad.swap(a % n, b % n);
            }
            Tamper::Insert { index, rehash } => {
                let i = index % (n + 1);
                // A forged event that claims the next free seq at its position, linked to the
                // event before it if asked.
                let prev = if i == 0 { Checkpoint::GENESIS.hash } else { events[i - 1].hash };
                let mut ev = event("mallory", "user.role", "mallory", "success", "203.0.113.9", "admin");
                ev.seq = i as u64 + 1;
                let hash = if rehash { chain_hash(&prev, &ev) } else { prev };
                bad.insert(i, ChainedEvent { event: ev, hash });
                if i == n {
                    // Appending at the end with a correct link is a legitimate append; only a
                    // wrong link shows.
                    prop_assume!(!rehash);
                }
            }
        }
        let head = Checkpoint { seq: n as u64, hash: events[n - 1].hash };
        let r = verify(&bad, Checkpoint::GENESIS);
        prop_assert!(r.is_err() || r != Ok(head), "undetected: {r:?}");
        prop_assert!(r.is_err(), "undetected without a head checkpoint: {r:?}");
    }
}
