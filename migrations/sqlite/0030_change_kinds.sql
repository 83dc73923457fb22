-- Finer change kinds for the caches. Rows added to sessions, users or roles (a login, a new
-- token, a new user) are counted apart (`added`): no cached session or permission depends on
-- them, only cached failed lookups. A user changed or removed counts as a change to sessions
-- (its sessions are cached with its roles and state), no longer to access (which is now roles
-- changed or removed, and permissions).
ALTER TABLE change_counters ADD COLUMN added INTEGER NOT NULL DEFAULT 0;

DROP TRIGGER sessions_insert_counted;
CREATE TRIGGER sessions_insert_counted AFTER INSERT ON sessions
    BEGIN UPDATE change_counters SET added = added + 1 WHERE id = 1; END;

DROP TRIGGER users_insert_counted;
CREATE TRIGGER users_insert_counted AFTER INSERT ON users
    BEGIN UPDATE change_counters SET added = added + 1 WHERE id = 1; END;
DROP TRIGGER users_update_counted;
CREATE TRIGGER users_update_counted AFTER UPDATE ON users
    BEGIN UPDATE change_counters SET sessions = sessions + 1 WHERE id = 1; END;
DROP TRIGGER users_delete_counted;
CREATE TRIGGER users_delete_counted AFTER DELETE ON users
    BEGIN UPDATE change_counters SET sessions = sessions + 1 WHERE id = 1; END;

DROP TRIGGER roles_insert_counted;
CREATE TRIGGER roles_insert_counted AFTER INSERT ON roles
    BEGIN UPDATE change_counters SET added = added + 1 WHERE id = 1; END;
