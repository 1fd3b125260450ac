use hearth_auth::Role;
use hearth_auth::policy::{
    Grant, ModelPattern, Permission, PermissionSet, RouteFamily, Scope, effective, user_permissions,
};
use proptest::prelude::*;

use Permission::*;

#[test]
fn roles_round_trip() {
    for r in Role::ALL {
        assert_eq!(r.as_str().parse::<Role>().unwrap(), r);
    }
    assert_eq!(Role::Admin.as_str(), "admin");
    assert_eq!(Role::User.as_str(), "user");
    assert_eq!(Role::Viewer.as_str(), "viewer");
    assert_eq!(Role::Pending.as_str(), "pending");
    assert!("Admin".parse::<Role>().is_err());
    assert!("root".parse::<Role>().is_err());
}

#[test]
fn role_permissions_asvs_8_2_1() {
    fn check(role: Role, expect: &[Permission]) {
        assert_eq!(role.permissions(), PermissionSet::of(expect), "{role}");
    }
    check(Role::Admin, &Permission::ALL);
    check(
        Role::User,
        &[
            ViewOwnAccount,
            ManageOwnAccount,
            ListModels,
            UseModels,
            ManageOwnKeys,
        ],
    );
    check(
        Role::Viewer,
        &[ViewOwnAccount, ManageOwnAccount, ListModels],
    );
    check(Role::Pending, &[ViewOwnAccount]);
}

#[test]
fn groups_add_permissions() {
    fn check(role: Role, disabled: bool, groups: &[&[&str]], expect: &[Permission]) {
        let groups: Vec<PermissionSet> = groups
            .iter()
            .map(|g| PermissionSet::parse(g).unwrap())
            .collect();
        assert_eq!(
            user_permissions(role, disabled, &groups),
            PermissionSet::of(expect),
            "{role} {groups:?}"
        );
    }
    let user = [
        ViewOwnAccount,
        ManageOwnAccount,
        ListModels,
        UseModels,
        ManageOwnKeys,
    ];
    check(Role::User, false, &[], &user);
    check(
        Role::User,
        false,
        &[&["manage_models"], &["view_audit"]],
        &[&user[..], &[ManageModels, ViewAudit]].concat(),
    );
    // A viewer gains only read permissions from groups.
    check(
        Role::Viewer,
        false,
        &[&["use_models", "view_audit", "manage_users"]],
        &[ViewOwnAccount, ManageOwnAccount, ListModels, ViewAudit],
    );
    // A pending user gains nothing.
    check(
        Role::Pending,
        false,
        &[&["admin", "use_models"]],
        &[ViewOwnAccount],
    );
    // A disabled user has nothing at all.
    check(Role::Admin, true, &[&["admin"]], &[]);
}

#[test]
fn group_definitions_refuse_unknown_permissions() {
    fn check(names: &[&str], expect: Result<&[Permission], &str>) {
        match (PermissionSet::parse(names), expect) {
            (Ok(got), Ok(want)) => assert_eq!(got, PermissionSet::of(want)),
            (Err(e), Err(want)) => assert!(e.to_string().contains(want), "{e}"),
            (got, want) => panic!("{names:?}: got {got:?}, want {want:?}"),
        }
    }
    check(&[], Ok(&[]));
    check(&["use_models", "use_models"], Ok(&[UseModels]));
    check(
        &["use_models", "fly"],
        Err("unknown permission \"fly\"; use one of"),
    );
    check(&["Use_Models"], Err("unknown permission"));
    check(&[""], Err("unknown permission"));
    for p in Permission::ALL {
        assert_eq!(p.as_str().parse::<Permission>().unwrap(), p);
    }
    assert_eq!(
        PermissionSet::of(&[UseModels, ViewAudit]).names(),
        ["use_models", "view_audit"]
    );
}

