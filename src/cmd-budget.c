/*
 * cmd-budget.c: the "budget" commands: list the caps of the
 * configuration and the per-user overrides in the database, show what a
 * user has spent against each cap that applies to them (from the usage
 * table's costs: what calls cost once settled, not reservations in
 * flight), and set or clear a user's override of a user cap's limits,
 * which the daemons pick up at once (a store notification).
 */

#include <getopt.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bsp.h"
#include "store.h"

static struct store_stmt st_spent = STORE_STMT2(
    "SELECT usage.user_id, usage.api_key_id, users.groups, "
    "sum(cost_micros), sum(input_tokens + output_tokens + "
    "cache_read_tokens + cache_write_tokens) FROM usage LEFT JOIN users ON "
    "users.id = usage.user_id WHERE usage.ts >= $1 AND usage.ts < $2 AND "
    "cost_micros IS NOT NULL GROUP BY usage.user_id, usage.api_key_id, "
    "users.groups",
    "SELECT usage.user_id, usage.api_key_id, users.groups, "
    "sum(cost_micros)::bigint, sum(input_tokens + output_tokens + "
    "cache_read_tokens + cache_write_tokens)::bigint FROM usage LEFT JOIN "
    "users ON users.id = usage.user_id WHERE usage.ts >= $1::bigint AND "
    "usage.ts < $2::bigint AND cost_micros IS NOT NULL GROUP BY "
    "usage.user_id, usage.api_key_id, users.groups");
static struct store_stmt st_list = STORE_STMT("SELECT user_id, cap, "
    "limit_micros, soft_micros, updated FROM budget_overrides ORDER BY "
    "user_id, cap");
static struct store_stmt st_get = STORE_STMT("SELECT limit_micros, "
    "soft_micros FROM budget_overrides WHERE user_id = $1 AND cap = $2");
static struct store_stmt st_set = STORE_STMT("INSERT INTO budget_overrides "
    "(user_id, cap, limit_micros, soft_micros, updated) VALUES ($1, $2, $3, "
    "$4, $5) ON CONFLICT (user_id, cap) DO UPDATE SET limit_micros = "
    "excluded.limit_micros, soft_micros = excluded.soft_micros, updated = "
    "excluded.updated");
static struct store_stmt st_clear = STORE_STMT("DELETE FROM "
    "budget_overrides WHERE user_id = $1 AND cap = $2");

/* A command's waits and what the rows said. */
struct cmd_budget_run {
	volatile int	 done;
	int		 rc;
	struct user	 u;
	/* show: one cap's entity and its sums */
	int		 scope;
	const char	*entity;
	long long	 spent;
	long long	 tokens;
	long long	 limit;
	long long	 soft;
	int		 n;
	json_t		*keys;
	struct store_txn *t;
};

static int	cmd_budget_show_keys(struct cmd_budget_run *,
		    const struct budget_cap *, time_t);

static const char *const cmd_scopes[] = { "user", "group", "key", "global" };

static void
cmd_budget_end(int status, void *arg)
{
	struct cmd_budget_run	*run = arg;

	run->rc = status;
	run->done = 1;
}

static void
cmd_budget_step(struct store_txn *t, int status, void *arg)
{
	struct cmd_budget_run	*run = arg;

	run->t = t;
	run->rc = status;
	run->done = 1;
}

static int
cmd_budget_wait(struct cmd_budget_run *run)
{
	store_wait(&run->done);
	run->done = 0;
	return (run->rc);
}

static void
cmd_budget_user_cb(int rc, const struct user *u, void *arg)
{
	struct cmd_budget_run	*run = arg;

	run->rc = rc;
	if (u != NULL)
		user_copy(&run->u, u);
	run->done = 1;
}

