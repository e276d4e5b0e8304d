/*
 * store-copy.c: "db copy": every table of one database (SQLite or
 * PostgreSQL) into another, empty one, checked row by row.
 *
 * An admin command, not the loop: it holds two databases open at once,
 * which the store (one backend of each kind, a singleton) cannot, so it
 * talks to them itself, synchronously (sqlite3, and libpq's blocking
 * calls). Both must be at this binary's schema version; the target is
 * brought to it first by the store (cmd-db.c), the source is not written
 * to. The source is read in one snapshot (a read transaction; REPEATABLE
 * READ with PostgreSQL); the target is written in one transaction that
 * first makes sure it is empty and shuts out other writers, then takes
 * every table in an order its foreign keys accept, then reads each table
 * back in primary-key order beside the source and compares them row by
 * row and column by column, and commits only when every row is equal and
 * the counts agree: a copy that fails leaves the target as it was. With
 * PostgreSQL as the target, the sequences behind usage and audit_log ids
 * are moved past the copied ids.
 *
 * Values are moved by kind (an integer, text or a blob, from the column's
 * declared type), never through SQL text: statements are made from the
 * tables' and columns' names only, which come from the schema and are
 * checked to be plain identifiers, and every value is bound.
 */

#include <sys/types.h>
#include <sys/stat.h>

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <libpq-fe.h>
#include <sqlite3.h>

#include "bsp.h"
#include "store-int.h"

#define CP_COLS_MAX	32
#define CP_BATCH	200	/* rows per INSERT into PostgreSQL */
#define CP_NAME_MAX	64

/* The tables, parents first, and what orders their rows. */
static const struct {
	const char	*name;
	const char	*key[2];
} cp_tables[] = {
	{ "users", { "id", NULL } },
	{ "token_families", { "id", NULL } },
	{ "refresh_tokens", { "hash", NULL } },
	{ "oauth_states", { "hash", NULL } },
	{ "api_keys", { "id", NULL } },
	{ "signing_keys", { "kid", NULL } },
	{ "kek_check", { "id", NULL } },
	{ "usage", { "id", NULL } },
	{ "audit_log", { "id", NULL } },
	{ "rate_counters", { "key", "window_start" } },
	{ "device_codes", { "device_hash", NULL } },
};

/* Tables of the store's own bookkeeping (PostgreSQL), not copied. */
static const char *const cp_own[] = { "bsp_schema", "bsp_meta" };

enum cp_kind {
	CP_INT,
	CP_TEXT,
	CP_BLOB,
};

struct cp_val {
	int		 null;
	long long	 i;
	uint8_t		*p;		/* text (NUL-ended) or blob */
	size_t		 len;
};

/* One database. */
struct cp_db {
	enum store_kind	 kind;
	char		*shown;		/* the URL, for messages */
	sqlite3		*sq;
	PGconn		*pg;
	int		 in_txn;
};

/* A table's columns, as both databases have them. */
struct cp_table {
	const char	*name;
	char		 col[CP_COLS_MAX][CP_NAME_MAX];
	enum cp_kind	 kind[CP_COLS_MAX];
	size_t		 ncols;
	char		*select;	/* every column, in key order */
};

/* Reading a table, row by row. */
struct cp_reader {
	struct cp_db	*db;
	struct cp_table	*t;
	sqlite3_stmt	*st;
	PGresult	*res;
	int		 done;
	struct cp_val	 v[CP_COLS_MAX];
};

static int	cp_open1(struct cp_db *, const char *, const char *,
		    long long, char **);
static void	cp_close(struct cp_db *);

static void __attribute__((format(printf, 2, 3)))
cp_err(char **cause, const char *fmt, ...)
{
	va_list	ap;
	char	*s;

	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) == -1)
		fatal("vasprintf");
	va_end(ap);
	free(*cause);
	*cause = s;
}

/* A libpq message on one line, without its trailing newline. */
static const char *
cp_pgmsg(const char *m, char *buf, size_t len)
{
	size_t	i;

	bsp_strlcpy(buf, m != NULL ? m : "unknown error", len);
	for (i = 0; buf[i] != '\0'; i++) {
		if (buf[i] == '\n' || buf[i] == '\t')
			buf[i] = ' ';
	}
	while (i > 0 && buf[i - 1] == ' ')
		buf[--i] = '\0';
	return (buf);
}

static int
cp_ident_ok(const char *s)
{
	size_t	i;

	if (s[0] == '\0' || strlen(s) >= CP_NAME_MAX || isdigit((unsigned
	    char)s[0]))
		return (0);
	for (i = 0; s[i] != '\0'; i++) {
		if (!islower((unsigned char)s[i]) && !isdigit((unsigned
		    char)s[i]) && s[i] != '_')
			return (0);
	}
	return (1);
}

static enum cp_kind
cp_kind_of(const char *decl)
{
	char	t[64];
	size_t	i;

	bsp_strlcpy(t, decl != NULL ? decl : "", sizeof t);
	for (i = 0; t[i] != '\0'; i++)
		t[i] = (char)tolower((unsigned char)t[i]);
	if (strstr(t, "int") != NULL)
		return (CP_INT);
	if (strstr(t, "blob") != NULL || strstr(t, "bytea") != NULL)
		return (CP_BLOB);
	return (CP_TEXT);
}

