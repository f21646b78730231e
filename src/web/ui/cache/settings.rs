//! A cache's settings (visibility, priority, keys) and its danger zone (clear, delete).

use std::sync::Arc;

use askama::Template;
use poem::http::StatusCode;
use poem::web::{Data, Path};
use poem::{Request, Response, handler};
use serde::Deserialize;

use crate::db::permissions::Permission;

use super::pages::{CacheForm, not_found, readable};
use crate::db::DbError;
use crate::db::ids::{CacheId, GroupId, UserId};
use crate::db::models::{Cache, GrantLevel, QuotaPolicy, User};
use crate::services::caches::{self, CacheError};
use crate::services::identity::access::Access;
use crate::services::identity::grants::{self, Grantee};
use crate::services::identity::trusted_publishing;
use crate::web::AppState;
use crate::web::ui::extract::{CheckedForm, SignedIn, carries_csrf};
use crate::web::ui::{CsrfOnly, Failure, FormError, Layout, done, moved, render, unavailable};
use hibernation::api::Upstream;

#[derive(Template)]
#[template(path = "cache_settings.html")]
struct SettingsPage {
    layout: Layout,
    cache: Cache,
    /// What the settings form shows: the cache's settings, or what was typed before an error.
    values: CacheForm,
    policies: [QuotaPolicy; 4],
    can_delete: bool,
    can_edit_upstreams: bool,
    error: FormError,
    /// Users granted access: (id, name, level).
    grants: Vec<(UserId, String, GrantLevel)>,
    /// Users who could be granted access: (id, name).
    candidates: Vec<(UserId, String)>,
    /// Groups granted access: (id, name, level).
    group_grants: Vec<(GroupId, String, GrantLevel)>,
    /// Groups that could be granted access.
    group_candidates: Vec<(GroupId, String)>,
    /// The rights a grant can give, for the form and its explanation.
    levels: [GrantLevel; 3],
    /// Trusted publishing: the cache's rules, and the add form (with its error).
    rules: Vec<RuleView>,
    trust: TrustDraft,
}

/// A trusted publishing rule as the page lists it (added and removed in `trust`).
struct RuleView {
    id: i64,
    issuer: String,
    /// "repository = acme/app, ref = refs/heads/main".
    conditions: String,
    right: &'static str,
}

/// What the add form shows: empty, or what was typed before an error.
#[derive(Default)]
pub(in crate::web::ui) struct TrustDraft {
    pub(in crate::web::ui) issuer: String,
    pub(in crate::web::ui) conditions: String,
    pub(in crate::web::ui) push: bool,
    pub(in crate::web::ui) error: Option<String>,
}

async fn trust_rules(state: &AppState, cache: &Cache) -> Result<Vec<RuleView>, DbError> {
    let rules = trusted_publishing::rules(&state.db, CacheId(cache.id)).await?;
    Ok(rules
        .into_iter()
        .map(|rule| {
            let conditions: std::collections::BTreeMap<String, String> =
                serde_json::from_str(&rule.conditions).unwrap_or_default();
            RuleView {
                id: rule.id,
                issuer: rule.issuer,
                conditions: conditions.iter().map(|(k, v)| format!("{k} = {v}")).collect::<Vec<_>>().join(", "),
                right: if rule.can_push { "push" } else { "read" },
            }
        })
        .collect())
}

/// The settings form filled in with what the cache has now.
pub(in crate::web::ui) async fn current_values(
    state: &AppState,
    cache: &Cache,
    keys: Vec<String>,
) -> Result<CacheForm, DbError> {
    let upstreams = caches::upstreams_of(&state.db, cache.id).await?;
    Ok(CacheForm {
        csrf: String::new(),
        name: cache.name.clone(),
        public: cache.is_public.then(|| "on".to_string()),
        priority: cache.priority.to_string(),
        quota: cache.quota_bytes.map(|q| hibernation::human::gib_number(q.max(0) as u64)).unwrap_or_default(),
        keys: keys.join("\n"),
        upstreams: upstreams.iter().map(Upstream::to_line).collect::<Vec<_>>().join("\n"),
        allow_force: cache.allow_force_push.then(|| "on".to_string()),
        quota_policy: cache.quota_policy.clone(),
        retention_days: cache.retention_seconds.map(|s| (s / 86_400).to_string()).unwrap_or_default(),
    })
}

/// The settings page; with an error, 422 and the error next to its field.
async fn settings_page(
    state: &AppState,
    req: &Request,
    user: &User,
    cache: Cache,
    values: CacheForm,
    error: FormError,
) -> Response {
    settings_page_with(state, req, user, cache, values, error, TrustDraft::default()).await
}

