/*
 * tmpdb.h: a configuration and a temporary database with the tokens module
 * started as the admin commands start it (cmd.c's cmd_open: the store,
 * then tokens_init, which loads the users' state and the API keys too),
 * for the unit tests of tokens, API keys, users and usage; and the
 * module's asynchronous calls made synchronous (each waited for with
 * store_wait), so that a test reads in order.
 *
 * The database is SQLite in a new directory under /tmp, or, when
 * $BSP_TEST_STORE_URL is set (tests/unit/test-*-pg.sh), that PostgreSQL
 * database, with $BSP_TEST_PG_PASSWORD and a key-encryption key file in
 * the directory. The test has a connection of its own to the database
 * (tmpdb_exec, tmpdb_int) to look at rows and change them behind the
 * store's back, as another process would. tmpdb_close() removes it all.
 */

#ifndef TMPDB_H
#define TMPDB_H

#include <sys/stat.h>

#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/dns.h>
#include <event2/event.h>
#include <libpq-fe.h>
#include <sqlite3.h>

#include "crypto.h"
#include "store.h"

static char	 tmpdb_dir[] = "/tmp/bsp-test-db.XXXXXX";
static sqlite3	*tmpdb_sq;
static PGconn	*tmpdb_pgc;

/* Is the test's database PostgreSQL? */
static int __attribute__((unused))
tmpdb_pg(void)
{
	return (tmpdb_pgc != NULL);
}

/* Open the test's own connection. */
static void
tmpdb_raw_open(void)
{
	const char	*url = getenv("BSP_TEST_STORE_URL");
	const char	*kw[] = { "dbname", "password", NULL };
	const char	*val[] = { url, getenv("BSP_TEST_PG_PASSWORD"), NULL };
	char		*path;

	if (url != NULL) {
		tmpdb_pgc = PQconnectdbParams(kw, val, 1);
		if (PQstatus(tmpdb_pgc) != CONNECTION_OK) {
			printf("Bail out! %s", PQerrorMessage(tmpdb_pgc));
			exit(1);
		}
		return;
	}
	xasprintf(&path, "%s/proxy.db", tmpdb_dir);
	if (sqlite3_open(path, &tmpdb_sq) != SQLITE_OK) {
		printf("Bail out! cannot open %s\n", path);
		exit(1);
	}
	sqlite3_busy_timeout(tmpdb_sq, 5000);
	free(path);
}

/* A 32-byte key-encryption key file, for PostgreSQL. */
static char *
tmpdb_kek(void)
{
	uint8_t	 k[32];
	char	*path;
	int	 fd;

	xasprintf(&path, "%s/kek", tmpdb_dir);
	crypto_random(k, sizeof k);
	if ((fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600)) == -1 ||
	    write(fd, k, sizeof k) != (ssize_t)sizeof k)
		fatal("%s", path);
	close(fd);
	return (path);
}

/* The configuration (the defaults and yaml) and the store, started. */
static void
tmpdb_setup(const char *yaml)
{
	struct config_source	 src;
	struct config_errors	 errs;
	struct store_conf	 sc;
	const char		*url = getenv("BSP_TEST_STORE_URL");
	char			*path, *cause = NULL, *kek;
	FILE			*f;
	size_t			 i;

	if (mkdtemp(tmpdb_dir) == NULL)
		fatal("mkdtemp");
	xasprintf(&path, "%s/bsp.yaml", tmpdb_dir);
	if ((f = fopen(path, "w")) == NULL)
		fatal("%s", path);
	fchmod(fileno(f), 0600);
	if (url != NULL) {
		kek = tmpdb_kek();
		fprintf(f, "database:\n  url: \"%s\"\n  password: \"%s\"\n"
		    "  pool_size: 2\n  timeout: 5\njwt:\n  kek_file: %s\n",
		    url, getenv("BSP_TEST_PG_PASSWORD"), kek);
		free(kek);
	} else
		fprintf(f, "database:\n  url: sqlite://%s/proxy.db\n",
		    tmpdb_dir);
	fprintf(f, "%s", yaml != NULL ? yaml : "");
	fclose(f);
	memset(&src, 0, sizeof src);
	src.path = path;
	src.path_explicit = 1;
	src.check = modules_config_check;
	if ((cfg = config_load(&src, &errs)) == NULL) {
		for (i = 0; i < errs.n; i++)
			printf("# %s: %s\n", errs.v[i].where, errs.v[i].msg);
		printf("Bail out! the test configuration does not load\n");
		exit(1);
	}
	free(path);
	if (bsp_base == NULL && (bsp_base = event_base_new()) == NULL)
		fatalx("event_base_new");
	if (bsp_dns == NULL && (bsp_dns = evdns_base_new(bsp_base,
	    EVDNS_BASE_INITIALIZE_NAMESERVERS)) == NULL)
		fatalx("evdns_base_new");
	if (store_conf_from_config(cfg, &sc, &cause) == -1 ||
	    store_open(&sc, &cause) == -1 ||
	    store_wait_ready(30000, &cause) == -1) {
		printf("Bail out! %s\n", cause);
		exit(1);
	}
	store_conf_clear(&sc);
	tmpdb_raw_open();
}

