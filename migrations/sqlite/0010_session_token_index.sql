-- A `{resume}` login finds its session by the token's hash alone, without the user's id.
CREATE INDEX sessions_hashed_token ON sessions (hashed_token);