/* Find the user named; prints why not and returns -1. */
static int
cmd_budget_user(const char *key, struct cmd_budget_run *run)
{
	user_find(key, cmd_budget_user_cb, run);
	if (cmd_budget_wait(run) != 0) {
		fprintf(stderr, "%s: %s: %s\n", BSP_NAME, key, run->rc == -2 ?
		    "more than one user has this email; give the user id" :
		    run->rc == -3 ? "database error" : "no such user");
		return (-1);
	}
	return (0);
}

static void
cmd_budget_money(long long v, int width, const char *sep)
{
	char	buf[BUDGET_USD_LEN];

	if (v < 0)
		bsp_strlcpy(buf, "-", sizeof buf);
	else
		budget_usd(v, buf, sizeof buf);
	printf("%*s%s", width, buf, sep);
}

static const char *
cmd_budget_window(const struct budget_cap *cap, char *buf, size_t len)
{
	static const char *const names[] = { "day", "week", "month" };

	if (cap->window == BUDGET_WIN_ROLLING)
		snprintf(buf, len, "%lldd", cap->days);
	else
		bsp_strlcpy(buf, names[cap->window], len);
	return (buf);
}

static void
cmd_budget_override_row(const struct store_row *r, void *arg)
{
	struct cmd_budget_run	*run = arg;
	char			 when[32];

	if (run->n++ == 0)
		printf("\n%-40s %-16s %14s %14s %s\n", "OVERRIDE USER", "CAP",
		    "LIMIT_USD", "SOFT_USD", "SET");
	cmd_cell(store_text(r, 0), 40, " ");
	cmd_cell(store_text(r, 1), 16, " ");
	cmd_budget_money(store_null(r, 2) ? -1 : store_int(r, 2), 14, " ");
	cmd_budget_money(store_null(r, 3) ? -1 : store_int(r, 3), 14, " ");
	time_iso8601((time_t)store_int(r, 4), when, sizeof when);
	printf("%s\n", when);
}

/* budget list: the caps, then the overrides. */
int
cmd_budget_list(int argc, char **argv)
{
	struct cmd_budget_run	 run;
	const struct budget_cap	*cap;
	char			*cause = NULL, win[16], *m;
	size_t			 i;

	if (argc != 1) {
		fprintf(stderr, "usage: %s budget list\n", BSP_NAME);
		return (1);
	}
	printf("# time zone %s\n", cfg->budgets_time_zone);
	printf("%-16s %-7s %-24s %-7s %14s %14s %12s\n", "CAP", "SCOPE",
	    "MATCH", "WINDOW", "LIMIT_USD", "SOFT_USD", "LIMIT_TOKENS");
	for (i = 0; i < cfg->nbudget_caps; i++) {
		cap = &cfg->budget_caps[i];
		m = cap->match.n > 0 ? strlist_join(&cap->match, ",") :
		    xstrdup("*");
		cmd_cell(cap->name, 16, " ");
		cmd_cell(cmd_scopes[cap->scope], 7, " ");
		cmd_cell(m, 24, " ");
		cmd_cell(cmd_budget_window(cap, win, sizeof win), 7, " ");
		cmd_budget_money(cap->limit, 14, " ");
		cmd_budget_money(cap->soft, 14, " ");
		if (cap->limit_tokens > 0)
			printf("%12lld\n", cap->limit_tokens);
		else
			printf("%12s\n", "-");
		free(m);
	}
	if (cmd_store_open(&cause) == -1) {
		fprintf(stderr, "%s: %s\n", BSP_NAME, cause);
		free(cause);
		return (2);
	}
	memset(&run, 0, sizeof run);
	store_run(0, &st_list, NULL, 0, cmd_budget_override_row,
	    cmd_budget_end, &run);
	cmd_budget_wait(&run);
	cmd_store_close();
	if (run.rc != STORE_OK) {
		fprintf(stderr, "%s: database error\n", BSP_NAME);
		return (2);
	}
	return (0);
}

