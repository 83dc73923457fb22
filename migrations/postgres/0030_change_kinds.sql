-- Sessions added (a login, a new token) counted and notified apart from sessions changed or
-- removed: a cached session stays valid when another is added, so only cached failed lookups
-- need to go. Every other replica then keeps its cached sessions across logins. And the
-- notifications name the process that wrote, when it says (below).
ALTER TABLE change_counters ADD COLUMN new_sessions BIGINT NOT NULL DEFAULT 0;

DROP TRIGGER sessions_counted ON sessions;
CREATE CONSTRAINT TRIGGER sessions_counted AFTER UPDATE OR DELETE ON sessions
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION importops_count_change('sessions');
CREATE CONSTRAINT TRIGGER sessions_insert_counted AFTER INSERT ON sessions
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION importops_count_change('new_sessions');

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

-- A session removed or changed names its user, `sessions:LENGTH:USER_ID` (the length, in
-- characters, keeps any user id apart from the origin that follows), so that the other
-- replicas drop that user's cached sessions only. One notification per user and
-- transaction: equal payloads are folded.
CREATE FUNCTION importops_notify_session_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify(
        'importops_changes',
        'sessions:' || length(OLD.user_id) || ':' || OLD.user_id
            || coalesce('@' || nullif(current_setting('importops.origin', true), ''), '')
    );
    RETURN NULL;
END
$$;

DROP TRIGGER sessions_changed ON sessions;
CREATE TRIGGER sessions_changed AFTER UPDATE OR DELETE ON sessions
    FOR EACH ROW EXECUTE FUNCTION importops_notify_session_change();
CREATE TRIGGER sessions_truncated_notified AFTER TRUNCATE ON sessions
    FOR EACH STATEMENT EXECUTE FUNCTION importops_notify_change();
CREATE TRIGGER sessions_added AFTER INSERT ON sessions
    FOR EACH STATEMENT EXECUTE FUNCTION importops_notify_change('sessions.insert');
