CREATE TABLE roles (
    name TEXT PRIMARY KEY
);

CREATE TABLE users (
    id              TEXT PRIMARY KEY,
    username        TEXT UNIQUE,
    name            TEXT,
    active          BOOLEAN NOT NULL DEFAULT TRUE,
    roles           TEXT NOT NULL DEFAULT '[]',
    emails          TEXT NOT NULL DEFAULT '[]',
    password_bcrypt TEXT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);

-- One row per login token or personal access token; only the token's hash is kept.
CREATE TABLE sessions (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    hashed_token TEXT NOT NULL,
    kind         TEXT NOT NULL CHECK (kind IN ('login', 'personal')),
    name         TEXT,
    issued_at    BIGINT NOT NULL,
    expires_at   BIGINT,
    UNIQUE (user_id, hashed_token)
);
CREATE UNIQUE INDEX sessions_personal_name ON sessions (user_id, name) WHERE kind = 'personal';

CREATE TABLE permissions (
    id         TEXT PRIMARY KEY,
    roles      TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- seq is the stored order: ties on updated_at are returned first stored first.
-- doc is TEXT, not JSONB: JSONB would reorder the fields.
CREATE TABLE import_operations (
    seq        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id         TEXT NOT NULL UNIQUE,
    updated_at BIGINT NOT NULL,
    ts         BIGINT NOT NULL,
    status     TEXT NOT NULL,
    valid      BOOLEAN NOT NULL,
    doc        TEXT NOT NULL
);
CREATE INDEX import_operations_latest ON import_operations (updated_at DESC, seq ASC);
CREATE INDEX import_operations_newest_ts ON import_operations (ts DESC, seq DESC);
