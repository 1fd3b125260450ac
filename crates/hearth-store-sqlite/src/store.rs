//! The store traits over sqlx. The SQL here is written to run unchanged on SQLite and
//! PostgreSQL (`$N` placeholders, `TRUE`/`FALSE`, `ON CONFLICT … DO`, `excluded.`); what
//! differs lives in `crate::dialect`. This file is kept identical to hearth-store-sqlite's
//! `store.rs` (`diff` them); change both together.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use hearth_store::{
    ApiKey, ApiKeyStore, AuditStore, ChainHash, Checkpoint, Event, Group, GroupStore,
    LoginAttemptStore, MfaStore, NewApiKey, NewEvent, NewSession, NewUser, Owner, Result, Role,
    Session, SessionStore, StoreError, Subject, Totp, User, UserStore, Uuid, async_trait,
    from_millis, to_millis, username_key,
};
use sqlx::Row as _;

use crate::{Db, Row, Store, dialect};

/// The most rows one call answers.
const MAX_PAGE: u32 = 1000;

/// Classify a database error; `what` names the row or rule it concerns.
pub(crate) fn db_error(e: sqlx::Error, what: &'static str) -> StoreError {
    match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => StoreError::Conflict(what),
        sqlx::Error::Database(d) if d.is_foreign_key_violation() => StoreError::NotFound(what),
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => StoreError::Unavailable(e.to_string()),
        _ => {
            tracing::error!(error = %e, concerning = what, "database error");
            StoreError::Internal(format!("{what}: {e}"))
        }
    }
}

