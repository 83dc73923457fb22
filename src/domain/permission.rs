//! Permissions and roles: Rocket.Chat's defaults and the rule that grants a permission.

/// The permission that guards `getLatestImportOperations`.
pub const VIEW_IMPORT_OPERATIONS: &str = "view-import-operations";

pub const RUN_IMPORT: &str = "run-import";
pub const ACCESS_PERMISSIONS: &str = "access-permissions";
pub const CREATE_USER: &str = "create-user";
pub const DELETE_USER: &str = "delete-user";
/// Holders are never rate limited.
pub const BYPASS_RATE_LIMIT: &str = "api-bypass-rate-limit";

/// Rocket.Chat's default roles, present from the start (the protected roles its start-up
/// creates; docs/compatibility.md#3-authentication).
pub const DEFAULT_ROLES: &[&str] = &[
    "admin",
    "moderator",
    "leader",
    "owner",
    "user",
    "federated-external",
    "bot",
    "app",
    "guest",
    "anonymous",
    "livechat-agent",
    "livechat-manager",
];

/// Rocket.Chat's whole default permission table, in its order: each permission with the roles
/// that hold it on a new server (docs/compatibility.md#3-authentication). The store seeds
/// every permission missing from the database at each start or migrate, so a permission added
/// here reaches older databases while the roles an administrator set are kept. Some roles
/// (`livechat-monitor`) are not default roles: they are named here as Rocket.Chat names them.
pub const DEFAULT_PERMISSIONS: &[(&str, &[&str])] = &[
    ("access-permissions", &["admin"]),
    ("access-marketplace", &["admin", "user"]),
    ("access-setting-permissions", &["admin"]),
    ("add-oauth-service", &["admin"]),
    ("add-user-to-joined-room", &["admin", "owner", "moderator"]),
    ("add-user-to-any-c-room", &["admin"]),
    ("add-user-to-any-p-room", &[]),
    ("kick-user-from-any-c-room", &["admin"]),
    ("kick-user-from-any-p-room", &[]),
    ("api-bypass-rate-limit", &["admin", "bot", "app"]),
    ("archive-room", &["admin", "owner"]),
    ("assign-admin-role", &["admin"]),
    ("assign-roles", &["admin"]),
    ("ban-user", &["admin", "owner", "moderator"]),
    ("bulk-register-user", &["admin"]),
    (
        "change-livechat-room-visitor",
        &["admin", "livechat-manager", "livechat-agent"],
    ),
    (
        "create-c",
        &["admin", "user", "federated-external", "bot", "app"],
    ),
    (
        "create-d",
        &["admin", "user", "federated-external", "bot", "app"],
    ),
    (
        "create-p",
        &["admin", "user", "federated-external", "bot", "app"],
    ),
    ("create-personal-access-tokens", &["admin", "user"]),
    ("create-user", &["admin"]),
    ("clean-channel-history", &["admin"]),
    ("delete-c", &["admin", "owner"]),
    ("delete-d", &["admin"]),
    ("delete-message", &["admin", "owner", "moderator"]),
    (
        "delete-own-message",
        &["admin", "user", "federated-external"],
    ),
    ("delete-p", &["admin", "owner"]),
    ("delete-user", &["admin"]),
    ("edit-message", &["admin", "owner", "moderator"]),
    ("edit-other-user-active-status", &["admin"]),
    ("edit-other-user-info", &["admin"]),
    ("edit-other-user-password", &["admin"]),
    ("edit-other-user-avatar", &["admin"]),
    ("edit-other-user-e2ee", &["admin"]),
    ("edit-other-user-totp", &["admin"]),
    ("edit-privileged-setting", &["admin"]),
    ("edit-room", &["admin", "owner", "moderator"]),
    ("edit-room-avatar", &["admin", "owner", "moderator"]),
    ("edit-room-retention-policy", &["admin"]),
    ("force-delete-message", &["admin", "owner"]),
    ("join-without-join-code", &["admin", "bot", "app"]),
    (
        "leave-c",
        &[
            "admin",
            "user",
            "federated-external",
            "bot",
            "anonymous",
            "app",
        ],
    ),
    (
        "leave-p",
        &[
            "admin",
            "user",
            "federated-external",
            "bot",
            "anonymous",
            "app",
        ],
    ),
    ("logout-other-user", &["admin"]),
    ("manage-assets", &["admin"]),
    ("manage-email-inbox", &["admin"]),
    ("manage-emoji", &["admin"]),
    ("manage-user-status", &["admin"]),
    ("manage-outgoing-integrations", &["admin"]),
    ("manage-incoming-integrations", &["admin"]),
    ("manage-own-outgoing-integrations", &["admin"]),
    ("manage-own-incoming-integrations", &["admin"]),
    ("manage-oauth-apps", &["admin"]),
    ("manage-selected-settings", &["admin"]),
    (
        "mention-all",
        &["admin", "owner", "moderator", "user", "federated-external"],
    ),
    (
        "mention-here",
        &["admin", "owner", "moderator", "user", "federated-external"],
    ),
    ("mute-user", &["admin", "owner", "moderator"]),
    ("remove-user", &["admin", "owner", "moderator"]),
    ("run-import", &["admin"]),
    ("run-migration", &["admin"]),
    ("set-moderator", &["admin", "owner"]),
    ("set-owner", &["admin", "owner"]),
    ("send-many-messages", &["admin", "bot", "app"]),
    ("set-leader", &["admin", "owner"]),
    (
        "start-discussion",
        &["admin", "user", "federated-external", "guest", "app"],
    ),
    (
        "start-discussion-other-user",
        &["admin", "user", "federated-external", "owner", "app"],
    ),
    ("unarchive-room", &["admin"]),
    (
        "view-c-room",
        &[
            "admin",
            "user",
            "federated-external",
            "bot",
            "app",
            "anonymous",
        ],
    ),
    ("user-generate-access-token", &["admin"]),
    (
        "view-d-room",
        &["admin", "user", "federated-external", "bot", "app", "guest"],
    ),
    ("view-device-management", &["admin"]),
    ("view-engagement-dashboard", &["admin"]),
    ("view-full-other-user-info", &["admin"]),
    ("view-joined-room", &["guest", "bot", "app", "anonymous"]),
    ("view-join-code", &["admin"]),
    ("view-logs", &["admin"]),
    ("view-other-user-channels", &["admin"]),
    (
        "view-p-room",
        &["admin", "user", "federated-external", "anonymous", "guest"],
    ),
    ("view-privileged-setting", &["admin"]),
    ("view-room-administration", &["admin"]),
    ("view-statistics", &["admin"]),
    ("view-user-administration", &["admin"]),
    (
        "preview-c-room",
        &["admin", "user", "federated-external", "anonymous"],
    ),
    (
        "view-outside-room",
        &["admin", "owner", "moderator", "user", "federated-external"],
    ),
    (
        "view-broadcast-member-list",
        &["admin", "owner", "moderator"],
    ),
    ("call-management", &["admin", "owner", "moderator", "user"]),
    ("create-invite-links", &["admin", "owner", "moderator"]),
    (
        "view-l-room",
        &[
            "livechat-manager",
            "livechat-monitor",
            "livechat-agent",
            "admin",
        ],
    ),
    (
        "create-livechat-contact",
        &[
            "livechat-manager",
            "livechat-monitor",
            "livechat-agent",
            "admin",
        ],
    ),
    (
        "update-livechat-contact",
        &[
            "livechat-manager",
            "livechat-monitor",
            "livechat-agent",
            "admin",
        ],
    ),
    (
        "view-livechat-contact",
        &[
            "livechat-manager",
            "livechat-monitor",
            "livechat-agent",
            "admin",
        ],
    ),
    ("delete-livechat-contact", &["livechat-manager", "admin"]),
    (
        "view-livechat-contact-history",
        &[
            "livechat-manager",
            "livechat-monitor",
            "livechat-agent",
            "admin",
        ],
    ),
    (
        "view-livechat-manager",
        &["livechat-manager", "livechat-monitor", "admin"],
    ),
    (
        "view-omnichannel-contact-center",
        &[
            "livechat-manager",
            "livechat-agent",
            "livechat-monitor",
            "admin",
        ],
    ),
    (
        "edit-omnichannel-contact",
        &["livechat-manager", "livechat-agent", "admin"],
    ),
    (
        "view-livechat-rooms",
        &["livechat-manager", "livechat-monitor", "admin"],
    ),
    (
        "close-livechat-room",
        &[
            "livechat-manager",
            "livechat-monitor",
            "livechat-agent",
            "admin",
        ],
    ),
    (
        "close-others-livechat-room",
        &["livechat-manager", "livechat-monitor", "admin"],
    ),
    (
        "on-hold-livechat-room",
        &[
            "livechat-manager",
            "livechat-monitor",
            "livechat-agent",
            "admin",
        ],
    ),
    (
        "on-hold-others-livechat-room",
        &["livechat-manager", "livechat-monitor", "admin"],
    ),
    (
        "save-others-livechat-room-info",
        &["livechat-manager", "livechat-monitor", "admin"],
    ),
    (
        "remove-closed-livechat-rooms",
        &["livechat-manager", "livechat-monitor", "admin"],
    ),
    (
        "view-livechat-analytics",
        &["livechat-manager", "livechat-monitor", "admin"],
    ),
    (
        "view-livechat-queue",
        &[
            "livechat-manager",
            "livechat-monitor",
            "livechat-agent",
            "admin",
        ],
    ),
    (
        "transfer-livechat-guest",
        &["livechat-manager", "livechat-monitor", "admin"],
    ),
    ("manage-livechat-managers", &["livechat-manager", "admin"]),
    (
        "manage-livechat-agents",
        &["livechat-manager", "livechat-monitor", "admin"],
    ),
    (
        "manage-livechat-departments",
        &["livechat-manager", "livechat-monitor", "admin"],
    ),
    (
        "view-livechat-departments",
        &["livechat-manager", "livechat-monitor", "admin"],
    ),
    (
        "add-livechat-department-agents",
        &["livechat-manager", "livechat-monitor", "admin"],
    ),
    (
        "view-livechat-real-time-monitoring",
        &["livechat-manager", "livechat-monitor", "admin"],
    ),
    ("view-livechat-triggers", &["livechat-manager", "admin"]),
    ("view-livechat-customfields", &["livechat-manager", "admin"]),
    ("view-livechat-installation", &["livechat-manager", "admin"]),
    ("view-livechat-appearance", &["livechat-manager", "admin"]),
    ("view-livechat-webhooks", &["livechat-manager", "admin"]),
    (
        "view-livechat-business-hours",
        &["livechat-manager", "livechat-monitor", "admin"],
    ),
    (
        "view-livechat-room-closed-same-department",
        &["livechat-manager", "livechat-monitor", "admin"],
    ),
    (
        "view-livechat-room-closed-by-another-agent",
        &["livechat-manager", "livechat-monitor", "admin"],
    ),
    (
        "view-livechat-room-customfields",
        &[
            "livechat-manager",
            "livechat-monitor",
            "livechat-agent",
            "admin",
        ],
    ),
    (
        "edit-livechat-room-customfields",
        &[
            "livechat-manager",
            "livechat-monitor",
            "livechat-agent",
            "admin",
        ],
    ),
    (
        "send-omnichannel-chat-transcript",
        &["livechat-manager", "admin"],
    ),
    ("mail-messages", &["admin"]),
    ("toggle-room-e2e-encryption", &["owner", "admin"]),
    ("message-impersonate", &["bot", "app"]),
    ("create-team", &["admin", "user"]),
    ("delete-team", &["admin", "owner"]),
    ("convert-team", &["admin", "owner"]),
    ("edit-team", &["admin", "owner"]),
    ("add-team-member", &["admin", "owner", "moderator"]),
    ("edit-team-member", &["admin", "owner", "moderator"]),
    ("move-room-to-team", &["admin", "owner", "moderator"]),
    ("create-team-channel", &["admin", "owner", "moderator"]),
    ("create-team-group", &["admin", "owner", "moderator"]),
    ("delete-team-channel", &["admin", "owner", "moderator"]),
    ("delete-team-group", &["admin", "owner", "moderator"]),
    ("edit-team-channel", &["admin", "owner", "moderator"]),
    ("remove-team-channel", &["admin", "owner", "moderator"]),
    ("view-all-team-channels", &["admin", "owner"]),
    ("view-all-teams", &["admin"]),
    (
        "remove-closed-livechat-room",
        &["livechat-manager", "admin"],
    ),
    ("remove-livechat-department", &["livechat-manager", "admin"]),
    ("allow-internal-voice-calls", &["admin", "user"]),
    ("allow-external-voice-calls", &["admin", "user"]),
    ("manage-apps", &["admin"]),
    ("post-readonly", &["admin", "owner", "moderator"]),
    ("set-readonly", &["admin", "owner"]),
    ("set-react-when-readonly", &["admin", "owner"]),
    ("manage-cloud", &["admin"]),
    ("manage-sounds", &["admin"]),
    ("access-mailer", &["admin"]),
    ("pin-message", &["owner", "moderator", "admin"]),
    (
        "mobile-upload-file",
        &["user", "federated-external", "admin"],
    ),
    ("send-mail", &["admin"]),
    ("view-federation-data", &["admin"]),
    (
        "access-federation",
        &["admin", "user", "federated-external"],
    ),
    ("add-all-to-room", &["admin"]),
    ("get-server-info", &["admin"]),
    ("register-on-cloud", &["admin"]),
    ("test-admin-options", &["admin"]),
    ("test-push-notifications", &["admin", "user"]),
    ("sync-auth-services-users", &["admin"]),
    ("restart-server", &["admin"]),
    ("remove-slackbridge-links", &["admin"]),
    ("view-import-operations", &["admin"]),
    ("clear-oembed-cache", &["admin"]),
    (
        "videoconf-ring-users",
        &["admin", "owner", "moderator", "user"],
    ),
    ("view-moderation-console", &["admin"]),
    ("manage-moderation-actions", &["admin"]),
    ("bypass-time-limit-edit-and-delete", &["bot", "app"]),
    ("export-messages-as-pdf", &["admin", "user"]),
];

/// A user holds a permission when any of its roles is among the permission's roles.
pub fn grants(permission_roles: &[String], user_roles: &[String]) -> bool {
    user_roles.iter().any(|r| permission_roles.contains(r))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_names_each_permission_once_with_known_roles_in_place() {
        let mut seen = std::collections::HashSet::new();
        for (id, roles) in DEFAULT_PERMISSIONS {
            assert!(seen.insert(*id), "{id} listed twice");
            let distinct: std::collections::HashSet<_> = roles.iter().collect();
            assert_eq!(distinct.len(), roles.len(), "{id} names a role twice");
        }
        for id in [
            VIEW_IMPORT_OPERATIONS,
            RUN_IMPORT,
            ACCESS_PERMISSIONS,
            CREATE_USER,
            DELETE_USER,
            BYPASS_RATE_LIMIT,
        ] {
            assert!(seen.contains(id), "{id}");
        }
    }

    #[test]
    fn any_shared_role_grants() {
        let p = vec!["admin".to_string(), "bot".to_string()];
        assert!(grants(&p, &["user".into(), "bot".into()]));
        assert!(!grants(&p, &["user".into()]));
        assert!(!grants(&p, &[]));
        assert!(!grants(&[], &["admin".into()]));
    }
}
