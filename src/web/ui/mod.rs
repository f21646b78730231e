//! The dashboard: server-rendered Askama pages, htmx for partial updates. Every page needs
//! a signed-in user (setup and sign-in excepted); every form carries a CSRF token that must
//! match the `hibernation_csrf` cookie (double submit, SameSite=Strict).

mod cache;
mod extract;
mod failure;
mod overview;
mod people;
mod settings;
mod sign_in;

use std::sync::Arc;

use askama::Template;
use base64::Engine;
use poem::http::{StatusCode, header};
use poem::{Request, Response, Route, get, post};

use super::AppState;
use crate::db::models::User;
use crate::db::permissions::{Permission, Permissions};
use crate::random::random_id;
use crate::services::identity::sessions;
pub use failure::Failure;

pub const SESSION_COOKIE: &str = "hibernation_session";
pub const CSRF_COOKIE: &str = "hibernation_csrf";
/// A one-time message for the next page ("Token revoked."), set by [`done`].
const NOTICE_COOKIE: &str = "hibernation_notice";

pub fn routes() -> Route {
    Route::new()
        .at("/", get(overview::overview))
        .at("/setup", get(sign_in::auth::setup_page).post(sign_in::auth::setup))
        .at("/sign-in", get(sign_in::auth::sign_in_page).post(sign_in::auth::sign_in))
        .at("/sign-out", post(sign_in::auth::sign_out))
        .at("/oidc/start", get(sign_in::oidc::start))
        .at("/oidc/callback", get(sign_in::oidc::callback))
        .at("/caches", get(cache::pages::list).post(cache::pages::create))
        .at("/caches/:name", get(cache::pages::show))
        .at("/caches/:name/paths", get(cache::pages::paths_table))
        .at("/caches/:name/paths/:hash/delete", post(cache::pages::delete_path))
        .at("/caches/:name/settings", get(cache::settings::show).post(cache::settings::update))
        .at("/caches/:name/clear", post(cache::settings::clear))
        .at("/caches/:name/access", post(cache::settings::grant))
        .at("/caches/:name/access/:user/revoke", post(cache::settings::revoke))
        .at("/caches/:name/group-access", post(cache::settings::grant_group))
        .at("/caches/:name/group-access/:group/revoke", post(cache::settings::revoke_group))
        .at("/caches/:name/delete", post(cache::settings::delete_cache))
        .at("/caches/:name/trust", post(cache::trust::add))
        .at("/caches/:name/trust/:rule/remove", post(cache::trust::remove))
        .at("/caches/:name/pins", post(cache::pins::pin))
        .at("/caches/:name/pins/:pin/delete", post(cache::pins::unpin))
        .at("/account", get(people::account::show).post(people::account::update))
        .at("/account/avatar", post(people::avatar::upload))
        .at("/account/avatar/remove", post(people::avatar::remove))
        .at("/avatars/:id", get(people::avatar::serve))
        .at("/account/email", post(people::account::change_email))
        .at("/account/email/confirm", post(people::account::confirm_email))
        .at("/account/email/cancel", post(people::account::cancel_email))
        .at("/users", get(people::users::list).post(people::users::create))
        .at("/users/invite", post(people::users::invite))
        .at("/users/:id/reinvite", post(people::users::reinvite))
        .at("/users/:id/delete", post(people::users::delete))
        .at("/users/:id", get(people::user_page::show))
        .at("/users/:id/profile", post(people::user_page::profile))
        .at("/users/:id/password", post(people::user_page::password))
        .at("/users/:id/groups", post(people::user_page::join_group))
        .at("/users/:id/groups/:group/remove", post(people::user_page::leave_group))
        .at("/users/:id/access", post(people::user_page::grant))
        .at("/users/:id/access/:cache/revoke", post(people::user_page::revoke))
        .at("/settings", get(settings::show).post(settings::save))
        .at("/settings/test-mail", post(settings::test_mail))
        .at("/settings/sso", post(settings::save_sso))
        .at("/invite/:secret", get(sign_in::links::invite_page).post(sign_in::links::accept_invite))
        .at("/reset/:secret", get(sign_in::links::reset_page).post(sign_in::links::reset_password))
        .at("/forgot-password", get(sign_in::links::forgot_page).post(sign_in::links::forgot))
        .at("/groups", get(people::groups::list).post(people::groups::create))
        .at("/groups/:id/permissions", post(people::groups::set_permissions))
        .at("/groups/:id/members", post(people::groups::add_member))
        .at("/groups/:id/members/:user/remove", post(people::groups::remove_member))
        .at("/groups/:id/delete", post(people::groups::delete))
        .at("/tokens", get(people::tokens::list).post(people::tokens::create))
        .at("/tokens/:id/revoke", post(people::tokens::revoke))
        .at("/tokens/:id/edit", post(people::tokens::edit))
        .at("/tokens/:id/regenerate", post(people::tokens::regenerate))
        .at("/tokens/delete-ended", post(people::tokens::delete_ended))
        .at("/cli-login", get(sign_in::cli_login::show).post(sign_in::cli_login::check))
        .at("/cli-login/approve", post(sign_in::cli_login::approve))
        .at("/cli-login/deny", post(sign_in::cli_login::deny))
}

