//! `importops token ...`: login tokens and personal access tokens. A raw token is printed once,
//! when issued; only its hash is stored.

use clap::{ArgGroup, Subcommand};
use serde_json::json;

use super::output::{print_json, print_table, time_cell};
use super::{CliError, CliResult, find_user};
use crate::accounts::{TokenLifetime, issue_token};
use crate::domain::secrets::hash_token;
use crate::store::{Revoke, Store};

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Issue a token and print the user id and the raw token (shown only this once)
    Issue {
        username: String,
        /// A login token that expires after N days instead of the server's login expiration
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=36_500),
              conflicts_with = "personal")]
        expires_in_days: Option<u32>,
        /// A personal access token with this name, which never expires
        #[arg(long, value_name = "NAME")]
        personal: Option<String>,
        /// Print {"userId":"...","authToken":"..."}
        #[arg(long)]
        json: bool,
    },
    /// List a user's tokens (never the tokens themselves)
    List {
        username: String,
        #[arg(long)]
        json: bool,
    },
    /// Revoke all of a user's tokens, a personal access token by name, or one token
    #[command(group(ArgGroup::new("which").required(true).args(["all", "name", "token"])))]
    Revoke {
        username: String,
        #[arg(long)]
        all: bool,
        /// The name of a personal access token
        #[arg(long)]
        name: Option<String>,
        /// The raw token (it may start with '-')
        #[arg(long, allow_hyphen_values = true)]
        token: Option<String>,
    },
}

pub async fn run(store: &Store, cmd: TokenCommand) -> CliResult {
    match cmd {
        TokenCommand::Issue {
            username,
            expires_in_days,
            personal,
            json,
        } => {
            let user = find_user(store, &username).await?;
            let lifetime = match (personal, expires_in_days) {
                (Some(name), _) if name.trim().is_empty() => {
                    return Err(CliError::Usage(
                        "a personal token's name cannot be empty".into(),
                    ));
                }
                (Some(name), _) => TokenLifetime::Personal(name),
                (None, Some(days)) => TokenLifetime::Days(days),
                (None, None) => TokenLifetime::Default,
            };
            let token = issue_token(store, &user.id, lifetime).await?;
            if json {
                println!("{}", json!({"userId": user.id, "authToken": token}));
            } else {
                println!("userId:    {}", user.id);
                println!("authToken: {token}");
            }
        }
        TokenCommand::List { username, json } => {
            let user = find_user(store, &username).await?;
            let sessions = store.list_sessions(&user.id).await?;
            if json {
                let items: Vec<_> = sessions
                    .iter()
                    .map(|s| {
                        json!({"id": s.id, "kind": s.kind.as_str(), "name": s.name,
                               "issuedAt": time_cell(s.issued_at_ms),
                               "expiresAt": s.expires_at_ms.map(time_cell)})
                    })
                    .collect();
                print_json(&items);
            } else {
                let rows: Vec<Vec<String>> = sessions
                    .iter()
                    .map(|s| {
                        let expires = match (s.kind, s.expires_at_ms) {
                            (crate::domain::auth::TokenKind::Personal, _) => "never".into(),
                            (_, Some(ms)) => time_cell(ms),
                            (_, None) => "after the login expiration".into(),
                        };
                        vec![
                            s.id.to_string(),
                            s.kind.as_str().into(),
                            s.name.clone().unwrap_or_default(),
                            time_cell(s.issued_at_ms),
                            expires,
                        ]
                    })
                    .collect();
                print_table(&["ID", "KIND", "NAME", "ISSUED", "EXPIRES"], &rows);
            }
        }
        TokenCommand::Revoke {
            username,
            all,
            name,
            token,
        } => {
            let user = find_user(store, &username).await?;
            let which = match (all, name, token) {
                (true, _, _) => Revoke::All,
                (_, Some(name), _) => Revoke::Name(name),
                (_, _, Some(token)) => Revoke::Hash(hash_token(&token)),
                _ => unreachable!("clap requires one of --all, --name, --token"),
            };
            let count = store.revoke_sessions(&user.id, &which).await?;
            if count == 0 && !matches!(which, Revoke::All) {
                return Err(CliError::Usage(format!(
                    "user {username} has no such token"
                )));
            }
            println!("revoked {count} token(s) of user {username}");
        }
    }
    Ok(())
}