trait Ctx<T> {
    fn ctx(self, what: &'static str) -> Result<T>;
}

impl<T> Ctx<T> for std::result::Result<T, sqlx::Error> {
    fn ctx(self, what: &'static str) -> Result<T> {
        self.map_err(|e| db_error(e, what))
    }
}

fn get<'r, T>(r: &'r Row, col: &'static str) -> Result<T>
where
    T: sqlx::Decode<'r, Db> + sqlx::Type<Db>,
{
    r.try_get(col).ctx(col)
}

fn uuid(r: &Row, col: &'static str) -> Result<Uuid> {
    let s: String = get(r, col)?;
    Uuid::parse_str(&s)
        .map_err(|e| StoreError::Internal(format!("{col}: `{s}` is not a UUID: {e}")))
}

fn time(r: &Row, col: &'static str) -> Result<SystemTime> {
    Ok(from_millis(get(r, col)?))
}

fn opt_time(r: &Row, col: &'static str) -> Result<Option<SystemTime>> {
    Ok(get::<Option<i64>>(r, col)?.map(from_millis))
}

fn hash32(r: &Row, col: &'static str) -> Result<[u8; 32]> {
    let v: Vec<u8> = get(r, col)?;
    <[u8; 32]>::try_from(v.as_slice())
        .map_err(|_| StoreError::Internal(format!("{col}: {} bytes, not 32", v.len())))
}

fn unsigned(r: &Row, col: &'static str) -> Result<u64> {
    let v: i64 = get(r, col)?;
    u64::try_from(v).map_err(|_| StoreError::Internal(format!("{col}: negative ({v})")))
}

fn signed(v: u64, what: &'static str) -> Result<i64> {
    i64::try_from(v).map_err(|_| StoreError::Invalid {
        what,
        why: format!("{v} is too large"),
    })
}

fn count(r: &Row) -> Result<u64> {
    let n: i64 = r.try_get(0).ctx("count")?;
    Ok(u64::try_from(n).unwrap_or(0))
}

fn limit(n: u32) -> i64 {
    i64::from(n.min(MAX_PAGE))
}

fn ms(t: SystemTime) -> i64 {
    to_millis(t)
}

fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn strings(v: &[String], what: &'static str) -> Result<String> {
    serde_json::to_string(v).map_err(|e| StoreError::Invalid {
        what,
        why: e.to_string(),
    })
}

fn strings_col(r: &Row, col: &'static str) -> Result<Vec<String>> {
    let s: String = get(r, col)?;
    serde_json::from_str(&s).map_err(|e| StoreError::Internal(format!("{col}: {e}")))
}

const USER_COLS: &str = "u.id, u.username, u.display_name, u.email, u.role, u.password_hash, \
     u.disabled, u.created_at, u.credentials_changed_at, u.last_login_at";

fn user_row(r: &Row) -> Result<User> {
    let role: String = get(r, "role")?;
    Ok(User {
        id: uuid(r, "id")?,
        username: get(r, "username")?,
        display_name: get(r, "display_name")?,
        email: get(r, "email")?,
        role: Role::parse(&role)
            .ok_or_else(|| StoreError::Internal(format!("role: unknown `{role}`")))?,
        password_hash: get(r, "password_hash")?,
        disabled: get(r, "disabled")?,
        created_at: time(r, "created_at")?,
        credentials_changed_at: time(r, "credentials_changed_at")?,
        last_login_at: opt_time(r, "last_login_at")?,
    })
}

fn group_row(r: &Row) -> Result<Group> {
    Ok(Group {
        id: uuid(r, "id")?,
        name: get(r, "name")?,
        created_at: time(r, "created_at")?,
    })
}

const SESSION_COLS: &str = "id, user_id, token_hash, csrf_secret, created_at, last_seen_at, \
     idle_timeout_ms, absolute_expires_at, client_address, user_agent";

fn session_row(r: &Row) -> Result<Session> {
    Ok(Session {
        id: uuid(r, "id")?,
        user_id: uuid(r, "user_id")?,
        token_hash: hash32(r, "token_hash")?,
        csrf_secret: get(r, "csrf_secret")?,
        created_at: time(r, "created_at")?,
        last_seen_at: time(r, "last_seen_at")?,
        idle_timeout: Duration::from_millis(unsigned(r, "idle_timeout_ms")?),
        absolute_expires_at: time(r, "absolute_expires_at")?,
        client_address: get(r, "client_address")?,
        user_agent: get(r, "user_agent")?,
    })
}

const KEY_COLS: &str = "id, owner_id, name, prefix, secret_hash, scopes, models, expires_at, \
     created_at, last_used_at, use_count, revoked_at";

fn key_row(r: &Row) -> Result<ApiKey> {
    Ok(ApiKey {
        id: uuid(r, "id")?,
        owner: uuid(r, "owner_id")?,
        name: get(r, "name")?,
        prefix: get(r, "prefix")?,
        secret_hash: hash32(r, "secret_hash")?,
        scopes: strings_col(r, "scopes")?,
        models: strings_col(r, "models")?,
        expires_at: opt_time(r, "expires_at")?,
        created_at: time(r, "created_at")?,
        last_used_at: opt_time(r, "last_used_at")?,
        use_count: unsigned(r, "use_count")?,
        revoked_at: opt_time(r, "revoked_at")?,
    })
}

const EVENT_COLS: &str =
    "seq, time, actor, action, target, outcome, client_address, detail, prev_hash, hash";

fn event_row(r: &Row) -> Result<Event> {
    Ok(Event {
        seq: unsigned(r, "seq")?,
        time: time(r, "time")?,
        actor: get(r, "actor")?,
        action: get(r, "action")?,
        target: get(r, "target")?,
        outcome: get(r, "outcome")?,
        client_address: get(r, "client_address")?,
        detail: get(r, "detail")?,
        prev_hash: hash32(r, "prev_hash")?,
        hash: hash32(r, "hash")?,
    })
}

impl Store {
    /// Marks row `id` of `table` (sessions or API keys, named `what` in errors) revoked at
    /// `at`, unless it already is; `Owner::User` limits it to rows whose `owner_column` is that
    /// user. Whether a row changed.
    async fn revoke(
        &self,
        (table, owner_column, what): (&'static str, &'static str, &'static str),
        id: Uuid,
        by: Owner,
        at: SystemTime,
    ) -> Result<bool> {
        let mut sql =
            format!("UPDATE {table} SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL");
        if let Owner::User(_) = by {
            sql.push_str(&format!(" AND {owner_column} = $3"));
        }
        let mut q = sqlx::query(&sql).bind(id.to_string()).bind(ms(at));
        if let Owner::User(u) = by {
            q = q.bind(u.to_string());
        }
        let r = q.execute(self.w()).await.ctx(what)?;
        Ok(r.rows_affected() == 1)
    }

    async fn one_user(&self, sql: &str, a: &str, b: Option<&str>) -> Result<Option<User>> {
        let mut q = sqlx::query(sql).bind(a);
        if let Some(b) = b {
            q = q.bind(b);
        }
        q.fetch_optional(self.r())
            .await
            .ctx("user")?
            .as_ref()
            .map(user_row)
            .transpose()
    }

    /// Change a user's role and/or disabled flag unless that leaves no active admin.
    async fn guarded_update(
        &self,
        id: Uuid,
        role: Option<Role>,
        disabled: Option<bool>,
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        // Lock the active admins first, then read the target: a concurrent change to an admin
        // waits here, and sees the other's result.
        let admins = sqlx::query(dialect::ACTIVE_ADMINS_LOCKED)
            .fetch_all(&mut *tx)
            .await
            .ctx("admins")?;
        let row = sqlx::query("SELECT role, disabled FROM users WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&mut *tx)
            .await
            .ctx("user")?
            .ok_or(StoreError::NotFound("user"))?;
        let was_active_admin =
            get::<String>(&row, "role")? == Role::Admin.as_str() && !get::<bool>(&row, "disabled")?;
        let stays_active_admin =
            role.unwrap_or(Role::Admin) == Role::Admin && !disabled.unwrap_or(false);
        if was_active_admin && !stays_active_admin {
            let id_text = id.to_string();
            let mut others = 0;
            for a in &admins {
                if get::<String>(a, "id")? != id_text {
                    others += 1;
                }
            }
            if others == 0 {
                return Err(StoreError::LastAdmin);
            }
        }
        if let Some(role) = role {
            sqlx::query("UPDATE users SET role = $2 WHERE id = $1")
                .bind(id.to_string())
                .bind(role.as_str())
                .execute(&mut *tx)
                .await
                .ctx("user")?;
        }
        if let Some(disabled) = disabled {
            sqlx::query("UPDATE users SET disabled = $2 WHERE id = $1")
                .bind(id.to_string())
                .bind(disabled)
                .execute(&mut *tx)
                .await
                .ctx("user")?;
        }
        tx.commit().await.ctx("user")
    }
}

fn found(rows: u64, what: &'static str) -> Result<()> {
    if rows == 0 {
        Err(StoreError::NotFound(what))
    } else {
        Ok(())
    }
}

#[async_trait]
impl UserStore for Store {
    async fn create_user(&self, u: &NewUser) -> Result<User> {
        sqlx::query(
            "INSERT INTO users (id, username, username_key, display_name, email, role, \
             password_hash, disabled, created_at, credentials_changed_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, FALSE, $8, $8)",
        )
        .bind(u.id.to_string())
        .bind(&u.username)
        .bind(username_key(&u.username))
        .bind(&u.display_name)
        .bind(&u.email)
        .bind(u.role.as_str())
        .bind(&u.password_hash)
        .bind(ms(u.created_at))
        .execute(self.w())
        .await
        .ctx("a user with this username (or id)")?;
        Ok(User {
            id: u.id,
            username: u.username.clone(),
            display_name: u.display_name.clone(),
            email: u.email.clone(),
            role: u.role,
            password_hash: u.password_hash.clone(),
            disabled: false,
            created_at: from_millis(ms(u.created_at)),
            credentials_changed_at: from_millis(ms(u.created_at)),
            last_login_at: None,
        })
    }

    async fn user(&self, id: Uuid) -> Result<Option<User>> {
        let sql = format!("SELECT {USER_COLS} FROM users u WHERE u.id = $1");
        self.one_user(&sql, &id.to_string(), None).await
    }

    async fn user_by_username(&self, username: &str) -> Result<Option<User>> {
        let sql = format!("SELECT {USER_COLS} FROM users u WHERE u.username_key = $1");
        self.one_user(&sql, &username_key(username), None).await
    }

    async fn user_by_oidc(&self, issuer: &str, subject: &str) -> Result<Option<User>> {
        let sql = format!(
            "SELECT {USER_COLS} FROM users u JOIN oidc_links l ON l.user_id = u.id \
             WHERE l.issuer = $1 AND l.subject = $2"
        );
        self.one_user(&sql, issuer, Some(subject)).await
    }

    async fn link_oidc(
        &self,
        user: Uuid,
        issuer: &str,
        subject: &str,
        at: SystemTime,
    ) -> Result<()> {
        let r = sqlx::query(
            "INSERT INTO oidc_links (issuer, subject, user_id, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(issuer)
        .bind(subject)
        .bind(user.to_string())
        .bind(ms(at))
        .execute(self.w())
        .await;
        match r {
            Err(sqlx::Error::Database(d)) if d.is_foreign_key_violation() => {
                Err(StoreError::NotFound("user"))
            }
            r => r.map(drop).ctx("a link to this OIDC identity"),
        }
    }

    async fn list_users(&self, after: Option<Uuid>, n: u32) -> Result<Vec<User>> {
        let sql = format!("SELECT {USER_COLS} FROM users u WHERE u.id > $1 ORDER BY u.id LIMIT $2");
        sqlx::query(&sql)
            .bind(after.map(|a| a.to_string()).unwrap_or_default())
            .bind(limit(n))
            .fetch_all(self.r())
            .await
            .ctx("users")?
            .iter()
            .map(user_row)
            .collect()
    }

    async fn set_role(&self, id: Uuid, role: Role) -> Result<()> {
        self.guarded_update(id, Some(role), None).await
    }

    async fn set_disabled(&self, id: Uuid, disabled: bool) -> Result<()> {
        self.guarded_update(id, None, Some(disabled)).await
    }

    async fn set_password_hash(&self, id: Uuid, hash: Option<&str>, at: SystemTime) -> Result<()> {
        let r = sqlx::query(
            "UPDATE users SET password_hash = $2, credentials_changed_at = $3 WHERE id = $1",
        )
        .bind(id.to_string())
        .bind(hash)
        .bind(ms(at))
        .execute(self.w())
        .await
        .ctx("user")?;
        found(r.rows_affected(), "user")
    }

    async fn record_login(&self, id: Uuid, at: SystemTime) -> Result<()> {
        let r = sqlx::query("UPDATE users SET last_login_at = $2 WHERE id = $1")
            .bind(id.to_string())
            .bind(ms(at))
            .execute(self.w())
            .await
            .ctx("user")?;
        found(r.rows_affected(), "user")
    }

    async fn count_active_admins(&self) -> Result<u64> {
        let r = sqlx::query("SELECT COUNT(*) FROM users WHERE role = 'admin' AND NOT disabled")
            .fetch_one(self.r())
            .await
            .ctx("admins")?;
        count(&r)
    }
}

#[async_trait]
impl MfaStore for Store {
    async fn set_totp(&self, user: Uuid, secret: &[u8], at: SystemTime) -> Result<()> {
        sqlx::query(
            "INSERT INTO totp_secrets (user_id, secret, enabled, last_step, created_at) \
             VALUES ($1, $2, FALSE, NULL, $3) \
             ON CONFLICT (user_id) DO UPDATE SET secret = excluded.secret, enabled = FALSE, \
             last_step = NULL, created_at = excluded.created_at",
        )
        .bind(user.to_string())
        .bind(secret)
        .bind(ms(at))
        .execute(self.w())
        .await
        .ctx("user")
        .map(drop)
    }

    async fn totp(&self, user: Uuid) -> Result<Option<Totp>> {
        let row = sqlx::query(
            "SELECT secret, enabled, last_step, created_at FROM totp_secrets WHERE user_id = $1",
        )
        .bind(user.to_string())
        .fetch_optional(self.r())
        .await
        .ctx("TOTP secret")?;
        let Some(r) = row else { return Ok(None) };
        let last_step = match get::<Option<i64>>(&r, "last_step")? {
            Some(s) => Some(
                u64::try_from(s).map_err(|_| StoreError::Internal("last_step: negative".into()))?,
            ),
            None => None,
        };
        Ok(Some(Totp {
            secret: get(&r, "secret")?,
            enabled: get(&r, "enabled")?,
            last_step,
            created_at: time(&r, "created_at")?,
        }))
    }

    async fn enable_totp(&self, user: Uuid) -> Result<()> {
        let r = sqlx::query("UPDATE totp_secrets SET enabled = TRUE WHERE user_id = $1")
            .bind(user.to_string())
            .execute(self.w())
            .await
            .ctx("TOTP secret")?;
        found(r.rows_affected(), "TOTP secret")
    }

    async fn delete_totp(&self, user: Uuid) -> Result<()> {
        let mut tx = self.begin_write().await?;
        for sql in [
            "DELETE FROM totp_secrets WHERE user_id = $1",
            "DELETE FROM recovery_codes WHERE user_id = $1",
        ] {
            sqlx::query(sql)
                .bind(user.to_string())
                .execute(&mut *tx)
                .await
                .ctx("TOTP secret")?;
        }
        tx.commit().await.ctx("TOTP secret")
    }

    async fn accept_totp_step(&self, user: Uuid, step: u64) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE totp_secrets SET last_step = $2 \
             WHERE user_id = $1 AND (last_step IS NULL OR last_step < $2)",
        )
        .bind(user.to_string())
        .bind(signed(step, "TOTP step")?)
        .execute(self.w())
        .await
        .ctx("TOTP secret")?;
        Ok(r.rows_affected() == 1)
    }

    async fn set_recovery_codes(&self, user: Uuid, hashes: &[[u8; 32]]) -> Result<()> {
        let unique: BTreeSet<&[u8; 32]> = hashes.iter().collect();
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1")
            .bind(user.to_string())
            .execute(&mut *tx)
            .await
            .ctx("recovery codes")?;
        for h in unique {
            sqlx::query("INSERT INTO recovery_codes (user_id, hash, used) VALUES ($1, $2, FALSE)")
                .bind(user.to_string())
                .bind(h.as_slice())
                .execute(&mut *tx)
                .await
                .ctx("user")?;
        }
        tx.commit().await.ctx("recovery codes")
    }

    async fn consume_recovery_code(&self, user: Uuid, hash: &[u8; 32]) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE recovery_codes SET used = TRUE WHERE user_id = $1 AND hash = $2 AND NOT used",
        )
        .bind(user.to_string())
        .bind(hash.as_slice())
        .execute(self.w())
        .await
        .ctx("recovery code")?;
        Ok(r.rows_affected() == 1)
    }