/// A form that carries nothing but its CSRF token (revoke, delete, sign out).
#[derive(serde::Deserialize)]
pub struct CsrfOnly {
    #[serde(default)]
    pub csrf: String,
}
extract::carries_csrf!(CsrfOnly);

/// A form's error, shown next to the field it is about.
#[derive(Debug, Default)]
pub struct FormError(Option<(&'static str, String)>);

impl FormError {
    pub fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self(Some((field, message.into())))
    }

    pub fn is_some(&self) -> bool {
        self.0.is_some()
    }

    /// The message for `field`, if the error is about it.
    pub fn at(&self, field: &str) -> Option<&str> {
        self.0.as_ref().filter(|(f, _)| *f == field).map(|(_, m)| m.as_str())
    }
}

/// What every page's frame needs.
pub struct Layout {
    pub user: Option<String>,
    /// The signed-in user's avatar tag (HTML) for the nav.
    pub avatar: String,
    /// The signed-in user's global permissions (which nav entries and figures they see).
    pub permissions: Permissions,
    pub csrf: String,
    /// The nav entry of the page shown ("/", "/caches", ...), marked as the current one.
    pub section: String,
    /// What the last action did, shown once at the top of the page.
    pub notice: Option<String>,
    /// The CSRF cookie must be set on this response (the browser had none).
    new_csrf: bool,
}

impl Layout {
    pub fn new(req: &Request, user: Option<&User>) -> Self {
        let existing = expected_csrf(req);
        let new_csrf = existing.is_none();
        let first = req.uri().path().split('/').nth(1).unwrap_or_default();
        Self {
            user: user.map(|u| u.name.clone()),
            avatar: user.map(people::avatar::AvatarTag::avatar).unwrap_or_default(),
            permissions: user.map_or(Permissions::NONE, |u| u.permissions),
            csrf: existing.unwrap_or_else(random_id),
            section: format!("/{first}"),
            notice: cookie(req, NOTICE_COOKIE).and_then(|value| decode_notice(&value)),
            new_csrf,
        }
    }

    pub fn is_admin(&self) -> bool {
        self.permissions.is_all()
    }

    pub fn can_view_users(&self) -> bool {
        self.permissions.holds(Permission::ViewUsers)
    }

    pub fn can_view_groups(&self) -> bool {
        self.permissions.holds(Permission::ViewGroups)
    }

    pub fn can_edit_groups(&self) -> bool {
        self.permissions.holds(Permission::EditGroups)
    }

    pub fn can_edit_users(&self) -> bool {
        self.permissions.holds(Permission::EditUsers)
    }

    /// May the viewer change `user`'s account: they edit users and hold all `user` holds.
    pub fn may_edit(&self, user: &User) -> bool {
        self.can_edit_users() && self.permissions.covers(user.permissions)
    }

    pub fn can_edit_settings(&self) -> bool {
        self.permissions.holds(Permission::EditSettings)
    }

    /// May the viewer change `group` (its permissions, members, existence): they edit groups
    /// and hold all it gives globally (its cache grants are checked when they act).
    pub fn may_change_group(&self, group: &crate::db::groups::Group) -> bool {
        self.can_edit_groups() && self.holds_all_of(group)
    }

    /// Does the viewer hold every global permission `group` gives (so may put someone in it
    /// or take them out, on a user's page)?
    pub fn holds_all_of(&self, group: &crate::db::groups::Group) -> bool {
        self.permissions.covers(group.permissions)
    }

    pub fn can_view_settings(&self) -> bool {
        self.permissions.holds(Permission::ViewSettings)
    }

    /// The assets' fingerprint for their URLs (see `assets::asset_version`).
    pub fn assets(&self) -> &'static str {
        crate::web::assets::asset_version()
    }

    /// `aria-current="page"` for the nav link of this page's section.
    pub fn current(&self, href: &str) -> &'static str {
        if self.section == href { "aria-current=\"page\"" } else { "" }
    }
}

/// The CSRF token a form must carry. With a session it is derived from the session secret,
/// so a token seen in one session (or before signing in) is worth nothing in another;
/// without one (sign-in, setup) it is the double-submit `hibernation_csrf` cookie.
fn expected_csrf(req: &Request) -> Option<String> {
    match cookie(req, SESSION_COOKIE).filter(|s| !s.is_empty()) {
        Some(session) => {
            Some(crate::services::identity::auth::hash_token(&format!("csrf:{session}"))[..32].to_string())
        }
        None => cookie(req, CSRF_COOKIE).filter(|v| v.len() == 32 && v.bytes().all(|b| b.is_ascii_hexdigit())),
    }
}

