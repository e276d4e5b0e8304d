/*
 * tmpdb.h: a configuration and a temporary SQLite database with the
 * tokens module started as the admin commands start it (cmd.c's cmd_open:
 * db_open, then tokens_init, which loads the users' state and the API
 * keys too), for the unit tests of tokens and API keys.
 *
 * The configuration is the defaults plus the YAML given, with database.url
 * in a new directory under /tmp; tmpdb_close() removes it all.
 */

#ifndef TMPDB_H
#define TMPDB_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

static char	tmpdb_dir[] = "/tmp/bsp-test-tokens.XXXXXX";

static void
tmpdb_open(const char *yaml)
{
	struct config_source	 src;
	struct config_errors	 errs;
	char			*path, *cause = NULL;
	FILE			*f;
	size_t			 i;

	if (mkdtemp(tmpdb_dir) == NULL)
		fatal("mkdtemp");
	xasprintf(&path, "%s/bsp.yaml", tmpdb_dir);
	if ((f = fopen(path, "w")) == NULL)
		fatal("%s", path);
	fprintf(f, "database:\n  url: sqlite://%s/proxy.db\n%s", tmpdb_dir,
	    yaml != NULL ? yaml : "");
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
	if (db_open(cfg->db_path, cfg->database_busy_timeout, &cause) == -1 ||
	    tokens_init(cfg, &cause) == -1) {
		printf("Bail out! %s\n", cause);
		exit(1);
	}
}

static void __attribute__((unused))
tmpdb_close(void)
{
	static const char *const	 files[] = {
		"bsp.yaml", "proxy.db", "proxy.db-wal", "proxy.db-shm",
		"proxy.db-journal", "proxy.db.kek",
	};
	char				*path;
	size_t				 i;

	tokens_free();
	db_close();
	config_unref(cfg);
	cfg = NULL;
	for (i = 0; i < sizeof files / sizeof files[0]; i++) {
		xasprintf(&path, "%s/%s", tmpdb_dir, files[i]);
		(void)unlink(path);
		free(path);
	}
	if (rmdir(tmpdb_dir) == -1)
		printf("# cannot remove %s\n", tmpdb_dir);
}

/* Run a statement on the daemon's own connection; -1 on error. */
static int __attribute__((unused, format(printf, 1, 2)))
tmpdb_exec(const char *fmt, ...)
{
	va_list	 ap;
	char	*sql;
	int	 rc;

	va_start(ap, fmt);
	if (vasprintf(&sql, fmt, ap) == -1)
		fatal("vasprintf");
	va_end(ap);
	rc = sqlite3_exec(bsp_db, sql, NULL, NULL, NULL) == SQLITE_OK ? 0 : -1;
	if (rc == -1)
		printf("# %s: %s\n", sql, sqlite3_errmsg(bsp_db));
	free(sql);
	return (rc);
}

/* The first column of the first row of a query, as an integer; or -1. */
static long long __attribute__((unused, format(printf, 1, 2)))
tmpdb_int(const char *fmt, ...)
{
	sqlite3_stmt	*q;
	va_list		 ap;
	char		*sql;
	long long	 v = -1;

	va_start(ap, fmt);
	if (vasprintf(&sql, fmt, ap) == -1)
		fatal("vasprintf");
	va_end(ap);
	if (sqlite3_prepare_v2(bsp_db, sql, -1, &q, NULL) != SQLITE_OK) {
		printf("# %s: %s\n", sql, sqlite3_errmsg(bsp_db));
		free(sql);
		return (-1);
	}
	if (sqlite3_step(q) == SQLITE_ROW &&
	    sqlite3_column_type(q, 0) != SQLITE_NULL)
		v = sqlite3_column_int64(q, 0);
	sqlite3_finalize(q);
	free(sql);
	return (v);
}

#endif /* TMPDB_H */
