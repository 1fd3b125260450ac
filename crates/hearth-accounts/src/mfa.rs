//! TOTP (RFC 6238) enrolment, confirmation and removal, and recovery codes.
//!
//! A code is accepted once: the store's atomic "accept this step only if it is greater than the
//! last" makes a replayed code fail even under concurrent requests (ASVS 6.5.1); recovery codes
//! are consumed atomically the same way. Every change ends the user's other sessions (ASVS 7.4.3).

use std::time::SystemTime;

use hearth_auth::totp::{TotpCheck, TotpSecret, otpauth_uri, qr_svg, verify};
use hearth_store::Uuid;
use serde::Serialize;

use crate::{Accounts, AccountsError, Client, Principal, Result};

/// What enrolling shows the user, once.
#[derive(Debug, Clone, Serialize)]
pub struct TotpEnrolment {
    /// The secret in base32, for typing into an app.
    pub secret: String,
    /// `otpauth://totp/…`, for apps that take a link.
    pub otpauth_uri: String,
    /// The URI as a QR code, an SVG document.
    pub qr_svg: String,
    /// Ten one-time recovery codes.
    pub recovery_codes: Vec<String>,
}

impl Accounts {
    /// Whether `code` is a fresh TOTP code or an unused recovery code of `user`; uses it up.
    pub(crate) async fn check_second_factor(
        &self,
        user: Uuid,
        code: &str,
        now: SystemTime,
    ) -> Result<bool> {
        let Some(totp) = self.stores.mfa.totp(user).await? else {
            return Ok(false);
        };
        let Ok(bytes) = <[u8; hearth_auth::totp::SECRET_LEN]>::try_from(totp.secret.as_slice())
        else {
            return Err(AccountsError::Internal(
                "stored TOTP secret has the wrong length".into(),
            ));
        };
        let secret = TotpSecret::from_bytes(bytes);
        match verify(&secret, code, crate::unix_secs(now), totp.last_step) {
            TotpCheck::Valid { step } => Ok(self.stores.mfa.accept_totp_step(user, step).await?),
            TotpCheck::Replayed { .. } => Ok(false),
            TotpCheck::Invalid => match hearth_auth::recovery::hash(code) {
                Some(h) => Ok(self.stores.mfa.consume_recovery_code(user, &h.0).await?),
                None => Ok(false),
            },
        }
    }

    /// Starts enrolment: a new secret (not active until confirmed) and new recovery codes.
    pub async fn totp_enrol(&self, who: &Principal, client: &Client) -> Result<TotpEnrolment> {
        self.require_own_account(who)?;
        let user = who
            .user
            .as_ref()
            .ok_or_else(|| AccountsError::BadInput("this needs a signed-in user".into()))?;
        if self
            .stores
            .mfa
            .totp(user.id)
            .await?
            .is_some_and(|t| t.enabled)
        {
            return Err(AccountsError::Conflict(
                "two-factor sign-in is on already; turn it off first to enrol a new device".into(),
            ));
        }
        let secret = TotpSecret::generate()?;
        let uri = otpauth_uri(&secret, &self.config.totp_issuer, &user.username);
        let svg = qr_svg(&uri)?;
        let codes = hearth_auth::recovery::generate()?;
        let hashes: Vec<[u8; 32]> = codes
            .iter()
            .filter_map(|c| hearth_auth::recovery::hash(c).map(|h| h.0))
            .collect();
        let now = SystemTime::now();
        self.stores
            .mfa
            .set_totp(user.id, secret.as_bytes(), now)
            .await?;
        self.stores.mfa.set_recovery_codes(user.id, &hashes).await?;
        self.audit_event(
            &who.actor(),
            "mfa.enrol_start",
            &user.id.to_string(),
            "success",
            client,
            "",
        )
        .await?;
        Ok(TotpEnrolment {
            secret: secret.to_base32(),
            otpauth_uri: uri,
            qr_svg: svg,
            recovery_codes: codes,
        })
    }

    /// Confirms enrolment with a code from the app; turns MFA on and ends other sessions.
    pub async fn totp_confirm(&self, who: &Principal, code: &str, client: &Client) -> Result<()> {
        self.require_own_account(who)?;
        let user = who
            .user
            .as_ref()
            .ok_or_else(|| AccountsError::BadInput("this needs a signed-in user".into()))?;
        let now = SystemTime::now();
        let Some(totp) = self.stores.mfa.totp(user.id).await? else {
            return Err(AccountsError::BadInput(
                "start enrolment first (POST me/totp)".into(),
            ));
        };
        if totp.enabled {
            return Err(AccountsError::Conflict(
                "two-factor sign-in is on already".into(),
            ));
        }
        let Ok(bytes) = <[u8; hearth_auth::totp::SECRET_LEN]>::try_from(totp.secret.as_slice())
        else {
            return Err(AccountsError::Internal(
                "stored TOTP secret has the wrong length".into(),
            ));
        };
        let ok = match verify(
            &TotpSecret::from_bytes(bytes),
            code,
            crate::unix_secs(now),
            totp.last_step,
        ) {
            TotpCheck::Valid { step } => self.stores.mfa.accept_totp_step(user.id, step).await?,
            _ => false,
        };
        if !ok {
            self.audit_event(
                &who.actor(),
                "mfa.enrol_confirm",
                &user.id.to_string(),
                "failure",
                client,
                "",
            )
            .await?;
            return Err(AccountsError::InvalidCode);
        }
        self.stores.mfa.enable_totp(user.id).await?;
        self.end_other_sessions(who, user.id, "mfa.enabled", client, now)
            .await
            .map(|_| ())
    }

    /// Turns MFA off (a current code or a recovery code is needed) and ends other sessions.
    pub async fn totp_disable(&self, who: &Principal, code: &str, client: &Client) -> Result<()> {
        self.require_own_account(who)?;
        let user = who
            .user
            .as_ref()
            .ok_or_else(|| AccountsError::BadInput("this needs a signed-in user".into()))?;
        let now = SystemTime::now();
        if !self.check_second_factor(user.id, code, now).await? {
            self.audit_event(
                &who.actor(),
                "mfa.disable",
                &user.id.to_string(),
                "failure",
                client,
                "",
            )
            .await?;
            return Err(AccountsError::InvalidCode);
        }
        self.stores.mfa.delete_totp(user.id).await?;
        self.end_other_sessions(who, user.id, "mfa.disabled", client, now)
            .await
            .map(|_| ())
    }

    /// Whether the principal has MFA on, and how many recovery codes are left.
    pub async fn totp_status(&self, who: &Principal) -> Result<(bool, u64)> {
        let Some(user) = who.user.as_ref() else {
            return Ok((false, 0));
        };
        let on = self
            .stores
            .mfa
            .totp(user.id)
            .await?
            .is_some_and(|t| t.enabled);
        let left = if on {
            self.stores.mfa.recovery_codes_left(user.id).await?
        } else {
            0
        };
        Ok((on, left))
    }
}
