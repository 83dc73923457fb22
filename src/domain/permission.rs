//! Permissions and roles: Rocket.Chat's defaults and the rule that grants a permission.

/// The permission that guards `getLatestImportOperations`.
pub const VIEW_IMPORT_OPERATIONS: &str = "view-import-operations";

pub const RUN_IMPORT: &str = "run-import";
pub const ACCESS_PERMISSIONS: &str = "access-permissions";
pub const CREATE_USER: &str = "create-user";
pub const DELETE_USER: &str = "delete-user";
/// Holders are never rate limited.
pub const BYPASS_RATE_LIMIT: &str = "api-bypass-rate-limit";

/// Rocket.Chat's default roles, present from the start.
pub const DEFAULT_ROLES: &[&str] = &[
    "admin",
    "moderator",
    "leader",
    "owner",
    "user",
    "bot",
    "app",
    "guest",
    "anonymous",
    "livechat-agent",
    "livechat-manager",
];

/// Rocket.Chat's defaults for the permissions importops checks (permission, roles).
pub const DEFAULT_PERMISSIONS: &[(&str, &[&str])] = &[
    (VIEW_IMPORT_OPERATIONS, &["admin"]),
    (RUN_IMPORT, &["admin"]),
    (ACCESS_PERMISSIONS, &["admin"]),
    (CREATE_USER, &["admin"]),
    (DELETE_USER, &["admin"]),
    (BYPASS_RATE_LIMIT, &["admin", "bot", "app"]),
    ("create-personal-access-tokens", &["admin", "user"]),
];

/// A user holds a permission when any of its roles is among the permission's roles.
pub fn grants(permission_roles: &[String], user_roles: &[String]) -> bool {
    user_roles.iter().any(|r| permission_roles.contains(r))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_shared_role_grants() {
        let p = vec!["admin".to_string(), "bot".to_string()];
        assert!(grants(&p, &["user".into(), "bot".into()]));
        assert!(!grants(&p, &["user".into()]));
        assert!(!grants(&p, &[]));
        assert!(!grants(&[], &["admin".into()]));
    }
}
