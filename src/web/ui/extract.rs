//! Who may call a dashboard handler, checked before it runs. Handlers name what they need
//! as an argument and get the user (and the form) only when the check passed:
//!
//! - [`SignedIn`]: a signed-in user; anyone else is sent to setup or sign-in and back.
//! - [`Holding<P>`]: a signed-in user holding the global permission `P` (see [`need`]);
//!   others get a 403 page.
//! - [`CheckedForm`] / [`HoldingForm`]: the same, with a form whose CSRF token is valid.
//! - [`AnonymousForm`]: a form with a valid CSRF token from someone not signed in (setup,
//!   sign-in, links from mails).

use std::marker::PhantomData;
use std::sync::Arc;

use poem::web::Form;
use poem::{FromRequest, Request, RequestBody};
use serde::de::DeserializeOwned;

use super::{Failure, csrf_refusal, signed_in};
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

/// A global permission a handler needs, as a type: `Holding<need::EditUsers>`.
pub trait Need {
    fn held_by(user: &User) -> bool;
    /// The 403 page's text for someone without it.
    const REFUSAL: &'static str;
}

/// The permissions handlers can need.
pub mod need {
    macro_rules! needs {
        ($($name:ident: $refusal:literal),+ $(,)?) => {
            $(pub struct $name;
            impl super::Need for $name {
                fn held_by(user: &crate::db::models::User) -> bool {
                    user.holds(crate::db::permissions::Permission::$name)
                }
                const REFUSAL: &'static str = $refusal;
            })+
        };
    }
    needs!(
        ViewSettings: "Your groups do not give you the right to see the server settings.",
        EditSettings: "Your groups do not give you the right to change the server settings.",
        ViewGroups: "Your groups do not give you the right to see groups.",
        EditGroups: "Your groups do not give you the right to change groups.",
        ViewUsers: "Your groups do not give you the right to see users.",
        EditUsers: "Your groups do not give you the right to change users.",
    );

    /// Every permission: mail and single sign-on decide who can sign in as whom (a reset
    /// link goes through the mail server, an identity provider vouches for anyone), so
    /// changing them is an administrator's alone.
    pub struct Everything;
    impl super::Need for Everything {
        fn held_by(user: &crate::db::models::User) -> bool {
            user.is_admin()
        }
        const REFUSAL: &'static str =
            "Mail and single sign-on decide who can sign in as whom: only administrators change them.";
    }
}

/// A signed-in user who holds the permission `P`.
pub struct Holding<P: Need>(pub User, pub PhantomData<P>);

/// A signed-in user's form with a valid CSRF token.
pub struct CheckedForm<T> {
    pub user: User,
    pub form: T,
}

/// A form with a valid CSRF token, from anyone (the double-submit cookie before sign-in).
pub struct AnonymousForm<T>(pub T);

/// The form, with a valid CSRF token, of a user who holds the permission `P`.
pub struct HoldingForm<P: Need, T> {
    pub user: User,
    pub form: T,
    needs: PhantomData<P>,
}

fn state(req: &Request) -> Arc<AppState> {
    req.data::<Arc<AppState>>().expect("the dashboard routes carry the application state").clone()
}

/// The user of a valid session, or the error that answers with the page to go to instead.
async fn user_of(req: &Request) -> poem::Result<User> {
    signed_in(&state(req), req).await.map_err(poem::Error::from_response)
}

fn holding<P: Need>(req: &Request, user: User) -> poem::Result<User> {
    if P::held_by(&user) {
        return Ok(user);
    }
    let refused = Failure::Forbidden(P::REFUSAL.into()).page(&state(req), req, Some(&user));
    Err(poem::Error::from_response(refused))
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

impl<'a, P: Need + Send> FromRequest<'a> for Holding<P> {
    async fn from_request(req: &'a Request, _body: &mut RequestBody) -> poem::Result<Self> {
        holding::<P>(req, user_of(req).await?).map(|user| Self(user, PhantomData))
    }
}

impl<'a, T: DeserializeOwned + CarriesCsrf + Send> FromRequest<'a> for CheckedForm<T> {
    async fn from_request(req: &'a Request, body: &mut RequestBody) -> poem::Result<Self> {
        let user = user_of(req).await?;
        let form = checked_form(req, body, Some(&user)).await?;
        Ok(Self { user, form })
    }
}

impl<'a, P: Need + Send, T: DeserializeOwned + CarriesCsrf + Send> FromRequest<'a> for HoldingForm<P, T> {
    async fn from_request(req: &'a Request, body: &mut RequestBody) -> poem::Result<Self> {
        let user = user_of(req).await?;
        let form = checked_form(req, body, Some(&user)).await?;
        Ok(Self { user: holding::<P>(req, user)?, form, needs: PhantomData })
    }
}

impl<'a, T: DeserializeOwned + CarriesCsrf + Send> FromRequest<'a> for AnonymousForm<T> {
    async fn from_request(req: &'a Request, body: &mut RequestBody) -> poem::Result<Self> {
        checked_form(req, body, None).await.map(Self)
    }
}
