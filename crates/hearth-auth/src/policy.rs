//! Authorization: who may do what (ASVS 5.0 V8).
//!
//! Rights are [`Permission`]s. A user's rights are their [`Role`]'s set plus what their groups add
//! ([`user_permissions`]); an API key's rights are its owner's rights intersected with what its
//! [`Scope`] names ([`effective`]), so a key never exceeds its owner (property-tested). Decisions
//! are made here, on the server, from explicit grants only (ASVS 8.2.1, 8.3.1); deny is the
//! default.
//!
//! Two rules hold whatever groups say:
//! - a `pending` user (awaiting approval) can only see their own account status;
//! - a `viewer` can only read: groups add to a viewer only the read permissions
//!   ([`Permission::is_read`]) besides managing their own credentials.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use crate::Error;

/// An account's role. Mirrors `hearth_store::Role` (same names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    Admin,
    User,
    Viewer,
    Pending,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Admin, Role::User, Role::Viewer, Role::Pending];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::User => "user",
            Role::Viewer => "viewer",
            Role::Pending => "pending",
        }
    }

    /// The permissions the role alone grants.
    pub fn permissions(self) -> PermissionSet {
        use Permission::*;
        match self {
            Role::Admin => PermissionSet::all(),
            Role::User => PermissionSet::of(&[
                ViewOwnAccount,
                ManageOwnAccount,
                ListModels,
                UseModels,
                ManageOwnKeys,
            ]),
            Role::Viewer => PermissionSet::of(&[ViewOwnAccount, ManageOwnAccount, ListModels]),
            Role::Pending => PermissionSet::of(&[ViewOwnAccount]),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                Error::bad(format!(
                    "unknown role {s:?}; use one of admin, user, viewer, pending"
                ))
            })
    }
}

/// One right.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Permission {
    /// See one's own account: name, role, status, sessions, keys.
    ViewOwnAccount,
    /// Change one's own password, MFA and sessions (ASVS 6.2.2, 7.5.2).
    ManageOwnAccount,
    /// List and show installed models.
    ListModels,
    /// Run models: chat, completions, embeddings.
    UseModels,
    /// Create and revoke one's own API keys.
    ManageOwnKeys,
    /// Pull, create, copy and delete models.
    ManageModels,
    /// Add, approve, disable users; change roles and groups; end anyone's sessions (ASVS 7.4.5).
    ManageUsers,
    /// Read, export and verify the audit log.
    ViewAudit,
    /// Server settings and other administration.
    Admin,
}

impl Permission {
    pub const ALL: [Permission; 9] = [
        Permission::ViewOwnAccount,
        Permission::ManageOwnAccount,
        Permission::ListModels,
        Permission::UseModels,
        Permission::ManageOwnKeys,
        Permission::ManageModels,
        Permission::ManageUsers,
        Permission::ViewAudit,
        Permission::Admin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Permission::ViewOwnAccount => "view_own_account",
            Permission::ManageOwnAccount => "manage_own_account",
            Permission::ListModels => "list_models",
            Permission::UseModels => "use_models",
            Permission::ManageOwnKeys => "manage_own_keys",
            Permission::ManageModels => "manage_models",
            Permission::ManageUsers => "manage_users",
            Permission::ViewAudit => "view_audit",
            Permission::Admin => "admin",
        }
    }

    /// Whether the permission only reads.
    pub fn is_read(self) -> bool {
        matches!(
            self,
            Permission::ViewOwnAccount | Permission::ListModels | Permission::ViewAudit
        )
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Permission {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Permission::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Permission::ALL.iter().map(|p| p.as_str()).collect();
                Error::bad(format!(
                    "unknown permission {s:?}; use one of {}",
                    names.join(", ")
                ))
            })
    }
}

/// A set of permissions (a bit set).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct PermissionSet(u16);

impl PermissionSet {
    pub fn empty() -> Self {
        Self(0)
    }

    pub fn all() -> Self {
        Self::of(&Permission::ALL)
    }

    pub fn of(perms: &[Permission]) -> Self {
        Self(perms.iter().fold(0, |acc, p| acc | p.bit()))
    }