static void __attribute__((unused))
tmpdb_open(const char *yaml)
{
	char	*cause = NULL;

	tmpdb_setup(yaml);
	if (tokens_init(cfg, &cause) == -1 || (tmpdb_pg() &&
	    tokens_wait(&cause) == -1)) {
		printf("Bail out! %s\n", cause);
		exit(1);
	}
}

static void __attribute__((unused))
tmpdb_close(void)
{
	static const char *const	 files[] = {
		"bsp.yaml", "proxy.db", "proxy.db-wal", "proxy.db-shm",
		"proxy.db-journal", "proxy.db.kek", "kek",
	};
	char				*path;
	size_t				 i;

	tokens_free();
	store_close();
	if (tmpdb_sq != NULL)
		sqlite3_close(tmpdb_sq);
	if (tmpdb_pgc != NULL)
		PQfinish(tmpdb_pgc);
	tmpdb_sq = NULL;
	tmpdb_pgc = NULL;
	config_unref(cfg);
	cfg = NULL;
	for (i = 0; i < sizeof files / sizeof files[0]; i++) {
		xasprintf(&path, "%s/%s", tmpdb_dir, files[i]);
		(void)unlink(path);
		free(path);
	}
	if (rmdir(tmpdb_dir) == -1)
		printf("# cannot remove %s\n", tmpdb_dir);
	evdns_base_free(bsp_dns, 0);
	bsp_dns = NULL;
	event_base_free(bsp_base);
	bsp_base = NULL;
}

/* Run a statement on the test's own connection; -1 on error. */
static int __attribute__((unused, format(printf, 1, 2)))
tmpdb_exec(const char *fmt, ...)
{
	PGresult	*res;
	va_list		 ap;
	char		*sql;
	int		 rc = 0;

	va_start(ap, fmt);
	if (vasprintf(&sql, fmt, ap) == -1)
		fatal("vasprintf");
	va_end(ap);
	if (tmpdb_pgc != NULL) {
		res = PQexec(tmpdb_pgc, sql);
		if (PQresultStatus(res) != PGRES_COMMAND_OK &&
		    PQresultStatus(res) != PGRES_TUPLES_OK) {
			printf("# %s: %s", sql, PQresultErrorMessage(res));
			rc = -1;
		}
		PQclear(res);
	} else if (sqlite3_exec(tmpdb_sq, sql, NULL, NULL, NULL) != SQLITE_OK) {
		printf("# %s: %s\n", sql, sqlite3_errmsg(tmpdb_sq));
		rc = -1;
	}
	free(sql);
	return (rc);
}

/* The first column of the first row of a query, as an integer; or -1. */
static long long __attribute__((unused, format(printf, 1, 2)))
tmpdb_int(const char *fmt, ...)
{
	sqlite3_stmt	*q;
	PGresult	*res;
	va_list		 ap;
	char		*sql;
	const char	*v;
	long long	 n = -1;

	va_start(ap, fmt);
	if (vasprintf(&sql, fmt, ap) == -1)
		fatal("vasprintf");
	va_end(ap);
	if (tmpdb_pgc != NULL) {
		res = PQexec(tmpdb_pgc, sql);
		if (PQresultStatus(res) != PGRES_TUPLES_OK)
			printf("# %s: %s", sql, PQresultErrorMessage(res));
		else if (PQntuples(res) > 0 && !PQgetisnull(res, 0, 0)) {
			v = PQgetvalue(res, 0, 0);
			n = strcmp(v, "t") == 0 ? 1 : strcmp(v, "f") == 0 ? 0 :
			    strtoll(v, NULL, 10);
		}
		PQclear(res);
		free(sql);
		return (n);
	}
	if (sqlite3_prepare_v2(tmpdb_sq, sql, -1, &q, NULL) != SQLITE_OK) {
		printf("# %s: %s\n", sql, sqlite3_errmsg(tmpdb_sq));
		free(sql);
		return (-1);
	}
	if (sqlite3_step(q) == SQLITE_ROW &&
	    sqlite3_column_type(q, 0) != SQLITE_NULL)
		n = sqlite3_column_int64(q, 0);
	sqlite3_finalize(q);
	free(sql);
	return (n);
}