/* Run SQL of our own (no parameters, no rows wanted). */
static int
cp_exec(struct cp_db *db, const char *sql, char **cause)
{
	PGresult	*res;
	char		*err = NULL, m[256];
	int		 rc = 0;

	if (db->kind == STORE_SQLITE) {
		if (sqlite3_exec(db->sq, sql, NULL, NULL, &err) != SQLITE_OK) {
			cp_err(cause, "%s: %s", db->shown, err != NULL ? err :
			    sqlite3_errmsg(db->sq));
			rc = -1;
		}
		sqlite3_free(err);
		return (rc);
	}
	res = PQexec(db->pg, sql);
	if (PQresultStatus(res) != PGRES_COMMAND_OK &&
	    PQresultStatus(res) != PGRES_TUPLES_OK) {
		cp_err(cause, "%s: %s", db->shown, cp_pgmsg(
		    PQresultErrorMessage(res), m, sizeof m));
		rc = -1;
	}
	PQclear(res);
	return (rc);
}

/*
 * The first column of the first row of a query of our own with at most
 * two text parameters, as an integer (*v), or as text (*s, if given).
 * 1 with a value, 0 without one (no row, or NULL), -1 on error.
 */
static int
cp_scalar(struct cp_db *db, const char *sql, const char *p1, const char *p2,
    long long *v, char **s, char **cause)
{
	const char	*vals[2] = { p1, p2 };
	sqlite3_stmt	*st;
	PGresult	*res;
	char		 m[256];
	int		 n = p2 != NULL ? 2 : p1 != NULL ? 1 : 0, rc = 0;

	if (s != NULL)
		*s = NULL;
	if (db->kind == STORE_SQLITE) {
		if (sqlite3_prepare_v2(db->sq, sql, -1, &st, NULL) !=
		    SQLITE_OK) {
			cp_err(cause, "%s: %s", db->shown,
			    sqlite3_errmsg(db->sq));
			return (-1);
		}
		if (p1 != NULL)
			sqlite3_bind_text(st, 1, p1, -1, SQLITE_STATIC);
		if (p2 != NULL)
			sqlite3_bind_text(st, 2, p2, -1, SQLITE_STATIC);
		switch (sqlite3_step(st)) {
		case SQLITE_ROW:
			if (sqlite3_column_type(st, 0) == SQLITE_NULL)
				break;
			*v = sqlite3_column_int64(st, 0);
			if (s != NULL)
				*s = xstrdup((const char *)
				    sqlite3_column_text(st, 0));
			rc = 1;
			break;
		case SQLITE_DONE:
			break;
		default:
			cp_err(cause, "%s: %s", db->shown,
			    sqlite3_errmsg(db->sq));
			rc = -1;
			break;
		}
		sqlite3_finalize(st);
		return (rc);
	}
	res = PQexecParams(db->pg, sql, n, NULL, vals, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		cp_err(cause, "%s: %s", db->shown, cp_pgmsg(
		    PQresultErrorMessage(res), m, sizeof m));
		rc = -1;
	} else if (PQntuples(res) > 0 && !PQgetisnull(res, 0, 0)) {
		*v = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
		if (s != NULL)
			*s = xstrdup(PQgetvalue(res, 0, 0));
		rc = 1;
	}
	PQclear(res);
	return (rc);
}

static void
cp_close(struct cp_db *db)
{
	if (db->sq != NULL) {
		if (db->in_txn)
			sqlite3_exec(db->sq, "ROLLBACK", NULL, NULL, NULL);
		sqlite3_close_v2(db->sq);
	}
	if (db->pg != NULL)
		PQfinish(db->pg);	/* an open transaction rolls back */
	free(db->shown);
	memset(db, 0, sizeof *db);
}

/*
 * Open a database that exists: an SQLite file, or a PostgreSQL one; on
 * failure nothing stays open.
 */
static int
cp_open(struct cp_db *db, const char *url, const char *password,
    long long timeout, char **cause)
{
	if (cp_open1(db, url, password, timeout, cause) == -1) {
		cp_close(db);
		return (-1);
	}
	return (0);
}

