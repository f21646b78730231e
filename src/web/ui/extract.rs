//! Who may call a dashboard handler, checked before it runs. Handlers name what they need
//! as an argument and get the user (and the form) only when the check passed:
//!
//! - [`SignedIn`]: a signed-in user; anyone else is sent to setup or sign-in and back.
//! - [`Administrator`]: a signed-in administrator; others get a 403 page.
//! - [`CheckedForm`] / [`AdminForm`]: the same, with a form whose CSRF token is valid.
//! - [`AnonymousForm`]: a form with a valid CSRF token from someone not signed in (setup,
//!   sign-in, links from mails).

use std::sync::Arc;

use poem::web::Form;
use poem::{FromRequest, Request, RequestBody};
use serde::de::DeserializeOwned;

use super::{admin_refusal, csrf_refusal, signed_in};
use crate::db::models::User;
use crate::web::AppState;

/// A form that carries the CSRF token its page was drawn with.
pub trait CarriesCsrf {
    fn csrf(&self) -> &str;
}

/// Implements [`CarriesCsrf`] for form structs with a `csrf` field.
macro_rules! carries_csrf {
    ($($form:ty),+ $(,)?) => {
        $(impl $crate::web::ui::extract::CarriesCsrf for $form {
            fn csrf(&self) -> &str {
                &self.csrf
            }
        })+
    };
}
pub(crate) use carries_csrf;

pub struct SignedIn(pub User);

pub struct Administrator(pub User);

/// A signed-in user's form with a valid CSRF token.
pub struct CheckedForm<T> {
    pub user: User,
    pub form: T,
}

/// A form with a valid CSRF token, from anyone (the double-submit cookie before sign-in).
pub struct AnonymousForm<T>(pub T);

/// An administrator's form with a valid CSRF token.
pub struct AdminForm<T> {
    pub user: User,
    pub form: T,
}

fn state(req: &Request) -> Arc<AppState> {
    req.data::<Arc<AppState>>().expect("the dashboard routes carry the application state").clone()
}

/// The user of a valid session, or the error that answers with the page to go to instead.
async fn user_of(req: &Request) -> poem::Result<User> {
    signed_in(&state(req), req).await.map_err(poem::Error::from_response)
}

fn administrator(req: &Request, user: User) -> poem::Result<User> {
    match admin_refusal(&state(req), req, &user, "Only administrators can open this page or do this.") {
        Some(refused) => Err(poem::Error::from_response(refused)),
        None => Ok(user),
    }
}

/// The form in the body, if its CSRF token is the one this session's pages carry.
async fn checked_form<T: DeserializeOwned + CarriesCsrf>(
    req: &Request,
    body: &mut RequestBody,
    user: Option<&User>,
) -> poem::Result<T> {
    let Form(form) = Form::<T>::from_request(req, body).await?;
    match csrf_refusal(&state(req), req, user, form.csrf()) {
        Some(refused) => Err(poem::Error::from_response(refused)),
        None => Ok(form),
    }
}

impl<'a> FromRequest<'a> for SignedIn {
    async fn from_request(req: &'a Request, _body: &mut RequestBody) -> poem::Result<Self> {
        user_of(req).await.map(Self)
    }
}

impl<'a> FromRequest<'a> for Administrator {
    async fn from_request(req: &'a Request, _body: &mut RequestBody) -> poem::Result<Self> {
        administrator(req, user_of(req).await?).map(Self)
    }
}

impl<'a, T: DeserializeOwned + CarriesCsrf + Send> FromRequest<'a> for CheckedForm<T> {
    async fn from_request(req: &'a Request, body: &mut RequestBody) -> poem::Result<Self> {
        let user = user_of(req).await?;
        let form = checked_form(req, body, Some(&user)).await?;
        Ok(Self { user, form })
    }
}

impl<'a, T: DeserializeOwned + CarriesCsrf + Send> FromRequest<'a> for AdminForm<T> {
    async fn from_request(req: &'a Request, body: &mut RequestBody) -> poem::Result<Self> {
        let user = user_of(req).await?;
        let form = checked_form(req, body, Some(&user)).await?;
        Ok(Self { user: administrator(req, user)?, form })
    }
}

impl<'a, T: DeserializeOwned + CarriesCsrf + Send> FromRequest<'a> for AnonymousForm<T> {
    async fn from_request(req: &'a Request, body: &mut RequestBody) -> poem::Result<Self> {
        checked_form(req, body, None).await.map(Self)
    }
}
