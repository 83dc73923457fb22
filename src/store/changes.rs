//! The kinds of data that caches keep, counted apart so that a change to one leaves the
//! others cached, and the change counters (one row per database, bumped by triggers: Postgres
//! migration 0011, SQLite migration 0011) that tell the watcher which kinds changed.

/// A set of kinds of data: import operations; sessions removed or changed (users changed or
/// removed among them: their sessions go with them); access (roles changed or removed,
/// permissions); rows added to sessions, users or roles (a login, a new token, a new user:
/// only failed lookups depend on those).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Kinds(u8);

impl Kinds {
    pub const OPERATIONS: Kinds = Kinds(1);
    pub const SESSIONS: Kinds = Kinds(2);
    pub const ACCESS: Kinds = Kinds(4);
    pub const ADDED: Kinds = Kinds(8);
    pub const ALL: Kinds = Kinds(15);
    /// How many kinds there are; `indices` numbers them below this.
    pub const COUNT: usize = 4;
    /// Each kind alone, by number.
    pub const EACH: [Kinds; Self::COUNT] = [
        Kinds::OPERATIONS,
        Kinds::SESSIONS,
        Kinds::ACCESS,
        Kinds::ADDED,
    ];

    /// Whether every kind of `other` is in the set.
    pub fn contains(self, other: Kinds) -> bool {
        self.0 & other.0 == other.0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The kinds in the set, by number (`OPERATIONS` 0, `SESSIONS` 1, `ACCESS` 2,
    /// `ADDED` 3).
    pub fn indices(self) -> impl Iterator<Item = usize> {
        (0..Self::COUNT).filter(move |i| self.0 & (1 << i) != 0)
    }

    /// The kind a table's rows belong to, as a change notification names the table (and
    /// `TABLE.insert` for rows added, migration 0030); a table not known here counts as a
    /// change to all.
    pub fn of_table(table: &str) -> Kinds {
        match table {
            "import_operations" => Kinds::OPERATIONS,
            "sessions" => Kinds::SESSIONS,
            "sessions.insert" | "users.insert" | "roles.insert" => Kinds::ADDED,
            "users" => Kinds::SESSIONS | Kinds::ACCESS,
            "roles" | "permissions" => Kinds::ACCESS,
            _ => Kinds::ALL,
        }
    }
}

impl std::ops::BitOr for Kinds {
    type Output = Kinds;

    fn bitor(self, other: Kinds) -> Kinds {
        Kinds(self.0 | other.0)
    }
}

/// Reads the counters, in `indices` order; the same text on both backends, with no
/// parameter, so it runs in the simple protocol (no prepared statement).
pub(super) const READ_COUNTERS: &str =
    "SELECT operations, sessions, access, added FROM change_counters WHERE id = 1";

pub(super) type Counters = [i64; Kinds::COUNT];

/// The kinds whose counters moved since `last` (all when there was no last look).
pub(super) fn moved(last: Option<Counters>, now: Counters) -> Kinds {
    let Some(last) = last else {
        return Kinds::ALL;
    };
    (0..Kinds::COUNT)
        .filter(|&i| last[i] != now[i])
        .fold(Kinds::default(), |kinds, i| kinds | Kinds(1 << i))
}

/// The counters in a row read by `READ_COUNTERS`.
pub(super) fn decode<R: sqlx::Row>(row: &R) -> Result<Counters, sqlx::Error>
where
    usize: sqlx::ColumnIndex<R>,
    i64: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    Ok([
        row.try_get(0)?,
        row.try_get(1)?,
        row.try_get(2)?,
        row.try_get(3)?,
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moved_counters_name_their_kinds() {
        assert_eq!(moved(None, [0, 0, 0, 0]), Kinds::ALL);
        assert!(moved(Some([1, 2, 3, 4]), [1, 2, 3, 4]).is_empty());
        assert_eq!(moved(Some([1, 2, 3, 4]), [2, 2, 3, 4]), Kinds::OPERATIONS);
        assert_eq!(
            moved(Some([1, 2, 3, 4]), [1, 3, 4, 4]),
            Kinds::SESSIONS | Kinds::ACCESS
        );
        assert_eq!(moved(Some([1, 2, 3, 4]), [1, 2, 3, 5]), Kinds::ADDED);
        let all: Vec<usize> = Kinds::ALL.indices().collect();
        assert_eq!(all, [0, 1, 2, 3]);
        assert_eq!(Kinds::of_table("roles"), Kinds::ACCESS);
        assert_eq!(Kinds::of_table("sessions.insert"), Kinds::ADDED);
        assert_eq!(Kinds::of_table("users.insert"), Kinds::ADDED);
        assert_eq!(Kinds::of_table("something_else"), Kinds::ALL);
    }
}
