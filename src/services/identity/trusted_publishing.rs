//! Trusted publishing: CI trades an OpenID Connect ID token from its platform (GitHub
//! Actions, GitLab, any issuer a cache trusts) for a short-lived API token, so no long-lived
//! secret is stored in CI. The ID token must be signed by a key its issuer publishes, be
//! meant for this server (audience = SITE_URL), be unexpired, never have been exchanged
//! before, and match a cache's rule (issuer and claim conditions). Only issuers that some
//! rule names are ever contacted.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use hibernation::api::OidcTokenResponse;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

use super::auth::{hash_token, issue_token};
use crate::db::ids::CacheId;
use crate::db::trust::{self, TrustRule};
use crate::db::users::TokenScope;
use crate::db::{Db, DbError, is_unique_violation, now};

/// How long an exchanged API token works.
pub const TOKEN_LIFETIME: chrono::Duration = chrono::Duration::minutes(30);
/// How long an issuer's published keys are used before asking again.
const KEYS_LIFETIME: Duration = Duration::from_secs(600);
/// The largest discovery document or key set read from an issuer.
const MAX_DOCUMENT: usize = 1 << 20;
/// An unknown key id makes us fetch the issuer's keys again, at most this often.
const REFETCH_AFTER: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    /// The token is refused; the text says why (shown to the caller with 401).
    #[error("{0}")]
    Refused(String),
    #[error("the issuer's keys cannot be fetched: {0}")]
    Issuer(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

fn refused(why: impl Into<String>) -> ExchangeError {
    ExchangeError::Refused(why.into())
}

/// The public keys of the issuers rules trust, fetched on demand and kept a while.
#[derive(Default)]
pub struct IssuerKeys {
    http: reqwest::Client,
    keys: Mutex<HashMap<String, (Instant, JwkSet)>>,
}

impl IssuerKeys {
    async fn fetch(&self, issuer: &str) -> Result<JwkSet, ExchangeError> {
        let fail = |e: &dyn std::fmt::Display| ExchangeError::Issuer(format!("{issuer}: {e}"));
        let discovery = format!("{}/.well-known/openid-configuration", issuer.trim_end_matches('/'));
        let metadata: Value = self.get_json(&discovery).await.map_err(|e| fail(&e))?;
        let jwks_uri =
            metadata["jwks_uri"].as_str().ok_or_else(|| fail(&"its discovery document names no jwks_uri"))?;
        let keys: JwkSet = self.get_json(jwks_uri).await.map_err(|e| fail(&e))?;
        self.keys.lock().expect("keys lock").insert(issuer.to_string(), (Instant::now(), keys.clone()));
        Ok(keys)
    }

    /// A JSON document from an issuer, read up to [`MAX_DOCUMENT`] bytes (a trusted issuer
    /// is still not trusted with this server's memory).
    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T, String> {
        let mut response = self
            .http
            .get(url)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| e.to_string())?;
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
            if body.len() + chunk.len() > MAX_DOCUMENT {
                return Err(format!("{url} answered more than {MAX_DOCUMENT} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&body).map_err(|e| format!("{url}: {e}"))
    }

    /// The issuer's key with this id: from memory, else fetched (again, if the key is new
    /// and the last fetch was not just now).
    async fn key(&self, issuer: &str, kid: Option<&str>) -> Result<jsonwebtoken::jwk::Jwk, ExchangeError> {
        let remembered = self.keys.lock().expect("keys lock").get(issuer).cloned();
        let find = |set: &JwkSet| match kid {
            Some(kid) => set.find(kid).cloned(),
            None if set.keys.len() == 1 => set.keys.first().cloned(),
            None => None,
        };
        if let Some((at, set)) = &remembered {
            if at.elapsed() < KEYS_LIFETIME
                && let Some(key) = find(set)
            {
                return Ok(key);
            }
            if at.elapsed() < REFETCH_AFTER {
                return Err(refused(format!("the issuer publishes no key {}", kid.unwrap_or("(none named)"))));
            }
        }
        let set = self.fetch(issuer).await?;
        find(&set).ok_or_else(|| refused(format!("the issuer publishes no key {}", kid.unwrap_or("(none named)"))))
    }
}

/// The claims of a JWT's payload, unverified: only to learn which issuer to check it with.
fn unverified_claims(token: &str) -> Option<Value> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Whether the claims meet every condition of the rule (claim = value; non-string claims
/// compare as their JSON text).
pub fn rule_matches(rule: &TrustRule, claims: &Value) -> bool {
    let Ok(conditions) = serde_json::from_str::<HashMap<String, String>>(&rule.conditions) else { return false };
    conditions.iter().all(|(claim, wanted)| match &claims[claim.as_str()] {
        Value::String(value) => value == wanted,
        Value::Null => false,
        other => serde_json::from_str::<Value>(wanted).is_ok_and(|value| value == *other),
    })
}

/// Verifies `token` and trades it for an API token scoped to the caches whose rules match.
pub async fn exchange(
    db: &Db,
    keys: &IssuerKeys,
    audience: &str,
    token: &str,
) -> Result<OidcTokenResponse, ExchangeError> {
    let token = token.trim();
    let header = jsonwebtoken::decode_header(token)
        .map_err(|e| refused(format!("not a signed JWT ({e}); unsigned tokens (alg none) are never accepted")))?;
    if !matches!(
        header.alg,
        Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512
            | Algorithm::ES256
            | Algorithm::ES384
            | Algorithm::EdDSA
    ) {
        // A shared-secret algorithm would let anyone sign with the issuer's public key.
        return Err(refused(format!("tokens signed with {:?} are not accepted", header.alg)));
    }
    let issuer = unverified_claims(token)
        .and_then(|claims| claims["iss"].as_str().map(str::to_string))
        .ok_or_else(|| refused("the token names no issuer (iss)"))?;
    let lookup = issuer.clone();
    if !db.read(move |c| trust::issuer_is_trusted(c, &lookup)).await? {
        return Err(refused(format!("no cache trusts tokens from {issuer}")));
    }
    let jwk = keys.key(&issuer, header.kid.as_deref()).await?;
    let key = DecodingKey::from_jwk(&jwk).map_err(|e| refused(format!("the issuer's key cannot be used: {e}")))?;
    let mut validation = Validation::new(header.alg);
    validation.set_issuer(&[&issuer]);
    validation.set_audience(&[audience]);
    validation.set_required_spec_claims(&["exp", "iss", "aud"]);
    validation.validate_nbf = true;
    validation.leeway = 60;
    let verified = jsonwebtoken::decode::<Value>(token, &key, &validation).map_err(|e| {
        refused(match e.kind() {
            jsonwebtoken::errors::ErrorKind::InvalidAudience => {
                format!("the token is not meant for this server (aud must be {audience})")
            }
            jsonwebtoken::errors::ErrorKind::ExpiredSignature => "the token expired".to_string(),
            jsonwebtoken::errors::ErrorKind::InvalidSignature => "the token's signature does not verify".to_string(),
            jsonwebtoken::errors::ErrorKind::ImmatureSignature => "the token is not valid yet (nbf)".to_string(),
            _ => format!("the token is not valid: {e}"),
        })
    })?;
    let claims = verified.claims;
    let expires_at = claims["exp"]
        .as_i64()
        .and_then(|exp| chrono::DateTime::from_timestamp(exp, 0))
        .map(|t| t.naive_utc())
        .ok_or_else(|| refused("the token's exp is not a time"))?;
    let (hash, lookup) = (hash_token(token), issuer.clone());
    db.write(move |c| {
        let matched: Vec<(TrustRule, String)> =
            trust::rules_for_issuer(c, &lookup)?.into_iter().filter(|(rule, _)| rule_matches(rule, &claims)).collect();
        if matched.is_empty() {
            return crate::db::refuse(refused("no cache's rule matches this token's claims"));
        }
        match trust::record_used(c, &hash, expires_at) {
            Err(e) if is_unique_violation(&e) => return crate::db::refuse(refused("this token was exchanged already")),
            other => other?,
        }
        // A push token reaches the caches whose push rules matched; else every matched cache, read only.
        let push = matched.iter().any(|(rule, _)| rule.can_push);
        let mut reached: Vec<(i64, String)> = matched
            .into_iter()
            .filter(|(rule, _)| rule.can_push || !push)
            .map(|(rule, name)| (rule.cache_id, name))
            .collect();
        reached.sort();
        reached.dedup();
        let owner = trust::system_user(c)?;
        let expires_at = now() + TOKEN_LIFETIME;
        let scope = TokenScope { cache_ids: Some(reached.iter().map(|(id, _)| *id).collect()), read_only: !push };
        let name = format!("trusted publishing {}", &hash[..12]);
        let token = issue_token(c, owner, &name, Some(expires_at), &scope)?;
        Ok(Ok(OidcTokenResponse {
            token,
            expires_at: expires_at.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            caches: reached.into_iter().map(|(_, name)| name).collect(),
            push,
        }))
    })
    .await?
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RuleError(pub String);

/// Conditions as people write them, `claim=value` each (at least one, no claim twice).
pub fn parse_conditions<'a>(lines: impl IntoIterator<Item = &'a str>) -> Result<HashMap<String, String>, RuleError> {
    let mut conditions = HashMap::new();
    for line in lines.into_iter().map(str::trim).filter(|l| !l.is_empty()) {
        let Some((claim, value)) = line.split_once('=') else {
            return Err(RuleError(format!("{line:?} is not claim=value, e.g. repository=acme/app")));
        };
        let (claim, value) = (claim.trim(), value.trim());
        if claim.is_empty() || value.is_empty() {
            return Err(RuleError(format!("{line:?} needs both a claim and a value")));
        }
        if ["iss", "aud", "exp", "iat", "nbf"].contains(&claim) {
            return Err(RuleError(format!(
                "{claim} is checked anyway; name claims about the job (repository, ref, ...)"
            )));
        }
        if conditions.insert(claim.to_string(), value.to_string()).is_some() {
            return Err(RuleError(format!("{claim} is named twice")));
        }
    }
    if conditions.is_empty() {
        return Err(RuleError(
            "name at least one condition, e.g. repository=acme/app: without one, every token the issuer signs would do"
                .into(),
        ));
    }
    Ok(conditions)
}

/// An issuer is an https URL (plain http only on this machine, for tests and local issuers).
pub fn check_issuer(issuer: &str) -> Result<(), RuleError> {
    let local = issuer.starts_with("http://127.0.0.1") || issuer.starts_with("http://localhost");
    if issuer.starts_with("https://") || local {
        Ok(())
    } else {
        Err(RuleError(format!(
            "the issuer must be an https URL, e.g. https://token.actions.githubusercontent.com, got {issuer:?}"
        )))
    }
}

/// Adds a rule to a cache: tokens from `issuer` whose claims have these values get push
/// (or read) on it.
pub async fn trust(
    db: &Db,
    cache: CacheId,
    issuer: &str,
    conditions: &HashMap<String, String>,
    push: bool,
) -> Result<(), DbError> {
    let (issuer, conditions) =
        (issuer.trim_end_matches('/').to_string(), serde_json::to_string(conditions).expect("a map of strings"));
    db.write(move |c| {
        trust::add_rule(c, cache, &issuer, &conditions, push)?;
        crate::db::replication::access_changed(c)?;
        Ok(())
    })
    .await
}

pub async fn rules(db: &Db, cache: CacheId) -> Result<Vec<TrustRule>, DbError> {
    db.read(move |c| trust::rules_of(c, cache)).await
}

/// Removes a rule of the cache; false when it has none with this id.
pub async fn untrust(db: &Db, cache: CacheId, rule: i64) -> Result<bool, DbError> {
    db.write(move |c| {
        let removed = trust::remove_rule(c, cache, rule)?;
        crate::db::replication::access_changed(c)?;
        Ok(removed)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(conditions: &str) -> TrustRule {
        TrustRule {
            id: 1,
            cache_id: 1,
            issuer: "https://token.actions.githubusercontent.com".into(),
            conditions: conditions.into(),
            can_push: true,
        }
    }

    #[test]
    fn rules_match_every_condition_exactly() {
        let claims = serde_json::json!({"repository": "acme/app", "ref": "refs/heads/main", "run_attempt": 1});
        assert!(rule_matches(&rule(r#"{"repository":"acme/app","ref":"refs/heads/main"}"#), &claims));
        assert!(rule_matches(&rule(r#"{"run_attempt":"1"}"#), &claims), "numbers compare as text");
        assert!(!rule_matches(&rule(r#"{"repository":"acme/app","ref":"refs/heads/dev"}"#), &claims));
        assert!(!rule_matches(&rule(r#"{"repository":"acme/App"}"#), &claims), "exact, case included");
        assert!(!rule_matches(&rule(r#"{"environment":"prod"}"#), &claims), "a missing claim never matches");
        assert!(!rule_matches(&rule("not json"), &claims));
    }
}

#[cfg(test)]
mod rule_tests {
    use super::*;

    #[test]
    fn conditions_need_a_claim_and_a_value_each_and_at_least_one() {
        let parsed = parse_conditions(["repository=acme/app", " ref = refs/heads/main "]).unwrap();
        assert_eq!(parsed["ref"], "refs/heads/main");
        assert!(parse_conditions(Vec::<&str>::new()).is_err(), "no condition trusts every token of the issuer");
        assert!(parse_conditions(["repository"]).is_err());
        assert!(parse_conditions(["aud=x"]).is_err());
        assert!(parse_conditions(["a=1", "a=2"]).is_err());
        assert!(check_issuer("https://token.actions.githubusercontent.com").is_ok());
        assert!(check_issuer("http://evil.example.com").is_err());
    }
}
