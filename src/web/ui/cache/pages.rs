//! Caches: list, create, the cache page (how to use it, its paths) and deleting paths.

use std::sync::Arc;

use askama::Template;
use hibernation::api::Upstream;
use hibernation::nix::store_path::is_hash_part;
use poem::http::StatusCode;
use poem::web::{Data, Html, Path, Query};
use poem::{IntoResponse, Request, Response, handler};
use serde::Deserialize;

use crate::db::DbError;
use crate::db::browse::{PAGE_SIZE, PathRow, SortKey};
use crate::db::caches::CacheSettings;
use crate::db::models::{Cache, QuotaPolicy, User};
use crate::db::paths::DeleteOutcome;
use crate::db::permissions::Permission;
use crate::services::caches::{self, CacheError};
use crate::services::dashboard::{self, CacheSummary, PathsPage};
use crate::services::identity::access::Access;
use crate::web::AppState;
use crate::web::ui::extract::{CheckedForm, SignedIn, carries_csrf};
use crate::web::ui::{CsrfOnly, Failure, FormError, Layout, human_bytes, query_value, render, unavailable};
use hibernation::human::gib;

pub struct CacheRow {
    pub name: String,
    pub is_public: bool,
    pub paths: i64,
    pub bytes: i64,
    pub quota_bytes: Option<i64>,
}

impl CacheRow {
    /// "used of quota" in GiB, the one unit quotas are shown in.
    pub fn usage(&self) -> String {
        match self.quota_bytes {
            Some(q) => format!("{} of {}", gib(self.bytes.max(0) as u64), gib(q.max(0) as u64)),
            None => format!("{} (no quota)", gib(self.bytes.max(0) as u64)),
        }
    }
}

#[derive(Template)]
#[template(path = "caches.html")]
struct CachesPage {
    layout: Layout,
    caches: Vec<CacheRow>,
    can_create: bool,
    can_edit_upstreams: bool,
    form: CacheForm,
    error: FormError,
    policies: [QuotaPolicy; 4],
}

impl CachesPage {
    /// A key name for the help text: the typed cache name, or the site's host name.
    fn key_name(&self) -> String {
        let name = self.form.name.trim();
        format!("{}-1", if name.is_empty() { "cache" } else { name })
    }
}

pub fn not_found(state: &AppState, req: &Request, user: &User, name: &str) -> Response {
    Failure::NoSuchCache(name.to_string()).page(state, req, Some(user))
}

async fn visible_caches(state: &AppState, user: &User) -> Result<Vec<CacheRow>, DbError> {
    let summaries = dashboard::visible_caches(&state.db, user).await?;
    Ok(summaries
        .into_iter()
        .map(|CacheSummary { cache, paths, bytes }| CacheRow {
            name: cache.name,
            is_public: cache.is_public,
            paths,
            bytes,
            quota_bytes: cache.quota_bytes,
        })
        .collect())
}

async fn list_page(state: &AppState, req: &Request, user: &User, form: CacheForm, error: FormError) -> Response {
    let status = if error.is_some() { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK };
    match visible_caches(state, user).await {
        Ok(caches) => {
            let can_create = user.holds(Permission::CreateCaches);
            let page = CachesPage {
                layout: Layout::new(req, Some(user)),
                caches,
                can_create,
                can_edit_upstreams: user.holds(Permission::EditSettings),
                form,
                error,
                policies: QuotaPolicy::ALL,
            };
            render(state, status, &page.layout, &page)
        }
        Err(e) => unavailable(state, req, user, e),
    }
}

#[handler]
pub async fn list(req: &Request, state: Data<&Arc<AppState>>, SignedIn(user): SignedIn) -> Response {
    let defaults =
        CacheForm { priority: "41".into(), upstreams: Upstream::default_upstream().to_line(), ..Default::default() };
    list_page(&state, req, &user, defaults, FormError::default()).await
}

/// The fields of the create and the settings forms of a cache.
#[derive(Default, Deserialize)]
pub struct CacheForm {
    #[serde(default)]
    pub csrf: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub public: Option<String>,
    #[serde(default)]
    pub priority: String,
    #[serde(default)]
    pub quota: String,
    #[serde(default)]
    pub keys: String,
    /// Upstream caches, one `<url> <key>...` per line.
    #[serde(default)]
    pub upstreams: String,
    #[serde(default)]
    pub allow_force: Option<String>,
    /// refuse, lru, lfu or oldest (empty: refuse).
    #[serde(default)]
    pub quota_policy: String,
    /// Days a path may go unused before retention removes it (empty: kept).
    #[serde(default)]
    pub retention_days: String,
}