static int
cp_open1(struct cp_db *db, const char *url, const char *password,
    long long timeout, char **cause)
{
	struct store_conf	 sc;
	const char		*kw[6], *val[6];
	char			 tmo[32], m[256];
	int			 n = 0;

	memset(db, 0, sizeof *db);
	if (store_conf_from_url(url, &sc, cause) == -1)
		return (-1);
	db->kind = sc.kind;
	db->shown = store_url_redacted(url);
	if (sc.kind == STORE_SQLITE) {
		if (sqlite3_open_v2(sc.path, &db->sq, SQLITE_OPEN_READWRITE |
		    SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
			cp_err(cause, "cannot open %s: %s", sc.path,
			    db->sq != NULL ? sqlite3_errmsg(db->sq) :
			    "out of memory");
			store_conf_clear(&sc);
			return (-1);
		}
		sqlite3_busy_timeout(db->sq, 5000);
		store_conf_clear(&sc);
		return (cp_exec(db, "PRAGMA foreign_keys = ON", cause));
	}
	snprintf(tmo, sizeof tmo, "%lld", timeout);
	kw[n] = "dbname";
	val[n++] = sc.conninfo;
	if (password != NULL) {
		kw[n] = "password";
		val[n++] = password;
	}
	kw[n] = "application_name";
	val[n++] = BSP_NAME " db copy";
	kw[n] = "connect_timeout";
	val[n++] = tmo;
	kw[n] = NULL;
	val[n] = NULL;
	db->pg = PQconnectdbParams(kw, val, 1);
	store_conf_clear(&sc);
	if (db->pg == NULL || PQstatus(db->pg) != CONNECTION_OK) {
		cp_err(cause, "cannot connect to %s: %s", db->shown,
		    db->pg != NULL ? cp_pgmsg(PQerrorMessage(db->pg), m,
		    sizeof m) : "out of memory");
		return (-1);
	}
	return (cp_exec(db, "SET bytea_output = 'hex'; SET TIME ZONE 'UTC'; "
	    "SET client_encoding = 'UTF8'", cause));
}

/* The schema version (0 for no schema of ours); -1 on error. */
static int
cp_version(struct cp_db *db, int *v, char **cause)
{
	long long	n = 0;
	int		rc;

	if (db->kind == STORE_SQLITE)
		rc = cp_scalar(db, "PRAGMA user_version", NULL, NULL, &n, NULL,
		    cause);
	else {
		rc = cp_scalar(db, "SELECT CASE WHEN to_regclass('bsp_schema') "
		    "IS NULL THEN 0 ELSE 1 END", NULL, NULL, &n, NULL, cause);
		if (rc == 1 && n == 1)
			rc = cp_scalar(db, "SELECT coalesce(max(version), 0) "
			    "FROM bsp_schema", NULL, NULL, &n, NULL, cause);
		else if (rc == 1)
			n = 0;
	}
	if (rc == -1)
		return (-1);
	*v = (int)n;
	return (0);
}

/* The tables the database holds, checked against the list we copy. */
static int
cp_tables_known(struct cp_db *db, char **cause)
{
	sqlite3_stmt	*st;
	PGresult	*res;
	const char	*name;
	char		 m[256];
	size_t		 i, k, n = 0;
	int		 rc = 0, found;

	if (db->kind == STORE_SQLITE) {
		if (sqlite3_prepare_v2(db->sq, "SELECT name FROM sqlite_master "
		    "WHERE type = 'table' AND name NOT LIKE 'sqlite_%'", -1,
		    &st, NULL) != SQLITE_OK) {
			cp_err(cause, "%s: %s", db->shown,
			    sqlite3_errmsg(db->sq));
			return (-1);
		}
		while (rc == 0 && sqlite3_step(st) == SQLITE_ROW) {
			name = (const char *)sqlite3_column_text(st, 0);
			for (i = 0, found = 0; i < nitems(cp_tables); i++)
				found |= strcmp(name, cp_tables[i].name) == 0;
			if (!found) {
				cp_err(cause, "%s has a table db copy does not "
				    "know: %s", db->shown, name);
				rc = -1;
			}
			n++;
		}
		sqlite3_finalize(st);
	} else {
		res = PQexec(db->pg, "SELECT tablename FROM pg_tables WHERE "
		    "schemaname = current_schema()");
		if (PQresultStatus(res) != PGRES_TUPLES_OK) {
			cp_err(cause, "%s: %s", db->shown, cp_pgmsg(
			    PQresultErrorMessage(res), m, sizeof m));
			PQclear(res);
			return (-1);
		}
		for (k = 0; rc == 0 && k < (size_t)PQntuples(res); k++) {
			name = PQgetvalue(res, (int)k, 0);
			for (i = 0, found = 0; i < nitems(cp_own); i++)
				found |= strcmp(name, cp_own[i]) == 0;
			if (found)
				continue;
			for (i = 0; i < nitems(cp_tables); i++)
				found |= strcmp(name, cp_tables[i].name) == 0;
			if (!found) {
				cp_err(cause, "%s has a table db copy does not "
				    "know: %s", db->shown, name);
				rc = -1;
			}
			n++;
		}
		PQclear(res);
	}
	if (rc == 0 && n != nitems(cp_tables)) {
		cp_err(cause, "%s has %zu of the %zu tables of the schema",
		    db->shown, n, nitems(cp_tables));
		rc = -1;
	}
	return (rc);
}

/* A table's columns in db: names and kinds, in their order. */
static int
cp_columns(struct cp_db *db, const char *table, struct cp_table *t,
    char **cause)
{
	sqlite3_stmt	*st;
	PGresult	*res;
	const char	*vals[1] = { table }, *name, *decl;
	char		 sql[128], m[256];
	int		 i, n;

	memset(t, 0, sizeof *t);
	t->name = table;
	if (db->kind == STORE_SQLITE) {
		snprintf(sql, sizeof sql, "PRAGMA table_info(%s)", table);
		if (sqlite3_prepare_v2(db->sq, sql, -1, &st, NULL) !=
		    SQLITE_OK) {
			cp_err(cause, "%s: %s", db->shown,
			    sqlite3_errmsg(db->sq));
			return (-1);
		}
		while (sqlite3_step(st) == SQLITE_ROW) {
			name = (const char *)sqlite3_column_text(st, 1);
			decl = (const char *)sqlite3_column_text(st, 2);
			if (t->ncols == CP_COLS_MAX || !cp_ident_ok(name)) {
				sqlite3_finalize(st);
				cp_err(cause, "%s: table %s has a column db "
				    "copy cannot name", db->shown, table);
				return (-1);
			}
			bsp_strlcpy(t->col[t->ncols], name, CP_NAME_MAX);
			t->kind[t->ncols++] = cp_kind_of(decl);
		}
		sqlite3_finalize(st);
		return (0);
	}
	res = PQexecParams(db->pg, "SELECT column_name, data_type FROM "
	    "information_schema.columns WHERE table_schema = current_schema() "
	    "AND table_name = $1 ORDER BY ordinal_position", 1, NULL, vals,
	    NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		cp_err(cause, "%s: %s", db->shown, cp_pgmsg(
		    PQresultErrorMessage(res), m, sizeof m));
		PQclear(res);
		return (-1);
	}
	n = PQntuples(res);
	for (i = 0; i < n; i++) {
		name = PQgetvalue(res, i, 0);
		if (t->ncols == CP_COLS_MAX || !cp_ident_ok(name)) {
			PQclear(res);
			cp_err(cause, "%s: table %s has a column db copy cannot "
			    "name", db->shown, table);
			return (-1);
		}
		bsp_strlcpy(t->col[t->ncols], name, CP_NAME_MAX);
		t->kind[t->ncols++] = cp_kind_of(PQgetvalue(res, i, 1));
	}
	PQclear(res);
	return (0);
}

/* SELECT every column of t in the order of its key (bytes, not locale). */
static char *
cp_select_sql(const struct cp_table *t, const char *const *key, int pg)
{
	struct evbuffer	*b;
	char		*s;
	size_t		 i, k, len;

	if ((b = evbuffer_new()) == NULL)
		fatalx("evbuffer_new");
	evbuffer_add_printf(b, "SELECT ");
	for (i = 0; i < t->ncols; i++)
		evbuffer_add_printf(b, "%s%s", i > 0 ? ", " : "", t->col[i]);
	evbuffer_add_printf(b, " FROM %s ORDER BY ", t->name);
	for (k = 0; k < 2 && key[k] != NULL; k++) {
		for (i = 0; i < t->ncols && strcmp(t->col[i], key[k]) != 0; i++)
			;
		evbuffer_add_printf(b, "%s%s%s", k > 0 ? ", " : "", key[k],
		    pg && i < t->ncols && t->kind[i] == CP_TEXT ?
		    " COLLATE \"C\"" : "");
	}
	len = evbuffer_get_length(b);
	s = xmalloc(len + 1);
	evbuffer_remove(b, s, len);
	s[len] = '\0';
	evbuffer_free(b);
	return (s);
}

static void
cp_vals_clear(struct cp_val *v, size_t n)
{
	size_t	i;

	for (i = 0; i < n; i++) {
		free(v[i].p);
		memset(&v[i], 0, sizeof v[i]);
	}
}

static int
cp_hexval(int c)
{
	if (c >= '0' && c <= '9')
		return (c - '0');
	c = tolower(c);
	if (c >= 'a' && c <= 'f')
		return (c - 'a' + 10);
	return (-1);
}

static int
cp_reader_start(struct cp_reader *r, struct cp_db *db, struct cp_table *t,
    const char *sql, char **cause)
{
	char	m[256];

	memset(r, 0, sizeof *r);
	r->db = db;
	r->t = t;
	if (db->kind == STORE_SQLITE) {
		if (sqlite3_prepare_v2(db->sq, sql, -1, &r->st, NULL) !=
		    SQLITE_OK) {
			cp_err(cause, "%s: %s", db->shown,
			    sqlite3_errmsg(db->sq));
			return (-1);
		}
		return (0);
	}
	if (!PQsendQueryParams(db->pg, sql, 0, NULL, NULL, NULL, NULL, 0) ||
	    !PQsetSingleRowMode(db->pg)) {
		cp_err(cause, "%s: %s", db->shown, cp_pgmsg(
		    PQerrorMessage(db->pg), m, sizeof m));
		return (-1);
	}
	return (0);
}

/* A PostgreSQL value (text format) of kind k into v; -1 if malformed. */
static int
cp_pg_val(PGresult *res, int col, enum cp_kind k, struct cp_val *v)
{
	const char	*s;
	size_t		 n, i;
	int		 hi, lo;

	if (PQgetisnull(res, 0, col)) {
		v->null = 1;
		return (0);
	}
	s = PQgetvalue(res, 0, col);
	n = (size_t)PQgetlength(res, 0, col);
	switch (k) {
	case CP_INT:
		errno = 0;
		v->i = strtoll(s, NULL, 10);
		return (errno != 0 ? -1 : 0);
	case CP_TEXT:
		v->p = xmalloc(n + 1);
		memcpy(v->p, s, n);
		v->p[n] = '\0';
		v->len = n;
		return (0);
	case CP_BLOB:
		if (n < 2 || s[0] != '\\' || s[1] != 'x' || n % 2 != 0)
			return (-1);
		v->len = (n - 2) / 2;
		v->p = xmalloc(v->len + 1);
		for (i = 0; i < v->len; i++) {
			if ((hi = cp_hexval((unsigned char)s[2 + 2 * i])) ==
			    -1 || (lo = cp_hexval((unsigned char)
			    s[3 + 2 * i])) == -1)
				return (-1);
			v->p[i] = (uint8_t)(hi << 4 | lo);
		}
		return (0);
	}
	return (-1);
}

/* An SQLite value of kind k into v; -1 if it is of another kind. */
static int
cp_sq_val(sqlite3_stmt *st, int col, enum cp_kind k, struct cp_val *v)
{
	int		 type = sqlite3_column_type(st, col);
	const void	*p;

	if (type == SQLITE_NULL) {
		v->null = 1;
		return (0);
	}
	switch (k) {
	case CP_INT:
		if (type != SQLITE_INTEGER)
			return (-1);
		v->i = sqlite3_column_int64(st, col);
		return (0);
	case CP_TEXT:
		if (type != SQLITE_TEXT)
			return (-1);
		p = sqlite3_column_text(st, col);
		break;
	case CP_BLOB:
		if (type != SQLITE_BLOB)
			return (-1);
		p = sqlite3_column_blob(st, col);
		break;
	default:
		return (-1);
	}
	v->len = (size_t)sqlite3_column_bytes(st, col);
	v->p = xmalloc(v->len + 1);
	if (v->len > 0)
		memcpy(v->p, p, v->len);
	v->p[v->len] = '\0';
	return (0);
}

/* The next row into r->v: 1, 0 at the end, -1 on error. */
static int
cp_reader_next(struct cp_reader *r, char **cause)
{
	struct cp_table	*t = r->t;
	char		 m[256];
	size_t		 i;
	int		 rc;

	cp_vals_clear(r->v, t->ncols);
	if (r->done)
		return (0);
	if (r->db->kind == STORE_SQLITE) {
		rc = sqlite3_step(r->st);
		if (rc == SQLITE_DONE) {
			r->done = 1;
			return (0);
		}
		if (rc != SQLITE_ROW) {
			cp_err(cause, "%s: %s", r->db->shown,
			    sqlite3_errmsg(r->db->sq));
			return (-1);
		}
		for (i = 0; i < t->ncols; i++) {
			if (cp_sq_val(r->st, (int)i, t->kind[i], &r->v[i]) ==
			    -1) {
				cp_err(cause, "%s: table %s, column %s holds a "
				    "value of another type than its own",
				    r->db->shown, t->name, t->col[i]);
				return (-1);
			}
		}
		return (1);
	}
	if (r->res != NULL)
		PQclear(r->res);
	r->res = PQgetResult(r->db->pg);
	if (r->res == NULL) {
		r->done = 1;
		return (0);
	}
	switch (PQresultStatus(r->res)) {
	case PGRES_SINGLE_TUPLE:
		for (i = 0; i < t->ncols; i++) {
			if (cp_pg_val(r->res, (int)i, t->kind[i], &r->v[i]) ==
			    -1) {
				cp_err(cause, "%s: table %s, column %s: a "
				    "value cannot be read", r->db->shown,
				    t->name, t->col[i]);
				return (-1);
			}
		}
		return (1);
	case PGRES_TUPLES_OK:
		/* The end; then the NULL that ends the query. */
		PQclear(r->res);
		r->res = PQgetResult(r->db->pg);
		if (r->res != NULL) {
			PQclear(r->res);
			r->res = NULL;
		}
		r->done = 1;
		return (0);
	default:
		cp_err(cause, "%s: %s", r->db->shown, cp_pgmsg(
		    PQresultErrorMessage(r->res), m, sizeof m));
		return (-1);
	}
}

/* Done with a reader (reads what is left of a PostgreSQL query). */
static void
cp_reader_end(struct cp_reader *r)
{
	PGresult	*res;

	cp_vals_clear(r->v, r->t != NULL ? r->t->ncols : 0);
	if (r->st != NULL)
		sqlite3_finalize(r->st);
	if (r->res != NULL)
		PQclear(r->res);
	if (r->db != NULL && r->db->kind == STORE_PG && !r->done) {
		while ((res = PQgetResult(r->db->pg)) != NULL)
			PQclear(res);
	}
	memset(r, 0, sizeof *r);
}

/* The INSERT of n rows of t (SQLite: one; PostgreSQL: a batch). */
static char *
cp_insert_sql(const struct cp_table *t, size_t n)
{
	struct evbuffer	*b;
	char		*s;
	size_t		 i, r, len, p = 1;

	if ((b = evbuffer_new()) == NULL)
		fatalx("evbuffer_new");
	evbuffer_add_printf(b, "INSERT INTO %s (", t->name);
	for (i = 0; i < t->ncols; i++)
		evbuffer_add_printf(b, "%s%s", i > 0 ? ", " : "", t->col[i]);
	evbuffer_add_printf(b, ") VALUES ");
	for (r = 0; r < n; r++) {
		evbuffer_add_printf(b, "%s(", r > 0 ? ", " : "");
		for (i = 0; i < t->ncols; i++)
			evbuffer_add_printf(b, "%s$%zu", i > 0 ? ", " : "",
			    p++);
		evbuffer_add_printf(b, ")");
	}
	len = evbuffer_get_length(b);
	s = xmalloc(len + 1);
	evbuffer_remove(b, s, len);
	s[len] = '\0';
	evbuffer_free(b);
	return (s);
}

/* Rows held for one INSERT into PostgreSQL, its parameters as text. */
struct cp_batch {
	size_t		 n;
	char		**vals;		/* n * ncols */
	int		*lens;
	int		*fmts;
};

static void
cp_batch_clear(struct cp_batch *b, size_t ncols)
{
	size_t	i;

	for (i = 0; i < b->n * ncols; i++)
		free(b->vals[i]);
	b->n = 0;
}

/* Hold a row (the reader's) for the next INSERT. */
static void
cp_batch_add(struct cp_batch *b, const struct cp_table *t,
    const struct cp_val *v)
{
	size_t	i, k;

	for (i = 0; i < t->ncols; i++) {
		k = b->n * t->ncols + i;
		b->fmts[k] = 0;
		b->lens[k] = 0;
		b->vals[k] = NULL;
		if (v[i].null)
			continue;
		switch (t->kind[i]) {
		case CP_INT:
			xasprintf(&b->vals[k], "%lld", v[i].i);
			break;
		case CP_TEXT:
			b->vals[k] = xmalloc(v[i].len + 1);
			memcpy(b->vals[k], v[i].p, v[i].len + 1);
			break;
		case CP_BLOB:
			b->vals[k] = xmalloc(v[i].len + 1);
			if (v[i].len > 0)
				memcpy(b->vals[k], v[i].p, v[i].len);
			b->lens[k] = (int)v[i].len;
			b->fmts[k] = 1;
			break;
		}
	}
	b->n++;
}

static int
cp_batch_flush(struct cp_db *db, const struct cp_table *t,
    struct cp_batch *b, char **cause)
{
	PGresult	*res;
	char		*sql, m[256];
	int		 rc = 0;

	if (b->n == 0)
		return (0);
	sql = cp_insert_sql(t, b->n);
	res = PQexecParams(db->pg, sql, (int)(b->n * t->ncols), NULL,
	    (const char *const *)b->vals, b->lens, b->fmts, 0);
	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		cp_err(cause, "%s: table %s: %s", db->shown, t->name,
		    cp_pgmsg(PQresultErrorMessage(res), m, sizeof m));
		rc = -1;
	}
	PQclear(res);
	free(sql);
	cp_batch_clear(b, t->ncols);
	return (rc);
}

