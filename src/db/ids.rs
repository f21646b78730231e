//! Typed row ids: `grant(cache, user, level)` cannot be called with the two swapped. They
//! are diesel values (read from and compared with `BIGINT` columns on both backends), so the
//! models hold them: users, groups and tokens do; caches still carry a plain `i64`, wrapped
//! in `CacheId` where it is passed on.

macro_rules! row_id {
    ($($(#[$doc:meta])* $name:ident),+ $(,)?) => {
        $(
            $(#[$doc])*
            #[derive(
                Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord,
                diesel::expression::AsExpression, diesel::deserialize::FromSqlRow,
            )]
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            pub struct $name(pub i64);

            impl<DB: diesel::backend::Backend> diesel::deserialize::FromSql<diesel::sql_types::BigInt, DB> for $name
            where
                i64: diesel::deserialize::FromSql<diesel::sql_types::BigInt, DB>,
            {
                fn from_sql(bytes: DB::RawValue<'_>) -> diesel::deserialize::Result<Self> {
                    i64::from_sql(bytes).map(Self)
                }
            }

            impl<DB: diesel::backend::Backend> diesel::serialize::ToSql<diesel::sql_types::BigInt, DB> for $name
            where
                i64: diesel::serialize::ToSql<diesel::sql_types::BigInt, DB>,
            {
                fn to_sql<'b>(&'b self, out: &mut diesel::serialize::Output<'b, '_, DB>) -> diesel::serialize::Result {
                    self.0.to_sql(out)
                }
            }

            impl std::fmt::Display for $name {
                fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    self.0.fmt(f)
                }
            }
        )+
    };
}

row_id!(
    /// A row of `caches`.
    CacheId,
    /// A row of `users`.
    UserId,
    /// A row of `groups`.
    GroupId,
    /// A row of `api_tokens`.
    TokenId,
);

#[cfg(test)]
mod tests {
    use diesel::prelude::*;

    use super::CacheId;
    use crate::db::schema::caches;

    /// A typed id is read from a column and compared with one, through the two-backend
    /// connection, like the `i64` it wraps.
    #[test]
    fn ids_are_read_and_compared_as_bigint_columns() {
        let conn = &mut crate::db::migrated_in_memory();
        let settings = crate::db::caches::CacheSettings {
            is_public: false,
            priority: 40,
            quota_bytes: None,
            keys: Vec::new(),
            upstreams: Some(Vec::new()),
            allow_force_push: Some(false),
            quota_policy: crate::db::models::QuotaPolicy::Refuse,
            retention_seconds: None,
        };
        let created = crate::db::caches::create(conn, "main", &settings).unwrap();
        let id: CacheId = caches::table.select(caches::id).first(conn).unwrap();
        assert_eq!(id, CacheId(created.id));
        let name: String = caches::table.filter(caches::id.eq(id)).select(caches::name).first(conn).unwrap();
        assert_eq!(name, "main");
        let none: Option<String> = caches::table
            .filter(caches::id.eq(CacheId(created.id + 1)))
            .select(caches::name)
            .first(conn)
            .optional()
            .unwrap();
        assert_eq!(none, None);
    }
}
