//! Typed row ids for functions that take more than one: `grant(cache, user, level)` cannot
//! be called with the two swapped. Rows keep plain `i64` ids (what diesel reads); wrap them
//! where they are passed on.

macro_rules! row_id {
    ($($(#[$doc:meta])* $name:ident),+ $(,)?) => {
        $(
            $(#[$doc])*
            #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
            pub struct $name(pub i64);

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