/* One row into an SQLite target, with its prepared INSERT. */
static int
cp_sq_insert(struct cp_db *db, sqlite3_stmt *st, const struct cp_table *t,
    const struct cp_val *v, char **cause)
{
	size_t	i;
	int	rc = SQLITE_OK;

	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	for (i = 0; i < t->ncols && rc == SQLITE_OK; i++) {
		if (v[i].null)
			continue;
		switch (t->kind[i]) {
		case CP_INT:
			rc = sqlite3_bind_int64(st, (int)i + 1, v[i].i);
			break;
		case CP_TEXT:
			rc = sqlite3_bind_text(st, (int)i + 1,
			    (const char *)v[i].p, (int)v[i].len,
			    SQLITE_STATIC);
			break;
		case CP_BLOB:
			rc = sqlite3_bind_blob(st, (int)i + 1, v[i].p,
			    (int)v[i].len, SQLITE_STATIC);
			break;
		}
	}
	if (rc == SQLITE_OK && sqlite3_step(st) == SQLITE_DONE)
		return (0);
	cp_err(cause, "%s: table %s: %s", db->shown, t->name,
	    sqlite3_errmsg(db->sq));
	return (-1);
}

/* Copy one table; *n gets its rows. */
static int
cp_copy_table(struct cp_db *from, struct cp_db *to, struct cp_table *tf,
    struct cp_table *tt, long long *n, char **cause)
{
	struct cp_reader	 r;
	struct cp_batch		 b;
	sqlite3_stmt		*st = NULL;
	char			*sql;
	int			 rc = -1, more;

