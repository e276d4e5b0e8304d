/*
 * cmd-usage.c: the "usage" command: per-user, per-model or per-day totals
 * of the usage table, as a table on stdout.
 */

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sqlite3.h>

#include "bsp.h"

#define USAGE_DEFAULT_SINCE	(30 * 86400)

/* "2026-11-01" (UTC midnight) or a duration back from now ("7d"). */
static int
cmd_usage_since(const char *s, time_t *out)
{
	struct tm	 tm;
	long long	 d;
	char		*end;

	if (parse_duration(s, &d) == 0) {
		*out = now_wall() - (time_t)d;
		return (0);
	}
	memset(&tm, 0, sizeof tm);
	end = strptime(s, "%Y-%m-%d", &tm);
	if (end == NULL || *end != '\0')
		return (-1);
	*out = timegm(&tm);
	return (*out == (time_t)-1 ? -1 : 0);
}

/* The synopsis on stderr; the exit status of a usage error. */
static int
cmd_usage_synopsis(void)
{
	fprintf(stderr, "usage: %s usage [--since DATE] [--user USER] "
	    "[--by user|model|day]\n", BSP_NAME);
	return (1);
}

/*
 * The table of the grouped rows in st, headed by the grouping (user,
 * model or day), and their total: 0, or -1 if reading them failed.
 */
static int
cmd_usage_table(sqlite3_stmt *st, const char *by)
{
	long long	 t[6] = { 0, 0, 0, 0, 0, 0 };
	int		 i, rc;

	printf("%-44s %10s %14s %14s %12s %12s %8s\n", by[0] == 'u' ? "USER" :
	    by[0] == 'm' ? "MODEL" : "DAY", "REQUESTS", "INPUT_TOKENS",
	    "OUTPUT_TOKENS", "CACHE_READ", "CACHE_WRITE", "ERRORS");
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		cmd_cell((const char *)sqlite3_column_text(st, 0), 44, "");
		for (i = 0; i < 6; i++)
			t[i] += sqlite3_column_int64(st, i + 1);
		printf(" %10lld %14lld %14lld %12lld %12lld %8lld\n",
		    (long long)sqlite3_column_int64(st, 1),
		    (long long)sqlite3_column_int64(st, 2),
		    (long long)sqlite3_column_int64(st, 3),
		    (long long)sqlite3_column_int64(st, 4),
		    (long long)sqlite3_column_int64(st, 5),
		    (long long)sqlite3_column_int64(st, 6));
	}
	if (rc != SQLITE_DONE)
		return (-1);
	printf("%-44s %10lld %14lld %14lld %12lld %12lld %8lld\n", "TOTAL",
	    t[0], t[1], t[2], t[3], t[4], t[5]);
	return (0);
}

int
cmd_usage(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "since", required_argument, NULL, 's' },
		{ "user", required_argument, NULL, 'u' },
		{ "by", required_argument, NULL, 'b' },
		{ NULL, 0, NULL, 0 },
	};
	const char	*since_s = NULL, *user_s = NULL, *by = "user";
	const char	*key;
	char		 sql[768], *cause = NULL, day[32];
	sqlite3_stmt	*st = NULL;
	struct user	 u;
	time_t		 since;
	int		 ch, rc = 0;

	memset(&u, 0, sizeof u);
	optind = 0;
	while ((ch = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
		switch (ch) {
		case 's':
			since_s = optarg;
			break;
		case 'u':
			user_s = optarg;
			break;
		case 'b':
			by = optarg;
			break;
		default:
			return (cmd_usage_synopsis());
		}
	}
	if (optind != argc)
		return (cmd_usage_synopsis());
	if (strcmp(by, "user") == 0)
		key = "user_id";
	else if (strcmp(by, "model") == 0)
		key = "model";
	else if (strcmp(by, "day") == 0)
		key = "date(ts, 'unixepoch')";
	else
		return (cmd_usage_synopsis());
	since = now_wall() - USAGE_DEFAULT_SINCE;
	if (since_s != NULL && cmd_usage_since(since_s, &since) == -1) {
		fprintf(stderr, "%s: --since takes YYYY-MM-DD or a duration "
		    "like 7d\n", BSP_NAME);
		return (1);
	}
	if (db_open(cfg->db_path, cfg->database_busy_timeout, &cause) == -1) {
		fprintf(stderr, "%s: %s\n", BSP_NAME, cause);
		free(cause);
		return (2);
	}
	if (user_s != NULL) {
		rc = user_find(user_s, &u);
		if (rc != 0) {
			fprintf(stderr, "%s: %s: %s\n", BSP_NAME, user_s,
			    rc == -2 ? "more than one user has this email; "
			    "give the user id" : "no such user");
			db_close();
			return (1);
		}
		rc = 0;
	}
	snprintf(sql, sizeof sql, "SELECT %s AS k, count(*), "
	    "sum(input_tokens), sum(output_tokens), sum(cache_read_tokens), "
	    "sum(cache_write_tokens), sum(status >= 400 OR (outcome IS NOT "
	    "NULL AND outcome != 'ok')) FROM usage WHERE ts >= ?1 AND (?2 IS "
	    "NULL OR user_id = ?2) GROUP BY k ORDER BY k", key);
	if (sqlite3_prepare_v2(bsp_db, sql, -1, &st, NULL) != SQLITE_OK) {
		fprintf(stderr, "%s: %s\n", BSP_NAME, db_errmsg());
		rc = 2;
		goto out;
	}
	sqlite3_bind_int64(st, 1, (sqlite3_int64)since);
	if (u.id != NULL)
		sqlite3_bind_text(st, 2, u.id, -1, SQLITE_STATIC);
	time_iso8601(since, day, sizeof day);
	printf("# usage since %s%s%s, by %s\n", day, u.id != NULL ? " for " :
	    "", u.id != NULL ? u.id : "", by);
	if (cmd_usage_table(st, by) == -1) {
		fprintf(stderr, "%s: reading usage failed: %s\n", BSP_NAME,
		    db_errmsg());
		rc = 2;
	}
out:
	sqlite3_finalize(st);
	user_clear(&u);
	db_close();
	return (rc);
}