/// The page for URLs that match no route (the cache protocol answers its own 404s).
pub fn not_found_page() -> Response {
    let page = MessagePage {
        layout: Layout {
            user: None,
            avatar: String::new(),
            permissions: Permissions::NONE,
            csrf: String::new(),
            section: String::new(),
            notice: None,
            new_csrf: false,
        },
        heading: "Page not found".into(),
        message: "There is nothing at this address.".into(),
    };
    match page.render() {
        Ok(html) => {
            Response::builder().status(StatusCode::NOT_FOUND).content_type("text/html; charset=utf-8").body(html)
        }
        Err(_) => Response::builder().status(StatusCode::NOT_FOUND).body("not found"),
    }
}

pub fn cookie(req: &Request, name: &str) -> Option<String> {
    req.headers().get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(
        |pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == name).then(|| v.to_string())
        },
    )
}

fn cookie_header(state: &AppState, name: &str, value: &str, max_age: i64, same_site: &str) -> String {
    let secure = state.site.secure_cookie_attribute();
    format!("{name}={value}; Path=/; HttpOnly; SameSite={same_site}; Max-Age={max_age}{secure}")
}

pub fn session_cookie(state: &AppState, token: &str) -> String {
    cookie_header(state, SESSION_COOKIE, token, sessions::SESSION_LIFETIME.num_seconds(), "Lax")
}

pub fn clear_session_cookie(state: &AppState) -> String {
    cookie_header(state, SESSION_COOKIE, "", 0, "Lax")
}

/// Renders a page with `status`, setting the CSRF cookie when the browser has none yet.
pub fn render(state: &AppState, status: StatusCode, layout: &Layout, page: &impl Template) -> Response {
    match page.render() {
        Ok(html) => {
            // No page may be framed by another site (clickjacking of approve and delete buttons).
            let mut response = Response::builder()
                .status(status)
                .content_type("text/html; charset=utf-8")
                .header("x-frame-options", "DENY")
                .header("content-security-policy", "frame-ancestors 'none'")
                .body(html);
            if layout.new_csrf {
                let value = cookie_header(state, CSRF_COOKIE, &layout.csrf, 7 * 24 * 3600, "Strict");
                response.headers_mut().append(header::SET_COOKIE, value.parse().expect("cookie header"));
            }
            if layout.notice.is_some() {
                // Shown once: a reload or the next page does not repeat it.
                let value = cookie_header(state, NOTICE_COOKIE, "", 0, "Lax");
                response.headers_mut().append(header::SET_COOKIE, value.parse().expect("cookie header"));
            }
            response
        }
        Err(e) => {
            tracing::error!("template error: {e}");
            Response::builder().status(StatusCode::INTERNAL_SERVER_ERROR).body("The page could not be rendered.")
        }
    }
}

pub fn redirect(to: &str) -> Response {
    Response::builder().status(StatusCode::SEE_OTHER).header(header::LOCATION, to).finish()
}

/// The answer to an action that worked: back to the page `to`, which shows `notice` once.
/// A plain form gets post/redirect/get (a reload does not repeat the action); an htmx form's
/// request follows the redirect and swaps the page's new `<main>` in place.
pub fn done(state: &AppState, to: &str, notice: &str) -> Response {
    let value = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(notice);
    let mut response = redirect(to);
    let cookie = cookie_header(state, NOTICE_COOKIE, &value, 60, "Lax");
    response.headers_mut().append(header::SET_COOKIE, cookie.parse().expect("cookie header"));
    response
}

/// Like [`done`] for an action after which the user is on another page (a cache created,
/// renamed or deleted): htmx loads that page and puts its address in the location bar.
pub fn moved(state: &AppState, req: &Request, to: &str, notice: &str) -> Response {
    let mut response = done(state, to, notice);
    if is_htmx(req) {
        response.set_status(StatusCode::OK);
        response.headers_mut().remove(header::LOCATION);
        if let Ok(location) = poem::http::HeaderValue::from_str(to) {
            response.headers_mut().insert("HX-Location", location);
        }
    }
    response
}

/// The notice a cookie carries; anything that does not decode to short text is dropped.
fn decode_notice(value: &str) -> Option<String> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(value).ok()?;
    String::from_utf8(bytes).ok().filter(|text| !text.is_empty() && text.len() <= 500)
}

#[derive(Template)]
#[template(path = "message.html")]
pub struct MessagePage {
    pub layout: Layout,
    pub heading: String,
    pub message: String,
}