    async fn recovery_codes_left(&self, user: Uuid) -> Result<u64> {
        let r = sqlx::query("SELECT COUNT(*) FROM recovery_codes WHERE user_id = $1 AND NOT used")
            .bind(user.to_string())
            .fetch_one(self.r())
            .await
            .ctx("recovery codes")?;
        count(&r)
    }
}

#[async_trait]
impl GroupStore for Store {
    async fn create_group(&self, id: Uuid, name: &str, at: SystemTime) -> Result<Group> {
        sqlx::query("INSERT INTO groups (id, name, created_at) VALUES ($1, $2, $3)")
            .bind(id.to_string())
            .bind(name)
            .bind(ms(at))
            .execute(self.w())
            .await
            .ctx("a group with this name (or id)")?;
        Ok(Group {
            id,
            name: name.to_owned(),
            created_at: from_millis(ms(at)),
        })
    }

    async fn group(&self, id: Uuid) -> Result<Option<Group>> {
        sqlx::query("SELECT id, name, created_at FROM groups WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(self.r())
            .await
            .ctx("group")?
            .as_ref()
            .map(group_row)
            .transpose()
    }

    async fn group_by_name(&self, name: &str) -> Result<Option<Group>> {
        sqlx::query("SELECT id, name, created_at FROM groups WHERE name = $1")
            .bind(name)
            .fetch_optional(self.r())
            .await
            .ctx("group")?
            .as_ref()
            .map(group_row)
            .transpose()
    }

    async fn list_groups(&self) -> Result<Vec<Group>> {
        sqlx::query("SELECT id, name, created_at FROM groups ORDER BY name LIMIT $1")
            .bind(limit(MAX_PAGE))
            .fetch_all(self.r())
            .await
            .ctx("groups")?
            .iter()
            .map(group_row)
            .collect()
    }

    async fn delete_group(&self, id: Uuid) -> Result<()> {
        let r = sqlx::query("DELETE FROM groups WHERE id = $1")
            .bind(id.to_string())
            .execute(self.w())
            .await
            .ctx("group")?;
        found(r.rows_affected(), "group")
    }

    async fn add_member(&self, group: Uuid, user: Uuid) -> Result<()> {
        sqlx::query(
            "INSERT INTO group_members (group_id, user_id) VALUES ($1, $2) \
             ON CONFLICT (group_id, user_id) DO NOTHING",
        )
        .bind(group.to_string())
        .bind(user.to_string())
        .execute(self.w())
        .await
        .ctx("group or user")
        .map(drop)
    }

    async fn remove_member(&self, group: Uuid, user: Uuid) -> Result<bool> {
        let r = sqlx::query("DELETE FROM group_members WHERE group_id = $1 AND user_id = $2")
            .bind(group.to_string())
            .bind(user.to_string())
            .execute(self.w())
            .await
            .ctx("group member")?;
        Ok(r.rows_affected() > 0)
    }

    async fn members(&self, group: Uuid) -> Result<Vec<Uuid>> {
        sqlx::query("SELECT user_id FROM group_members WHERE group_id = $1 ORDER BY user_id")
            .bind(group.to_string())
            .fetch_all(self.r())
            .await
            .ctx("group members")?
            .iter()
            .map(|r| uuid(r, "user_id"))
            .collect()
    }

    async fn set_permissions(&self, group: Uuid, permissions: &BTreeSet<String>) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let exists = sqlx::query("SELECT id FROM groups WHERE id = $1")
            .bind(group.to_string())
            .fetch_optional(&mut *tx)
            .await
            .ctx("group")?;
        if exists.is_none() {
            return Err(StoreError::NotFound("group"));
        }
        sqlx::query("DELETE FROM group_permissions WHERE group_id = $1")
            .bind(group.to_string())
            .execute(&mut *tx)
            .await
            .ctx("group permissions")?;
        for p in permissions {
            sqlx::query("INSERT INTO group_permissions (group_id, permission) VALUES ($1, $2)")
                .bind(group.to_string())
                .bind(p)
                .execute(&mut *tx)
                .await
                .ctx("group permission")?;
        }
        tx.commit().await.ctx("group permissions")
    }