impl CacheForm {
    /// Checks the form for a cache that will be called `name`: the name, the priority, the
    /// quota in GiB (empty for none), the public keys, one per line, and, for administrators
    /// (`may_set_upstreams`), the upstreams and `--force`; otherwise those are left as they are.
    pub fn validate(&self, name: &str, may_set_upstreams: bool) -> Result<CacheSettings, FormError> {
        let error = |e: caches::SettingError| FormError::new(e.field, e.message);
        caches::check_name(name).map_err(error)?;
        let priority: i32 =
            self.priority.trim().parse().map_err(|_| FormError::new("priority", "Enter a whole number, e.g. 41."))?;
        if !(0..=1000).contains(&priority) {
            return Err(FormError::new("priority", "Use a priority from 0 to 1000."));
        }
        let keys = caches::check_keys(self.keys.lines()).map_err(error)?;
        if keys.is_empty() {
            return Err(FormError::new(
                "keys",
                "Add at least one public key (from `nix key convert-secret-to-public`).",
            ));
        }
        let quota_bytes = caches::parse_quota_gib(&self.quota).map_err(error)?;
        let quota_policy = caches::parse_policy(&self.quota_policy).map_err(error)?;
        let retention_seconds = match self.retention_days.trim() {
            "" => None,
            text => match text.parse::<i64>() {
                Ok(days) if (1..=36_500).contains(&days) => Some(days * 86_400),
                _ => return Err(FormError::new("retention_days", "Enter a whole number of days, or leave it empty.")),
            },
        };
        // Upstream URLs make the server send requests, and --force overrides them: both
        // are an administrator's decision.
        let (upstreams, allow_force_push) = if may_set_upstreams {
            (Some(caches::parse_upstreams(self.upstreams.lines()).map_err(error)?), Some(self.allow_force.is_some()))
        } else {
            (None, None)
        };
        Ok(CacheSettings {
            is_public: self.public.is_some(),
            priority,
            quota_bytes,
            keys,
            upstreams,
            allow_force_push,
            quota_policy,
            retention_seconds,
        })
    }
}

#[handler]
pub async fn create(
    req: &Request,
    state: Data<&Arc<AppState>>,
    CheckedForm { user, form }: CheckedForm<CacheForm>,
) -> Response {
    if !user.holds(Permission::CreateCaches) {
        let text = "Only members of a group allowed to create caches create them.".into();
        return Failure::Forbidden(text).page(&state, req, Some(&user));
    }
    let settings = match form.validate(&form.name, user.holds(Permission::EditSettings)) {
        Ok(valid) => valid,
        Err(error) => return list_page(&state, req, &user, form, error).await,
    };
    // Whoever creates a cache may push to it and manage it.
    match caches::create(&state.db, Some(&user), &form.name, settings).await {
        Ok(_) => crate::web::ui::moved(
            &state,
            req,
            &format!("/caches/{}", form.name),
            &format!("Cache {} created.", form.name),
        ),
        Err(CacheError::NameTaken(_)) => {
            list_page(&state, req, &user, form, FormError::new("name", "A cache with this name exists.")).await
        }
        Err(CacheError::Db(e)) => unavailable(&state, req, &user, e),
    }
}

/// The cache, if the user may read it, with their access and its public keys.
pub async fn readable(
    state: &AppState,
    user: &User,
    name: &str,
) -> Result<Option<(Cache, Access, Vec<String>)>, DbError> {
    dashboard::readable(&state.db, user, name).await
}

#[derive(Template)]
#[template(path = "cache.html")]
struct CachePage {
    layout: Layout,
    cache: Cache,
    url: String,
    /// The cache's own host when VIRTUAL_HOST_ROUTING is on.
    virtual_host_url: Option<String>,
    host: String,
    keys: Vec<String>,
    can_push: bool,
    /// The user may change settings and access, delete paths, clear and delete the cache.
    can_manage: bool,
    paths: PathsPartial,
    storage: super::storage::StorageCard,
}