/* A row of the sums: does it belong to the entity being shown? */
static void
cmd_budget_spent_row(const struct store_row *r, void *arg)
{
	struct cmd_budget_run	*run = arg;
	const char		*user = store_text(r, 0), *key = store_text(r, 1);
	struct strlist		 groups;
	int			 mine = 0;

	memset(&groups, 0, sizeof groups);
	switch (run->scope) {
	case BUDGET_SCOPE_USER:
		mine = user != NULL && strcmp(user, run->entity) == 0;
		break;
	case BUDGET_SCOPE_GROUP:
		strlist_from_json_text(&groups, store_text(r, 2));
		mine = strlist_contains(&groups, run->entity);
		strlist_free(&groups);
		break;
	case BUDGET_SCOPE_KEY:
		mine = key != NULL && strcmp(key, run->entity) == 0;
		break;
	default:
		mine = 1;
		break;
	}
	if (mine) {
		run->spent += store_int(r, 3);
		run->tokens += store_int(r, 4);
	}
}

static void
cmd_budget_get_row(const struct store_row *r, void *arg)
{
	struct cmd_budget_run	*run = arg;

	if (!store_null(r, 0))
		run->limit = store_int(r, 0);
	if (!store_null(r, 1))
		run->soft = store_int(r, 1);
}

/* One line of budget show: a cap, an entity, what it has spent. */
static int
cmd_budget_show_one(struct cmd_budget_run *run, const struct budget_cap *cap,
    const char *entity, time_t now)
{
	time_t	start, end;
	char	win[16], when[32];

	if (budget_window(cap, cfg->budgets_tz, now, &start, &end) == -1)
		return (0);
	run->scope = cap->scope;
	run->entity = entity;
	run->spent = run->tokens = 0;
	run->limit = cap->limit;
	run->soft = cap->soft;
	if (cap->scope == BUDGET_SCOPE_USER) {
		struct store_param p[] = { SP_TEXT(run->u.id),
		    SP_TEXT(cap->name) };

		store_run(0, &st_get, p, nitems(p), cmd_budget_get_row,
		    cmd_budget_end, run);
		if (cmd_budget_wait(run) != STORE_OK)
			return (-1);
	}
	{
		struct store_param p[] = { SP_INT(start), SP_INT(end) };

		store_run(0, &st_spent, p, nitems(p), cmd_budget_spent_row,
		    cmd_budget_end, run);
		if (cmd_budget_wait(run) != STORE_OK)
			return (-1);
	}
	cmd_cell(cap->name, 16, " ");
	cmd_cell(cmd_scopes[cap->scope], 7, " ");
	cmd_cell(entity, 30, " ");
	cmd_cell(cmd_budget_window(cap, win, sizeof win), 7, " ");
	cmd_budget_money(run->limit, 14, " ");
	cmd_budget_money(run->spent, 14, " ");
	cmd_budget_money(run->limit < 0 ? -1 : run->limit > run->spent ?
	    run->limit - run->spent : 0, 14, " ");
	cmd_budget_money(run->soft, 14, " ");
	time_iso8601(end, when, sizeof when);
	printf("%s\n", when);
	return (0);
}

static void
cmd_budget_keys_cb(int rc, json_t *keys, void *arg)
{
	struct cmd_budget_run	*run = arg;

	run->rc = rc;
	run->keys = keys;
	run->done = 1;
}

