//! Admin actions: users (create, list, role, disable, end sessions) and groups (create, list,
//! permissions, members). Each needs `manage users` and is audited, refused ones too.

use std::collections::BTreeSet;
use std::time::SystemTime;

use hearth_auth::policy::PermissionSet;
use hearth_store::{Group, Role, User, Uuid};
use serde::Serialize;

use crate::{Accounts, AccountsError, Client, Permission, Principal, Result, RouteFamily};

/// An account an admin creates.
#[derive(Debug, Clone)]
pub struct NewAccount {
    pub username: String,
    /// `None`: the user signs in through OIDC only.
    pub password: Option<String>,
    pub role: Role,
}

/// A group with its permissions and members.
#[derive(Debug, Clone, Serialize)]
pub struct GroupInfo {
    pub id: String,
    pub name: String,
    pub permissions: Vec<String>,
    pub members: Vec<String>,
}

impl Accounts {
    /// Refuses (and audits the refusal) unless the principal may manage users.
    async fn require_admin(&self, who: &Principal, action: &str, client: &Client) -> Result<()> {
        if who.allows(RouteFamily::Admin, Permission::ManageUsers, None) {
            return Ok(());
        }
        self.audit_event(&who.actor(), action, "", "denied", client, "")
            .await?;
        Err(AccountsError::Forbidden("manage users".into()))
    }

    pub async fn list_users(&self, who: &Principal, client: &Client) -> Result<Vec<User>> {
        self.require_admin(who, "admin.list_users", client).await?;
        let mut out = Vec::new();
        let mut after = None;
        loop {
            let page = self.stores.users.list_users(after, 500).await?;
            let Some(last) = page.last() else {
                return Ok(out);
            };
            after = Some(last.id);
            out.extend(page);
            if out.len() >= 100_000 {
                return Ok(out);
            }
        }
    }

    pub async fn user_by_name(&self, who: &Principal, username: &str) -> Result<User> {
        if !who.allows(RouteFamily::Admin, Permission::ManageUsers, None) {
            return Err(AccountsError::Forbidden("manage users".into()));
        }
        self.stores
            .users
            .user_by_username(username)
            .await?
            .ok_or_else(|| AccountsError::NotFound(format!("user {username}")))
    }

    pub async fn create_user(
        &self,
        who: &Principal,
        account: &NewAccount,
        client: &Client,
    ) -> Result<User> {
        self.require_admin(who, "admin.create_user", client).await?;
        let user = self
            .insert_user(
                &account.username,
                account.password.as_deref(),
                account.role,
                SystemTime::now(),
            )
            .await?;
        self.audit_event(
            &who.actor(),
            "admin.create_user",
            &user.id.to_string(),
            "success",
            client,
            account.role.as_str(),
        )
        .await?;
        Ok(user)
    }

    /// Changes a user's role (never removing the last active admin).
    pub async fn set_role(
        &self,
        who: &Principal,
        user: Uuid,
        role: Role,
        client: &Client,
    ) -> Result<()> {
        self.require_admin(who, "admin.set_role", client).await?;
        let r = self.stores.users.set_role(user, role).await;
        let outcome = if r.is_ok() { "success" } else { "failure" };
        self.audit_event(
            &who.actor(),
            "admin.set_role",
            &user.to_string(),
            outcome,
            client,
            role.as_str(),
        )
        .await?;
        Ok(r?)
    }

    /// Disables (ending every session; keys stop working) or enables a user.
    pub async fn set_disabled(
        &self,
        who: &Principal,
        user: Uuid,
        disabled: bool,
        client: &Client,
    ) -> Result<()> {
        self.require_admin(who, "admin.set_disabled", client)
            .await?;
        let r = self.stores.users.set_disabled(user, disabled).await;
        let outcome = if r.is_ok() { "success" } else { "failure" };
        self.audit_event(
            &who.actor(),
            if disabled {
                "admin.disable_user"
            } else {
                "admin.enable_user"
            },
            &user.to_string(),
            outcome,
            client,
            "",
        )
        .await?;
        r?;
        if disabled {
            self.stores
                .sessions
                .revoke_user_sessions(user, None, SystemTime::now())
                .await?;
        }
        Ok(())
    }