	*n = 0;
	memset(&b, 0, sizeof b);
	if (to->kind == STORE_SQLITE) {
		sql = cp_insert_sql(tt, 1);
		if (sqlite3_prepare_v2(to->sq, sql, -1, &st, NULL) !=
		    SQLITE_OK) {
			cp_err(cause, "%s: %s", to->shown,
			    sqlite3_errmsg(to->sq));
			free(sql);
			return (-1);
		}
		free(sql);
	} else {
		b.vals = xcalloc(CP_BATCH * tt->ncols, sizeof *b.vals);
		b.lens = xcalloc(CP_BATCH * tt->ncols, sizeof *b.lens);
		b.fmts = xcalloc(CP_BATCH * tt->ncols, sizeof *b.fmts);
	}
	if (cp_reader_start(&r, from, tf, tf->select, cause) == -1)
		goto out;
	while ((more = cp_reader_next(&r, cause)) == 1) {
		if (to->kind == STORE_SQLITE) {
			if (cp_sq_insert(to, st, tt, r.v, cause) == -1)
				break;
		} else {
			cp_batch_add(&b, tt, r.v);
			if (b.n == CP_BATCH && cp_batch_flush(to, tt, &b,
			    cause) == -1)
				break;
		}
		(*n)++;
	}
	cp_reader_end(&r);
	if (more != 0)
		goto out;
	if (to->kind == STORE_PG && cp_batch_flush(to, tt, &b, cause) == -1)
		goto out;
	rc = 0;
out:
	if (st != NULL)
		sqlite3_finalize(st);
	if (b.vals != NULL)
		cp_batch_clear(&b, tt->ncols);
	free(b.vals);
	free(b.lens);
	free(b.fmts);
	return (rc);
}

