use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hearth_auth::Role;
use hearth_auth::login::{
    AccountInfo, AuditNote, Effect, Event, Factor, LoginConfig, Reply, Restriction, State, step,
};
use hearth_auth::throttle::Decision;
use proptest::prelude::*;

fn t(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
}

fn account(role: Role, mfa_enrolled: bool) -> AccountInfo {
    AccountInfo {
        role,
        disabled: false,
        mfa_enrolled,
    }
}

const ALLOW: Decision = Decision::Allow;

/// Runs `events` (each at the given second) from `Start` and returns the final state and every
/// step's effects.
fn run(config: &LoginConfig, events: &[(u64, Event)]) -> (State, Vec<Vec<Effect>>) {
    let mut state = State::Start;
    let mut all = Vec::new();
    for (at, e) in events {
        let (s, effects) = step(config, state, e.clone(), t(*at));
        state = s;
        all.push(effects);
    }
    (state, all)
}

fn submit(a: Option<AccountInfo>) -> Event {
    Event::PasswordSubmitted {
        account: a,
        throttle: ALLOW,
    }
}

#[test]
fn flows_as_data() {
    use Effect::*;
    fn check(config: LoginConfig, events: &[(u64, Event)], expect: &[&[Effect]]) {
        let (_, got) = run(&config, events);
        let want: Vec<Vec<Effect>> = expect.iter().map(|e| e.to_vec()).collect();
        assert_eq!(got, want, "{events:?}");
    }
    let cfg = LoginConfig::default();
    let lenient = LoginConfig {
        mfa_required_for_admins: false,
        ..LoginConfig::default()
    };
    let signed_in = |r: Restriction, mfa: bool| -> [Effect; 4] {
        [
            ClearFailures,
            IssueSession {
                restriction: r,
                mfa,
            },
            Audit(AuditNote::Success),
            Reply(self::Reply::SignedIn { restriction: r }),
        ]
    };
    let bad_password = [
        RecordFailure(Factor::Password),
        Audit(AuditNote::Failed(Factor::Password)),
        Reply(self::Reply::InvalidCredentials),
    ];

    // A user without MFA: password, session.
    check(
        cfg,
        &[
            (0, submit(Some(account(Role::User, false)))),
            (0, Event::PasswordChecked { ok: true }),
        ],
        &[&[VerifyPassword], &signed_in(Restriction::None, false)],
    );
    // Wrong password, then right.
    check(
        cfg,
        &[
            (0, submit(Some(account(Role::User, false)))),
            (0, Event::PasswordChecked { ok: false }),
            (1, submit(Some(account(Role::User, false)))),
            (1, Event::PasswordChecked { ok: true }),
        ],
        &[
            &[VerifyPassword],
            &bad_password,
            &[VerifyPassword],
            &signed_in(Restriction::None, false),
        ],
    );
    // Unknown user: dummy work and the same answer as a wrong password (ASVS 6.3.8).
    check(
        cfg,
        &[(0, submit(None)), (0, Event::PasswordChecked { ok: true })],
        &[&[VerifyDummyPassword], &bad_password],
    );
    // MFA enrolled: password, code, session (ASVS 6.3.2).
    check(
        cfg,
        &[
            (0, submit(Some(account(Role::User, true)))),
            (0, Event::PasswordChecked { ok: true }),
            (10, Event::MfaSubmitted { throttle: ALLOW }),
            (10, Event::MfaChecked { ok: false }),
            (20, Event::MfaSubmitted { throttle: ALLOW }),
            (20, Event::MfaChecked { ok: true }),
        ],
        &[
            &[VerifyPassword],
            &[Audit(AuditNote::PasswordOk), Reply(self::Reply::MfaNeeded)],
            &[VerifyMfa],
            &[
                RecordFailure(Factor::Mfa),
                Audit(AuditNote::Failed(Factor::Mfa)),
                Reply(self::Reply::InvalidCode),
            ],
            &[VerifyMfa],
            &signed_in(Restriction::None, true),
        ],
    );
    // An admin without MFA under mfa_required_for_admins: a session that can only enrol.
    check(
        cfg,
        &[
            (0, submit(Some(account(Role::Admin, false)))),
            (0, Event::PasswordChecked { ok: true }),
        ],
        &[
            &[VerifyPassword],
            &signed_in(Restriction::EnrolMfaOnly, false),
        ],
    );
    check(
        lenient,
        &[
            (0, submit(Some(account(Role::Admin, false)))),
            (0, Event::PasswordChecked { ok: true }),
        ],
        &[&[VerifyPassword], &signed_in(Restriction::None, false)],
    );
    // Pending: signed in, restricted to seeing their status.
    check(
        cfg,
        &[
            (0, submit(Some(account(Role::Pending, false)))),
            (0, Event::PasswordChecked { ok: true }),
        ],
        &[&[VerifyPassword], &signed_in(Restriction::Pending, false)],
    );
    // Disabled: told so only after a correct password; no session (ASVS 7.4.2).
    let disabled = AccountInfo {
        disabled: true,
        ..account(Role::User, false)
    };
    check(
        cfg,
        &[
            (0, submit(Some(disabled))),
            (0, Event::PasswordChecked { ok: true }),
        ],
        &[
            &[VerifyPassword],
            &[
                RecordFailure(Factor::Password),
                Audit(AuditNote::RefusedDisabled),
                Reply(self::Reply::AccountDisabled),
            ],
        ],
    );
    // Throttled: no password check at all (ASVS 6.3.1).
    let wait = Duration::from_secs(30);
    check(
        cfg,
        &[(
            0,
            Event::PasswordSubmitted {
                account: Some(account(Role::User, false)),
                throttle: Decision::Deny { retry_after: wait },
            },
        )],
        &[&[
            Audit(AuditNote::Throttled(Factor::Password)),
            Reply(self::Reply::Throttled { retry_after: wait }),
        ]],
    );
    // The MFA step expires after 5 minutes.
    check(
        cfg,
        &[
            (0, submit(Some(account(Role::User, true)))),
            (0, Event::PasswordChecked { ok: true }),
            (301, Event::MfaSubmitted { throttle: ALLOW }),
        ],
        &[
            &[VerifyPassword],
            &[Audit(AuditNote::PasswordOk), Reply(self::Reply::MfaNeeded)],
            &[Audit(AuditNote::Abandoned), Reply(self::Reply::StartAgain)],
        ],
    );
    // A check result nobody asked for is out of order: no session.
    check(
        cfg,
        &[
            (0, Event::PasswordChecked { ok: true }),
            (0, Event::MfaChecked { ok: true }),
        ],
        &[
            &[Reply(self::Reply::StartAgain)],
            &[Reply(self::Reply::StartAgain)],
        ],
    );
}