/* A blob as an SQL literal of the test's database (x'..' or '\x..'). */
static __attribute__((unused)) const char *
tmpdb_blob(const uint8_t *b, size_t len)
{
	static char	lit[256];
	size_t		i, off;

	off = (size_t)snprintf(lit, sizeof lit, tmpdb_pgc != NULL ? "'\\x" :
	    "x'");
	for (i = 0; i < len && off + 3 < sizeof lit; i++)
		off += (size_t)snprintf(lit + off, sizeof lit - off, "%02x",
		    b[i]);
	snprintf(lit + off, sizeof lit - off, tmpdb_pgc != NULL ?
	    "'::bytea" : "'");
	return (lit);
}

/* The synchronous face of the asynchronous calls. */
struct tmpdb_wait {
	volatile int	 done;
	int		 rc;
	int		 n;
	struct user	 u;
	json_t		*j;
	char		*s;
	const char	*why;
	struct store_txn *t;
};

static void
tw_rc(int rc, void *arg)
{
	struct tmpdb_wait	*w = arg;

	w->rc = rc;
	w->done = 1;
}

static void
tw_user(int rc, const struct user *u, void *arg)
{
	struct tmpdb_wait	*w = arg;

	w->rc = rc;
	if (u != NULL)
		user_copy(&w->u, u);
	w->done = 1;
}

static void
tw_json(int rc, json_t *j, void *arg)
{
	struct tmpdb_wait	*w = arg;

	w->rc = rc;
	w->j = j;
	w->done = 1;
}

static void
tw_json_why(int rc, json_t *j, const char *why, void *arg)
{
	struct tmpdb_wait	*w = arg;

	w->rc = rc;
	w->j = j;
	w->why = why;
	w->done = 1;
}

static void
tw_str(int rc, char *s, void *arg)
{
	struct tmpdb_wait	*w = arg;

	w->rc = rc;
	w->s = s;
	w->done = 1;
}

static void
tw_key(int rc, char *key, json_t *info, const char *why, void *arg)
{
	struct tmpdb_wait	*w = arg;

	w->rc = rc;
	w->s = key;
	w->j = info;
	w->why = why;
	w->done = 1;
}

static void
tw_two(int n, int m, void *arg)
{
	struct tmpdb_wait	*w = arg;

	w->rc = n;
	w->n = m;
	w->done = 1;
}

static void
tw_step(struct store_txn *t, int status, void *arg)
{
	struct tmpdb_wait	*w = arg;

	w->rc = status;
	w->t = t;
	w->n = t != NULL && status == STORE_OK ? (int)store_changes(t) : 0;
	w->done = 1;
}

static void
tw_wait(struct tmpdb_wait *w)
{
	store_wait(&w->done);
	w->done = 0;
}

static int __attribute__((unused))
t_user_local(const char *name, struct user *u)
{
	struct tmpdb_wait	w;

	memset(&w, 0, sizeof w);
	user_ensure_local(name, tw_user, &w);
	tw_wait(&w);
	*u = w.u;
	return (w.rc);
}

static int __attribute__((unused))
t_user_get(const char *id, struct user *u)
{
	struct tmpdb_wait	w;

	memset(&w, 0, sizeof w);
	user_get(id, tw_user, &w);
	tw_wait(&w);
	*u = w.u;
	return (w.rc);
}

static int __attribute__((unused))
t_user_find(const char *key, struct user *u)
{
	struct tmpdb_wait	w;

	memset(&w, 0, sizeof w);
	user_find(key, tw_user, &w);
	tw_wait(&w);
	*u = w.u;
	return (w.rc);
}

/* A user upserted as a login would (u gets what the row says). */
static int __attribute__((unused))
t_user_upsert(struct user *u)
{
	struct tmpdb_wait	w;

	memset(&w, 0, sizeof w);
	store_begin(STORE_WRITE, tw_step, &w);
	tw_wait(&w);
	if (w.rc != STORE_OK)
		return (-1);
	user_upsert(w.t, u, tw_step, &w);
	tw_wait(&w);
	if (w.rc != STORE_OK) {
		store_rollback(w.t);
		return (-1);
	}
	store_commit(w.t, tw_rc, &w);
	tw_wait(&w);
	if (w.rc != STORE_OK)
		return (-1);
	(void)user_state_note(u);
	return (0);
}

/* A statement on a user in a unit of its own; the rows it changed. */
static int __attribute__((unused))
t_user_set(const char *id, int disabled, time_t revoked_before)
{
	struct tmpdb_wait	w;
	int			n;

	memset(&w, 0, sizeof w);
	store_begin(STORE_WRITE, tw_step, &w);
	tw_wait(&w);
	if (w.rc != STORE_OK)
		return (-1);
	if (revoked_before != 0)
		user_set_revoked_before(w.t, id, revoked_before, tw_step, &w);
	else
		user_set_disabled(w.t, id, disabled, tw_step, &w);
	tw_wait(&w);
	if (w.rc != STORE_OK) {
		store_rollback(w.t);
		return (-1);
	}
	n = w.n;
	store_commit(w.t, tw_rc, &w);
	tw_wait(&w);
	return (w.rc == STORE_OK ? n : -1);
}

