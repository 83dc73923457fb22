//! The user objects Rocket.Chat answers: the caller as `me` and `login` describe it
//! (`getUserInfo`), and a stored user as `users.create` answers it. Rules in
//! compatibility.md, section 4.2 and 4.3.

use serde_json::{Map, Value, json};

use crate::domain::time::format_iso_ms;
use crate::domain::user::UserRecord;

/// Rocket.Chat's default user preferences (its `Accounts_Default_User_Preferences_*` settings
/// at their defaults), in the order it registers them.
fn default_preferences() -> Map<String, Value> {
    let defaults = json!({
        "enableAutoAway": true,
        "idleTimeLimit": 300,
        "desktopNotificationRequireInteraction": false,
        "desktopNotifications": "all",
        "pushNotifications": "all",
        "unreadAlert": true,
        "useEmojis": true,
        "convertAsciiEmoji": true,
        "autoImageLoad": true,
        "saveMobileBandwidth": true,
        "collapseMediaByDefault": false,
        "hideUsernames": false,
        "hideRoles": false,
        "hideFlexTab": false,
        "displayAvatars": true,
        "sidebarGroupByType": true,
        "themeAppearence": "auto",
        "sidebarViewMode": "medium",
        "sidebarDisplayAvatar": true,
        "sidebarShowUnread": false,
        "sidebarSortby": "activity",
        "showThreadsInMainChannel": false,
        "alsoSendThreadToChannel": "default",
        "sidebarShowFavorites": true,
        "sendOnEnter": "normal",
        "emailNotificationMode": "mentions",
        "newRoomNotification": "door",
        "newMessageNotification": "chime",
        "muteFocusedConversations": true,
        "notificationsSoundVolume": 100,
        "omnichannelTranscriptEmail": false,
        "notifyCalendarEvents": true,
        "enableMobileRinging": true,
        "sidebarSectionsOrder": [
            "Incoming_Calls",
            "Incoming_Livechats",
            "Open_Livechats",
            "On_Hold_Chats",
            "Unread",
            "Favorites",
            "Teams",
            "Discussions",
            "Channels",
            "Direct_Messages",
            "Conversations"
        ],
        "featuresPreview": "[]"
    });
    match defaults {
        Value::Object(map) => map,
        _ => unreachable!("a JSON object literal"),
    }
}

fn date(ms: i64) -> Value {
    format_iso_ms(ms).map_or(Value::Null, Value::String)
}

/// The fields both objects start with, as the user document holds them; absent ones are left
/// out, never `null`.
fn document(record: &UserRecord) -> Map<String, Value> {
    let user = &record.user;
    let mut out = Map::new();
    out.insert("_id".into(), user.id.clone().into());
    if let Some(username) = &user.username {
        out.insert("username".into(), username.clone().into());
    }
    out.insert(
        "emails".into(),
        serde_json::to_value(&user.emails).unwrap_or_default(),
    );
    out.insert("active".into(), user.active.into());
    if let Some(name) = &user.name {
        out.insert("name".into(), name.clone().into());
    }
    out.insert("roles".into(), json!(user.roles));
    out
}

/// `me`, and `login`'s `data.me`: the user with `email` (its first verified address),
/// `settings` (empty profile, the default preferences, no calendar), `avatarUrl`,
/// `isOAuthUser` and whether it has a password, never the hash.
pub fn me(record: &UserRecord, site_url: &str) -> Map<String, Value> {
    let mut out = document(record);
    out.insert("_updatedAt".into(), date(record.updated_at_ms));
    if let Some(email) = record.user.emails.iter().find(|e| e.verified) {
        out.insert("email".into(), email.address.clone().into());
    }
    out.insert(
        "settings".into(),
        json!({
            "profile": {},
            "preferences": default_preferences(),
            "calendar": {},
        }),
    );
    let username = record.user.username.as_deref().unwrap_or("undefined");
    out.insert(
        "avatarUrl".into(),
        format!("{}/avatar/{username}", site_url.trim_end_matches('/')).into(),
    );
    out.insert("isOAuthUser".into(), false.into());
    out.insert(
        "services".into(),
        json!({"password": {"exists": record.has_password}}),
    );
    out
}

/// `users.create`'s `user`: the stored user without its services, with `createdAt`, `type`
/// (`user`), `status` (`offline`), `settings` and `_updatedAt`.
pub fn stored(record: &UserRecord) -> Map<String, Value> {
    let mut out = Map::new();
    out.insert("_id".into(), record.user.id.clone().into());
    out.insert("createdAt".into(), date(record.created_at_ms));
    for (key, value) in document(record) {
        if key != "_id" {
            out.insert(key, value);
        }
    }
    out.insert("type".into(), "user".into());
    out.insert("status".into(), "offline".into());
    out.insert("settings".into(), json!({}));
    out.insert("_updatedAt".into(), date(record.updated_at_ms));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::user::{Email, User};

    fn record(verified: bool, name: Option<&str>) -> UserRecord {
        UserRecord {
            user: User {
                id: "u1".into(),
                username: Some("jane".into()),
                name: name.map(Into::into),
                active: true,
                roles: vec!["user".into()],
                emails: vec![Email {
                    address: "jane@example.com".into(),
                    verified,
                }],
            },
            has_password: true,
            created_at_ms: 1_700_000_000_000,
            updated_at_ms: 1_700_000_000_500,
        }
    }

    #[test]
    fn me_has_what_get_user_info_adds_and_no_nulls() {
        let me = me(&record(false, None), "http://chat.example/");
        assert!(!me.contains_key("name"), "absent, not null");
        assert!(!me.contains_key("email"), "no verified address");
        assert_eq!(me["avatarUrl"], "http://chat.example/avatar/jane");
        assert_eq!(me["isOAuthUser"], false);
        assert_eq!(me["services"], json!({"password": {"exists": true}}));
        assert_eq!(me["settings"]["profile"], json!({}));
        assert_eq!(me["settings"]["calendar"], json!({}));
        assert_eq!(me["settings"]["preferences"]["idleTimeLimit"], 300);
        assert_eq!(me["_updatedAt"], "2023-11-14T22:13:20.500Z");
        assert!(me.values().all(|v| !v.is_null()));
        let verified = super::me(&record(true, Some("Jane")), "http://x");
        assert_eq!(verified["email"], "jane@example.com");
        assert_eq!(verified["name"], "Jane");
    }

    #[test]
    fn a_stored_user_has_what_iuser_requires() {
        let user = stored(&record(false, Some("Jane")));
        for key in ["_id", "createdAt", "roles", "type", "active", "_updatedAt"] {
            assert!(user.contains_key(key), "{key}");
        }
        assert_eq!(user["createdAt"], "2023-11-14T22:13:20.000Z");
        assert_eq!(user["type"], "user");
        assert!(!user.contains_key("services"));
    }
}