#[test]
fn scope_parsing() {
    fn check(routes: &[&str], models: &[&str], expect: Result<(), &str>) {
        match (Scope::parse(routes, models), expect) {
            (Ok(_), Ok(())) => {}
            (Err(e), Err(want)) => assert!(e.to_string().contains(want), "{e}"),
            (got, want) => panic!("{routes:?} {models:?}: got {got:?}, want {want:?}"),
        }
    }
    check(&["openai", "ollama"], &["*"], Ok(()));
    check(&["account"], &[], Ok(()));
    check(&["openai"], &["llama3*", "smollm2:135m"], Ok(()));
    check(&["opnai"], &["*"], Err("unknown route family \"opnai\""));
    check(&["openai"], &["*llama"], Err("not at the end"));
    check(&["openai"], &["lla*ma*"], Err("not at the end"));
    check(&["openai"], &[""], Err("not valid"));
    check(&["openai"], &["a\nb"], Err("not valid"));
    let many: Vec<String> = (0..65).map(|i| format!("m{i}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    check(&["openai"], &many, Err("at most 64"));
}

#[test]
fn model_patterns() {
    fn check(pattern: &str, model: &str, expect: bool) {
        let p: ModelPattern = pattern.parse().unwrap();
        assert_eq!(p.matches(model), expect, "{pattern} ~ {model}");
        assert_eq!(p.as_string(), pattern);
    }
    check("*", "anything:at-all", true);
    check("llama3*", "llama3.2:1b", true);
    check("llama3*", "llama3", true);
    check("llama3*", "llama2:7b", false);
    check("llama3*", "my-llama3", false);
    check("smollm2:135m", "smollm2:135m", true);
    check("smollm2:135m", "smollm2:135m-q8", false);
    check("smollm2:135m", "SMOLLM2:135M", false);
}

#[test]
fn keys_are_limited_by_scope_and_owner() {
    // An admin's key scoped to the OpenAI routes and llama3 models.
    let scope = Scope::parse(&["openai"], &["llama3*"]).unwrap();
    let grant = effective(Role::Admin.permissions(), &scope);
    fn check(g: &Grant, family: RouteFamily, p: Permission, model: Option<&str>, expect: bool) {
        assert_eq!(
            g.allows(family, p, model),
            expect,
            "{family:?} {p:?} {model:?}"
        );
    }
    check(
        &grant,
        RouteFamily::OpenAi,
        UseModels,
        Some("llama3:8b"),
        true,
    );
    check(&grant, RouteFamily::OpenAi, ListModels, None, true);
    check(&grant, RouteFamily::OpenAi, UseModels, Some("qwen2"), false);
    check(
        &grant,
        RouteFamily::Ollama,
        UseModels,
        Some("llama3:8b"),
        false,
    );
    check(&grant, RouteFamily::Admin, ManageUsers, None, false);
    check(&grant, RouteFamily::OpenAi, ManageUsers, None, false);
    // A viewer's unrestricted key still cannot reach admin routes or run models.
    let viewer = effective(
        user_permissions(Role::Viewer, false, &[]),
        &Scope::unrestricted(),
    );
    check(&viewer, RouteFamily::Admin, ManageUsers, None, false);
    check(&viewer, RouteFamily::Admin, ViewAudit, None, false);
    check(&viewer, RouteFamily::Ollama, ManageModels, Some("x"), false);
    check(&viewer, RouteFamily::OpenAi, UseModels, Some("x"), false);
    check(&viewer, RouteFamily::OpenAi, ListModels, None, true);
    // A pending user's key can do nothing on the model routes.
    let pending = effective(Role::Pending.permissions(), &Scope::unrestricted());
    for f in RouteFamily::ALL {
        for p in Permission::ALL {
            let expect = f == RouteFamily::Account && p == ViewOwnAccount;
            check(&pending, f, p, Some("x"), expect);
        }
    }
    // A key with no routes can do nothing.
    let none = effective(Role::Admin.permissions(), &Scope::default());
    assert!(none.permissions.is_empty());
    // A web session has all of its user's rights on every route.
    let session = Grant::for_session(Role::User.permissions());
    check(&session, RouteFamily::Ollama, UseModels, Some("any"), true);
    check(&session, RouteFamily::Admin, ManageUsers, None, false);
}

fn perm_set() -> impl Strategy<Value = PermissionSet> {
    proptest::collection::vec(proptest::sample::select(Permission::ALL.to_vec()), 0..9)
        .prop_map(|v| PermissionSet::of(&v))
}

fn scope() -> impl Strategy<Value = Scope> {
    (
        proptest::collection::btree_set(proptest::sample::select(RouteFamily::ALL.to_vec()), 0..5),
        proptest::collection::vec(
            prop_oneof![
                Just(ModelPattern::Any),
                "[a-c]{0,2}".prop_map(ModelPattern::Prefix),
                "[a-c]{1,3}".prop_map(ModelPattern::Exact),
            ],
            0..4,
        ),
    )
        .prop_map(|(routes, models)| Scope { routes, models })
}

fn role() -> impl Strategy<Value = Role> {
    proptest::sample::select(Role::ALL.to_vec())
}

proptest! {
    /// A key can never exceed its owner (issue 5 item 5; ASVS 8.2.1).
    #[test]
    fn a_key_never_exceeds_its_owner(
        owner in perm_set(),
        scope in scope(),
        family in proptest::sample::select(RouteFamily::ALL.to_vec()),
        p in proptest::sample::select(Permission::ALL.to_vec()),
        model in proptest::option::of("[a-c]{0,3}"),
    ) {
        let g = effective(owner, &scope);
        prop_assert!(g.permissions.is_subset(owner));
        prop_assert!(g.permissions.is_subset(scope.permissions()));
        if g.allows(family, p, model.as_deref()) {
            prop_assert!(owner.contains(p));
            prop_assert!(scope.allows_route(family));
            // A permission is used only on the route family that carries it.
            prop_assert!(family.permissions().contains(p));
            if let Some(m) = &model {
                prop_assert!(scope.allows_model(m));
            }
            // The same request through the owner's own session is allowed too.
            prop_assert!(Grant::for_session(owner).allows(family, p, model.as_deref()));
        }
    }

    /// Viewers only read (besides their own credentials); pending users only see their status;
    /// disabled users have nothing — whatever their groups grant.
    #[test]
    fn role_ceilings_hold_whatever_the_groups(
        role in role(),
        disabled in any::<bool>(),
        groups in proptest::collection::vec(perm_set(), 0..4),
    ) {
        let perms = user_permissions(role, disabled, &groups);
        if disabled {
            prop_assert!(perms.is_empty());
        }
        match role {
            Role::Viewer => prop_assert!(perms.iter().all(|p| p.is_read() || p == ManageOwnAccount)),
            Role::Pending => prop_assert!(perms.is_subset(PermissionSet::of(&[ViewOwnAccount]))),
            Role::Admin | Role::User => {
                // Additive: every group permission is kept.
                if !disabled {
                    for g in &groups {
                        prop_assert!(g.is_subset(perms));
                    }
                    prop_assert!(role.permissions().is_subset(perms));
                }
            }
        }
    }
}
