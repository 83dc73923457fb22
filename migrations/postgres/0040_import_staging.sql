-- The staged records of the current import operation (Rocket.Chat's rocketchat_import_data):
-- what an importer found in an archive, kept until the import has used them. `import_id` is
-- the record's importIds[0], which a selection names; `errors` a JSON list when importing the
-- record failed; `skipped` when the selection left it out. No change trigger: no cached
-- answer depends on staged records.
CREATE TABLE import_data (
    seq          BIGSERIAL PRIMARY KEY,
    id           TEXT NOT NULL UNIQUE,
    operation_id TEXT NOT NULL,
    data_type    TEXT NOT NULL CHECK (data_type IN ('user', 'channel', 'message', 'contact')),
    import_id    TEXT,
    data         TEXT NOT NULL,
    errors       TEXT,
    skipped      BOOLEAN NOT NULL DEFAULT false
);
-- Reading one kind in stored order (selection, counting, importing in batches).
CREATE INDEX import_data_by_type ON import_data (data_type, seq);
-- Finding a record by the id a selection names.
CREATE INDEX import_data_selection ON import_data (data_type, import_id);

-- The import ids of the records a user was imported from (Rocket.Chat's `importIds`), and the
-- avatar URL an import left for the pending-avatars importer (`_pendingAvatarUrl`).
ALTER TABLE users ADD COLUMN import_ids TEXT NOT NULL DEFAULT '[]';
ALTER TABLE users ADD COLUMN pending_avatar_url TEXT;
