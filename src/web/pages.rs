//! Health check and the dashboard's static assets, compiled into the binary so the server
//! runs from any working directory.

use poem::http::{StatusCode, header};
use poem::web::Path;
use poem::{Response, handler};

const ASSETS: &[(&str, &str, &str)] = &[
    ("htmx-2.0.11.min.js", "text/javascript; charset=utf-8", include_str!("../../static/htmx-2.0.11.min.js")),
    ("dashboard.js", "text/javascript; charset=utf-8", include_str!("../../static/dashboard.js")),
    ("style.css", "text/css; charset=utf-8", include_str!("../../static/style.css")),
    ("favicon.svg", "image/svg+xml", include_str!("../../static/favicon.svg")),
];

#[handler]
pub fn health() -> &'static str {
    "OK"
}

#[handler]
pub fn asset(Path(file): Path<String>) -> Response {
    match ASSETS.iter().find(|(name, _, _)| *name == file) {
        Some((_, content_type, body)) => Response::builder()
            .content_type(*content_type)
            .header(header::CACHE_CONTROL, "public, max-age=86400")
            .body(*body),
        None => Response::builder().status(StatusCode::NOT_FOUND).body("not found"),
    }
}
