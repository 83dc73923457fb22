-- Every committed write to a table that cached answers depend on notifies the channel
-- importops_changes, so that every replica drops its caches at once. NOTIFY is delivered only
-- after the transaction commits, and repeated notifications in one transaction are folded.
CREATE FUNCTION importops_notify_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('importops_changes', TG_TABLE_NAME);
    RETURN NULL;
END
$$;

CREATE TRIGGER roles_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON roles
    FOR EACH STATEMENT EXECUTE FUNCTION importops_notify_change();
CREATE TRIGGER users_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON users
    FOR EACH STATEMENT EXECUTE FUNCTION importops_notify_change();
CREATE TRIGGER sessions_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON sessions
    FOR EACH STATEMENT EXECUTE FUNCTION importops_notify_change();
CREATE TRIGGER permissions_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON permissions
    FOR EACH STATEMENT EXECUTE FUNCTION importops_notify_change();
CREATE TRIGGER import_operations_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON import_operations
    FOR EACH STATEMENT EXECUTE FUNCTION importops_notify_change();
