CREATE TABLE roles (
    name TEXT PRIMARY KEY NOT NULL
);

CREATE TABLE users (
    id              TEXT PRIMARY KEY NOT NULL,
    username        TEXT UNIQUE,
    name            TEXT,
    active          INTEGER NOT NULL DEFAULT 1,
    roles           TEXT NOT NULL DEFAULT '[]',
    emails          TEXT NOT NULL DEFAULT '[]',
    password_bcrypt TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);

-- One row per login token or personal access token; only the token's hash is kept.
CREATE TABLE sessions (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id      TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    hashed_token TEXT NOT NULL,
    kind         TEXT NOT NULL CHECK (kind IN ('login', 'personal')),
    name         TEXT,
    issued_at    INTEGER NOT NULL,
    expires_at   INTEGER,
    UNIQUE (user_id, hashed_token)
);
CREATE UNIQUE INDEX sessions_personal_name ON sessions (user_id, name) WHERE kind = 'personal';

CREATE TABLE permissions (
    id         TEXT PRIMARY KEY NOT NULL,
    roles      TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);

-- seq is the stored order: ties on updated_at are returned first stored first.
CREATE TABLE import_operations (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    id         TEXT NOT NULL UNIQUE,
    updated_at INTEGER NOT NULL,
    ts         INTEGER NOT NULL,
    status     TEXT NOT NULL,
    valid      INTEGER NOT NULL,
    doc        TEXT NOT NULL
);
CREATE INDEX import_operations_latest ON import_operations (updated_at DESC, seq ASC);
CREATE INDEX import_operations_newest_ts ON import_operations (ts DESC, seq DESC);