static int __attribute__((unused))
t_users_load(void)
{
	struct tmpdb_wait	w;

	memset(&w, 0, sizeof w);
	users_load_state(tw_rc, &w);
	tw_wait(&w);
	return (w.rc == STORE_OK ? 0 : -1);
}

static int __attribute__((unused))
t_session(const struct user *u, const char *client, json_t **resp)
{
	struct tmpdb_wait	w;

	memset(&w, 0, sizeof w);
	tokens_session_new(u, client, "login", tw_json, &w);
	tw_wait(&w);
	*resp = w.j;
	return (w.rc);
}

static int __attribute__((unused))
t_refresh(const char *token, const char *client, json_t **resp,
    const char **why)
{
	struct tmpdb_wait	w;

	memset(&w, 0, sizeof w);
	tokens_refresh(token, client, tw_json_why, &w);
	tw_wait(&w);
	*resp = w.j;
	*why = w.why;
	return (w.rc);
}

static int __attribute__((unused))
t_mint(const struct user *u, const struct strlist *scopes, long long ttl,
    const char *actor, char **t)
{
	struct tmpdb_wait	w;

	memset(&w, 0, sizeof w);
	tokens_mint_session(u, scopes, ttl, actor, tw_str, &w);
	tw_wait(&w);
	*t = w.s;
	return (w.rc);
}

static int __attribute__((unused))
t_revoke_family(const char *sid, const char *reason, const char *event,
    const char *actor, const char *client)
{
	struct tmpdb_wait	w;

	memset(&w, 0, sizeof w);
	tokens_revoke_family(sid, reason, event, actor, client, tw_rc, &w);
	tw_wait(&w);
	return (w.rc);
}

static int __attribute__((unused))
t_revoke_refresh(const char *token, const char *event, const char *client)
{
	struct tmpdb_wait	w;

	memset(&w, 0, sizeof w);
	tokens_revoke_refresh(token, event, client, tw_rc, &w);
	tw_wait(&w);
	return (w.rc);
}

static int __attribute__((unused))
t_revoke_user(const char *user_id, const char *reason, int keep_keys,
    const char *actor, const char *client, int *nkeys)
{
	struct tmpdb_wait	w;

	memset(&w, 0, sizeof w);
	tokens_revoke_user(user_id, reason, keep_keys, actor, client, tw_two,
	    &w);
	tw_wait(&w);
	*nkeys = w.n;
	return (w.rc);
}

static int __attribute__((unused))
t_key_create(const char *user_id, const char *sid, const char *name,
    long long ttl, const struct strlist *models, const char *actor,
    const char *client, char **key, json_t **info, const char **why)
{
	struct tmpdb_wait	w;

	memset(&w, 0, sizeof w);
	apikey_create(user_id, sid, name, ttl, models, actor, client, tw_key,
	    &w);
	tw_wait(&w);
	*key = w.s;
	*info = w.j;
	*why = w.why;
	return (w.rc);
}

static __attribute__((unused)) json_t *
t_key_list(const char *user_id)
{
	struct tmpdb_wait	w;

	memset(&w, 0, sizeof w);
	apikey_list(user_id, tw_json, &w);
	tw_wait(&w);
	return (w.rc == 0 ? w.j : json_array());
}

static int __attribute__((unused))
t_key_revoke(const char *id, const char *owner, const char *reason,
    const char *actor, const char *client)
{
	struct tmpdb_wait	w;

	memset(&w, 0, sizeof w);
	apikey_revoke(id, owner, reason, actor, client, tw_rc, &w);
	tw_wait(&w);
	return (w.rc);
}

static int __attribute__((unused))
t_key_revoke_secret(const char *key, const char *actor, const char *client)
{
	struct tmpdb_wait	w;

	memset(&w, 0, sizeof w);
	apikey_revoke_by_secret(key, actor, client, tw_rc, &w);
	tw_wait(&w);
	return (w.rc);
}

static int __attribute__((unused))
t_keys_load(void)
{
	struct tmpdb_wait	w;

	memset(&w, 0, sizeof w);
	apikeys_load(tw_rc, &w);
	tw_wait(&w);
	return (w.rc == STORE_OK ? 0 : -1);
}

static int __attribute__((unused))
t_keys_purge(time_t before)
{
	struct tmpdb_wait	w;

	memset(&w, 0, sizeof w);
	apikeys_purge(before, tw_rc, &w);
	tw_wait(&w);
	return (w.rc == STORE_OK ? 0 : -1);
}

#endif /* TMPDB_H */
