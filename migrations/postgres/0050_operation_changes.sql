-- A change sequence for import operations: every row inserted or changed gets a number
-- greater than every number committed before it, so that the change feed (and
-- `import.operations.events`' ids) can read "what changed after N" with one indexed query
-- and never miss a row that commits late. A row written is marked unnumbered (NULL) by a
-- row trigger; at commit a deferred trigger takes the `operation_changes` row lock (so
-- committing writers of operations take turns there, as they already do on change_counters)
-- and numbers this transaction's rows from a sequence. Numbers are thus handed out in commit
-- order: any snapshot sees a prefix of them. Existing rows are numbered in stored order.
ALTER TABLE import_operations ADD COLUMN change_seq BIGINT;
UPDATE import_operations SET change_seq = seq;
CREATE SEQUENCE import_operation_change_numbers;
SELECT setval('import_operation_change_numbers', COALESCE(MAX(change_seq), 0) + 1, false)
    FROM import_operations;
CREATE INDEX import_operations_change_seq ON import_operations (change_seq);
CREATE INDEX import_operations_unsequenced ON import_operations (seq) WHERE change_seq IS NULL;

CREATE TABLE operation_changes (id SMALLINT PRIMARY KEY CHECK (id = 1));
INSERT INTO operation_changes (id) VALUES (1);

-- A statement's own row writes are unnumbered; the numbering below (a nested statement) is not.
CREATE FUNCTION importops_unsequence_operation() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF pg_trigger_depth() = 1 THEN
        NEW.change_seq := NULL;
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER import_operations_unsequenced BEFORE INSERT OR UPDATE ON import_operations
    FOR EACH ROW EXECUTE FUNCTION importops_unsequence_operation();

-- Once per transaction, at commit: the lock, then numbers for the rows still unnumbered.
CREATE FUNCTION importops_sequence_operations() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('importops.sequenced', true) = 'y' THEN
        RETURN NULL;
    END IF;
    PERFORM set_config('importops.sequenced', 'y', true);
    PERFORM 1 FROM operation_changes WHERE id = 1 FOR UPDATE;
    UPDATE import_operations SET change_seq = nextval('import_operation_change_numbers')
        WHERE change_seq IS NULL;
    RETURN NULL;
END
$$;
CREATE CONSTRAINT TRIGGER import_operations_sequenced AFTER INSERT OR UPDATE ON import_operations
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION importops_sequence_operations();
