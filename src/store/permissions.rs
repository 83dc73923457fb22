//! Permissions and the roles that hold them; Rocket.Chat's defaults seeded where missing.

use super::users::insert_roles;
use super::{
    CHUNK_ROWS, Kinds, Store, StoreError, decode_list, encode_list, in_write, insert_values,
    with_pool,
};
use crate::domain::permission::{DEFAULT_PERMISSIONS, DEFAULT_ROLES};
use crate::domain::time::now_ms;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permission {
    pub id: String,
    pub roles: Vec<String>,
    pub updated_at_ms: i64,
}

#[derive(sqlx::FromRow)]
struct PermissionRow {
    id: String,
    roles: String,
    updated_at: i64,
}

impl Store {
    /// Adds Rocket.Chat's default roles and permissions that are missing, keeping an
    /// administrator's changes to the others. Writes nothing when none is missing: every
    /// start of a server or a command runs this, and a write (even one that inserts no row:
    /// Postgres's statement triggers notify anyway) would empty every replica's cached
    /// sessions and permissions.
    pub(super) async fn seed_defaults(&self) -> Result<(), StoreError> {
        let (roles, ids): (Vec<String>, Vec<String>) = with_pool!(self, |pool| {
            let roles = sqlx::query_scalar("SELECT name FROM roles")
                .fetch_all(pool)
                .await?;
            let ids = sqlx::query_scalar("SELECT id FROM permissions")
                .fetch_all(pool)
                .await?;
            (roles, ids)
        });
        let missing_roles: Vec<&str> = DEFAULT_ROLES
            .iter()
            .copied()
            .filter(|role| !roles.iter().any(|r| r == role))
            .collect();
        let now = now_ms();
        let permissions: Vec<(&str, String)> = DEFAULT_PERMISSIONS
            .iter()
            .filter(|(id, _)| !ids.iter().any(|i| i == id))
            .map(|(id, roles)| {
                let roles: Vec<String> = roles.iter().map(|r| r.to_string()).collect();
                (*id, encode_list(&roles))
            })
            .collect();
        if missing_roles.is_empty() && permissions.is_empty() {
            return Ok(());
        }
        in_write!(self, Kinds::ACCESS, |tx| {
            insert_roles!(tx, missing_roles);
            for chunk in permissions.chunks(CHUNK_ROWS) {
                let sql = insert_values(
                    &tx,
                    "permissions",
                    &["id", "roles", "updated_at"],
                    chunk.len(),
                    "ON CONFLICT DO NOTHING",
                );
                let mut query = sqlx::query(&sql);
                for (id, roles) in chunk {
                    query = query.bind(*id).bind(roles).bind(now);
                }
                query.execute(&mut *tx).await?;
            }
        })
    }

    /// The roles holding a permission; `None` when no such permission exists.
    pub async fn permission_roles(&self, id: &str) -> Result<Option<Vec<String>>, StoreError> {
        let roles: Option<String> = with_pool!(self, |pool| {
            sqlx::query_scalar("SELECT roles FROM permissions WHERE id = $1")
                .bind(id)
                .fetch_optional(pool)
                .await?
        });
        roles.as_deref().map(decode_list).transpose()
    }

    pub async fn list_permissions(&self) -> Result<Vec<Permission>, StoreError> {
        let rows: Vec<PermissionRow> = with_pool!(self, |pool| {
            sqlx::query_as("SELECT id, roles, updated_at FROM permissions ORDER BY id")
                .fetch_all(pool)
                .await?
        });
        rows.into_iter()
            .map(|r| {
                Ok(Permission {
                    id: r.id,
                    roles: decode_list(&r.roles)?,
                    updated_at_ms: r.updated_at,
                })
            })
            .collect()
    }

    /// Replaces the roles of an existing permission, creating missing roles; false when the
    /// permission does not exist.
    pub async fn set_permission_roles(
        &self,
        id: &str,
        roles: &[String],
    ) -> Result<bool, StoreError> {
        let change = [(id.to_owned(), roles.to_vec())];
        Ok(self.replace_permission_roles(&change).await? > 0)
    }

    /// Replaces the roles of several permissions in one transaction, creating missing roles.
    /// The permissions must exist (callers check).
    pub async fn set_permissions(
        &self,
        changes: &[(String, Vec<String>)],
    ) -> Result<(), StoreError> {
        self.replace_permission_roles(changes).await.map(drop)
    }

    /// Both of the above: how many permissions existed and were changed.
    async fn replace_permission_roles(
        &self,
        changes: &[(String, Vec<String>)],
    ) -> Result<u64, StoreError> {
        let now = now_ms();
        in_write!(self, Kinds::ACCESS, |tx| {
            let mut changed = 0;
            for (id, roles) in changes {
                insert_roles!(tx, roles.iter().map(String::as_str).collect());
                changed +=
                    sqlx::query("UPDATE permissions SET roles = $1, updated_at = $2 WHERE id = $3")
                        .bind(encode_list(roles))
                        .bind(now)
                        .bind(id)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
            }
            changed
        })
    }
}
