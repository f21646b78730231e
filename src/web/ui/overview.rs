//! The overview: what a team lead wants at a glance.

use std::sync::Arc;

use askama::Template;
use poem::http::StatusCode;
use poem::web::Data;
use poem::{Request, Response, handler};

use super::{Layout, human_bytes, render, signed_in, unavailable};
use crate::db::browse::{self, Totals};
use crate::db::users;
use crate::web::AppState;

#[derive(Template)]
#[template(path = "overview.html")]
struct OverviewPage {
    layout: Layout,
    totals: Totals,
}

impl OverviewPage {
    fn stored(&self) -> String {
        human_bytes(self.totals.stored_bytes)
    }

    fn saved(&self) -> String {
        human_bytes(self.totals.logical_bytes - self.totals.stored_bytes)
    }
}

#[handler]
pub async fn overview(req: &Request, state: Data<&Arc<AppState>>) -> Response {
    let user = match signed_in(&state, req).await {
        Ok(user) => user,
        Err(response) => return response,
    };
    let (id, admin) = (user.id, user.is_admin);
    let totals = state
        .db
        .read(move |c| {
            let ids = if admin { None } else { Some(users::readable_cache_ids(c, id)?) };
            browse::totals(c, ids.as_deref())
        })
        .await;
    match totals {
        Ok(totals) => {
            let page = OverviewPage { layout: Layout::new(req, Some(&user)), totals };
            render(&state, StatusCode::OK, &page.layout, &page)
        }
        Err(e) => unavailable(&state, req, &user, e),
    }
}