    /// Ends every session of a user; answers how many.
    pub async fn end_user_sessions(
        &self,
        who: &Principal,
        user: Uuid,
        client: &Client,
    ) -> Result<u64> {
        self.require_admin(who, "admin.end_sessions", client)
            .await?;
        if self.stores.users.user(user).await?.is_none() {
            return Err(AccountsError::NotFound("user".into()));
        }
        let n = self
            .stores
            .sessions
            .revoke_user_sessions(user, None, SystemTime::now())
            .await?;
        self.audit_event(
            &who.actor(),
            "admin.end_sessions",
            &user.to_string(),
            "success",
            client,
            &format!("{n} sessions"),
        )
        .await?;
        Ok(n)
    }

    async fn group_info(&self, g: &Group) -> Result<GroupInfo> {
        let permissions = self.stores.groups.permissions(g.id).await?;
        let members = self.stores.groups.members(g.id).await?;
        Ok(GroupInfo {
            id: g.id.to_string(),
            name: g.name.clone(),
            permissions: permissions.into_iter().collect(),
            members: members.iter().map(Uuid::to_string).collect(),
        })
    }

    pub async fn list_groups(&self, who: &Principal, client: &Client) -> Result<Vec<GroupInfo>> {
        self.require_admin(who, "admin.list_groups", client).await?;
        let mut out = Vec::new();
        for g in self.stores.groups.list_groups().await? {
            out.push(self.group_info(&g).await?);
        }
        Ok(out)
    }

    /// Creates a group, or replaces the permissions and members of the group with this name.
    /// Unknown permission names are refused.
    pub async fn put_group(
        &self,
        who: &Principal,
        name: &str,
        permissions: &[String],
        members: &[Uuid],
        client: &Client,
    ) -> Result<GroupInfo> {
        self.require_admin(who, "admin.put_group", client).await?;
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
            return Err(AccountsError::BadInput(
                "a group name has 1 to 64 characters".into(),
            ));
        }
        let parsed = PermissionSet::parse(permissions)?;
        let now = SystemTime::now();
        let group = match self.stores.groups.group_by_name(name).await? {
            Some(g) => g,
            None => {
                self.stores
                    .groups
                    .create_group(Uuid::now_v7(), name, now)
                    .await?
            }
        };
        let names: BTreeSet<String> = parsed.names().into_iter().map(str::to_owned).collect();
        self.stores.groups.set_permissions(group.id, &names).await?;
        let current: BTreeSet<Uuid> = self
            .stores
            .groups
            .members(group.id)
            .await?
            .into_iter()
            .collect();
        let wanted: BTreeSet<Uuid> = members.iter().copied().collect();
        for u in wanted.difference(&current) {
            self.stores.groups.add_member(group.id, *u).await?;
        }
        for u in current.difference(&wanted) {
            self.stores.groups.remove_member(group.id, *u).await?;
        }
        self.audit_event(
            &who.actor(),
            "admin.put_group",
            &group.id.to_string(),
            "success",
            client,
            &format!(
                "{name}: permissions {} members {}",
                names.iter().cloned().collect::<Vec<_>>().join(","),
                wanted.len()
            ),
        )
        .await?;
        self.group_info(&group).await
    }

    pub async fn delete_group(&self, who: &Principal, id: Uuid, client: &Client) -> Result<()> {
        self.require_admin(who, "admin.delete_group", client)
            .await?;
        self.stores.groups.delete_group(id).await?;
        self.audit_event(
            &who.actor(),
            "admin.delete_group",
            &id.to_string(),
            "success",
            client,
            "",
        )
        .await
    }
}