#[test]
fn too_many_mfa_failures_start_over() {
    let cfg = LoginConfig::default();
    let mut events = vec![
        (0, submit(Some(account(Role::User, true)))),
        (0, Event::PasswordChecked { ok: true }),
    ];
    for _ in 0..cfg.max_mfa_failures {
        events.push((1, Event::MfaSubmitted { throttle: ALLOW }));
        events.push((1, Event::MfaChecked { ok: false }));
    }
    events.push((2, Event::MfaSubmitted { throttle: ALLOW }));
    let (state, effects) = run(&cfg, &events);
    assert_eq!(state, State::Start);
    assert_eq!(
        effects.last().unwrap(),
        &vec![Effect::Reply(Reply::StartAgain)]
    );
}

#[test]
fn issued_is_terminal() {
    let cfg = LoginConfig::default();
    let (state, _) = run(
        &cfg,
        &[
            (0, submit(Some(account(Role::User, false)))),
            (0, Event::PasswordChecked { ok: true }),
        ],
    );
    for e in [
        submit(None),
        Event::PasswordChecked { ok: true },
        Event::MfaSubmitted { throttle: ALLOW },
        Event::MfaChecked { ok: false },
    ] {
        let (s, effects) = step(&cfg, state.clone(), e, t(1));
        assert_eq!(s, state);
        assert!(effects.is_empty());
    }
}

