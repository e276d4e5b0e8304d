/*
 * cmd-usage.c: the "usage" command: per-user, per-model or per-day totals
 * of the usage table, as a table on stdout; with --cost, what the calls
 * cost (the rows' micro-dollars, as dollars; rows of models with no price
 * count nothing).
 */

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bsp.h"
#include "store.h"

#define USAGE_DEFAULT_SINCE	(30 * 86400)

/* The totals of a grouping: requests, tokens of each kind, errors. */
#define USAGE_SUMS "count(*), sum(input_tokens), sum(output_tokens), " \
    "sum(cache_read_tokens), sum(cache_write_tokens), sum(CASE WHEN status " \
    ">= 400 OR (outcome IS NOT NULL AND outcome != 'ok') THEN 1 ELSE 0 END), " \
    "sum(coalesce(cost_micros, 0)) FROM usage WHERE ts >= $1 AND "
#define USAGE_WHERE_SQLITE "($2 IS NULL OR user_id = $2) GROUP BY k ORDER BY k"
#define USAGE_WHERE_PG "($2::text IS NULL OR user_id = $2) GROUP BY k " \
    "ORDER BY k NULLS FIRST"
static struct store_stmt st_by_user = STORE_STMT2(
    "SELECT user_id AS k, " USAGE_SUMS USAGE_WHERE_SQLITE,
    "SELECT user_id AS k, " USAGE_SUMS USAGE_WHERE_PG);
static struct store_stmt st_by_model = STORE_STMT2(
    "SELECT model AS k, " USAGE_SUMS USAGE_WHERE_SQLITE,
    "SELECT model AS k, " USAGE_SUMS USAGE_WHERE_PG);
static struct store_stmt st_by_day = STORE_STMT2(
    "SELECT date(ts, 'unixepoch') AS k, " USAGE_SUMS USAGE_WHERE_SQLITE,
    "SELECT to_char(to_timestamp(ts) AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS k, "
    USAGE_SUMS USAGE_WHERE_PG);

/* The report being printed, and the answers waited for. */
struct cmd_usage_run {
	volatile int	 done;
	int		 rc;
	long long	 t[7];
	int		 cost;
	struct user	 u;
};

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
	    "[--by user|model|day] [--cost]\n", BSP_NAME);
	return (1);
}

/* One grouped row of the table. */
static void
cmd_usage_row(const struct store_row *r, void *arg)
{
	struct cmd_usage_run	*run = arg;
	char			 usd[BUDGET_USD_LEN];
	int			 i;

	cmd_cell(store_text(r, 0), 44, "");
	for (i = 0; i < 7; i++)
		run->t[i] += store_int(r, i + 1);
	printf(" %10lld %14lld %14lld %12lld %12lld %8lld",
	    store_int(r, 1), store_int(r, 2), store_int(r, 3), store_int(r, 4),
	    store_int(r, 5), store_int(r, 6));
	if (run->cost) {
		budget_usd(store_int(r, 7), usd, sizeof usd);
		printf(" %14s", usd);
	}
	printf("\n");
}

static void
cmd_usage_ran(int status, void *arg)
{
	struct cmd_usage_run	*run = arg;

	run->rc = status;
	run->done = 1;
}

static void
cmd_usage_user(int rc, const struct user *u, void *arg)
{
	struct cmd_usage_run	*run = arg;

	run->rc = rc;
	if (u != NULL)
		user_copy(&run->u, u);
	run->done = 1;
}

int
cmd_usage(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "since", required_argument, NULL, 's' },
		{ "user", required_argument, NULL, 'u' },
		{ "by", required_argument, NULL, 'b' },
		{ "cost", no_argument, NULL, 'c' },
		{ NULL, 0, NULL, 0 },
	};
	const char		*since_s = NULL, *user_s = NULL, *by = "user";
	struct store_stmt	*st;
	struct cmd_usage_run	 run;
	char			*cause = NULL, day[32];
	time_t			 since;
	int			 ch, rc = 0;

	memset(&run, 0, sizeof run);
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
		case 'c':
			run.cost = 1;
			break;
		default:
			return (cmd_usage_synopsis());
		}
	}
	if (optind != argc)
		return (cmd_usage_synopsis());
	if (strcmp(by, "user") == 0)
		st = &st_by_user;
	else if (strcmp(by, "model") == 0)
		st = &st_by_model;
	else if (strcmp(by, "day") == 0)
		st = &st_by_day;
	else
		return (cmd_usage_synopsis());
	since = now_wall() - USAGE_DEFAULT_SINCE;
	if (since_s != NULL && cmd_usage_since(since_s, &since) == -1) {
		fprintf(stderr, "%s: --since takes YYYY-MM-DD or a duration "
		    "like 7d\n", BSP_NAME);
		return (1);
	}
	if (cmd_store_open(&cause) == -1) {
		fprintf(stderr, "%s: %s\n", BSP_NAME, cause);
		free(cause);
		return (2);
	}
	if (user_s != NULL) {
		user_find(user_s, cmd_usage_user, &run);
		store_wait(&run.done);
		run.done = 0;
		if (run.rc != 0) {
			fprintf(stderr, "%s: %s: %s\n", BSP_NAME, user_s,
			    run.rc == -2 ? "more than one user has this email; "
			    "give the user id" : run.rc == -3 ?
			    "database error" : "no such user");
			user_clear(&run.u);
			cmd_store_close();
			return (run.rc == -3 ? 2 : 1);
		}
	}
	time_iso8601(since, day, sizeof day);
	printf("# usage since %s%s%s, by %s\n", day, run.u.id != NULL ?
	    " for " : "", run.u.id != NULL ? run.u.id : "", by);
	printf("%-44s %10s %14s %14s %12s %12s %8s%s\n", by[0] == 'u' ? "USER" :
	    by[0] == 'm' ? "MODEL" : "DAY", "REQUESTS", "INPUT_TOKENS",
	    "OUTPUT_TOKENS", "CACHE_READ", "CACHE_WRITE", "ERRORS", run.cost ?
	    "       COST_USD" : "");
	{
		struct store_param p[] = { SP_INT(since), SP_TEXT(run.u.id) };

		store_run(0, st, p, nitems(p), cmd_usage_row, cmd_usage_ran,
		    &run);
	}
	store_wait(&run.done);
	if (run.rc != STORE_OK) {
		fprintf(stderr, "%s: reading usage failed: database error\n",
		    BSP_NAME);
		rc = 2;
	} else {
		printf("%-44s %10lld %14lld %14lld %12lld %12lld %8lld",
		    "TOTAL", run.t[0], run.t[1], run.t[2], run.t[3], run.t[4],
		    run.t[5]);
		if (run.cost) {
			budget_usd(run.t[6], day, sizeof day);
			printf(" %14s", day);
		}
		printf("\n");
	}
	user_clear(&run.u);
	cmd_store_close();
	return (rc);
}