/// The settings page with the trusted publishing form as given (typed values, error).
pub(in crate::web::ui) async fn settings_page_with(
    state: &AppState,
    req: &Request,
    user: &User,
    cache: Cache,
    values: CacheForm,
    error: FormError,
    trust: TrustDraft,
) -> Response {
    let lists = match grants::access_lists(&state.db, CacheId(cache.id)).await {
        Ok(lists) => lists,
        Err(e) => return unavailable(state, req, user, e),
    };
    let rules = match trust_rules(state, &cache).await {
        Ok(rules) => rules,
        Err(e) => return unavailable(state, req, user, e),
    };
    let failed = error.is_some() || trust.error.is_some();
    let status = if failed { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK };
    let page = SettingsPage {
        layout: Layout::new(req, Some(user)),
        cache,
        values,
        policies: QuotaPolicy::ALL,
        can_delete: user.holds(Permission::ManageCaches),
        can_edit_upstreams: user.holds(Permission::EditSettings),
        error,
        grants: lists.grants,
        candidates: lists.candidates,
        group_grants: lists.group_grants,
        group_candidates: lists.group_candidates,
        levels: GrantLevel::ALL,
        rules,
        trust,
    };
    render(state, status, &page.layout, &page)
}

/// The cache and its public keys, when `user` may change it; the response to send otherwise.
pub(in crate::web::ui) async fn editable(
    state: &Arc<AppState>,
    req: &Request,
    user: &User,
    name: &str,
) -> Result<(Cache, Vec<String>), Response> {
    match readable(state, user, name).await {
        Ok(Some((cache, Access::Manage, keys))) => Ok((cache, keys)),
        Ok(Some(_)) => {
            let text = "Changing this cache needs the manage right on it.".into();
            Err(Failure::Forbidden(text).page(state, req, Some(user)))
        }
        Ok(None) => Err(not_found(state, req, user, name)),
        Err(e) => Err(unavailable(state, req, user, e)),
    }
}

#[handler]
pub async fn show(
    req: &Request,
    state: Data<&Arc<AppState>>,
    Path(name): Path<String>,
    SignedIn(user): SignedIn,
) -> Response {
    let (cache, keys) = match editable(&state, req, &user, &name).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    match current_values(&state, &cache, keys).await {
        Ok(values) => settings_page(&state, req, &user, cache, values, FormError::default()).await,
        Err(e) => unavailable(&state, req, &user, e),
    }
}

#[handler]
pub async fn update(
    req: &Request,
    state: Data<&Arc<AppState>>,
    Path(name): Path<String>,
    CheckedForm { user, form }: CheckedForm<CacheForm>,
) -> Response {
    let (cache, _) = match editable(&state, req, &user, &name).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    // An empty name keeps the current one.
    let new_name = Some(form.name.trim()).filter(|n| !n.is_empty()).unwrap_or(&cache.name).to_string();
    let settings = match form.validate(&new_name, user.holds(Permission::EditSettings)) {
        Ok(valid) => valid,
        Err(error) => return settings_page(&state, req, &user, cache, form, error).await,
    };
    // A lowered quota under an evicting policy makes room at once.
    match caches::update(&state.db, &state.hot, &cache, &new_name, settings, state.lifecycle.eviction_min_age).await {
        Ok(_) => moved(&state, req, &format!("/caches/{new_name}"), "Settings saved."),
        Err(CacheError::NameTaken(_)) => {
            let error = FormError::new("name", format!("A cache named {new_name} exists. Nothing was changed."));
            settings_page(&state, req, &user, cache, form, error).await
        }
        Err(CacheError::Db(e)) => unavailable(&state, req, &user, e),
    }
}

#[derive(Deserialize)]
pub struct ConfirmForm {
    #[serde(default)]
    csrf: String,
    /// The cache name typed again, so a stray click cannot destroy anything.
    #[serde(default)]
    confirm: String,
}

