//! Global permissions: what a user may do across the whole server, beyond the caches they
//! were granted. Groups hold them; a user holds the union over their groups, and an
//! administrator (by their own flag, or through a group holding everything) holds all.
//!
//! Stored as bits in `user_groups.permissions`; the bit of each permission never changes
//! (a migration must widen existing all-holding groups when one is added).

use std::collections::HashMap;

/// One global permission. Editing includes viewing; managing every cache includes viewing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    ViewSettings,
    EditSettings,
    ViewGroups,
    EditGroups,
    ViewUsers,
    EditUsers,
    CreateCaches,
    /// Read every cache, private ones included.
    ViewCaches,
    /// Push to, change, clear and delete every cache.
    ManageCaches,
}

impl Permission {
    pub const ALL: [Permission; 9] = [
        Self::ViewSettings,
        Self::EditSettings,
        Self::ViewGroups,
        Self::EditGroups,
        Self::ViewUsers,
        Self::EditUsers,
        Self::CreateCaches,
        Self::ViewCaches,
        Self::ManageCaches,
    ];

    fn bit(self) -> i64 {
        1 << self as u32
    }

    /// The permission this one includes, if any.
    fn implies(self) -> Option<Permission> {
        match self {
            Self::EditSettings => Some(Self::ViewSettings),
            Self::EditGroups => Some(Self::ViewGroups),
            Self::EditUsers => Some(Self::ViewUsers),
            Self::ManageCaches => Some(Self::ViewCaches),
            _ => None,
        }
    }

    /// Whether `set` holds this permission (for templates, which hold permissions by reference).
    pub fn is_in(&self, set: &Permissions) -> bool {
        set.holds(*self)
    }

    /// The form field (and README) name.
    pub fn key(self) -> &'static str {
        match self {
            Self::ViewSettings => "view_settings",
            Self::EditSettings => "edit_settings",
            Self::ViewGroups => "view_groups",
            Self::EditGroups => "edit_groups",
            Self::ViewUsers => "view_users",
            Self::EditUsers => "edit_users",
            Self::CreateCaches => "create_caches",
            Self::ViewCaches => "view_caches",
            Self::ManageCaches => "manage_caches",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::ViewSettings => "View server settings",
            Self::EditSettings => {
                "Edit server settings: upstream caches, test mails (mail and single sign-on stay with administrators)"
            }
            Self::ViewGroups => "View groups",
            Self::EditGroups => "Edit groups and their members",
            Self::ViewUsers => "View users",
            Self::EditUsers => "Create, change and delete users",
            Self::CreateCaches => "Create caches",
            Self::ViewCaches => "Read every cache",
            Self::ManageCaches => "Manage every cache (push, settings, clear, delete)",
        }
    }
}

/// The form field that asks for every permission (an administrators' group).
pub const ADMINISTER_KEY: &str = "administer";

/// A set of permissions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Permissions(i64);

impl Permissions {
    pub const NONE: Permissions = Permissions(0);
    pub const ALL: Permissions = Permissions((1 << Permission::ALL.len()) - 1);

    /// The set holding `permissions` and what they include.
    pub fn of(permissions: impl IntoIterator<Item = Permission>) -> Self {
        permissions.into_iter().fold(Self::NONE, |set, p| set.with(p))
    }

    pub fn with(self, permission: Permission) -> Self {
        let included = permission.implies().map_or(0, Permission::bit);
        Self(self.0 | permission.bit() | included)
    }

    pub fn holds(self, permission: Permission) -> bool {
        self.0 & permission.bit() != 0
    }

    /// Does this set hold everything `other` holds?
    pub fn covers(self, other: Permissions) -> bool {
        other.0 & !self.0 == 0
    }

    pub fn union(self, other: Permissions) -> Self {
        Self(self.0 | other.0)
    }

    pub fn is_empty(self) -> bool {
        self == Self::NONE
    }

    /// Every permission: an administrator.
    pub fn is_all(self) -> bool {
        self == Self::ALL
    }

    pub fn bits(self) -> i64 {
        self.0
    }

    /// The permissions checked in a form: a field per permission, named by [`Permission::key`],
    /// or `administer` for all of them.
    pub fn from_form(fields: &HashMap<String, String>) -> Self {
        if fields.contains_key(ADMINISTER_KEY) {
            return Self::ALL;
        }
        Self::of(Permission::ALL.into_iter().filter(|p| fields.contains_key(p.key())))
    }

    /// What the set holds, for people ("administrator", "create caches, view users").
    pub fn describe(self) -> String {
        if self.is_all() {
            return "every permission (administrator)".into();
        }
        let held: Vec<&str> = Permission::ALL.into_iter().filter(|p| self.holds(*p)).map(|p| p.key()).collect();
        if held.is_empty() { "no global permissions".into() } else { held.join(", ").replace('_', " ") }
    }
}

/// Bits from the database; bits no permission uses (a newer server's) are dropped.
impl From<i64> for Permissions {
    fn from(bits: i64) -> Self {
        Self(bits & Self::ALL.0)
    }
}

/// A user's own administrator flag: all or nothing.
impl From<bool> for Permissions {
    fn from(is_admin: bool) -> Self {
        if is_admin { Self::ALL } else { Self::NONE }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn editing_includes_viewing_and_sets_cover_their_subsets() {
        let editor = Permissions::of([Permission::EditUsers]);
        assert!(editor.holds(Permission::ViewUsers) && editor.holds(Permission::EditUsers));
        assert!(!editor.holds(Permission::ViewGroups));
        assert!(editor.covers(Permissions::of([Permission::ViewUsers])));
        assert!(!editor.covers(Permissions::of([Permission::EditGroups])));
        assert!(Permissions::ALL.covers(editor) && !editor.covers(Permissions::ALL));
        assert!(Permissions::of(Permission::ALL).is_all());
        assert_eq!(Permissions::from(true), Permissions::ALL);
        assert_eq!(Permissions::from(1_i64 << 40), Permissions::NONE, "unknown bits are dropped");
    }

    #[test]
    fn forms_and_descriptions_name_permissions_by_key() {
        let fields: HashMap<String, String> =
            [("manage_caches", "on"), ("csrf", "x")].map(|(k, v)| (k.to_string(), v.to_string())).into();
        let set = Permissions::from_form(&fields);
        assert_eq!(set, Permissions::of([Permission::ManageCaches, Permission::ViewCaches]));
        assert_eq!(set.describe(), "view caches, manage caches");
        assert_eq!(Permissions::NONE.describe(), "no global permissions");
        // The stored bits are part of the schema: a permission's bit never moves.
        assert_eq!(Permission::CreateCaches.bit(), 64);
        assert_eq!(Permissions::ALL.bits(), 511);
    }
}