/* budget show USER: each cap that applies and what is spent. */
int
cmd_budget_show(int argc, char **argv)
{
	struct cmd_budget_run	 run;
	const struct budget_cap	*cap;
	char			*cause = NULL;
	time_t			 now = now_wall();
	size_t			 i, j;
	int			 rc = 0;

	if (argc != 2) {
		fprintf(stderr, "usage: %s budget show USER\n", BSP_NAME);
		return (1);
	}
	if (cmd_store_open(&cause) == -1) {
		fprintf(stderr, "%s: %s\n", BSP_NAME, cause);
		free(cause);
		return (2);
	}
	memset(&run, 0, sizeof run);
	if (cmd_budget_user(argv[1], &run) == -1) {
		user_clear(&run.u);
		cmd_store_close();
		return (1);
	}
	printf("# budgets of %s (settled costs in the usage table; time zone "
	    "%s)\n", run.u.id, cfg->budgets_time_zone);
	printf("%-16s %-7s %-30s %-7s %14s %14s %14s %14s %s\n", "CAP",
	    "SCOPE", "ENTITY", "WINDOW", "LIMIT_USD", "SPENT_USD",
	    "REMAINING_USD", "SOFT_USD", "RESETS_AT");
	for (i = 0; i < cfg->nbudget_caps && rc == 0; i++) {
		cap = &cfg->budget_caps[i];
		switch (cap->scope) {
		case BUDGET_SCOPE_USER:
			if (cap->match.n > 0) {
				for (j = 0; j < cap->match.n; j++) {
					if ((run.u.email != NULL && glob_match(
					    cap->match.v[j], run.u.email)) ||
					    glob_match(cap->match.v[j],
					    run.u.id))
						break;
				}
				if (j == cap->match.n)
					break;
			}
			rc = cmd_budget_show_one(&run, cap, run.u.id, now);
			break;
		case BUDGET_SCOPE_GROUP:
			for (j = 0; j < run.u.groups.n && rc == 0; j++) {
				size_t	k;

				for (k = 0; k < cap->match.n; k++) {
					if (glob_match(cap->match.v[k],
					    run.u.groups.v[j]))
						break;
				}
				if (cap->match.n > 0 && k == cap->match.n)
					continue;
				rc = cmd_budget_show_one(&run, cap,
				    run.u.groups.v[j], now);
			}
			break;
		case BUDGET_SCOPE_KEY:
			rc = cmd_budget_show_keys(&run, cap, now);
			break;
		default:
			rc = cmd_budget_show_one(&run, cap, "*", now);
			break;
		}
	}
	if (rc != 0) {
		fprintf(stderr, "%s: database error\n", BSP_NAME);
		rc = 2;
	}
	user_clear(&run.u);
	cmd_store_close();
	return (rc);
}

/* A key cap: a line for each of the user's keys it matches. */
static int
cmd_budget_show_keys(struct cmd_budget_run *run, const struct budget_cap *cap,
    time_t now)
{
	json_t		*keys, *k;
	const char	*id;
	size_t		 i, j;
	int		 rc = 0;

	apikey_list(run->u.id, cmd_budget_keys_cb, run);
	if (cmd_budget_wait(run) != 0)
		return (-1);
	keys = run->keys;
	run->keys = NULL;
	json_array_foreach(keys, i, k) {
		if ((id = json_string_value(json_object_get(k, "id"))) ==
		    NULL)
			continue;
		for (j = 0; j < cap->match.n; j++) {
			if (glob_match(cap->match.v[j], id))
				break;
		}
		if (cap->match.n > 0 && j == cap->match.n)
			continue;
		if ((rc = cmd_budget_show_one(run, cap, id, now)) != 0)
			break;
	}
	json_decref(keys);
	return (rc);
}

