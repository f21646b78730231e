//! The one-time setup code of a fresh instance (a single row, removed by setup).

use diesel::prelude::*;

use super::schema::setup_codes;
use super::{AnyConnection, DbResult, now};

/// The stored code, storing `fresh` first when there is none (every server process of an
/// instance then prints the same code).
pub fn ensure(conn: &mut AnyConnection, fresh: &str) -> DbResult<String> {
    if let Some(code) = find(conn)? {
        return Ok(code);
    }
    // A unique violation means another server process stored its code first: the caller
    // retries and reads that one.
    diesel::insert_into(setup_codes::table)
        .values((setup_codes::id.eq(1), setup_codes::code.eq(fresh), setup_codes::created_at.eq(now())))
        .execute(conn)?;
    Ok(fresh.to_string())
}

pub fn find(conn: &mut AnyConnection) -> DbResult<Option<String>> {
    Ok(setup_codes::table.select(setup_codes::code).first(conn).optional()?)
}

pub fn delete(conn: &mut AnyConnection) -> DbResult<()> {
    diesel::delete(setup_codes::table).execute(conn)?;
    Ok(())
}