static int
cp_val_eq(enum cp_kind k, const struct cp_val *a, const struct cp_val *b)
{
	if (a->null || b->null)
		return (a->null && b->null);
	if (k == CP_INT)
		return (a->i == b->i);
	return (a->len == b->len && (a->len == 0 ||
	    memcmp(a->p, b->p, a->len) == 0));
}

/*
 * Compare a table in both databases, row by row in key order; *n gets
 * the rows checked. The values are not shown: they hold secrets' hashes.
 */
static int
cp_check_table(struct cp_db *from, struct cp_db *to, struct cp_table *tf,
    struct cp_table *tt, long long *n, char **cause)
{
	struct cp_reader	 a, b;
	size_t			 i;
	int			 ra, rb, rc = -1;

	*n = 0;
	memset(&b, 0, sizeof b);
	if (cp_reader_start(&a, from, tf, tf->select, cause) == -1)
		return (-1);
	if (cp_reader_start(&b, to, tt, tt->select, cause) == -1)
		goto out;
	for (;;) {
		ra = cp_reader_next(&a, cause);
		if (ra == -1)
			goto out;
		rb = cp_reader_next(&b, cause);
		if (rb == -1)
			goto out;
		if (ra == 0 && rb == 0)
			break;
		if (ra != rb) {
			cp_err(cause, "table %s: %lld rows in %s, %s in %s",
			    tf->name, *n + (ra == 1), from->shown, ra == 1 ?
			    "fewer" : "more", to->shown);
			goto out;
		}
		for (i = 0; i < tt->ncols; i++) {
			if (!cp_val_eq(tt->kind[i], &a.v[i], &b.v[i])) {
				cp_err(cause, "table %s: row %lld (in key "
				    "order) differs in column %s", tf->name,
				    *n + 1, tt->col[i]);
				goto out;
			}
		}
		(*n)++;
	}
	rc = 0;
out:
	cp_reader_end(&a);
	cp_reader_end(&b);
	return (rc);
}

