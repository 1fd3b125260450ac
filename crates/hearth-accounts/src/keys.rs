//! API keys: created by a signed-in user (or the local CLI) for themselves, shown once, stored as
//! a SHA-256 of the secret; scopes name route families and models. A key never carries more
//! rights than its owner: creation refuses route families the owner has no rights on, and every
//! use intersects the owner's current rights with the key's scope (ASVS 8.2.1, 8.3.1).

use std::time::{Duration, SystemTime};

use hearth_auth::policy::{RouteFamily, Scope};
use hearth_auth::token::ApiKey as KeyToken;
use hearth_store::{ApiKey, NewApiKey, Owner, User, Uuid};

use crate::{Accounts, AccountsError, Client, Permission, Principal, Result, Via};

/// What a new key may do.
#[derive(Debug, Clone, Default)]
pub struct KeyRequest {
    pub name: String,
    /// Route families: `openai`, `ollama`, `admin`, `account`. Empty: `openai` and `ollama`.
    pub routes: Vec<String>,
    /// Model names or prefixes ending in `*`; empty: every model (`*`).
    pub models: Vec<String>,
    /// `None`: the key does not expire.
    pub expires_in: Option<Duration>,
}

/// A new key: `secret` is the whole key text, shown this once.
#[derive(Debug, Clone)]
pub struct CreatedKey {
    pub key: ApiKey,
    pub secret: String,
}

/// Longest key name.
const MAX_NAME: usize = 100;

impl Accounts {
    /// Creates a key for `owner` (the principal itself, or — for the local CLI — any user).
    pub async fn create_key(
        &self,
        who: &Principal,
        owner: Option<Uuid>,
        req: &KeyRequest,
        client: &Client,
    ) -> Result<CreatedKey> {
        let owner: User = match (&who.via, owner, &who.user) {
            (Via::Local, Some(id), _) => self
                .stores
                .users
                .user(id)
                .await?
                .ok_or_else(|| AccountsError::NotFound("user".into()))?,
            (Via::Session { .. }, None, Some(u)) => u.clone(),
            (Via::Key { .. }, _, _) => {
                return Err(AccountsError::Forbidden(
                    "create API keys with an API key; sign in to create one".into(),
                ));
            }
            _ => return Err(AccountsError::BadInput("name the key's owner".into())),
        };
        if matches!(who.via, Via::Session { .. })
            && !who.allows(RouteFamily::Account, Permission::ManageOwnKeys, None)
        {
            return Err(AccountsError::Forbidden("create API keys".into()));
        }
        let name = req.name.trim();
        if name.is_empty() || name.chars().count() > MAX_NAME || name.chars().any(char::is_control)
        {
            return Err(AccountsError::BadInput(format!(
                "give the key a name of 1 to {MAX_NAME} characters"
            )));
        }
        let routes: Vec<String> = if req.routes.is_empty() {
            vec!["openai".into(), "ollama".into()]
        } else {
            req.routes.clone()
        };
        let models: Vec<String> = if req.models.is_empty() {
            vec!["*".into()]
        } else {
            req.models.clone()
        };
        let scope = Scope::parse(&routes, &models)?;
        let owner_perms = self.permissions_of(&owner).await?;
        for family in &scope.routes {
            if family.permissions().intersection(owner_perms).is_empty() {
                self.audit_event(
                    &who.actor(),
                    "key.create",
                    &owner.id.to_string(),
                    "denied",
                    client,
                    family.as_str(),
                )
                .await?;
                return Err(AccountsError::Forbidden(format!(
                    "give a key access to {} routes: its owner has no rights there",
                    family.as_str()
                )));
            }
        }
        let token = KeyToken::generate()?;
        let now = SystemTime::now();
        let key = self
            .stores
            .api_keys
            .create_key(&NewApiKey {
                id: Uuid::now_v7(),
                owner: owner.id,
                name: name.to_owned(),
                prefix: token.id().to_owned(),
                secret_hash: token.secret_hash().0,
                scopes: scope.routes.iter().map(|r| r.as_str().to_owned()).collect(),
                models: scope.models.iter().map(|m| m.as_string()).collect(),
                expires_at: req.expires_in.map(|d| now + d),
                created_at: now,
            })
            .await?;
        self.audit_event(
            &who.actor(),
            "key.create",
            &format!("key:{}", key.id),
            "success",
            client,
            &format!(
                "owner {} routes {} models {}",
                owner.id,
                key.scopes.join(","),
                key.models.join(",")
            ),
        )
        .await?;
        Ok(CreatedKey {
            key,
            secret: token.expose(),
        })
    }

    /// The keys of the principal (or, for the local CLI, of `owner`).
    pub async fn list_keys(&self, who: &Principal, owner: Option<Uuid>) -> Result<Vec<ApiKey>> {
        let id = match (&who.via, owner, who.user_id()) {
            (Via::Local, Some(id), _) => id,
            (_, _, Some(me)) => me,
            _ => return Err(AccountsError::BadInput("name the keys' owner".into())),
        };
        Ok(self.stores.api_keys.owner_keys(id).await?)
    }

    /// Revokes a key of the principal's (any key for the local CLI); another user's key
    /// answers NotFound, the same as a key that does not exist.
    pub async fn revoke_key(&self, who: &Principal, id: Uuid, client: &Client) -> Result<()> {
        let by = match (&who.via, who.user_id()) {
            (Via::Local, _) => Owner::Any,
            (_, Some(me)) => Owner::User(me),
            _ => return Err(AccountsError::NotFound("API key".into())),
        };
        let done = self
            .stores
            .api_keys
            .revoke_key(id, by, SystemTime::now())
            .await?;
        if !done {
            return Err(AccountsError::NotFound("API key".into()));
        }
        self.audit_event(
            &who.actor(),
            "key.revoke",
            &format!("key:{id}"),
            "success",
            client,
            "",
        )
        .await
    }

    /// Writes one `key.use_summary` event per key used since the last summary (uses since then
    /// and in total); answers how many. Run periodically (hourly by `hearth serve`): single uses
    /// are counted on the key row, not logged one by one.
    pub async fn audit_key_use_summary(&self) -> Result<u64> {
        let users = self
            .list_users(&Principal::local(), &Client::default())
            .await?;
        let mut written = 0;
        for u in users {
            for k in self.stores.api_keys.owner_keys(u.id).await? {
                let before = self
                    .key_use_reported
                    .lock()
                    .map_err(|_| AccountsError::Internal("key use lock poisoned".into()))?
                    .insert(k.id, k.use_count)
                    .unwrap_or(0);
                if k.use_count > before {
                    self.audit_system(
                        "key.use_summary",
                        &format!("key:{}", k.id),
                        "success",
                        &format!(
                            "{} uses since the last summary, {} in total; owner {}",
                            k.use_count - before,
                            k.use_count,
                            u.id
                        ),
                    )
                    .await?;
                    written += 1;
                }
            }
        }
        Ok(written)
    }
}
