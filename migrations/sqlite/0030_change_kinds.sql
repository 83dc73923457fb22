-- Sessions added (a login, a new token) counted apart from sessions changed or removed: a
-- cached session stays valid when another is added, so only cached failed lookups need to
-- go. Every other replica or process then keeps its cached sessions across logins.
ALTER TABLE change_counters ADD COLUMN new_sessions INTEGER NOT NULL DEFAULT 0;

DROP TRIGGER sessions_insert_counted;
CREATE TRIGGER sessions_insert_counted AFTER INSERT ON sessions
    BEGIN UPDATE change_counters SET new_sessions = new_sessions + 1 WHERE id = 1; END;
