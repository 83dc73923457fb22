-- Finer change kinds for the caches. Rows added to sessions, users or roles (a login, a new
-- token, a new user) are counted and notified apart (`added`, `TABLE.insert`): no cached
-- session or permission depends on them, only cached failed lookups. A session, or a user,
-- changed or removed names its user (`sessions:LENGTH:USER_ID`), so that the other replicas
-- drop that user's cached sessions only; access is now roles changed or removed, and
-- permissions. And each notification names the process that wrote, when it says (below).
ALTER TABLE change_counters ADD COLUMN added BIGINT NOT NULL DEFAULT 0;

DROP TRIGGER sessions_counted ON sessions;
CREATE CONSTRAINT TRIGGER sessions_counted AFTER UPDATE OR DELETE ON sessions
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION importops_count_change('sessions');
CREATE CONSTRAINT TRIGGER sessions_insert_counted AFTER INSERT ON sessions
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION importops_count_change('added');

DROP TRIGGER users_counted ON users;
CREATE CONSTRAINT TRIGGER users_counted AFTER UPDATE OR DELETE ON users
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION importops_count_change('sessions');
CREATE CONSTRAINT TRIGGER users_insert_counted AFTER INSERT ON users
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION importops_count_change('added');

DROP TRIGGER roles_counted ON roles;
CREATE CONSTRAINT TRIGGER roles_counted AFTER UPDATE OR DELETE ON roles
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION importops_count_change('access');
CREATE CONSTRAINT TRIGGER roles_insert_counted AFTER INSERT ON roles
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION importops_count_change('added');

-- The notification names the table, or the trigger's argument when it has one, then
-- `@ORIGIN` when the writing transaction named its process (`SET LOCAL importops.origin`,
-- as the server's writes do), so that a process can tell its own writes from the others'.
CREATE OR REPLACE FUNCTION importops_notify_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify(
        'importops_changes',
        coalesce(TG_ARGV[0], TG_TABLE_NAME)
            || coalesce('@' || nullif(current_setting('importops.origin', true), ''), '')
    );
    RETURN NULL;
END
$$;

-- A session, or a user, changed or removed: `sessions:LENGTH:USER_ID` (the length, in
-- characters, keeps any user id apart from the origin that follows), the user id read from
-- the column the trigger names. One notification per user and transaction: equal payloads
-- are folded.
CREATE FUNCTION importops_notify_user_sessions() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    user_id TEXT := to_jsonb(OLD) ->> TG_ARGV[0];
BEGIN
    PERFORM pg_notify(
        'importops_changes',
        'sessions:' || length(user_id) || ':' || user_id
            || coalesce('@' || nullif(current_setting('importops.origin', true), ''), '')
    );
    RETURN NULL;
END
$$;

DROP TRIGGER sessions_changed ON sessions;
CREATE TRIGGER sessions_changed AFTER UPDATE OR DELETE ON sessions
    FOR EACH ROW EXECUTE FUNCTION importops_notify_user_sessions('user_id');
CREATE TRIGGER sessions_added AFTER INSERT ON sessions
    FOR EACH STATEMENT EXECUTE FUNCTION importops_notify_change('sessions.insert');
CREATE TRIGGER sessions_truncated_notified AFTER TRUNCATE ON sessions
    FOR EACH STATEMENT EXECUTE FUNCTION importops_notify_change();

DROP TRIGGER users_changed ON users;
CREATE TRIGGER users_changed AFTER UPDATE OR DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION importops_notify_user_sessions('id');
CREATE TRIGGER users_added AFTER INSERT ON users
    FOR EACH STATEMENT EXECUTE FUNCTION importops_notify_change('users.insert');
CREATE TRIGGER users_truncated_notified AFTER TRUNCATE ON users
    FOR EACH STATEMENT EXECUTE FUNCTION importops_notify_change();

DROP TRIGGER roles_changed ON roles;
CREATE TRIGGER roles_changed AFTER UPDATE OR DELETE OR TRUNCATE ON roles
    FOR EACH STATEMENT EXECUTE FUNCTION importops_notify_change();
CREATE TRIGGER roles_added AFTER INSERT ON roles
    FOR EACH STATEMENT EXECUTE FUNCTION importops_notify_change('roles.insert');
