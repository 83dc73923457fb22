-- A change sequence for import operations: every row inserted or changed takes the next
-- number of one counter, so that the change feed (and `import.operations.events`' ids) can
-- read "what changed after N" with one indexed query. SQLite serializes writers, so the
-- numbers are given in commit order. Existing rows are numbered in their stored order.
ALTER TABLE import_operations ADD COLUMN change_seq INTEGER;
UPDATE import_operations SET change_seq = seq;
CREATE INDEX import_operations_change_seq ON import_operations (change_seq);

CREATE TABLE operation_changes (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    last INTEGER NOT NULL
);
INSERT INTO operation_changes (id, last) SELECT 1, COALESCE(MAX(seq), 0) FROM import_operations;

-- The update of change_seq itself names none of the columns below, so it fires neither trigger.
CREATE TRIGGER import_operations_insert_sequenced AFTER INSERT ON import_operations
BEGIN
    UPDATE operation_changes SET last = last + 1 WHERE id = 1;
    UPDATE import_operations SET change_seq = (SELECT last FROM operation_changes WHERE id = 1)
        WHERE seq = NEW.seq;
END;
CREATE TRIGGER import_operations_update_sequenced
    AFTER UPDATE OF id, updated_at, ts, status, valid, doc ON import_operations
BEGIN
    UPDATE operation_changes SET last = last + 1 WHERE id = 1;
    UPDATE import_operations SET change_seq = (SELECT last FROM operation_changes WHERE id = 1)
        WHERE seq = NEW.seq;
END;