    async fn permissions(&self, group: Uuid) -> Result<BTreeSet<String>> {
        sqlx::query("SELECT permission FROM group_permissions WHERE group_id = $1")
            .bind(group.to_string())
            .fetch_all(self.r())
            .await
            .ctx("group permissions")?
            .iter()
            .map(|r| get(r, "permission"))
            .collect()
    }

    async fn groups_of(&self, user: Uuid) -> Result<Vec<Group>> {
        sqlx::query(
            "SELECT g.id, g.name, g.created_at FROM groups g \
             JOIN group_members m ON m.group_id = g.id WHERE m.user_id = $1 ORDER BY g.name",
        )
        .bind(user.to_string())
        .fetch_all(self.r())
        .await
        .ctx("groups")?
        .iter()
        .map(group_row)
        .collect()
    }

    async fn user_permissions(&self, user: Uuid) -> Result<BTreeSet<String>> {
        sqlx::query(
            "SELECT DISTINCT p.permission FROM group_permissions p \
             JOIN group_members m ON m.group_id = p.group_id WHERE m.user_id = $1",
        )
        .bind(user.to_string())
        .fetch_all(self.r())
        .await
        .ctx("permissions")?
        .iter()
        .map(|r| get(r, "permission"))
        .collect()
    }
}

/// A session is live at `$2` (the time parameter is always `$2`).
const LIVE_AT_2: &str = "revoked_at IS NULL AND last_seen_at + idle_timeout_ms > $2 \
     AND absolute_expires_at > $2";