    /// Parses permission names (as a group definition stores them); any unknown name refuses the
    /// whole list.
    pub fn parse<S: AsRef<str>>(names: &[S]) -> Result<Self, Error> {
        let mut set = Self::empty();
        for n in names {
            set = set.with(n.as_ref().parse()?);
        }
        Ok(set)
    }

    pub fn contains(self, p: Permission) -> bool {
        self.0 & p.bit() != 0
    }

    pub fn with(self, p: Permission) -> Self {
        Self(self.0 | p.bit())
    }

    pub fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    pub fn intersection(self, other: Self) -> Self {
        Self(self.0 & other.0)
    }

    pub fn is_subset(self, other: Self) -> bool {
        self.0 & !other.0 == 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn iter(self) -> impl Iterator<Item = Permission> {
        Permission::ALL
            .into_iter()
            .filter(move |p| self.contains(*p))
    }

    /// Names, in declaration order (for storage and display).
    pub fn names(self) -> Vec<&'static str> {
        self.iter().map(Permission::as_str).collect()
    }
}

impl fmt::Debug for PermissionSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

/// The permissions a user has: their role's, plus their groups' (additive), except that a pending
/// user gets nothing beyond their role, and a viewer only gains read permissions.
/// A disabled user has none (they cannot sign in, and their sessions and keys stop working).
pub fn user_permissions(role: Role, disabled: bool, groups: &[PermissionSet]) -> PermissionSet {
    if disabled {
        return PermissionSet::empty();
    }
    let from_groups = groups
        .iter()
        .fold(PermissionSet::empty(), |acc, g| acc.union(*g));
    let from_groups = match role {
        Role::Pending => PermissionSet::empty(),
        Role::Viewer => PermissionSet(from_groups.0 & PermissionSet::of(&READ_PERMISSIONS).0),
        Role::Admin | Role::User => from_groups,
    };
    role.permissions().union(from_groups)
}

const READ_PERMISSIONS: [Permission; 3] = [
    Permission::ViewOwnAccount,
    Permission::ListModels,
    Permission::ViewAudit,
];

/// A family of HTTP routes an API key may reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RouteFamily {
    /// `/v1/…` (OpenAI-compatible).
    OpenAi,
    /// `/api/…` (Ollama-compatible).
    Ollama,
    /// `/api/hearth/v1/admin/…`.
    Admin,
    /// `/api/hearth/v1/account/…` (one's own account).
    Account,
}

impl RouteFamily {
    pub const ALL: [RouteFamily; 4] = [
        RouteFamily::OpenAi,
        RouteFamily::Ollama,
        RouteFamily::Admin,
        RouteFamily::Account,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RouteFamily::OpenAi => "openai",
            RouteFamily::Ollama => "ollama",
            RouteFamily::Admin => "admin",
            RouteFamily::Account => "account",
        }
    }

    /// The permissions requests on these routes can exercise.
    pub fn permissions(self) -> PermissionSet {
        use Permission::*;
        match self {
            // Ollama's API also pulls and deletes models.
            RouteFamily::Ollama => PermissionSet::of(&[ListModels, UseModels, ManageModels]),
            RouteFamily::OpenAi => PermissionSet::of(&[ListModels, UseModels]),
            RouteFamily::Admin => PermissionSet::of(&[ManageModels, ManageUsers, ViewAudit, Admin]),
            RouteFamily::Account => {
                PermissionSet::of(&[ViewOwnAccount, ManageOwnAccount, ManageOwnKeys])
            }
        }
    }
}

impl FromStr for RouteFamily {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        RouteFamily::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                Error::bad(format!(
                    "unknown route family {s:?}; use one of openai, ollama, admin, account"
                ))
            })
    }
}

/// Which models a key may use: a name, a prefix ending in `*`, or `*` for all.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ModelPattern {
    Any,
    Prefix(String),
    Exact(String),
}

/// Longest model pattern accepted.
const MAX_PATTERN_LEN: usize = 256;

impl ModelPattern {
    pub fn matches(&self, model: &str) -> bool {
        match self {
            ModelPattern::Any => true,
            ModelPattern::Prefix(p) => model.starts_with(p.as_str()),
            ModelPattern::Exact(n) => model == n,
        }
    }

