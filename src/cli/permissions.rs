//! `importops permission ...`.

use clap::Subcommand;
use serde_json::json;

use super::output::{print_json, print_table, time_cell};
use super::{CliError, CliResult};
use crate::accounts::dedup;
use crate::domain::user::is_valid_role;
use crate::store::Store;

#[derive(Debug, Subcommand)]
pub enum PermissionCommand {
    /// List permissions and the roles that hold them
    List {
        #[arg(long)]
        json: bool,
    },
    /// Set the roles that hold a permission (roles that do not exist yet are created)
    Set {
        permission: String,
        #[arg(required = true, value_name = "ROLE")]
        roles: Vec<String>,
    },
}

pub async fn run(store: &Store, cmd: PermissionCommand) -> CliResult {
    match cmd {
        PermissionCommand::List { json } => {
            let permissions = store.list_permissions().await?;
            if json {
                let items: Vec<_> = permissions
                    .iter()
                    .map(|p| json!({"_id": p.id, "roles": p.roles, "_updatedAt": time_cell(p.updated_at_ms)}))
                    .collect();
                print_json(&items);
            } else {
                let rows: Vec<Vec<String>> = permissions
                    .iter()
                    .map(|p| vec![p.id.clone(), p.roles.join(",")])
                    .collect();
                print_table(&["PERMISSION", "ROLES"], &rows);
            }
        }
        PermissionCommand::Set { permission, roles } => {
            if let Some(role) = roles.iter().find(|r| !is_valid_role(r)) {
                return Err(CliError::Usage(format!(
                    "{role:?} is not a valid role name"
                )));
            }
            let roles = dedup(roles);
            if !store.set_permission_roles(&permission, &roles).await? {
                return Err(CliError::Usage(format!(
                    "there is no permission named {permission:?} (see `importops permission list`)"
                )));
            }
            println!(
                "permission {permission} is now held by: {}",
                roles.join(", ")
            );
        }
    }
    Ok(())
}