async fn destroy(
    state: &Arc<AppState>,
    req: &Request,
    user: User,
    name: &str,
    form: ConfirmForm,
    whole_cache: bool,
) -> Response {
    let (cache, keys) = match editable(state, req, &user, name).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    if whole_cache && !user.holds(Permission::ManageCaches) {
        return Failure::Forbidden("Only those who may manage every cache delete caches.".into()).page(
            state,
            req,
            Some(&user),
        );
    }
    if form.confirm.trim() != cache.name {
        let field = if whole_cache { "confirm-delete" } else { "confirm-clear" };
        let error =
            FormError::new(field, format!("Type the cache name ({}) to confirm. Nothing was changed.", cache.name));
        return match current_values(state, &cache, keys).await {
            Ok(values) => settings_page(state, req, &user, cache, values, error).await,
            Err(e) => unavailable(state, req, &user, e),
        };
    }
    match caches::destroy(&state.db, &state.hot, &state.storage, &cache, whole_cache).await {
        Ok(()) => {
            if whole_cache {
                moved(state, req, "/caches", &format!("Cache {} deleted.", cache.name))
            } else {
                moved(state, req, &format!("/caches/{}", cache.name), &format!("Every path of {} removed.", cache.name))
            }
        }
        Err(e) => unavailable(state, req, &user, e),
    }
}

#[handler]
pub async fn clear(
    req: &Request,
    state: Data<&Arc<AppState>>,
    Path(name): Path<String>,
    CheckedForm { user, form }: CheckedForm<ConfirmForm>,
) -> Response {
    destroy(&state, req, user, &name, form, false).await
}

#[handler]
pub async fn delete_cache(
    req: &Request,
    state: Data<&Arc<AppState>>,
    Path(name): Path<String>,
    CheckedForm { user, form }: CheckedForm<ConfirmForm>,
) -> Response {
    destroy(&state, req, user, &name, form, true).await
}

#[derive(Deserialize)]
pub struct GrantForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    user_id: Option<i64>,
    #[serde(default)]
    group_id: Option<i64>,
    /// "read" or "push".
    #[serde(default)]
    permission: String,
}

/// Grants a user or group read or push access. The granter holds push access (needed to
/// get here), so nobody grants more than they hold.
async fn apply_grant(
    state: &Arc<AppState>,
    req: &Request,
    user: User,
    name: &str,
    form: GrantForm,
    grantee: Grantee,
) -> Response {
    let (cache, _) = match editable(state, req, &user, name).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let Some(level) = GrantLevel::parse(&form.permission) else {
        let text = "Choose read, push or manage.".into();
        return Failure::Invalid { heading: "Not a right", text }.page(state, req, Some(&user));
    };
    let granted = grants::grant(&state.db, Some(&state.hot), CacheId(cache.id), grantee, level).await;
    match granted {
        Ok(true) => {
            done(state, &format!("/caches/{}/settings", cache.name), &format!("Access granted: {}.", level.name()))
        }
        Ok(false) => {
            let text = "Choose from the list.".into();
            Failure::Invalid { heading: "Not found", text }.page(state, req, Some(&user))
        }
        Err(e) => unavailable(state, req, &user, e),
    }
}

async fn apply_revoke(state: &Arc<AppState>, req: &Request, user: User, name: &str, grantee: Grantee) -> Response {
    let (cache, _) = match editable(state, req, &user, name).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let revoked = grants::revoke(&state.db, &state.hot, CacheId(cache.id), grantee).await;
    match revoked {
        Ok(()) => done(state, &format!("/caches/{}/settings", cache.name), "Access revoked."),
        Err(e) => unavailable(state, req, &user, e),
    }
}

#[handler]
pub async fn grant(
    req: &Request,
    state: Data<&Arc<AppState>>,
    Path(name): Path<String>,
    CheckedForm { user, form }: CheckedForm<GrantForm>,
) -> Response {
    let grantee = Grantee::User(UserId(form.user_id.unwrap_or_default()));
    apply_grant(&state, req, user, &name, form, grantee).await
}

#[handler]
pub async fn revoke(
    req: &Request,
    state: Data<&Arc<AppState>>,
    Path((name, target)): Path<(String, i64)>,
    CheckedForm { user, .. }: CheckedForm<CsrfOnly>,
) -> Response {
    apply_revoke(&state, req, user, &name, Grantee::User(UserId(target))).await
}

#[handler]
pub async fn grant_group(
    req: &Request,
    state: Data<&Arc<AppState>>,
    Path(name): Path<String>,
    CheckedForm { user, form }: CheckedForm<GrantForm>,
) -> Response {
    let grantee = Grantee::Group(GroupId(form.group_id.unwrap_or_default()));
    apply_grant(&state, req, user, &name, form, grantee).await
}

#[handler]
pub async fn revoke_group(
    req: &Request,
    state: Data<&Arc<AppState>>,
    Path((name, group)): Path<(String, i64)>,
    CheckedForm { user, .. }: CheckedForm<CsrfOnly>,
) -> Response {
    apply_revoke(&state, req, user, &name, Grantee::Group(GroupId(group))).await
}

carries_csrf!(ConfirmForm, GrantForm);
