//! A cache's upstream caches (one row per URL and trusted key).

use diesel::prelude::*;
use hibernation::api::Upstream;

use super::schema::cache_upstreams;
use super::{AnyConnection, DbResult};

/// The upstreams in the order they were added, each with all of its keys.
pub fn list(conn: &mut AnyConnection, cache_id: i64) -> DbResult<Vec<Upstream>> {
    let rows: Vec<(String, String)> = cache_upstreams::table
        .filter(cache_upstreams::cache_id.eq(cache_id))
        .order(cache_upstreams::id)
        .select((cache_upstreams::url, cache_upstreams::public_key))
        .load(conn)?;
    let mut upstreams: Vec<Upstream> = Vec::new();
    for (url, key) in rows {
        match upstreams.iter_mut().find(|u| u.url == url) {
            Some(upstream) => upstream.public_keys.push(key),
            None => upstreams.push(Upstream { url, public_keys: vec![key] }),
        }
    }
    Ok(upstreams)
}

pub fn replace(conn: &mut AnyConnection, cache_id: i64, upstreams: &[Upstream]) -> DbResult<()> {
    diesel::delete(cache_upstreams::table.filter(cache_upstreams::cache_id.eq(cache_id))).execute(conn)?;
    let mut seen = std::collections::HashSet::new();
    for upstream in upstreams {
        for key in upstream.public_keys.iter().filter(|k| seen.insert((&upstream.url, *k))) {
            diesel::insert_into(cache_upstreams::table)
                .values((
                    cache_upstreams::cache_id.eq(cache_id),
                    cache_upstreams::url.eq(&upstream.url),
                    cache_upstreams::public_key.eq(key),
                ))
                .execute(conn)?;
        }
    }
    Ok(())
}