/* budget set USER CAP [--limit USD] [--soft USD] | --clear */
int
cmd_budget_set(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "limit", required_argument, NULL, 'l' },
		{ "soft", required_argument, NULL, 's' },
		{ "clear", no_argument, NULL, 'c' },
		{ NULL, 0, NULL, 0 },
	};
	struct cmd_budget_run	 run;
	const struct budget_cap	*cap = NULL;
	const char		*ls = NULL, *ss = NULL;
	struct passwd		*pw;
	char			*cause = NULL, actor[96];
	long long		 limit = -1, soft = -1;
	int			 ch, clear = 0, rc = 0;
	size_t			 i;

	optind = 0;
	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (ch) {
		case 'l':
			ls = optarg;
			break;
		case 's':
			ss = optarg;
			break;
		case 'c':
			clear = 1;
			break;
		default:
			goto usage;
		}
	}
	if (argc - optind != 2 || (clear && (ls != NULL || ss != NULL)) ||
	    (!clear && ls == NULL && ss == NULL))
		goto usage;
	if ((ls != NULL && budget_parse_usd(ls, &limit) == -1) ||
	    (ss != NULL && budget_parse_usd(ss, &soft) == -1)) {
		fprintf(stderr, "%s: an amount is dollars: digits, a point and "
		    "up to 6 decimals\n", BSP_NAME);
		return (1);
	}
	for (i = 0; i < cfg->nbudget_caps; i++) {
		if (strcmp(cfg->budget_caps[i].name, argv[optind + 1]) == 0)
			cap = &cfg->budget_caps[i];
	}
	if (cap == NULL || cap->scope != BUDGET_SCOPE_USER) {
		fprintf(stderr, "%s: %s: %s\n", BSP_NAME, argv[optind + 1],
		    cap == NULL ? "no such cap in budgets.caps" :
		    "only a cap of scope user is set per user");
		return (1);
	}
	if (limit >= 0 && soft > limit) {
		fprintf(stderr, "%s: --soft is above --limit\n", BSP_NAME);
		return (1);
	}
	if (cmd_store_open(&cause) == -1) {
		fprintf(stderr, "%s: %s\n", BSP_NAME, cause);
		free(cause);
		return (2);
	}
	memset(&run, 0, sizeof run);
	if (cmd_budget_user(argv[optind], &run) == -1) {
		user_clear(&run.u);
		cmd_store_close();
		return (1);
	}
	store_begin(STORE_WRITE, cmd_budget_step, &run);
	if (cmd_budget_wait(&run) != STORE_OK)
		goto fail;
	if (clear) {
		struct store_param p[] = { SP_TEXT(run.u.id),
		    SP_TEXT(cap->name) };

		store_exec(run.t, &st_clear, p, nitems(p), NULL,
		    cmd_budget_step, &run);
	} else {
		struct store_param p[] = { SP_TEXT(run.u.id),
		    SP_TEXT(cap->name), SP_NULL, SP_NULL, SP_INT(now_wall()) };

		if (limit >= 0)
			p[2] = (struct store_param)SP_INT(limit);
		if (soft >= 0)
			p[3] = (struct store_param)SP_INT(soft);
		store_exec(run.t, &st_set, p, nitems(p), NULL,
		    cmd_budget_step, &run);
	}
	if (cmd_budget_wait(&run) != STORE_OK) {
		store_rollback(run.t);
		goto fail;
	}
	pw = getpwuid(getuid());
	snprintf(actor, sizeof actor, "cli:%s", pw != NULL ? pw->pw_name :
	    "unknown");
	audit_event(run.t, clear ? "budget_override_cleared" :
	    "budget_override_set", run.u.id, actor, NULL, clear ?
	    json_pack("{s:s}", "cap", cap->name) : json_pack("{s:s, s:o, s:o}",
	    "cap", cap->name, "limit_micros", limit >= 0 ? json_integer(limit) :
	    json_null(), "soft_micros", soft >= 0 ? json_integer(soft) :
	    json_null()), cmd_budget_step, &run);
	if (cmd_budget_wait(&run) != STORE_OK) {
		store_rollback(run.t);
		goto fail;
	}
	store_notify(run.t, "budgets");
	store_commit(run.t, cmd_budget_end, &run);
	if (cmd_budget_wait(&run) != STORE_OK)
		goto fail;
	if (clear)
		printf("cleared the override of %s for %s\n", cap->name,
		    run.u.id);
	else
		printf("%s for %s: limit %s, soft %s (dollars)\n", cap->name,
		    run.u.id, ls != NULL ? ls : "the cap's",
		    ss != NULL ? ss : "the cap's");
	goto out;
fail:
	fprintf(stderr, "%s: database error\n", BSP_NAME);
	rc = 2;
out:
	user_clear(&run.u);
	cmd_store_close();
	return (rc);
usage:
	fprintf(stderr, "usage: %s budget set USER CAP [--limit USD] "
	    "[--soft USD] | --clear\n", BSP_NAME);
	return (1);
}