    pub fn as_string(&self) -> String {
        match self {
            ModelPattern::Any => "*".to_owned(),
            ModelPattern::Prefix(p) => format!("{p}*"),
            ModelPattern::Exact(n) => n.clone(),
        }
    }
}

impl FromStr for ModelPattern {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        if s.is_empty() || s.len() > MAX_PATTERN_LEN || s.chars().any(char::is_control) {
            return Err(Error::bad(format!(
                "model pattern {s:?} is not valid; give a model name, a prefix ending in *, or *"
            )));
        }
        match s.split_once('*') {
            None => Ok(ModelPattern::Exact(s.to_owned())),
            Some(("", "")) => Ok(ModelPattern::Any),
            Some((prefix, "")) => Ok(ModelPattern::Prefix(prefix.to_owned())),
            Some(_) => Err(Error::bad(format!(
                "model pattern {s:?} has a * that is not at the end; only prefix patterns like llama3* are supported"
            ))),
        }
    }
}

/// What an API key is limited to: route families and models. A key with no route families can do
/// nothing; a key with no model patterns can use no model.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Scope {
    pub routes: BTreeSet<RouteFamily>,
    pub models: Vec<ModelPattern>,
}

/// Most model patterns one key may carry.
const MAX_PATTERNS: usize = 64;

impl Scope {
    /// Everything the owner can do.
    pub fn unrestricted() -> Self {
        Self {
            routes: RouteFamily::ALL.into_iter().collect(),
            models: vec![ModelPattern::Any],
        }
    }

    /// Parses stored or requested scope strings; unknown route families and malformed patterns
    /// refuse the whole scope.
    pub fn parse<R: AsRef<str>, M: AsRef<str>>(routes: &[R], models: &[M]) -> Result<Self, Error> {
        if models.len() > MAX_PATTERNS {
            return Err(Error::bad(format!(
                "at most {MAX_PATTERNS} model patterns per key; use a prefix pattern like llama3*"
            )));
        }
        Ok(Self {
            routes: routes
                .iter()
                .map(|r| r.as_ref().parse())
                .collect::<Result<_, _>>()?,
            models: models
                .iter()
                .map(|m| m.as_ref().parse())
                .collect::<Result<_, _>>()?,
        })
    }

    /// The permissions the scope's route families can exercise.
    pub fn permissions(&self) -> PermissionSet {
        self.routes
            .iter()
            .fold(PermissionSet::empty(), |acc, r| acc.union(r.permissions()))
    }

    pub fn allows_route(&self, family: RouteFamily) -> bool {
        self.routes.contains(&family)
    }

    pub fn allows_model(&self, model: &str) -> bool {
        self.models.iter().any(|p| p.matches(model))
    }
}

/// What a request may do: a set of permissions and a model filter. Build one with
/// [`Grant::for_session`] (a signed-in user: all their rights) or [`effective`] (an API key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub permissions: PermissionSet,
    /// `None`: every model; `Some(scope)`: only models the scope allows, only on its routes.
    pub scope: Option<Scope>,
}

impl Grant {
    /// A web session: the user's permissions, any model, any route.
    pub fn for_session(user: PermissionSet) -> Self {
        Self {
            permissions: user,
            scope: None,
        }
    }

    /// Whether a request on `family` routes needing `permission` (and naming `model`, if it uses
    /// one) is allowed.
    pub fn allows(&self, family: RouteFamily, permission: Permission, model: Option<&str>) -> bool {
        if !self.permissions.contains(permission) {
            return false;
        }
        let Some(scope) = &self.scope else {
            return true;
        };
        scope.allows_route(family)
            && family.permissions().contains(permission)
            && model.is_none_or(|m| scope.allows_model(m))
    }
}

/// An API key's rights: its owner's current permissions intersected with the key's scope. Call it
/// at each request with the owner's permissions as they are now, so demoting or disabling the
/// owner takes effect at once.
pub fn effective(owner: PermissionSet, key: &Scope) -> Grant {
    Grant {
        permissions: owner.intersection(key.permissions()),
        scope: Some(key.clone()),
    }
}
