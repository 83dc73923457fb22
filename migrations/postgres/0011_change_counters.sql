-- A change counter per kind of cached data, read by the change watcher when it polls
-- (`--change-detection poll`, where LISTEN cannot work, as behind PgBouncer's transaction
-- pooling). One row, so a transaction bumps one lock; the triggers are deferred to commit,
-- so that lock is taken last and held only while committing (no deadlock with the data's
-- row locks), and the new value is visible exactly when the data is.
CREATE TABLE change_counters (
    id SMALLINT PRIMARY KEY CHECK (id = 1),
    operations BIGINT NOT NULL DEFAULT 0,
    sessions BIGINT NOT NULL DEFAULT 0,
    access BIGINT NOT NULL DEFAULT 0
);
INSERT INTO change_counters (id) VALUES (1);

-- Bumps the counter named by the trigger's argument, once per transaction and kind (a
-- transaction-local setting remembers it; the rows after the first add nothing).
CREATE FUNCTION importops_count_change() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    flag TEXT := 'importops.counted_' || TG_ARGV[0];
BEGIN
    IF current_setting(flag, true) = 'y' THEN
        RETURN NULL;
    END IF;
    PERFORM set_config(flag, 'y', true);
    EXECUTE format('UPDATE change_counters SET %1$I = %1$I + 1 WHERE id = 1', TG_ARGV[0]);
    RETURN NULL;
END
$$;

CREATE CONSTRAINT TRIGGER import_operations_counted AFTER INSERT OR UPDATE OR DELETE ON import_operations
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION importops_count_change('operations');
CREATE CONSTRAINT TRIGGER sessions_counted AFTER INSERT OR UPDATE OR DELETE ON sessions
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION importops_count_change('sessions');
CREATE CONSTRAINT TRIGGER users_counted AFTER INSERT OR UPDATE OR DELETE ON users
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION importops_count_change('access');
CREATE CONSTRAINT TRIGGER roles_counted AFTER INSERT OR UPDATE OR DELETE ON roles
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION importops_count_change('access');
CREATE CONSTRAINT TRIGGER permissions_counted AFTER INSERT OR UPDATE OR DELETE ON permissions
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION importops_count_change('access');

-- TRUNCATE has no row triggers: counted at once.
CREATE TRIGGER import_operations_truncated AFTER TRUNCATE ON import_operations
    FOR EACH STATEMENT EXECUTE FUNCTION importops_count_change('operations');
CREATE TRIGGER sessions_truncated AFTER TRUNCATE ON sessions
    FOR EACH STATEMENT EXECUTE FUNCTION importops_count_change('sessions');
CREATE TRIGGER users_truncated AFTER TRUNCATE ON users
    FOR EACH STATEMENT EXECUTE FUNCTION importops_count_change('access');
CREATE TRIGGER roles_truncated AFTER TRUNCATE ON roles
    FOR EACH STATEMENT EXECUTE FUNCTION importops_count_change('access');
CREATE TRIGGER permissions_truncated AFTER TRUNCATE ON permissions
    FOR EACH STATEMENT EXECUTE FUNCTION importops_count_change('access');
