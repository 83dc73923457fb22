//! Rocket.Chat's Slack users importer (key `slack-users`, name `Slack_Users`;
//! docs/compatibility.md, "The Slack users importer"): the CSV of members Slack's admin page
//! exports (`username,email,status,billing-active,has-2fa,has-sso,userid,fullname,displayname,
//! expiration-timestamp`), not a zip. Read as the CSV importer reads its files: checked first,
//! then streamed.

use std::path::Path;

use serde_json::{Map, Value, json};

use super::archive::read_text_file;
use super::csv::{IMPORT_FAILED, PREPARING_USERS, Prep, USER_SELECTION, read_rows};
use super::{Counts, DataType, ImportError, Limits, Sink};

/// The Slack users importer's `prepare` (a [`super::PrepareFn`]).
pub fn prepare(path: &Path, limits: &Limits, sink: &mut dyn Sink) -> Result<(), ImportError> {
    let mut prep = Prep { sink, step: None };
    prep.step(PREPARING_USERS)?;
    read_text_file(path, limits, |r| read_rows(r, |_| Ok(())))??.map_err(ImportError::plain)?;

    let mut users = 0u64;
    let mut first = true;
    read_text_file(path, limits, |r| {
        read_rows(r, |row| {
            // The first row is the header.
            if std::mem::take(&mut first) {
                return Ok(());
            }
            let Some(email) = row.get(1).filter(|e| !e.is_empty()) else {
                return Ok(());
            };
            let username = row.get(0).unwrap_or_default();
            let name = [row.get(7), row.get(8)]
                .into_iter()
                .flatten()
                .find(|n| !n.is_empty())
                .unwrap_or(username);
            let mut user = Map::new();
            user.insert("emails".into(), json!([email]));
            user.insert("importIds".into(), json!([email]));
            user.insert("username".into(), username.into());
            user.insert("name".into(), name.into());
            user.insert("type".into(), "user".into());
            match row.get(2) {
                Some("Admin") => {
                    user.insert("roles".into(), json!(["admin"]));
                }
                Some("Bot") => {
                    user.insert("roles".into(), json!(["bot"]));
                    user.insert("type".into(), "bot".into());
                }
                Some("Deactivated") => {
                    user.insert("deleted".into(), true.into());
                }
                _ => {}
            }
            users += 1;
            prep.record(DataType::User, Value::Object(user))
        })
    })??
    .map_err(ImportError::plain)?;

    if users == 0 {
        tracing::error!("No users found in the import file.");
        return prep.step(IMPORT_FAILED);
    }
    prep.step(USER_SELECTION)?;
    prep.counts(Counts {
        add_total: users,
        ..Counts::default()
    })?;
    prep.counts(Counts {
        users: Some(users),
        ..Counts::default()
    })
}