#[derive(Template)]
#[template(path = "paths.html")]
struct PathsPartial {
    csrf: String,
    cache: String,
    rows: Vec<PathRow>,
    total: i64,
    query: PathQuery,
    can_delete: bool,
    /// The cache's contents stamp when this table was drawn: the table asks every few
    /// seconds whether it changed (see `browse::contents_stamp`).
    stamp: String,
}

impl PathsPartial {
    fn size(&self, row: &PathRow) -> String {
        format!("{} ({} stored)", human_bytes(row.nar_size), human_bytes(row.file_size))
    }

    /// What is being searched for, to show in the search box.
    fn search(&self) -> String {
        self.query.q()
    }

    fn has_next(&self) -> bool {
        (self.query.page() + 1) * PAGE_SIZE < self.total
    }

    /// The query string of the table sorted by `sort` at `page` (the same sort again flips
    /// its direction): `/caches/<name>?<it>` is the page, `/caches/<name>/paths?<it>` the table.
    fn link(&self, sort: &str, page: i64) -> String {
        let desc =
            if sort == self.query.sort() && page == self.query.page() { !self.query.desc() } else { self.query.desc() };
        format!("q={}&sort={sort}&desc={desc}&page={page}", query_value(&self.query.q()))
    }

    /// The query string of this very table (search, sort, direction and page).
    fn here(&self) -> String {
        let query = &self.query;
        format!("q={}&sort={}&desc={}&page={}", query_value(&query.q()), query.sort(), query.desc(), query.page())
    }
}