#[async_trait]
impl SessionStore for Store {
    async fn create_session(&self, s: &NewSession) -> Result<Session> {
        sqlx::query(
            "INSERT INTO sessions (id, user_id, token_hash, csrf_secret, created_at, last_seen_at, \
             idle_timeout_ms, absolute_expires_at, client_address, user_agent) \
             VALUES ($1, $2, $3, $4, $5, $5, $6, $7, $8, $9)",
        )
        .bind(s.id.to_string())
        .bind(s.user_id.to_string())
        .bind(s.token_hash.as_slice())
        .bind(s.csrf_secret.as_slice())
        .bind(ms(s.created_at))
        .bind(duration_ms(s.idle_timeout))
        .bind(ms(s.absolute_expires_at))
        .bind(&s.client_address)
        .bind(&s.user_agent)
        .execute(self.w())
        .await
        .map_err(|e| match e {
            sqlx::Error::Database(d) if d.is_foreign_key_violation() => {
                StoreError::NotFound("user")
            }
            e => db_error(e, "a session with this token (or id)"),
        })?;
        Ok(Session {
            id: s.id,
            user_id: s.user_id,
            token_hash: s.token_hash,
            csrf_secret: s.csrf_secret.clone(),
            created_at: from_millis(ms(s.created_at)),
            last_seen_at: from_millis(ms(s.created_at)),
            idle_timeout: Duration::from_millis(
                u64::try_from(duration_ms(s.idle_timeout)).unwrap_or(u64::MAX),
            ),
            absolute_expires_at: from_millis(ms(s.absolute_expires_at)),
            client_address: s.client_address.clone(),
            user_agent: s.user_agent.clone(),
        })
    }

