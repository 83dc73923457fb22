//! `importops user ...` and `importops role ...`.

use std::io::BufRead;

use clap::Subcommand;

use super::output::{print_json, print_table};
use super::{CliError, CliResult, find_user, no_such_user};
use crate::accounts::{NewAccount, create_user, dedup};
use crate::domain::user::is_valid_role;
use crate::store::Store;

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user (roles default to `user`)
    Add {
        username: String,
        /// Display name
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        email: Option<String>,
        /// A role to give the user; repeat for several
        #[arg(long = "role", value_name = "ROLE")]
        roles: Vec<String>,
        /// Read the password from the first line of standard input
        #[arg(long)]
        password_stdin: bool,
        /// Create the user deactivated
        #[arg(long)]
        inactive: bool,
        #[arg(long)]
        json: bool,
    },
    /// List users
    List {
        #[arg(long)]
        json: bool,
    },
    /// Remove a user and all its tokens
    Remove { username: String },
    /// Activate or deactivate a user (a deactivated user's tokens are refused)
    SetActive {
        username: String,
        #[arg(action = clap::ArgAction::Set, value_parser = clap::value_parser!(bool), value_name = "true|false")]
        active: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum RoleCommand {
    /// Give a user a role (a role that does not exist yet is created)
    Grant { username: String, role: String },
    /// Take a role from a user
    Revoke { username: String, role: String },
}

pub async fn run_user(store: &Store, cmd: UserCommand) -> CliResult {
    match cmd {
        UserCommand::Add {
            username,
            name,
            email,
            roles,
            password_stdin,
            inactive,
            json,
        } => {
            let password = if password_stdin {
                Some(read_password_line()?)
            } else {
                None
            };
            let account = NewAccount {
                username,
                name,
                email,
                roles,
                password,
                active: !inactive,
                email_verified: false,
            };
            let user = create_user(store, account).await?;
            if json {
                print_json(&user);
            } else {
                println!(
                    "created user {} with id {} and roles {}",
                    user.username.as_deref().unwrap_or_default(),
                    user.id,
                    user.roles.join(", ")
                );
            }
        }
        UserCommand::List { json } => {
            let users = store.list_users().await?;
            if json {
                print_json(&users);
            } else {
                let rows: Vec<Vec<String>> = users
                    .iter()
                    .map(|u| {
                        vec![
                            u.id.clone(),
                            u.username.clone().unwrap_or_default(),
                            u.name.clone().unwrap_or_default(),
                            u.active.to_string(),
                            u.roles.join(","),
                            u.emails
                                .iter()
                                .map(|e| e.address.as_str())
                                .collect::<Vec<_>>()
                                .join(","),
                        ]
                    })
                    .collect();
                print_table(
                    &["ID", "USERNAME", "NAME", "ACTIVE", "ROLES", "EMAILS"],
                    &rows,
                );
            }
        }
        UserCommand::Remove { username } => {
            if !store.remove_user(&username).await? {
                return Err(no_such_user(&username));
            }
            println!("removed user {username} and its tokens");
        }
        UserCommand::SetActive { username, active } => {
            if !store.set_user_active(&username, active).await? {
                return Err(no_such_user(&username));
            }
            let state = if active { "active" } else { "deactivated" };
            println!("user {username} is now {state}");
        }
    }
    Ok(())
}

pub async fn run_role(store: &Store, cmd: RoleCommand) -> CliResult {
    let (username, role, grant) = match cmd {
        RoleCommand::Grant { username, role } => (username, role, true),
        RoleCommand::Revoke { username, role } => (username, role, false),
    };
    if !is_valid_role(&role) {
        return Err(CliError::Usage(format!(
            "{role:?} is not a valid role name"
        )));
    }
    let user = find_user(store, &username).await?;
    let had = user.roles.contains(&role);
    if had == grant {
        let state = if grant {
            "already has"
        } else {
            "does not have"
        };
        println!("user {username} {state} the role {role}");
        return Ok(());
    }
    let mut roles = user.roles;
    if grant {
        roles.push(role.clone());
    } else {
        roles.retain(|r| r != &role);
    }
    store.set_user_roles(&username, &dedup(roles)).await?;
    let verb = if grant { "granted" } else { "revoked" };
    println!("{verb} the role {role} for user {username}");
    Ok(())
}

/// The first line of standard input, without its line ending.
fn read_password_line() -> Result<String, CliError> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| CliError::Io(format!("cannot read the password from standard input: {e}")))?;
    let password = line.trim_end_matches(['\n', '\r']).to_owned();
    if password.is_empty() {
        return Err(CliError::Usage(
            "no password was given on standard input".into(),
        ));
    }
    Ok(password)
}