// ---- property test: random event sequences against the rules in login.rs's docs ----

#[derive(Debug, Clone)]
enum Ev {
    Submit {
        account: Option<AccountInfo>,
        throttled: bool,
    },
    PasswordChecked(bool),
    Mfa {
        throttled: bool,
    },
    MfaChecked(bool),
    Wait(u64),
}

fn account_info() -> impl Strategy<Value = AccountInfo> {
    (
        proptest::sample::select(Role::ALL.to_vec()),
        proptest::bool::weighted(0.2),
        any::<bool>(),
    )
        .prop_map(|(role, disabled, mfa_enrolled)| AccountInfo {
            role,
            disabled,
            mfa_enrolled,
        })
}

fn ev() -> impl Strategy<Value = Ev> {
    prop_oneof![
        3 => (proptest::option::weighted(0.85, account_info()), proptest::bool::weighted(0.2))
            .prop_map(|(account, throttled)| Ev::Submit { account, throttled }),
        3 => any::<bool>().prop_map(Ev::PasswordChecked),
        2 => proptest::bool::weighted(0.2).prop_map(|throttled| Ev::Mfa { throttled }),
        2 => any::<bool>().prop_map(Ev::MfaChecked),
        1 => (0u64..400).prop_map(Ev::Wait),
    ]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    Password,
    Dummy,
    Mfa,
}

