-- A database at schema version 1, as the proxy made it before version 2
-- (the 0 -> 1 migration of src/db.c, one column a line), with a few rows:
-- test-db.c opens it and checks that it migrates forward with its API keys
-- intact. Never edit this to follow a newer schema.

CREATE TABLE users (
  id TEXT PRIMARY KEY,
  provider TEXT NOT NULL,
  subject TEXT NOT NULL,
  email TEXT,
  email_verified INTEGER NOT NULL DEFAULT 0,
  name TEXT,
  groups TEXT NOT NULL DEFAULT '[]',
  tenant TEXT,
  orgs TEXT NOT NULL DEFAULT '[]',
  disabled INTEGER NOT NULL DEFAULT 0,
  revoked_before INTEGER NOT NULL DEFAULT 0,
  first_login INTEGER NOT NULL,
  last_login INTEGER NOT NULL
);
CREATE INDEX users_email ON users(email);
CREATE TABLE token_families (
  id TEXT PRIMARY KEY,
  user_id TEXT NOT NULL,
  created INTEGER NOT NULL,
  expires INTEGER NOT NULL,
  revoked INTEGER NOT NULL DEFAULT 0,
  revoked_at INTEGER,
  revoked_reason TEXT
);
CREATE INDEX token_families_user ON token_families(user_id);
CREATE TABLE refresh_tokens (
  hash BLOB PRIMARY KEY,
  family_id TEXT NOT NULL REFERENCES token_families(id) ON DELETE CASCADE,
  created INTEGER NOT NULL,
  expires INTEGER NOT NULL,
  used_at INTEGER,
  successor BLOB,
  successor_sealed BLOB
);
CREATE INDEX refresh_tokens_family ON refresh_tokens(family_id);
CREATE TABLE oauth_states (
  hash BLOB PRIMARY KEY,
  provider TEXT NOT NULL,
  flow TEXT NOT NULL,
  nonce TEXT,
  verifier_sealed BLOB,
  redirect_uri TEXT NOT NULL,
  binding BLOB,
  client_addr TEXT,
  created INTEGER NOT NULL,
  expires INTEGER NOT NULL
);
CREATE INDEX oauth_states_expires ON oauth_states(expires);
CREATE TABLE api_keys (
  id TEXT PRIMARY KEY,
  hash BLOB NOT NULL UNIQUE,
  hint TEXT NOT NULL,
  user_id TEXT NOT NULL,
  name TEXT,
  models TEXT NOT NULL DEFAULT '[]',
  created INTEGER NOT NULL,
  expires INTEGER,
  last_used_at INTEGER,
  revoked INTEGER NOT NULL DEFAULT 0,
  revoked_at INTEGER
);
CREATE INDEX api_keys_user ON api_keys(user_id);
CREATE TABLE usage (
  id INTEGER PRIMARY KEY,
  ts INTEGER NOT NULL,
  user_id TEXT,
  api_key_id TEXT,
  model TEXT,
  route TEXT NOT NULL,
  status INTEGER NOT NULL,
  input_tokens INTEGER NOT NULL DEFAULT 0,
  output_tokens INTEGER NOT NULL DEFAULT 0,
  cache_read_tokens INTEGER NOT NULL DEFAULT 0,
  cache_write_tokens INTEGER NOT NULL DEFAULT 0,
  latency_ms INTEGER,
  first_byte_ms INTEGER,
  request_id TEXT,
  session_id TEXT,
  outcome TEXT
);
CREATE INDEX usage_ts ON usage(ts);
CREATE INDEX usage_user_ts ON usage(user_id, ts);
CREATE TABLE audit_log (
  id INTEGER PRIMARY KEY,
  ts INTEGER NOT NULL,
  event TEXT NOT NULL,
  user_id TEXT,
  actor TEXT,
  client_addr TEXT,
  detail TEXT
);
CREATE INDEX audit_log_ts ON audit_log(ts);
CREATE TABLE signing_keys (
  kid TEXT PRIMARY KEY,
  alg TEXT NOT NULL,
  created INTEGER NOT NULL,
  retired INTEGER,
  verify_until INTEGER,
  public_jwk TEXT,
  private_sealed BLOB
);

-- Rows: a user, a live key and a revoked one (hashes are placeholders).
INSERT INTO users (id, provider, subject, email, email_verified, first_login,
  last_login) VALUES ('local:ann@example.com', 'local', 'ann@example.com',
  'ann@example.com', 1, 1700000000, 1700000000);
INSERT INTO api_keys (id, hash, hint, user_id, name, models, created, expires,
  last_used_at) VALUES ('key_live', zeroblob(32), 'bsk_...live',
  'local:ann@example.com', 'ci', '["anthropic.*"]', 1700000000, NULL,
  1700000500);
INSERT INTO api_keys (id, hash, hint, user_id, name, created, expires,
  revoked, revoked_at) VALUES ('key_old', X'0101010101010101010101010101010101010101010101010101010101010101',
  'bsk_...old1', 'local:ann@example.com', NULL, 1700000000, 1800000000, 1,
  1700000100);
PRAGMA user_version = 1;