    async fn session_by_token_hash(
        &self,
        token_hash: &[u8; 32],
        now: SystemTime,
    ) -> Result<Option<Session>> {
        let sql =
            format!("SELECT {SESSION_COLS} FROM sessions WHERE token_hash = $1 AND {LIVE_AT_2}");
        sqlx::query(&sql)
            .bind(token_hash.as_slice())
            .bind(ms(now))
            .fetch_optional(self.r())
            .await
            .ctx("session")?
            .as_ref()
            .map(session_row)
            .transpose()
    }

    async fn touch_session(&self, id: Uuid, now: SystemTime) -> Result<bool> {
        let sql = format!(
            "UPDATE sessions SET last_seen_at = CASE WHEN last_seen_at < $2 THEN $2 \
             ELSE last_seen_at END WHERE id = $1 AND {LIVE_AT_2}"
        );
        let r = sqlx::query(&sql)
            .bind(id.to_string())
            .bind(ms(now))
            .execute(self.w())
            .await
            .ctx("session")?;
        Ok(r.rows_affected() == 1)
    }

    async fn revoke_session(&self, id: Uuid, by: Owner, at: SystemTime) -> Result<bool> {
        self.revoke(("sessions", "user_id", "session"), id, by, at)
            .await
    }

    async fn revoke_user_sessions(
        &self,
        user: Uuid,
        except: Option<Uuid>,
        at: SystemTime,
    ) -> Result<u64> {
        let r = sqlx::query(
            "UPDATE sessions SET revoked_at = $2 \
             WHERE user_id = $1 AND revoked_at IS NULL AND id <> $3",
        )
        .bind(user.to_string())
        .bind(ms(at))
        .bind(except.map(|e| e.to_string()).unwrap_or_default())
        .execute(self.w())
        .await
        .ctx("sessions")?;
        Ok(r.rows_affected())
    }

    async fn user_sessions(&self, user: Uuid, now: SystemTime) -> Result<Vec<Session>> {
        let sql = format!(
            "SELECT {SESSION_COLS} FROM sessions WHERE user_id = $1 AND {LIVE_AT_2} \
             ORDER BY created_at DESC, id DESC LIMIT $3"
        );
        sqlx::query(&sql)
            .bind(user.to_string())
            .bind(ms(now))
            .bind(limit(MAX_PAGE))
            .fetch_all(self.r())
            .await
            .ctx("sessions")?
            .iter()
            .map(session_row)
            .collect()
    }

    async fn delete_expired_sessions(&self, now: SystemTime) -> Result<u64> {
        let r = sqlx::query(
            "DELETE FROM sessions WHERE revoked_at IS NOT NULL \
             OR last_seen_at + idle_timeout_ms <= $1 OR absolute_expires_at <= $1",
        )
        .bind(ms(now))
        .execute(self.w())
        .await
        .ctx("sessions")?;
        Ok(r.rows_affected())
    }
}