/* PostgreSQL: the sequences behind the copied ids, moved past them. */
static int
cp_sequences(struct cp_db *to, struct cp_table *t, char **cause)
{
	char		*seq = NULL, sql[256];
	long long	 dummy;
	size_t		 i;
	int		 rc;

	for (i = 0; i < t->ncols; i++) {
		if (t->kind[i] != CP_INT)
			continue;
		rc = cp_scalar(to, "SELECT pg_get_serial_sequence($1, $2)",
		    t->name, t->col[i], &dummy, &seq, cause);
		if (rc == -1)
			return (-1);
		if (rc == 0 || seq == NULL)
			continue;
		free(seq);
		seq = NULL;
		snprintf(sql, sizeof sql, "SELECT setval(pg_get_serial_sequence("
		    "'%s', '%s'), coalesce(max(%s), 0) + 1, false) FROM %s",
		    t->name, t->col[i], t->col[i], t->name);
		if (cp_exec(to, sql, cause) == -1)
			return (-1);
	}
	return (0);
}

/* Both databases the same? */
static int
cp_same(const char *from, const char *to)
{
	struct store_conf	 a, b;
	char			*cause = NULL, *ra, *rb, pa[PATH_MAX];
	char			 pb[PATH_MAX];
	int			 same = 0;

	if (store_conf_from_url(from, &a, &cause) == -1) {
		free(cause);
		return (0);
	}
	if (store_conf_from_url(to, &b, &cause) == -1) {
		free(cause);
		store_conf_clear(&a);
		return (0);
	}
	if (a.kind == STORE_SQLITE && b.kind == STORE_SQLITE)
		same = realpath(a.path, pa) != NULL &&
		    realpath(b.path, pb) != NULL && strcmp(pa, pb) == 0;
	else if (a.kind == STORE_PG && b.kind == STORE_PG) {
		ra = store_url_redacted(from);
		rb = store_url_redacted(to);
		same = strcmp(ra, rb) == 0;
		free(ra);
		free(rb);
	}
	store_conf_clear(&a);
	store_conf_clear(&b);
	return (same);
}

/*
 * Copy every table of from into to (both at this binary's schema version,
 * to empty), and check it. The source is opened and its version checked
 * first; then prepare(arg) readies the target (brings its schema to this
 * binary's version, making it if need be), -1 with *cause if it cannot.
 * 0 when copied and checked; STORE_COPY_REFUSED (nothing copied: the
 * same database, a schema of another version, a target that is not
 * empty) or STORE_COPY_FAILED (a database failed, or the check found a
 * difference: the target is left as it was), with *cause. Progress goes
 * to out.
 */
