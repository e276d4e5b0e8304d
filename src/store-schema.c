/*
 * store-schema.c: the schema, as migrations in both dialects. Element N
 * brings a database from version N to N + 1; the two texts of an element
 * make the same tables, so that "db copy" can move rows from one backend
 * to the other. Never edit a migration that has been released; add one.
 * (PostgreSQL: BYTEA for BLOB, BIGINT for times and counts, BIGSERIAL
 * for SQLite's INTEGER PRIMARY KEY.)
 */

#include "bsp.h"
#include "store-int.h"

const struct store_migration store_migrations[] = {
	/* 0 -> 1 */
	{
	    "CREATE TABLE users ("
	    "  id TEXT PRIMARY KEY,"		/* provider:subject */
	    "  provider TEXT NOT NULL,"
	    "  subject TEXT NOT NULL,"
	    "  email TEXT,"
	    "  email_verified INTEGER NOT NULL DEFAULT 0,"
	    "  name TEXT,"
	    "  groups TEXT NOT NULL DEFAULT '[]',"
	    "  tenant TEXT,"
	    "  orgs TEXT NOT NULL DEFAULT '[]',"
	    "  disabled INTEGER NOT NULL DEFAULT 0,"
	    "  revoked_before INTEGER NOT NULL DEFAULT 0,"
	    "  first_login INTEGER NOT NULL,"
	    "  last_login INTEGER NOT NULL"
	    ");"
	    "CREATE INDEX users_email ON users(email);"
	    "CREATE TABLE token_families ("
	    "  id TEXT PRIMARY KEY,"		/* the sid claim */
	    "  user_id TEXT NOT NULL,"
	    "  created INTEGER NOT NULL,"
	    "  expires INTEGER NOT NULL,"
	    "  revoked INTEGER NOT NULL DEFAULT 0,"
	    "  revoked_at INTEGER,"
	    "  revoked_reason TEXT"
	    ");"
	    "CREATE INDEX token_families_user ON token_families(user_id);"
	    "CREATE TABLE refresh_tokens ("
	    "  hash BLOB PRIMARY KEY,"
	    "  family_id TEXT NOT NULL REFERENCES token_families(id)"
	    "    ON DELETE CASCADE,"
	    "  created INTEGER NOT NULL,"
	    "  expires INTEGER NOT NULL,"
	    "  used_at INTEGER,"
	    "  successor BLOB,"
	    "  successor_sealed BLOB"
	    ");"
	    "CREATE INDEX refresh_tokens_family ON refresh_tokens(family_id);"
	    "CREATE TABLE oauth_states ("
	    "  hash BLOB PRIMARY KEY,"
	    "  provider TEXT NOT NULL,"
	    "  flow TEXT NOT NULL,"
	    "  nonce TEXT,"
	    "  verifier_sealed BLOB,"
	    "  redirect_uri TEXT NOT NULL,"
	    "  binding BLOB,"
	    "  client_addr TEXT,"
	    "  created INTEGER NOT NULL,"
	    "  expires INTEGER NOT NULL"
	    ");"
	    "CREATE INDEX oauth_states_expires ON oauth_states(expires);"
	    "CREATE TABLE api_keys ("
	    "  id TEXT PRIMARY KEY,"
	    "  hash BLOB NOT NULL UNIQUE,"
	    "  hint TEXT NOT NULL,"
	    "  user_id TEXT NOT NULL,"
	    "  name TEXT,"
	    "  models TEXT NOT NULL DEFAULT '[]',"
	    "  created INTEGER NOT NULL,"
	    "  expires INTEGER,"
	    "  last_used_at INTEGER,"
	    "  revoked INTEGER NOT NULL DEFAULT 0,"
	    "  revoked_at INTEGER"
	    ");"
	    "CREATE INDEX api_keys_user ON api_keys(user_id);"
	    "CREATE TABLE usage ("
	    "  id INTEGER PRIMARY KEY,"
	    "  ts INTEGER NOT NULL,"
	    "  user_id TEXT,"
	    "  api_key_id TEXT,"
	    "  model TEXT,"
	    "  route TEXT NOT NULL,"
	    "  status INTEGER NOT NULL,"
	    "  input_tokens INTEGER NOT NULL DEFAULT 0,"
	    "  output_tokens INTEGER NOT NULL DEFAULT 0,"
	    "  cache_read_tokens INTEGER NOT NULL DEFAULT 0,"
	    "  cache_write_tokens INTEGER NOT NULL DEFAULT 0,"
	    "  latency_ms INTEGER,"
	    "  first_byte_ms INTEGER,"
	    "  request_id TEXT,"
	    "  session_id TEXT,"
	    "  outcome TEXT"
	    ");"
	    "CREATE INDEX usage_ts ON usage(ts);"
	    "CREATE INDEX usage_user_ts ON usage(user_id, ts);"
	    "CREATE TABLE audit_log ("
	    "  id INTEGER PRIMARY KEY,"
	    "  ts INTEGER NOT NULL,"
	    "  event TEXT NOT NULL,"
	    "  user_id TEXT,"
	    "  actor TEXT,"
	    "  client_addr TEXT,"
	    "  detail TEXT"
	    ");"
	    "CREATE INDEX audit_log_ts ON audit_log(ts);"
	    "CREATE TABLE signing_keys ("
	    "  kid TEXT PRIMARY KEY,"
	    "  alg TEXT NOT NULL,"
	    "  created INTEGER NOT NULL,"
	    "  retired INTEGER,"
	    "  verify_until INTEGER,"
	    "  public_jwk TEXT,"
	    "  private_sealed BLOB"
	    ");",
	    "CREATE TABLE users ("
	    "  id TEXT PRIMARY KEY,"		/* provider:subject */
	    "  provider TEXT NOT NULL,"
	    "  subject TEXT NOT NULL,"
	    "  email TEXT,"
	    "  email_verified INTEGER NOT NULL DEFAULT 0,"
	    "  name TEXT,"
	    "  groups TEXT NOT NULL DEFAULT '[]',"
	    "  tenant TEXT,"
	    "  orgs TEXT NOT NULL DEFAULT '[]',"
	    "  disabled INTEGER NOT NULL DEFAULT 0,"
	    "  revoked_before BIGINT NOT NULL DEFAULT 0,"
	    "  first_login BIGINT NOT NULL,"
	    "  last_login BIGINT NOT NULL"
	    ");"
	    "CREATE INDEX users_email ON users(email);"
	    "CREATE TABLE token_families ("
	    "  id TEXT PRIMARY KEY,"		/* the sid claim */
	    "  user_id TEXT NOT NULL,"
	    "  created BIGINT NOT NULL,"
	    "  expires BIGINT NOT NULL,"
	    "  revoked INTEGER NOT NULL DEFAULT 0,"
	    "  revoked_at BIGINT,"
	    "  revoked_reason TEXT"
	    ");"
	    "CREATE INDEX token_families_user ON token_families(user_id);"
	    "CREATE TABLE refresh_tokens ("
	    "  hash BYTEA PRIMARY KEY,"
	    "  family_id TEXT NOT NULL REFERENCES token_families(id)"
	    "    ON DELETE CASCADE,"
	    "  created BIGINT NOT NULL,"
	    "  expires BIGINT NOT NULL,"
	    "  used_at BIGINT,"
	    "  successor BYTEA,"
	    "  successor_sealed BYTEA"
	    ");"
	    "CREATE INDEX refresh_tokens_family ON refresh_tokens(family_id);"
	    "CREATE TABLE oauth_states ("
	    "  hash BYTEA PRIMARY KEY,"
	    "  provider TEXT NOT NULL,"
	    "  flow TEXT NOT NULL,"
	    "  nonce TEXT,"
	    "  verifier_sealed BYTEA,"
	    "  redirect_uri TEXT NOT NULL,"
	    "  binding BYTEA,"
	    "  client_addr TEXT,"
	    "  created BIGINT NOT NULL,"
	    "  expires BIGINT NOT NULL"
	    ");"
	    "CREATE INDEX oauth_states_expires ON oauth_states(expires);"
	    "CREATE TABLE api_keys ("
	    "  id TEXT PRIMARY KEY,"
	    "  hash BYTEA NOT NULL UNIQUE,"
	    "  hint TEXT NOT NULL,"
	    "  user_id TEXT NOT NULL,"
	    "  name TEXT,"
	    "  models TEXT NOT NULL DEFAULT '[]',"
	    "  created BIGINT NOT NULL,"
	    "  expires BIGINT,"
	    "  last_used_at BIGINT,"
	    "  revoked INTEGER NOT NULL DEFAULT 0,"
	    "  revoked_at BIGINT"
	    ");"
	    "CREATE INDEX api_keys_user ON api_keys(user_id);"
	    "CREATE TABLE usage ("
	    "  id BIGSERIAL PRIMARY KEY,"
	    "  ts BIGINT NOT NULL,"
	    "  user_id TEXT,"
	    "  api_key_id TEXT,"
	    "  model TEXT,"
	    "  route TEXT NOT NULL,"
	    "  status INTEGER NOT NULL,"
	    "  input_tokens BIGINT NOT NULL DEFAULT 0,"
	    "  output_tokens BIGINT NOT NULL DEFAULT 0,"
	    "  cache_read_tokens BIGINT NOT NULL DEFAULT 0,"
	    "  cache_write_tokens BIGINT NOT NULL DEFAULT 0,"
	    "  latency_ms BIGINT,"
	    "  first_byte_ms BIGINT,"
	    "  request_id TEXT,"
	    "  session_id TEXT,"
	    "  outcome TEXT"
	    ");"
	    "CREATE INDEX usage_ts ON usage(ts);"
	    "CREATE INDEX usage_user_ts ON usage(user_id, ts);"
	    "CREATE TABLE audit_log ("
	    "  id BIGSERIAL PRIMARY KEY,"
	    "  ts BIGINT NOT NULL,"
	    "  event TEXT NOT NULL,"
	    "  user_id TEXT,"
	    "  actor TEXT,"
	    "  client_addr TEXT,"
	    "  detail TEXT"
	    ");"
	    "CREATE INDEX audit_log_ts ON audit_log(ts);"
	    "CREATE TABLE signing_keys ("
	    "  kid TEXT PRIMARY KEY,"
	    "  alg TEXT NOT NULL,"
	    "  created BIGINT NOT NULL,"
	    "  retired BIGINT,"
	    "  verify_until BIGINT,"
	    "  public_jwk TEXT,"
	    "  private_sealed BYTEA"
	    ");"
	},
	/*
	 * 1 -> 2: an API key remembers the session (token family) that made
	 * it, NULL for the administrator's keys and those made before, and
	 * why it was revoked.
	 */
	{
	    "ALTER TABLE api_keys ADD COLUMN family_id TEXT;"
	    "ALTER TABLE api_keys ADD COLUMN revoked_reason TEXT;"
	    "CREATE INDEX api_keys_family ON api_keys(family_id);",
	    "ALTER TABLE api_keys ADD COLUMN family_id TEXT;"
	    "ALTER TABLE api_keys ADD COLUMN revoked_reason TEXT;"
	    "CREATE INDEX api_keys_family ON api_keys(family_id);"
	},
	/*
	 * 2 -> 3: at most one active signing key per algorithm, so that
	 * daemons starting at once on an empty database make one between
	 * them (the others' inserts conflict, and they use the winner's);
	 * the key-encryption key's check value, so that a daemon given
	 * another one refuses to start; and the counters of the shared rate
	 * limits: a window's requests and tokens per key (a user or an API
	 * key), summed over the daemons.
	 */
	{
	    "CREATE UNIQUE INDEX signing_keys_active ON signing_keys(alg) "
	    "  WHERE retired IS NULL;"
	    "CREATE TABLE kek_check ("
	    "  id INTEGER PRIMARY KEY,"
	    "  mac BLOB NOT NULL,"
	    "  created INTEGER NOT NULL"
	    ");"
	    "CREATE TABLE rate_counters ("
	    "  key TEXT NOT NULL,"
	    "  window_start INTEGER NOT NULL,"
	    "  requests INTEGER NOT NULL DEFAULT 0,"
	    "  tokens INTEGER NOT NULL DEFAULT 0,"
	    "  PRIMARY KEY (key, window_start)"
	    ");",
	    "CREATE UNIQUE INDEX signing_keys_active ON signing_keys(alg) "
	    "  WHERE retired IS NULL;"
	    "CREATE TABLE kek_check ("
	    "  id INTEGER PRIMARY KEY,"
	    "  mac BYTEA NOT NULL,"
	    "  created BIGINT NOT NULL"
	    ");"
	    "CREATE TABLE rate_counters ("
	    "  key TEXT NOT NULL,"
	    "  window_start BIGINT NOT NULL,"
	    "  requests BIGINT NOT NULL DEFAULT 0,"
	    "  tokens BIGINT NOT NULL DEFAULT 0,"
	    "  PRIMARY KEY (key, window_start)"
	    ");"
	},
	/*
	 * 3 -> 4: device authorizations (RFC 8628): the hashes of the device
	 * code and of the user code, the client, until when, how often it
	 * may poll and when it last did, and what became of it (pending,
	 * approved for a user, denied, used); and a session's own access
	 * token lifetime (NULL: jwt.access_token_ttl), which its refreshes
	 * keep.
	 */
	{
	    "CREATE TABLE device_codes ("
	    "  device_hash BLOB PRIMARY KEY,"
	    "  user_hash BLOB NOT NULL UNIQUE,"
	    "  client_id TEXT NOT NULL,"
	    "  client_addr TEXT,"
	    "  created INTEGER NOT NULL,"
	    "  expires INTEGER NOT NULL,"
	    "  poll_interval INTEGER NOT NULL,"
	    "  polled INTEGER,"
	    "  status TEXT NOT NULL,"
	    "  user_id TEXT,"
	    "  decided INTEGER,"
	    "  used_at INTEGER"
	    ");"
	    "CREATE INDEX device_codes_expires ON device_codes(expires);"
	    "ALTER TABLE token_families ADD COLUMN access_ttl INTEGER;",
	    "CREATE TABLE device_codes ("
	    "  device_hash BYTEA PRIMARY KEY,"
	    "  user_hash BYTEA NOT NULL UNIQUE,"
	    "  client_id TEXT NOT NULL,"
	    "  client_addr TEXT,"
	    "  created BIGINT NOT NULL,"
	    "  expires BIGINT NOT NULL,"
	    "  poll_interval BIGINT NOT NULL,"
	    "  polled BIGINT,"
	    "  status TEXT NOT NULL,"
	    "  user_id TEXT,"
	    "  decided BIGINT,"
	    "  used_at BIGINT"
	    ");"
	    "CREATE INDEX device_codes_expires ON device_codes(expires);"
	    "ALTER TABLE token_families ADD COLUMN access_ttl BIGINT;"
	},
	/*
	 * 4 -> 5: a usage row's own random key, so that a batch written
	 * again (its commit was not acknowledged: the server or the
	 * connection went away meanwhile) adds no row twice; rows made
	 * before have none.
	 */
	{
	    "ALTER TABLE usage ADD COLUMN row_key BLOB;"
	    "CREATE UNIQUE INDEX usage_row_key ON usage(row_key);",
	    "ALTER TABLE usage ADD COLUMN row_key BYTEA;"
	    "CREATE UNIQUE INDEX usage_row_key ON usage(row_key);"
	},
	/*
	 * 5 -> 6: budgets. A usage row's cost in micro-dollars (NULL: the
	 * model had no price, or the row is older) and its tokens written
	 * to the 1-hour cache (a part of cache_write_tokens); per-user
	 * overrides of a cap's limits ("budget set").
	 */
	{
	    "ALTER TABLE usage ADD COLUMN cost_micros INTEGER;"
	    "ALTER TABLE usage ADD COLUMN cache_write_1h_tokens INTEGER NOT "
	    "NULL DEFAULT 0;"
	    "CREATE TABLE budget_overrides ("
	    "  user_id TEXT NOT NULL,"
	    "  cap TEXT NOT NULL,"
	    "  limit_micros INTEGER,"
	    "  soft_micros INTEGER,"
	    "  updated INTEGER NOT NULL,"
	    "  PRIMARY KEY (user_id, cap)"
	    ");",
	    "ALTER TABLE usage ADD COLUMN cost_micros BIGINT;"
	    "ALTER TABLE usage ADD COLUMN cache_write_1h_tokens BIGINT NOT "
	    "NULL DEFAULT 0;"
	    "CREATE TABLE budget_overrides ("
	    "  user_id TEXT NOT NULL,"
	    "  cap TEXT NOT NULL,"
	    "  limit_micros BIGINT,"
	    "  soft_micros BIGINT,"
	    "  updated BIGINT NOT NULL,"
	    "  PRIMARY KEY (user_id, cap)"
	    ");"
	},
	/*
	 * 6 -> 7: SQLite's usage.row_key loses its unique index. A commit
	 * there is never in doubt, so no batch is ever written twice, and
	 * the index cost every row a fourth B-tree insert. PostgreSQL keeps
	 * it (ON CONFLICT (row_key) after a lost acknowledgement); the
	 * column stays in both.
	 */
	{
	    "DROP INDEX usage_row_key;",
	    ""
	},
};
const size_t store_nmigrations = nitems(store_migrations);
