//! The dashboard's static assets (script, stylesheet, icon), compiled into the binary so the
//! server runs from any working directory.

use poem::http::{StatusCode, header};
use poem::web::Path;
use poem::{Response, handler};

const ASSETS: &[(&str, &str, &str)] = &[
    ("htmx-2.0.11.min.js", "text/javascript; charset=utf-8", include_str!("../../static/htmx-2.0.11.min.js")),
    ("dashboard.js", "text/javascript; charset=utf-8", include_str!("../../static/dashboard.js")),
    ("style.css", "text/css; charset=utf-8", include_str!("../../static/style.css")),
    ("favicon.svg", "image/svg+xml", include_str!("../../static/favicon.svg")),
];

/// A short fingerprint of the assets, in their URLs (`?v=`): after an upgrade that changes
/// the stylesheet or the script, browsers fetch the new ones instead of using yesterday's.
pub fn asset_version() -> &'static str {
    static VERSION: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    VERSION.get_or_init(|| {
        let mut all = Vec::new();
        for (name, _, body) in ASSETS {
            all.extend_from_slice(name.as_bytes());
            all.extend_from_slice(body.as_bytes());
        }
        hibernation::nix::NarHash::digest(&all).to_nix32()[..10].to_string()
    })
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

#[cfg(test)]
mod tests {
    #[test]
    fn the_asset_version_is_a_short_stable_fingerprint() {
        let version = super::asset_version();
        assert_eq!(version.len(), 10);
        assert!(hibernation::nix::base32::is_nix32(version));
        assert_eq!(version, super::asset_version());
    }
}