/// The table row that replaces a path row whose deletion failed (escaped by Askama).
#[derive(Template)]
#[template(source = "<tr><td colspan=\"6\" class=\"error\">{{ text }}</td></tr>", ext = "html")]
struct ErrorRow {
    text: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct PathQuery {
    q: Option<String>,
    sort: Option<String>,
    desc: Option<bool>,
    page: Option<i64>,
    /// A live table's stamp: unchanged contents answer 204 and the table stays as it is.
    live: Option<String>,
}

impl PathQuery {
    /// The search: a whole store path (`/nix/store/<hash>-<name>`) searches for its base name.
    fn q(&self) -> String {
        let q = self.q.as_deref().unwrap_or_default().trim();
        q.strip_prefix("/nix/store/").unwrap_or(q).chars().take(100).collect()
    }
    fn sort(&self) -> &str {
        SortKey::parse(self.sort.as_deref().unwrap_or("created")).name()
    }
    fn desc(&self) -> bool {
        self.desc.unwrap_or(true)
    }
    fn page(&self) -> i64 {
        self.page.unwrap_or(0).max(0)
    }
}

/// One page of the path table, its total and the cache's contents stamp.
async fn load_paths(
    state: &AppState,
    cache_id: i64,
    query: &PathQuery,
) -> Result<(Vec<PathRow>, i64, String), DbError> {
    let (sort, desc, page) = (SortKey::parse(query.sort()), query.desc(), query.page());
    let PathsPage { rows, total, stamp } =
        dashboard::paths_page(&state.db, cache_id, query.q(), sort, desc, page).await?;
    Ok((rows, total, stamp))
}

#[handler]
pub async fn show(
    req: &Request,
    state: Data<&Arc<AppState>>,
    Path(name): Path<String>,
    Query(query): Query<PathQuery>,
    SignedIn(user): SignedIn,
) -> Response {
    cache_page(&state, req, &user, &name, query, None).await
}

/// The cache page; with `attempt`, a refused pin shown in its form (422).
pub async fn cache_page(
    state: &Arc<AppState>,
    req: &Request,
    user: &User,
    name: &str,
    query: PathQuery,
    attempt: Option<super::storage::PinAttempt>,
) -> Response {
    let (cache, access, keys) = match readable(state, user, name).await {
        Ok(Some(found)) => found,
        Ok(None) => return not_found(state, req, user, name),
        Err(e) => return unavailable(state, req, user, e),
    };
    let (rows, total, stamp) = match load_paths(state, cache.id, &query).await {
        Ok(found) => found,
        Err(e) => return unavailable(state, req, user, e),
    };
    let mut storage = match super::storage::StorageCard::load(state, &cache).await {
        Ok(card) => card,
        Err(e) => return unavailable(state, req, user, e),
    };
    let status = if attempt.is_some() { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK };
    storage.attempt = attempt;
    let layout = Layout::new(req, Some(user));
    let site = state.site.url.clone();
    let host = site.split("://").nth(1).unwrap_or(&site).split(['/', ':']).next().unwrap_or_default().to_string();
    let paths = PathsPartial {
        csrf: layout.csrf.clone(),
        cache: cache.name.clone(),
        rows,
        total,
        query,
        can_delete: access == Access::Manage,
        stamp,
    };
    let page = CachePage {
        url: crate::services::serving::cache_info::substituter_url(&site, &cache.name),
        virtual_host_url: state.site.virtual_host_url(&cache.name),
        host,
        keys,
        can_push: access >= Access::Push,
        can_manage: access == Access::Manage,
        cache,
        paths,
        storage,
        layout,
    };
    render(state, status, &page.layout, &page)
}

/// The path table alone, for htmx search, sort and paging.
#[handler]
pub async fn paths_table(
    req: &Request,
    state: Data<&Arc<AppState>>,
    Path(name): Path<String>,
    Query(query): Query<PathQuery>,
    SignedIn(user): SignedIn,
) -> Response {
    // Opened directly (a bookmark, a reload of a pushed URL, no JavaScript): the whole page.
    if !crate::web::ui::is_htmx(req) {
        let query_string = req.uri().query().map(|q| format!("?{q}")).unwrap_or_default();
        return crate::web::ui::redirect(&format!("/caches/{name}{query_string}"));
    }
    let (cache, access) = match readable(&state, &user, &name).await {
        Ok(Some((cache, access, _))) => (cache, access),
        Ok(None) => return not_found(&state, req, &user, &name),
        Err(e) => return unavailable(&state, req, &user, e),
    };
    if let Some(seen) = &query.live {
        match caches::contents_stamp(&state.db, cache.id).await {
            Ok(stamp) if stamp == *seen => return StatusCode::NO_CONTENT.into_response(),
            Ok(_) => {}
            Err(e) => return unavailable(&state, req, &user, e),
        }
    }
    match load_paths(&state, cache.id, &query).await {
        Ok((rows, total, stamp)) => {
            let layout = Layout::new(req, Some(&user));
            let partial = PathsPartial {
                csrf: layout.csrf.clone(),
                cache: cache.name,
                rows,
                total,
                query,
                can_delete: access == Access::Manage,
                stamp,
            };
            render(&state, StatusCode::OK, &layout, &partial)
        }
        Err(e) => unavailable(&state, req, &user, e),
    }
}

/// Deletes one path (htmx replaces its table row with the answer).
#[handler]
pub async fn delete_path(
    req: &Request,
    state: Data<&Arc<AppState>>,
    Path((name, hash)): Path<(String, String)>,
    CheckedForm { user, .. }: CheckedForm<CsrfOnly>,
) -> Response {
    let cache = match readable(&state, &user, &name).await {
        Ok(Some((cache, Access::Manage, _))) => cache,
        Ok(Some(_)) => {
            let text = "Deleting paths needs the manage right on this cache.".into();
            return Failure::Forbidden(text).page(&state, req, Some(&user));
        }
        Ok(None) => return not_found(&state, req, &user, &name),
        Err(e) => return unavailable(&state, req, &user, e),
    };
    if !is_hash_part(&hash) {
        return not_found(&state, req, &user, &name);
    }
    let row = |text: String| Html(ErrorRow { text }.render().unwrap_or_default()).into_response();
    match caches::delete_path(&state.db, &state.hot, cache.id, &hash).await {
        Ok(DeleteOutcome::Deleted) => {
            Html("<tr class=\"deleted\"><td colspan=\"6\" class=\"muted\">Deleted.</td></tr>").into_response()
        }
        Ok(DeleteOutcome::NotFound) => row("This path was already deleted.".into()),
        Ok(DeleteOutcome::StillNeeded(names)) => {
            let names = names.join(", ");
            row(format!("Other paths need this one ({names}); delete them first."))
                .with_status(StatusCode::CONFLICT)
                .into_response()
        }
        Err(e) => unavailable(&state, req, &user, e),
    }
}

carries_csrf!(CacheForm);