#[async_trait]
impl ApiKeyStore for Store {
    async fn create_key(&self, k: &NewApiKey) -> Result<ApiKey> {
        sqlx::query(
            "INSERT INTO api_keys (id, owner_id, name, prefix, secret_hash, scopes, models, \
             expires_at, created_at, use_count) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 0)",
        )
        .bind(k.id.to_string())
        .bind(k.owner.to_string())
        .bind(&k.name)
        .bind(&k.prefix)
        .bind(k.secret_hash.as_slice())
        .bind(strings(&k.scopes, "scopes")?)
        .bind(strings(&k.models, "models")?)
        .bind(k.expires_at.map(ms))
        .bind(ms(k.created_at))
        .execute(self.w())
        .await
        .map_err(|e| match e {
            sqlx::Error::Database(d) if d.is_foreign_key_violation() => {
                StoreError::NotFound("user")
            }
            e => db_error(e, "an API key with this prefix (or id)"),
        })?;
        Ok(ApiKey {
            id: k.id,
            owner: k.owner,
            name: k.name.clone(),
            prefix: k.prefix.clone(),
            secret_hash: k.secret_hash,
            scopes: k.scopes.clone(),
            models: k.models.clone(),
            expires_at: k.expires_at.map(|t| from_millis(ms(t))),
            created_at: from_millis(ms(k.created_at)),
            last_used_at: None,
            use_count: 0,
            revoked_at: None,
        })
    }

    async fn key_by_prefix(&self, prefix: &str, now: SystemTime) -> Result<Option<ApiKey>> {
        let sql = format!(
            "SELECT {KEY_COLS} FROM api_keys WHERE prefix = $1 AND revoked_at IS NULL \
             AND (expires_at IS NULL OR expires_at > $2)"
        );
        sqlx::query(&sql)
            .bind(prefix)
            .bind(ms(now))
            .fetch_optional(self.r())
            .await
            .ctx("API key")?
            .as_ref()
            .map(key_row)
            .transpose()
    }

    async fn owner_keys(&self, owner: Uuid) -> Result<Vec<ApiKey>> {
        let sql = format!(
            "SELECT {KEY_COLS} FROM api_keys WHERE owner_id = $1 \
             ORDER BY created_at DESC, id DESC LIMIT $2"
        );
        sqlx::query(&sql)
            .bind(owner.to_string())
            .bind(limit(MAX_PAGE))
            .fetch_all(self.r())
            .await
            .ctx("API keys")?
            .iter()
            .map(key_row)
            .collect()
    }

    async fn revoke_key(&self, id: Uuid, by: Owner, at: SystemTime) -> Result<bool> {
        self.revoke(("api_keys", "owner_id", "API key"), id, by, at)
            .await
    }

    async fn record_key_use(&self, id: Uuid, at: SystemTime) -> Result<()> {
        let r = sqlx::query(
            "UPDATE api_keys SET last_used_at = $2, use_count = use_count + 1 WHERE id = $1",
        )
        .bind(id.to_string())
        .bind(ms(at))
        .execute(self.w())
        .await
        .ctx("API key")?;
        found(r.rows_affected(), "API key")
    }
}

