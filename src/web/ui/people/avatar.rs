//! Avatars on the dashboard: uploading and removing one's own (account page), serving them
//! to signed-in people, and the tag every list and the nav show (the picture, or initials on
//! a colour picked from the user id when there is none).

use std::sync::Arc;

use poem::http::{StatusCode, header};
use poem::web::{Data, Multipart, Path};
use poem::{Request, Response, handler};
use sha2::{Digest, Sha256};

use crate::db::ids::UserId;
use crate::db::models::User;
use crate::services::identity::avatars::{self, AvatarError};
use crate::web::AppState;
use crate::web::ui::extract::{CheckedForm, SignedIn};
use crate::web::ui::{CsrfOnly, Failure, csrf_refusal, moved, unavailable};

/// Colours for initials, each with white text at 4.5:1 or better.
const COLOURS: usize = 8;

/// Text safe inside HTML elements and attribute values.
fn escaped(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The avatar tag of a user (templates: `{{ user.avatar()|safe }}`, with this trait in scope).
pub trait AvatarTag {
    fn avatar(&self) -> String;
    /// The same, larger (a user's own page, the account page).
    fn large_avatar(&self) -> String;
}

fn tag(UserId(id): UserId, name: &str, has_picture: bool, class: &str) -> String {
    if has_picture {
        format!("<img class=\"{class}\" src=\"/avatars/{id}\" alt=\"\">")
    } else {
        let colour = id.rem_euclid(COLOURS as i64);
        format!(
            "<span class=\"{class} initials c{colour}\" aria-hidden=\"true\">{}</span>",
            escaped(&avatars::initials(name))
        )
    }
}

impl AvatarTag for User {
    fn avatar(&self) -> String {
        tag(self.id, &self.name, self.has_avatar, "avatar")
    }

    fn large_avatar(&self) -> String {
        tag(self.id, &self.name, self.has_avatar, "avatar large")
    }
}

/// A signed-in person fetches someone's avatar. Revalidated every time (an ETag makes that
/// a 304), so a new picture shows at once; never sniffed as anything but PNG.
#[handler]
pub async fn serve(
    req: &Request,
    state: Data<&Arc<AppState>>,
    Path(id): Path<i64>,
    SignedIn(user): SignedIn,
) -> Response {
    let png = match avatars::get(&state.db, UserId(id)).await {
        Ok(Some(png)) => png,
        Ok(None) => return Response::builder().status(StatusCode::NOT_FOUND).finish(),
        Err(e) => return unavailable(&state, req, &user, e),
    };
    let etag = format!("\"{}\"", &hex::encode(Sha256::digest(&png))[..32]);
    let builder = Response::builder()
        .header(header::CACHE_CONTROL, "private, no-cache")
        .header(header::ETAG, &etag)
        .header("x-content-type-options", "nosniff");
    if req.headers().get(header::IF_NONE_MATCH).is_some_and(|v| v.as_bytes() == etag.as_bytes()) {
        return builder.status(StatusCode::NOT_MODIFIED).finish();
    }
    builder.content_type("image/png").body(png)
}

// After a change the whole page loads again (htmx too, through `moved`): the nav shows the
// avatar as well as the account page.

/// The account page's upload: a form with its CSRF token and the picture (multipart; the
/// body limit of every dashboard form bounds it).
#[handler]
pub async fn upload(
    req: &Request,
    state: Data<&Arc<AppState>>,
    SignedIn(user): SignedIn,
    mut form: Multipart,
) -> Response {
    let (mut csrf, mut picture) = (String::new(), None);
    loop {
        match form.next_field().await {
            Ok(Some(field)) => match field.name() {
                Some("csrf") => csrf = field.text().await.unwrap_or_default(),
                Some("picture") => picture = field.bytes().await.ok(),
                _ => {}
            },
            Ok(None) => break,
            Err(_) => return refused(&state, req, &user, "The upload did not arrive whole (at most 1 MiB)."),
        }
    }
    if let Some(refused) = csrf_refusal(&state, req, Some(&user), &csrf) {
        return refused;
    }
    let Some(picture) = picture.filter(|p| !p.is_empty()) else {
        return refused(&state, req, &user, "Choose a picture to upload.");
    };
    match avatars::set(&state.db, user.id, picture).await {
        Ok(()) => moved(&state, req, "/account", "Your avatar was saved."),
        Err(AvatarError::Db(e)) => unavailable(&state, req, &user, e),
        Err(e) => refused(&state, req, &user, &format!("Not saved: {e}.")),
    }
}

fn refused(state: &AppState, req: &Request, user: &User, text: &str) -> Response {
    Failure::Invalid { heading: "Avatar not changed", text: text.to_string() }.page(state, req, Some(user))
}

#[handler]
pub async fn remove(
    req: &Request,
    state: Data<&Arc<AppState>>,
    CheckedForm { user, .. }: CheckedForm<CsrfOnly>,
) -> Response {
    match avatars::remove(&state.db, user.id).await {
        Ok(()) => moved(&state, req, "/account", "Your avatar was removed; your initials show instead."),
        Err(e) => unavailable(&state, req, &user, e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initials_are_escaped_and_coloured_by_id() {
        let html = tag(UserId(11), "<b>x", false, "avatar");
        assert_eq!(html, "<span class=\"avatar initials c3\" aria-hidden=\"true\">&lt;</span>");
        assert_eq!(
            tag(UserId(-3), "Ada", false, "avatar"),
            "<span class=\"avatar initials c5\" aria-hidden=\"true\">A</span>"
        );
        assert_eq!(
            tag(UserId(4), "Ada", true, "avatar large"),
            "<img class=\"avatar large\" src=\"/avatars/4\" alt=\"\">"
        );
    }
}
