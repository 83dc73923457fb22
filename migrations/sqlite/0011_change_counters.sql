-- A change counter per kind of cached data, bumped by triggers as rows change, so that the
-- change watcher (which sees only that the file changed, through PRAGMA data_version) can
-- tell which kinds did: a write to operations then leaves cached sessions and permissions
-- alone. SQLite has no statement triggers, so each row bumps it; writes are serialized
-- anyway, and one row updated in the same transaction costs little next to the row itself.
CREATE TABLE change_counters (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    operations INTEGER NOT NULL DEFAULT 0,
    sessions INTEGER NOT NULL DEFAULT 0,
    access INTEGER NOT NULL DEFAULT 0
);
INSERT INTO change_counters (id) VALUES (1);

CREATE TRIGGER import_operations_insert_counted AFTER INSERT ON import_operations
    BEGIN UPDATE change_counters SET operations = operations + 1 WHERE id = 1; END;
CREATE TRIGGER import_operations_update_counted AFTER UPDATE ON import_operations
    BEGIN UPDATE change_counters SET operations = operations + 1 WHERE id = 1; END;
CREATE TRIGGER import_operations_delete_counted AFTER DELETE ON import_operations
    BEGIN UPDATE change_counters SET operations = operations + 1 WHERE id = 1; END;

CREATE TRIGGER sessions_insert_counted AFTER INSERT ON sessions
    BEGIN UPDATE change_counters SET sessions = sessions + 1 WHERE id = 1; END;
CREATE TRIGGER sessions_update_counted AFTER UPDATE ON sessions
    BEGIN UPDATE change_counters SET sessions = sessions + 1 WHERE id = 1; END;
CREATE TRIGGER sessions_delete_counted AFTER DELETE ON sessions
    BEGIN UPDATE change_counters SET sessions = sessions + 1 WHERE id = 1; END;

CREATE TRIGGER users_insert_counted AFTER INSERT ON users
    BEGIN UPDATE change_counters SET access = access + 1 WHERE id = 1; END;
CREATE TRIGGER users_update_counted AFTER UPDATE ON users
    BEGIN UPDATE change_counters SET access = access + 1 WHERE id = 1; END;
CREATE TRIGGER users_delete_counted AFTER DELETE ON users
    BEGIN UPDATE change_counters SET access = access + 1 WHERE id = 1; END;

CREATE TRIGGER roles_insert_counted AFTER INSERT ON roles
    BEGIN UPDATE change_counters SET access = access + 1 WHERE id = 1; END;
CREATE TRIGGER roles_update_counted AFTER UPDATE ON roles
    BEGIN UPDATE change_counters SET access = access + 1 WHERE id = 1; END;
CREATE TRIGGER roles_delete_counted AFTER DELETE ON roles
    BEGIN UPDATE change_counters SET access = access + 1 WHERE id = 1; END;

CREATE TRIGGER permissions_insert_counted AFTER INSERT ON permissions
    BEGIN UPDATE change_counters SET access = access + 1 WHERE id = 1; END;
CREATE TRIGGER permissions_update_counted AFTER UPDATE ON permissions
    BEGIN UPDATE change_counters SET access = access + 1 WHERE id = 1; END;
CREATE TRIGGER permissions_delete_counted AFTER DELETE ON permissions
    BEGIN UPDATE change_counters SET access = access + 1 WHERE id = 1; END;