/// A page with a short explanation, e.g. for 403, 404 and failures.
pub fn message(
    state: &AppState,
    req: &Request,
    user: Option<&User>,
    status: StatusCode,
    heading: &str,
    text: &str,
) -> Response {
    let page = MessagePage { layout: Layout::new(req, user), heading: heading.into(), message: text.into() };
    let mut response = render(state, status, &page.layout, &page);
    if is_htmx(req) {
        // Whatever the request meant to update (a table row, a search result), the message
        // takes the page's main area.
        let headers = response.headers_mut();
        headers.insert("HX-Retarget", poem::http::HeaderValue::from_static("main"));
        headers.insert("HX-Reselect", poem::http::HeaderValue::from_static("main"));
        headers.insert("HX-Reswap", poem::http::HeaderValue::from_static("outerHTML"));
    }
    response
}

/// A signed-in user, or the response that sends the browser to setup or sign-in.
pub async fn signed_in(state: &Arc<AppState>, req: &Request) -> Result<User, Response> {
    let failure = |e: crate::db::DbError| Failure::from(e).page(state, req, None);
    if sessions::needs_setup(&state.db).await.map_err(failure)? {
        return Err(redirect("/setup"));
    }
    let Some(token) = cookie(req, SESSION_COOKIE) else { return Err(to_sign_in(req)) };
    sessions::user_for_session(&state.db, &token).await.map_err(failure)?.ok_or_else(|| to_sign_in(req))
}

/// `text` as a query value: what would end or change it (`&`, `#`, `+`, `%`, spaces and
/// anything not printable ASCII) percent-encoded, the rest (`/`, `?`, `=`) left readable.
pub fn query_value(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'&' | b'#' | b'+' | b'%' => out.push_str(&format!("%{byte:02X}")),
            b if b.is_ascii_graphic() => out.push(b as char),
            b => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Whether htmx sent the request (it wants a fragment, not a page).
pub fn is_htmx(req: &Request) -> bool {
    req.headers().get("HX-Request").is_some_and(|v| v == "true")
}

/// Sends a request without a (valid) session to sign-in, and back to where it was after.
/// An htmx request gets the whole window sent there (`HX-Redirect`), never a sign-in page
/// swapped into a table.
fn to_sign_in(req: &Request) -> Response {
    let is_htmx = is_htmx(req);
    let here = if is_htmx {
        // The page the user is on, not the fragment it asked for.
        req.headers()
            .get("HX-Current-URL")
            .and_then(|v| v.to_str().ok())
            .and_then(|url| reqwest::Url::parse(url).ok())
            .map(|url| match url.query() {
                Some(query) => format!("{}?{query}", url.path()),
                None => url.path().to_string(),
            })
    } else {
        (req.method() == poem::http::Method::GET).then(|| req.uri().to_string())
    };
    let target = match here.filter(|h| h != "/") {
        Some(here) => format!("/sign-in?next={}", query_value(&here)),
        None => "/sign-in".to_string(),
    };
    if is_htmx {
        return Response::builder().status(StatusCode::UNAUTHORIZED).header("HX-Redirect", target).finish();
    }
    redirect(&target)
}

/// The page shown when the database failed; the details go to the log.
pub fn unavailable(state: &AppState, req: &Request, user: &User, e: crate::db::DbError) -> Response {
    Failure::from(e).page(state, req, Some(user))
}

/// The refusal of a state-changing request whose form token is not the expected one.
pub fn csrf_refusal(state: &AppState, req: &Request, user: Option<&User>, submitted: &str) -> Option<Response> {
    match expected_csrf(req) {
        Some(expected) if !submitted.is_empty() && expected == submitted => None,
        _ => Some(Failure::FormExpired.page(state, req, user)),
    }
}

/// Bytes as KiB/MiB/GiB, the one unit style used everywhere in the dashboard.
pub fn human_bytes(bytes: i64) -> String {
    hibernation::human::human_bytes(bytes.max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::{decode_notice, query_value};
    use base64::Engine;

    #[test]
    fn notices_round_trip_and_junk_is_dropped() {
        let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("Token “ci” revoked; 2 left.");
        assert!(encoded.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'), "cookie-safe");
        assert_eq!(decode_notice(&encoded).as_deref(), Some("Token “ci” revoked; 2 left."));
        assert_eq!(decode_notice("not base64!"), None);
        assert_eq!(decode_notice(""), None);
        let long = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("x".repeat(501));
        assert_eq!(decode_notice(&long), None);
    }

    #[test]
    fn query_values_keep_paths_readable_and_escape_separators() {
        assert_eq!(query_value("/caches/main"), "/caches/main");
        assert_eq!(query_value("/caches/main?sort=size&page=2"), "/caches/main?sort=size%26page=2");
        assert_eq!(query_value("/a b#c+d%"), "/a%20b%23c%2Bd%25");
    }
}
