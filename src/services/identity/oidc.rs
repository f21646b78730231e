//! Single sign-on with OpenID Connect: the authorization code flow with PKCE, `state` and
//! `nonce`, every pending sign-in in the database (any replica finishes a flow another
//! started). People are matched by the provider's `sub`, else linked by a verified email
//! address to an existing account on their first sign-in, else created when allowed. Their
//! name and email refresh at every sign-in, and with a groups claim their memberships of
//! local groups follow it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce, PkceCodeChallenge, PkceCodeVerifier,
    RedirectUrl, Scope, TokenResponse,
};

use crate::db::models::User;
use crate::db::oidc::{self as rows, Flow, StoredSso};
use crate::db::{Db, DbError, groups, is_refused_rollback, now, users};
use crate::services::serving::hot_cache::HotCache;

/// How long a sign-in may stay at the identity provider.
const FLOW_LIFETIME: chrono::Duration = chrono::Duration::minutes(10);
/// Sign-ins under way at once, at most: only a bound on the table (anyone may start one).
const MAX_OPEN_FLOWS: i64 = 10_000;
/// How long discovered provider metadata (endpoints, keys) is used before asking again.
const METADATA_LIFETIME: Duration = Duration::from_secs(600);

/// OIDC_* settings.
#[derive(Debug, Clone)]
pub struct OidcSettings {
    pub issuer_url: String,
    pub client_id: String,
    pub client_secret: String,
    /// Scopes asked for besides `openid` (OIDC_SCOPES, default `email profile`).
    pub scopes: Vec<String>,
    /// The claim listing the user's groups (OIDC_GROUPS_CLAIM); unset: no group sync.
    pub groups_claim: Option<String>,
    /// Whether people without an account get one at their first sign-in (OIDC_CREATE_USERS).
    pub create_users: bool,
    /// Whether single sign-on is the only way in (OIDC_ONLY): no password sign-in or reset.
    pub only: bool,
    /// What the sign-in button calls the provider (OIDC_NAME).
    pub display_name: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SsoError {
    #[error("the identity provider cannot be reached or answered nonsense: {0}")]
    Provider(String),
    #[error("single sign-on is set up wrong: {0}")]
    Misconfigured(String),
    #[error("this sign-in expired or was already used; sign in again")]
    UnknownFlow,
    #[error("too many sign-ins are under way; try again in a few minutes")]
    Busy,
    #[error("this sign-in was started in another browser; sign in again from here")]
    OtherBrowser,
    #[error("the identity provider refused the sign-in: {0}")]
    Refused(String),
    #[error("the identity provider's answer failed verification: {0}")]
    Invalid(String),
    #[error("there is no account for {0} here; ask an administrator to create one")]
    NoAccount(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

/// How long settings saved on the settings page are used before reading them again (every
/// replica follows a change within this).
const SETTINGS_LIFETIME: Duration = Duration::from_secs(5);

impl OidcSettings {
    fn from_stored(stored: StoredSso) -> Self {
        Self {
            issuer_url: stored.issuer_url,
            client_id: stored.client_id,
            client_secret: stored.client_secret,
            scopes: stored.scopes.split_whitespace().map(str::to_string).collect(),
            groups_claim: stored.groups_claim,
            create_users: stored.create_users,
            only: stored.sso_only,
            display_name: stored.display_name,
        }
    }
}

/// The single sign-on in force: from OIDC_* variables (fixed, and the settings page shows
/// them locked), else the settings page's, read from the database at most every few seconds.
pub struct SsoHandle {
    site_url: String,
    from_env: Option<Arc<Sso>>,
    saved: Mutex<Option<SavedSso>>,
}

/// When the settings page's settings were read, and what they were (with the single
/// sign-on built from them), if any.
type SavedSso = (Instant, Option<(StoredSso, Arc<Sso>)>);

impl SsoHandle {
    pub fn new(from_env: Option<OidcSettings>, site_url: &str) -> anyhow::Result<Self> {
        let from_env = from_env.map(|settings| Sso::new(settings, site_url)).transpose()?.map(Arc::new);
        Ok(Self { site_url: site_url.to_string(), from_env, saved: Mutex::new(None) })
    }

    /// Whether OIDC_* variables set single sign-on (the settings page cannot change it).
    pub fn locked(&self) -> bool {
        self.from_env.is_some()
    }

    /// The callback URL to register at the identity provider.
    pub fn redirect_url(&self) -> String {
        format!("{}/oidc/callback", self.site_url.trim_end_matches('/'))
    }

    /// The settings in force, if single sign-on is on.
    pub async fn current(&self, db: &Db) -> Result<Option<Arc<Sso>>, DbError> {
        if let Some(sso) = &self.from_env {
            return Ok(Some(sso.clone()));
        }
        if let Some((at, saved)) = self.saved.lock().expect("sso lock").as_ref()
            && at.elapsed() < SETTINGS_LIFETIME
        {
            return Ok(saved.as_ref().map(|(_, sso)| sso.clone()));
        }
        let stored = db.read(rows::sso_settings).await?;
        let mut saved = self.saved.lock().expect("sso lock");
        let previous = saved.take().and_then(|(_, s)| s);
        let current = match (stored, previous) {
            // Unchanged: keep the one with its discovered metadata.
            (Some(stored), Some((before, sso))) if stored == before => Some((stored, sso)),
            (Some(stored), _) => match Sso::new(OidcSettings::from_stored(stored.clone()), &self.site_url) {
                Ok(sso) => Some((stored, Arc::new(sso))),
                Err(e) => {
                    tracing::error!("single sign-on settings cannot be used: {e}");
                    None
                }
            },
            (None, _) => None,
        };
        let answer = current.as_ref().map(|(_, sso)| sso.clone());
        *saved = Some((Instant::now(), current));
        Ok(answer)
    }

    /// Forgets the settings read last (after saving new ones here).
    pub fn forget(&self) {
        *self.saved.lock().expect("sso lock") = None;
    }

    /// The settings saved on the settings page (the form shows them; the secret is never
    /// shown back).
    pub async fn saved(&self, db: &Db) -> Result<Option<StoredSso>, DbError> {
        db.read(rows::sso_settings).await
    }

    /// Saves settings entered on the settings page: checked, with an empty secret keeping
    /// the saved one. The error names the field.
    pub async fn save(&self, db: &Db, mut settings: StoredSso) -> Result<Result<(), (&'static str, String)>, DbError> {
        if settings.client_secret.is_empty() {
            settings.client_secret = self.saved(db).await?.map(|s| s.client_secret).unwrap_or_default();
        }
        if let Err(problem) = check(&settings) {
            return Ok(Err(problem));
        }
        db.write(move |c| rows::save_sso_settings(c, &settings)).await?;
        self.forget();
        Ok(Ok(()))
    }

    /// Removes the settings page's settings (the admin CLI's way back in after a
    /// single-sign-on-only setup that does not work).
    pub async fn reset(&self, db: &Db) -> Result<bool, DbError> {
        let removed = db.write(rows::delete_sso_settings).await?;
        self.forget();
        Ok(removed)
    }
}

/// What is wrong with settings entered on the settings page, by field.
fn check(settings: &StoredSso) -> Result<(), (&'static str, String)> {
    let issuer = &settings.issuer_url;
    if !(issuer.starts_with("https://")
        || issuer.starts_with("http://127.0.0.1")
        || issuer.starts_with("http://localhost"))
        || IssuerUrl::new(issuer.clone()).is_err()
    {
        return Err(("issuer_url", "Enter the provider's issuer URL, e.g. https://id.example.com/realms/main.".into()));
    }
    if settings.client_id.trim().is_empty() {
        return Err(("client_id", "Enter the client ID registered at the provider.".into()));
    }
    if settings.client_secret.is_empty() {
        return Err(("client_secret", "Enter the client secret registered at the provider.".into()));
    }
    if settings.display_name.trim().is_empty() || settings.display_name.len() > 60 {
        return Err(("display_name", "Name the provider for the sign-in button (1 to 60 characters).".into()));
    }
    Ok(())
}

/// A client made from discovered metadata: its authorization endpoint is known, its token
/// and user info endpoints are whatever the provider published.
type ProviderClient = CoreClient<
    openidconnect::EndpointSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointMaybeSet,
    openidconnect::EndpointMaybeSet,
>;

/// The single sign-on of one server process.
pub struct Sso {
    pub settings: OidcSettings,
    redirect_url: String,
    http: openidconnect::reqwest::Client,
    metadata: Mutex<Option<(Instant, CoreProviderMetadata)>>,
}

/// What the provider says about the person signing in.
struct Identity {
    subject: String,
    email: Option<String>,
    email_verified: bool,
    name: Option<String>,
    groups: Option<Vec<String>>,
}

impl Sso {
    pub fn new(settings: OidcSettings, site_url: &str) -> anyhow::Result<Self> {
        let http = openidconnect::reqwest::ClientBuilder::new()
            // Following redirects would let the provider's answers point us anywhere.
            .redirect(openidconnect::reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(15))
            .build()?;
        let redirect_url = format!("{}/oidc/callback", site_url.trim_end_matches('/'));
        Ok(Self { settings, redirect_url, http, metadata: Mutex::new(None) })
    }

    async fn provider_metadata(&self) -> Result<CoreProviderMetadata, SsoError> {
        if let Some((at, metadata)) = self.metadata.lock().expect("metadata lock").as_ref()
            && at.elapsed() < METADATA_LIFETIME
        {
            return Ok(metadata.clone());
        }
        let issuer = IssuerUrl::new(self.settings.issuer_url.clone())
            .map_err(|e| SsoError::Misconfigured(format!("OIDC_ISSUER_URL: {e}")))?;
        let metadata = CoreProviderMetadata::discover_async(issuer, &self.http)
            .await
            .map_err(|e| SsoError::Provider(format!("discovery at {}: {e}", self.settings.issuer_url)))?;
        *self.metadata.lock().expect("metadata lock") = Some((Instant::now(), metadata.clone()));
        Ok(metadata)
    }

    /// The client for this server at the provider, from its (discovered) metadata.
    async fn client(&self) -> Result<ProviderClient, SsoError> {
        let metadata = self.provider_metadata().await?;
        let redirect = RedirectUrl::new(self.redirect_url.clone())
            .map_err(|e| SsoError::Misconfigured(format!("SITE_URL: {e}")))?;
        Ok(CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(self.settings.client_id.clone()),
            Some(ClientSecret::new(self.settings.client_secret.clone())),
        )
        .set_redirect_uri(redirect))
    }

    /// Starts a sign-in: records it and returns the provider's URL to send the browser to,
    /// and a secret the browser must keep (a cookie) and show when it comes back.
    pub async fn begin(&self, db: &Db, next_path: &str) -> Result<(String, String), SsoError> {
        let client = self.client().await?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request =
            client.authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random);
        for scope in &self.settings.scopes {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        let (url, state, nonce) = request.set_pkce_challenge(challenge).url();
        let browser_secret = crate::random::random_id();
        let flow = Flow {
            state: state.secret().clone(),
            nonce: nonce.secret().clone(),
            pkce_verifier: verifier.secret().clone(),
            next_path: next_path.to_string(),
            browser_hash: super::auth::hash_token(&browser_secret),
            expires_at: now() + FLOW_LIFETIME,
        };
        let recorded = db
            .write(move |c| {
                if rows::count_open_flows(c)? >= MAX_OPEN_FLOWS {
                    return Ok(false);
                }
                rows::insert_flow(c, &flow).map(|()| true)
            })
            .await?;
        if !recorded {
            return Err(SsoError::Busy);
        }
        Ok((url.to_string(), browser_secret))
    }

    /// Finishes a sign-in the provider sent back to the browser holding `browser_secret`
    /// (from [`Sso::begin`]): the user signed in, and where to go next.
    pub async fn finish(
        &self,
        db: &Db,
        hot: &HotCache,
        code: &str,
        state: &str,
        browser_secret: &str,
    ) -> Result<(User, String), SsoError> {
        let state = state.to_string();
        let flow = db.write(move |c| rows::take_flow(c, &state)).await?.ok_or(SsoError::UnknownFlow)?;
        if flow.browser_hash != super::auth::hash_token(browser_secret) {
            return Err(SsoError::OtherBrowser);
        }
        let identity = self.verified_identity(code, &flow).await?;
        let user = self.account_for(db, hot, identity).await?;
        Ok((user, flow.next_path))
    }

    /// Exchanges the code and verifies the ID token: signature (the provider's keys),
    /// issuer, audience, expiry and nonce.
    async fn verified_identity(&self, code: &str, flow: &Flow) -> Result<Identity, SsoError> {
        let client = self.client().await?;
        let request = client
            .exchange_code(AuthorizationCode::new(code.to_string()))
            .map_err(|e| SsoError::Misconfigured(format!("the provider has no token endpoint: {e}")))?;
        let response = request
            .set_pkce_verifier(PkceCodeVerifier::new(flow.pkce_verifier.clone()))
            .request_async(&self.http)
            .await
            .map_err(|e| match e {
                openidconnect::RequestTokenError::ServerResponse(answer) => SsoError::Refused(format!(
                    "{}{} (check OIDC_CLIENT_ID and OIDC_CLIENT_SECRET)",
                    answer.error(),
                    answer.error_description().map(|d| format!(": {d}")).unwrap_or_default()
                )),
                other => SsoError::Provider(format!("the token request failed: {other}")),
            })?;
        let id_token = response.id_token().ok_or_else(|| SsoError::Invalid("no ID token in the answer".into()))?;
        let claims = id_token
            .claims(&client.id_token_verifier(), &Nonce::new(flow.nonce.clone()))
            .map_err(|e| SsoError::Invalid(e.to_string()))?;
        // The groups claim has a configurable name: read it from the verified token's payload.
        let groups = self.settings.groups_claim.as_ref().map(|claim| claim_strings(&id_token.to_string(), claim));
        Ok(Identity {
            subject: claims.subject().to_string(),
            email: claims.email().map(|e| e.to_string().trim().to_ascii_lowercase()),
            email_verified: claims.email_verified().unwrap_or(false),
            name: claims.name().and_then(|n| n.get(None)).map(|n| n.to_string()),
            groups,
        })
    }

    /// The account for this identity: by subject, else linked by verified email, else new
    /// (when allowed); its name and email refreshed and its groups synced.
    async fn account_for(&self, db: &Db, hot: &HotCache, identity: Identity) -> Result<User, SsoError> {
        let create = self.settings.create_users;
        let found = db
            .write(move |c| {
                let by_subject = rows::find_by_subject(c, &identity.subject)?;
                let user = match (by_subject, &identity.email) {
                    (Some(user), _) => user,
                    (None, Some(email)) if identity.email_verified => match users::find_by_email(c, email)? {
                        Some(user) => {
                            rows::set_subject(c, user.id, &identity.subject)?;
                            user
                        }
                        None if create => create_account(c, &identity, email)?,
                        None => return crate::db::refuse(identity.email.clone().unwrap_or(identity.subject.clone())),
                    },
                    (None, _) => return crate::db::refuse(identity.email.clone().unwrap_or(identity.subject.clone())),
                };
                let name = identity
                    .name
                    .clone()
                    .filter(|n| crate::services::display_name_error(n).is_none())
                    .unwrap_or(user.name.clone());
                let email = identity.email.as_deref().filter(|_| identity.email_verified);
                rows::refresh_profile(c, user.id, &name, email)?;
                Ok(Ok((user.id, identity.groups)))
            })
            .await?;
        let (user_id, groups) = found.map_err(SsoError::NoAccount)?;
        if let Some(names) = groups {
            let synced = db
                .write(move |c| {
                    let changed = groups::keeping_an_administrator(c, |c| rows::sync_memberships(c, user_id, &names))?;
                    if changed {
                        crate::db::replication::access_changed(c)?;
                    }
                    Ok(changed)
                })
                .await;
            match synced {
                Ok(true) => hot.forget_rights(),
                Ok(false) => {}
                Err(e) if is_refused_rollback(&e) => {
                    tracing::warn!("group sync for user {user_id} skipped: it would leave no administrator")
                }
                Err(e) => return Err(e.into()),
            }
        }
        db.read(move |c| users::find(c, user_id))
            .await?
            .ok_or_else(|| SsoError::Db(DbError::Query(diesel::result::Error::NotFound)))
    }
}

/// A new account for a person the provider vouches for: their email is their login.
fn create_account(conn: &mut crate::db::AnyConnection, identity: &Identity, email: &str) -> crate::db::DbResult<User> {
    let name = identity
        .name
        .clone()
        .filter(|n| crate::services::display_name_error(n).is_none())
        .unwrap_or_else(|| email.to_string());
    let user = users::create_sso(conn, users::NewIdentity { login: email, name: &name }, email)?;
    rows::set_subject(conn, user.id, &identity.subject)?;
    Ok(user)
}

/// The strings of claim `name` in a JWT's payload (an array of strings, or one string);
/// empty when it is missing. The token must have been verified already.
fn claim_strings(jwt: &str, name: &str) -> Vec<String> {
    let payload = jwt.split('.').nth(1).unwrap_or_default();
    let decoded =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).unwrap_or_default();
    let claims: serde_json::Value = serde_json::from_slice(&decoded).unwrap_or_default();
    match &claims[name] {
        serde_json::Value::Array(items) => items.iter().filter_map(|v| v.as_str().map(str::to_string)).collect(),
        serde_json::Value::String(one) => vec![one.clone()],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::claim_strings;
    use base64::Engine;

    #[test]
    fn group_claims_are_read_as_lists_or_single_strings() {
        let token =
            |payload: &str| format!("e30.{}.sig", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(payload));
        assert_eq!(claim_strings(&token(r#"{"groups":["a","b",3]}"#), "groups"), ["a", "b"]);
        assert_eq!(claim_strings(&token(r#"{"roles":"admin"}"#), "roles"), ["admin"]);
        assert!(claim_strings(&token(r#"{}"#), "groups").is_empty());
        assert!(claim_strings("garbage", "groups").is_empty());
    }
}