int
store_copy(const struct store_copy_args *a, FILE *out, char **cause)
{
	struct cp_db	 from, to;
	struct cp_table	 tf[nitems(cp_tables)], tt[nitems(cp_tables)];
	long long	 n, rows[nitems(cp_tables)], total = 0, v;
	size_t		 i, k;
	int		 fv, tv, rc = STORE_COPY_FAILED;
	char		 sql[512];

	memset(tf, 0, sizeof tf);
	memset(tt, 0, sizeof tt);
	memset(&to, 0, sizeof to);
	if (cp_same(a->from, a->to)) {
		cp_err(cause, "--from and --to name the same database");
		return (STORE_COPY_REFUSED);
	}
	if (cp_open(&from, a->from, a->from_password, a->timeout, cause) == -1)
		return (STORE_COPY_FAILED);
	if (cp_version(&from, &fv, cause) == -1)
		goto out;
	if (fv != (int)store_nmigrations) {
		cp_err(cause, "%s has schema version %d; this binary's is %zu: "
		    "%s", from.shown, fv, store_nmigrations, fv >
		    (int)store_nmigrations ? "use a newer " BSP_NAME : fv == 0 ?
		    "it holds no database of " BSP_NAME : "bring it up to date "
		    "first (any command of this binary on it migrates it)");
		rc = STORE_COPY_REFUSED;
		goto out;
	}
	if (a->prepare != NULL && a->prepare(a->arg, cause) == -1)
		goto out;
	if (cp_open(&to, a->to, a->to_password, a->timeout, cause) == -1 ||
	    cp_version(&to, &tv, cause) == -1)
		goto out;
	if (tv != (int)store_nmigrations) {
		cp_err(cause, "%s has schema version %d; this binary's is %zu",
		    to.shown, tv, store_nmigrations);
		rc = STORE_COPY_REFUSED;
		goto out;
	}
	if (cp_tables_known(&from, cause) == -1 ||
	    cp_tables_known(&to, cause) == -1) {
		rc = STORE_COPY_REFUSED;
		goto out;
	}

	/* One snapshot of the source; the target locked and empty. */
	if (cp_exec(&from, from.kind == STORE_SQLITE ? "BEGIN" : "BEGIN "
	    "ISOLATION LEVEL REPEATABLE READ READ ONLY", cause) == -1)
		goto out;
	from.in_txn = 1;
	if (cp_exec(&to, to.kind == STORE_SQLITE ? "BEGIN IMMEDIATE" :
	    "BEGIN", cause) == -1)
		goto out;
	to.in_txn = 1;
	for (i = 0; i < nitems(cp_tables); i++) {
		if (cp_columns(&to, cp_tables[i].name, &tt[i], cause) == -1 ||
		    cp_columns(&from, cp_tables[i].name, &tf[i], cause) == -1)
			goto out;
		if (tf[i].ncols != tt[i].ncols) {
			cp_err(cause, "table %s has %zu columns in %s, %zu in "
			    "%s", cp_tables[i].name, tf[i].ncols, from.shown,
			    tt[i].ncols, to.shown);
			rc = STORE_COPY_REFUSED;
			goto out;
		}
		for (k = 0; k < tt[i].ncols; k++) {
			if (strcmp(tf[i].col[k], tt[i].col[k]) != 0 ||
			    tf[i].kind[k] != tt[i].kind[k]) {
				cp_err(cause, "table %s: column %s of %s is "
				    "not %s's", cp_tables[i].name,
				    tf[i].col[k], from.shown, to.shown);
				rc = STORE_COPY_REFUSED;
				goto out;
			}
		}
		tf[i].select = cp_select_sql(&tf[i], cp_tables[i].key,
		    from.kind == STORE_PG);
		tt[i].select = cp_select_sql(&tt[i], cp_tables[i].key,
		    to.kind == STORE_PG);
		if (to.kind == STORE_PG) {
			/* No daemon writes while we copy. */
			snprintf(sql, sizeof sql, "LOCK TABLE %s IN EXCLUSIVE "
			    "MODE", cp_tables[i].name);
			if (cp_exec(&to, sql, cause) == -1)
				goto out;
		}
		snprintf(sql, sizeof sql, "SELECT count(*) FROM %s",
		    cp_tables[i].name);
		if (cp_scalar(&to, sql, NULL, NULL, &v, NULL, cause) == -1)
			goto out;
		if (v != 0) {
			cp_err(cause, "%s is not empty (table %s has %lld "
			    "row%s): db copy only copies into an empty "
			    "database", to.shown, cp_tables[i].name, v,
			    v == 1 ? "" : "s");
			rc = STORE_COPY_REFUSED;
			goto out;
		}
	}

	for (i = 0; i < nitems(cp_tables); i++) {
		if (cp_copy_table(&from, &to, &tf[i], &tt[i], &rows[i],
		    cause) == -1)
			goto out;
		if (to.kind == STORE_PG && cp_sequences(&to, &tt[i],
		    cause) == -1)
			goto out;
	}
	for (i = 0; i < nitems(cp_tables); i++) {
		if (cp_check_table(&from, &to, &tf[i], &tt[i], &n,
		    cause) == -1)
			goto out;
		if (n != rows[i]) {
			cp_err(cause, "table %s: %lld rows copied, %lld "
			    "checked", cp_tables[i].name, rows[i], n);
			goto out;
		}
		fprintf(out, "%-16s %lld row%s copied and checked\n",
		    cp_tables[i].name, n, n == 1 ? "" : "s");
		total += n;
	}
	if (cp_exec(&to, "COMMIT", cause) == -1)
		goto out;
	to.in_txn = 0;
	fprintf(out, "copied %lld rows in %zu tables from %s to %s\n", total,
	    nitems(cp_tables), from.shown, to.shown);
	rc = 0;
out:
	for (i = 0; i < nitems(cp_tables); i++) {
		free(tf[i].select);
		free(tt[i].select);
	}
	cp_close(&from);
	cp_close(&to);
	return (rc);
}