fn decision(throttled: bool) -> Decision {
    if throttled {
        Decision::Deny {
            retry_after: Duration::from_secs(7),
        }
    } else {
        Decision::Allow
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn login_invariants(
        mfa_required_for_admins in any::<bool>(),
        events in proptest::collection::vec(ev(), 0..40),
    ) {
        let config = LoginConfig { mfa_required_for_admins, ..LoginConfig::default() };
        let mut state = State::Start;
        let mut now = 0u64;
        // What the world has seen, independent of the machine's state.
        let mut flow_account: Option<AccountInfo> = None;
        let mut pending: Option<Pending> = None;
        let mut password_proven = false;
        let mut mfa_proven = false;
        let mut sessions = 0;

        for e in events {
            let event = match &e {
                Ev::Wait(s) => { now += s; continue; }
                Ev::Submit { account, throttled } => Event::PasswordSubmitted {
                    account: *account,
                    throttle: decision(*throttled),
                },
                Ev::PasswordChecked(ok) => Event::PasswordChecked { ok: *ok },
                Ev::Mfa { throttled } => Event::MfaSubmitted { throttle: decision(*throttled) },
                Ev::MfaChecked(ok) => Event::MfaChecked { ok: *ok },
            };
            let was_issued = matches!(state, State::SessionIssued { .. });
            let (next, effects) = step(&config, state, event, t(now));
            state = next;
            let has = |f: &dyn Fn(&Effect) -> bool| effects.iter().any(f);

            // Terminal state: nothing more happens.
            if was_issued {
                prop_assert!(effects.is_empty());
                continue;
            }
            if effects == [Effect::Reply(Reply::Busy)] {
                // Not processed; the pending check is still pending.
                continue;
            }

            // Rule: a throttled attempt never reaches a verification.
            match &e {
                Ev::Submit { throttled: true, .. } => prop_assert!(!has(&|x| matches!(
                    x, Effect::VerifyPassword | Effect::VerifyDummyPassword))),
                Ev::Mfa { throttled: true } => prop_assert!(!has(&|x| *x == Effect::VerifyMfa)),
                _ => {}
            }

            // Update the world's view.
            let consumed = pending.take();
            match &e {
                Ev::Submit { account, .. } => {
                    password_proven = false;
                    mfa_proven = false;
                    if has(&|x| *x == Effect::VerifyPassword) {
                        prop_assert!(account.is_some());
                        flow_account = *account;
                        pending = Some(Pending::Password);
                    } else if has(&|x| *x == Effect::VerifyDummyPassword) {
                        prop_assert!(account.is_none());
                        flow_account = None;
                        pending = Some(Pending::Dummy);
                    }
                }
                Ev::PasswordChecked(ok) => {
                    if consumed == Some(Pending::Password) && *ok {
                        password_proven = true;
                    }
                    // Rule: every failed check is recorded.
                    if matches!(consumed, Some(Pending::Password | Pending::Dummy)) && !*ok {
                        prop_assert!(has(&|x| *x == Effect::RecordFailure(Factor::Password)));
                    }
                    // Rule: an unknown account is answered exactly like a wrong password.
                    if consumed == Some(Pending::Dummy) {
                        prop_assert_eq!(&effects, &vec![
                            Effect::RecordFailure(Factor::Password),
                            Effect::Audit(AuditNote::Failed(Factor::Password)),
                            Effect::Reply(Reply::InvalidCredentials),
                        ]);
                    }
                }
                Ev::Mfa { .. } => {
                    if has(&|x| *x == Effect::VerifyMfa) {
                        prop_assert!(password_proven);
                        pending = Some(Pending::Mfa);
                    }
                }
                Ev::MfaChecked(ok) => {
                    if consumed == Some(Pending::Mfa) && *ok {
                        mfa_proven = true;
                    }
                    if consumed == Some(Pending::Mfa) && !*ok {
                        prop_assert!(has(&|x| *x == Effect::RecordFailure(Factor::Mfa)));
                    }
                }
                Ev::Wait(_) => {}
            }

            // Rule: failures never clear the counter; only a complete sign-in does.
            let cleared = has(&|x| *x == Effect::ClearFailures);
            let issued = effects.iter().find_map(|x| match x {
                Effect::IssueSession { restriction, mfa } => Some((*restriction, *mfa)),
                _ => None,
            });
            prop_assert_eq!(cleared, issued.is_some());
            if has(&|x| matches!(x, Effect::RecordFailure(_))) {
                prop_assert!(!cleared);
            }
            // Rule: every verification result is audited.
            if consumed.is_some() && matches!(e, Ev::PasswordChecked(_) | Ev::MfaChecked(_)) {
                prop_assert!(has(&|x| matches!(x, Effect::Audit(_))));
            }

            if let Some((restriction, mfa)) = issued {
                sessions += 1;
                prop_assert_eq!(sessions, 1);
                // Rule: no session without a correct password for a known, enabled account.
                prop_assert!(password_proven);
                let acc = flow_account.expect("a session names a known account");
                prop_assert!(!acc.disabled, "disabled account got a session");
                // Rule: MFA when required, or a session that can only enrol.
                if config.mfa_required(&acc) {
                    prop_assert!(
                        (mfa_proven && mfa)
                            || (restriction == Restriction::EnrolMfaOnly && !acc.mfa_enrolled),
                        "{acc:?} {restriction:?} mfa={mfa} proven={mfa_proven}"
                    );
                }
                if mfa {
                    prop_assert!(mfa_proven);
                }
                if acc.role == Role::Pending {
                    prop_assert_ne!(restriction, Restriction::None);
                }
                prop_assert!(has(&|x| *x == Effect::Audit(AuditNote::Success)));
            }

            // The flow ended: the proofs no longer count.
            if has(&|x| matches!(x, Effect::Reply(
                Reply::StartAgain | Reply::InvalidCredentials | Reply::AccountDisabled
            ))) || (matches!(e, Ev::Submit { .. }) && pending.is_none()) {
                password_proven = false;
                mfa_proven = false;
            }
        }
    }
}