#[async_trait]
impl AuditStore for Store {
    async fn append(&self, e: &NewEvent, hash: &ChainHash) -> Result<Event> {
        let mut tx = self.begin_write().await?;
        let head = sqlx::query(dialect::AUDIT_HEAD_LOCKED)
            .fetch_one(&mut *tx)
            .await
            .ctx("audit head")?;
        let seq = unsigned(&head, "last_seq")? + 1;
        let prev_hash = hash32(&head, "last_hash")?;
        // What is stored is what is hashed: times at millisecond precision.
        let mut stored = e.clone();
        stored.time = from_millis(ms(e.time));
        let h = hash(seq, &prev_hash, &stored);
        sqlx::query(
            "INSERT INTO audit_events (seq, time, actor, action, target, outcome, \
             client_address, detail, prev_hash, hash) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(signed(seq, "audit sequence")?)
        .bind(ms(e.time))
        .bind(&e.actor)
        .bind(&e.action)
        .bind(&e.target)
        .bind(&e.outcome)
        .bind(&e.client_address)
        .bind(&e.detail)
        .bind(prev_hash.as_slice())
        .bind(h.as_slice())
        .execute(&mut *tx)
        .await
        .ctx("audit event")?;
        sqlx::query("UPDATE audit_head SET last_seq = $1, last_hash = $2 WHERE id = 1")
            .bind(signed(seq, "audit sequence")?)
            .bind(h.as_slice())
            .execute(&mut *tx)
            .await
            .ctx("audit head")?;
        tx.commit().await.ctx("audit event")?;
        Ok(Event {
            seq,
            time: stored.time,
            actor: stored.actor,
            action: stored.action,
            target: stored.target,
            outcome: stored.outcome,
            client_address: stored.client_address,
            detail: stored.detail,
            prev_hash,
            hash: h,
        })
    }

    async fn events(&self, from: u64, n: u32) -> Result<Vec<Event>> {
        let sql =
            format!("SELECT {EVENT_COLS} FROM audit_events WHERE seq >= $1 ORDER BY seq LIMIT $2");
        sqlx::query(&sql)
            .bind(i64::try_from(from).unwrap_or(i64::MAX))
            .bind(limit(n))
            .fetch_all(self.r())
            .await
            .ctx("audit events")?
            .iter()
            .map(event_row)
            .collect()
    }

    async fn tail(&self, n: u32) -> Result<Vec<Event>> {
        let sql = format!(
            "SELECT {EVENT_COLS} FROM (SELECT {EVENT_COLS} FROM audit_events \
             ORDER BY seq DESC LIMIT $1) AS t ORDER BY seq"
        );
        sqlx::query(&sql)
            .bind(limit(n))
            .fetch_all(self.r())
            .await
            .ctx("audit events")?
            .iter()
            .map(event_row)
            .collect()
    }

    async fn checkpoint(&self) -> Result<Option<Checkpoint>> {
        let r = sqlx::query("SELECT checkpoint_seq, checkpoint_hash FROM audit_head WHERE id = 1")
            .fetch_one(self.r())
            .await
            .ctx("audit head")?;
        match get::<Option<i64>>(&r, "checkpoint_seq")? {
            None => Ok(None),
            Some(_) => Ok(Some(Checkpoint {
                seq: unsigned(&r, "checkpoint_seq")?,
                hash: hash32(&r, "checkpoint_hash")?,
            })),
        }
    }

    async fn delete_events_before(&self, before: SystemTime) -> Result<u64> {
        let mut tx = self.begin_write().await?;
        let head = sqlx::query(dialect::AUDIT_HEAD_LOCKED)
            .fetch_one(&mut *tx)
            .await
            .ctx("audit head")?;
        let last_seq: i64 = get(&head, "last_seq")?;
        let first_kept = sqlx::query("SELECT MIN(seq) FROM audit_events WHERE time >= $1")
            .bind(ms(before))
            .fetch_one(&mut *tx)
            .await
            .ctx("audit events")?;
        let first_kept: Option<i64> = first_kept.try_get(0).ctx("audit events")?;
        let cutoff = first_kept.map_or(last_seq, |k| k - 1);
        let oldest = sqlx::query("SELECT MIN(seq) FROM audit_events")
            .fetch_one(&mut *tx)
            .await
            .ctx("audit events")?;
        let Some(oldest) = oldest.try_get::<Option<i64>, _>(0).ctx("audit events")? else {
            return Ok(0);
        };
        if cutoff < oldest {
            return Ok(0);
        }
        let at_cutoff = sqlx::query("SELECT hash FROM audit_events WHERE seq = $1")
            .bind(cutoff)
            .fetch_optional(&mut *tx)
            .await
            .ctx("audit events")?
            .ok_or_else(|| StoreError::Internal(format!("audit event {cutoff} is missing")))?;
        let cut_hash = hash32(&at_cutoff, "hash")?;
        let deleted = sqlx::query("DELETE FROM audit_events WHERE seq <= $1")
            .bind(cutoff)
            .execute(&mut *tx)
            .await
            .ctx("audit events")?
            .rows_affected();
        sqlx::query("UPDATE audit_head SET checkpoint_seq = $1, checkpoint_hash = $2 WHERE id = 1")
            .bind(cutoff)
            .bind(cut_hash.as_slice())
            .execute(&mut *tx)
            .await
            .ctx("audit head")?;
        tx.commit().await.ctx("audit events")?;
        Ok(deleted)
    }
}

#[async_trait]
impl LoginAttemptStore for Store {
    async fn record_failure(&self, subject: &Subject, at: SystemTime) -> Result<()> {
        let (kind, key) = subject.parts();
        sqlx::query("INSERT INTO login_failures (kind, subject, at) VALUES ($1, $2, $3)")
            .bind(kind)
            .bind(key)
            .bind(ms(at))
            .execute(self.w())
            .await
            .ctx("login failure")
            .map(drop)
    }

    async fn failures_since(&self, subject: &Subject, since: SystemTime) -> Result<u64> {
        let (kind, key) = subject.parts();
        let r = sqlx::query(
            "SELECT COUNT(*) FROM login_failures WHERE kind = $1 AND subject = $2 AND at >= $3",
        )
        .bind(kind)
        .bind(key)
        .bind(ms(since))
        .fetch_one(self.r())
        .await
        .ctx("login failures")?;
        count(&r)
    }

    async fn clear_failures(&self, subject: &Subject) -> Result<()> {
        let (kind, key) = subject.parts();
        sqlx::query("DELETE FROM login_failures WHERE kind = $1 AND subject = $2")
            .bind(kind)
            .bind(key)
            .execute(self.w())
            .await
            .ctx("login failures")
            .map(drop)
    }

    async fn prune_failures(&self, before: SystemTime) -> Result<u64> {
        let r = sqlx::query("DELETE FROM login_failures WHERE at < $1")
            .bind(ms(before))
            .execute(self.w())
            .await
            .ctx("login failures")?;
        Ok(r.rows_affected())
    }
}
