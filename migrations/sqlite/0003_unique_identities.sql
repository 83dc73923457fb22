-- Usernames and e-mail addresses are unique ignoring case, as Rocket.Chat's lookups treat them
-- (docs/compatibility.md, "Users"). The database enforces it, so two writers racing for one
-- name cannot both win.
CREATE UNIQUE INDEX users_username_lower ON users (lower(username));

-- One row per e-mail address of a user, lower-cased by importops before it is written; the
-- users.emails column keeps the addresses as given, with their verified flags.
CREATE TABLE user_emails (
    address TEXT PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE
);
CREATE INDEX user_emails_user ON user_emails (user_id);
INSERT INTO user_emails (address, user_id)
    SELECT lower(json_extract(e.value, '$.address')), users.id
    FROM users, json_each(users.emails) e;

-- The same predicate text as the Postgres index, so that one query serves both.
DROP INDEX import_operations_valid;
CREATE INDEX import_operations_valid ON import_operations (seq) WHERE valid;
