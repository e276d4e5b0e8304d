/*
 * budget.c: what calls cost and the caps on it.
 *
 * Prices: models.prices (globs on the resolved Bedrock id, first match
 * wins), then the built-in table below, in micro-dollars per million
 * tokens. A call's cost is the sum of its tokens times their prices, in
 * integers, rounded up once to the micro-dollar; sums saturate instead of
 * overflowing.
 *
 * Caps (budgets.caps): each applies to every user, group, API key (each
 * its own ledger) or to everyone together, over a window: a day, week
 * (from Monday) or month of budgets.time_zone's calendar (tz.c), or a
 * rolling number of days, counted in 25 slices of N hours (so the window
 * reaches back between N days and N days and N hours).
 *
 * Before a call goes upstream (budget_admit) its worst case is reserved
 * against every cap that applies: input tokens of its body's size (bytes
 * over budgets.input_bytes_per_token) at the dearest input price (a cache
 * write), and its max_tokens (else budgets.default_max_tokens) of output.
 * A cap whose spent and reserved amount plus that worst case is over its
 * limit refuses the call. When the call ends (answered, failed, or its
 * client gone) the reservation is settled with the real cost
 * (budget_settle): concurrent calls cannot together go past a cap by more
 * than the amount by which one call's real cost exceeds its worst case.
 *
 * The ledgers are counters (counters.c) in windows this file chooses: with
 * PostgreSQL they are shared by the daemons on the database (each daemon
 * sees the others' reservations and costs within two sync periods) and
 * kept there across restarts; with SQLite they are in memory, rebuilt from
 * the usage table's costs when the daemon starts.
 *
 * The caller's day (cost and tokens by kind, for GET /auth/me) is kept in
 * memory, rebuilt from the usage table on start.
 */

#include <ctype.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uthash.h>

#include "bsp.h"
#include "crypto.h"
#include "store.h"

#define BUDGET_MICROS		1000000LL
#define BUDGET_SLICES		25	/* of a rolling window */
#define BUDGET_GROUPS_MAX	16	/* ledgers of one group cap a call */
#define BUDGET_LEDGERS_MAX	128	/* ledgers one call may touch */
#define BUDGET_ENTITY_MAX	256
#define BUDGET_KEY_MAX		(BUDGET_ENTITY_MAX + 80)
#define BUDGET_BIG_SLICE	(1LL << 40)	/* one slice: the whole window */

struct builtin_price {
	const char	*glob;
	struct price	 p;
};

/*
 * Anthropic's list prices per million tokens, which Bedrock's on-demand
 * prices of these models equal (global cross-region inference; the
 * regional profiles of the 4.5 models and later cost 10% more, and
 * prompts over 200K tokens cost more on Sonnet 4 and 4.5: set
 * models.prices for those), from the models' pages on
 * platform.claude.com as read on 2026-12-07. Claude Opus 4.7 had no page
 * there: it is priced as Opus 4.6 and 4.8 are. In micro-dollars: input,
 * output, cache read, 5-minute and 1-hour cache writes (1.25 and 2 times
 * input; reads a tenth). First match wins.
 */
#define P_HAIKU3	{ 250000, 1250000, 30000, 300000, 500000 }
#define P_HAIKU35	{ 800000, 4000000, 80000, 1000000, 1600000 }
#define P_HAIKU45	{ 1000000, 5000000, 100000, 1250000, 2000000 }
#define P_SONNET	{ 3000000, 15000000, 300000, 3750000, 6000000 }
#define P_SONNET5	{ 2000000, 10000000, 200000, 2500000, 4000000 }
#define P_OPUS4		{ 15000000, 75000000, 1500000, 18750000, 30000000 }
#define P_OPUS45	{ 5000000, 25000000, 500000, 6250000, 10000000 }
#define P_OPUS55	{ 4000000, 20000000, 400000, 5000000, 8000000 }
static const struct builtin_price builtin_prices[] = {
	{ "*anthropic.claude-3-haiku-*", P_HAIKU3 },
	{ "*anthropic.claude-3-5-haiku-*", P_HAIKU35 },
	{ "*anthropic.claude-haiku-4-5*", P_HAIKU45 },
	{ "*anthropic.claude-3-7-sonnet-*", P_SONNET },
	{ "*anthropic.claude-sonnet-4-2*", P_SONNET },		/* 4 */
	{ "*anthropic.claude-sonnet-4-5*", P_SONNET },
	{ "*anthropic.claude-sonnet-4-6*", P_SONNET },
	{ "*anthropic.claude-sonnet-5*", P_SONNET5 },
	{ "*anthropic.claude-opus-4-2*", P_OPUS4 },		/* 4 */
	{ "*anthropic.claude-opus-4-1*", P_OPUS4 },
	{ "*anthropic.claude-opus-4-5*", P_OPUS45 },
	{ "*anthropic.claude-opus-4-6*", P_OPUS45 },
	{ "*anthropic.claude-opus-4-7*", P_OPUS45 },
	{ "*anthropic.claude-opus-4-8*", P_OPUS45 },
	{ "*anthropic.claude-opus-5-5*", P_OPUS55 },
	{ "*anthropic.claude-opus-5*", P_OPUS45 },
};

/* A ledger a call reserved in: a counter key, its window. */
struct budget_ledger {
	char		 key[BUDGET_KEY_MAX];
	long long	 period;
	long long	 window;
};

struct budget_hold {
	struct budget_ledger	*v;		/* n of them */
	size_t			 n;
	long long		 worst;		/* micro-dollars */
	long long		 worst_tokens;
};

/* A per-user override of a user cap's limits (budget set). */
struct budget_override {
	char		*id;		/* "cap\tuser" */
	long long	 limit;		/* -1: the cap's */
	long long	 soft;
	UT_hash_handle	 hh;
};

/* A user's day, for GET /auth/me. */
struct budget_day {
	char		*user;
	long long	 start;
	long long	 requests;
	long long	 t[5];		/* input, output, cache read, writes, 1h */
	long long	 cost;
	UT_hash_handle	 hh;
};

/* A soft threshold already logged, in its window. */
struct budget_warned {
	char		*id;
	long long	 until;
	UT_hash_handle	 hh;
};

/* A cap as it applies to one caller: its ledger, window and state. */
struct budget_app {
	const struct budget_cap	*cap;
	char			 entity[BUDGET_ENTITY_MAX];
	long long		 limit, soft;
	time_t			 start, end;
	long long		 spent;		/* with reservations */
	long long		 tokens;
	long long		 mine;		/* reserved here */
};

static struct {
	struct budget_override	*overrides;
	struct budget_day	*days;
	struct budget_warned	*warned;
	int			 loaded;
	int			 loading;
	struct store_load	 load;
	struct metric		*m_spend_model;
	struct metric		*m_spend_user;
	struct metric		*m_spend_group;
	struct metric		*m_refusals;
	struct metric		*m_reserved;
	long long		 reserved_here;	/* micro-dollars */
	/* reservations of this daemon: cap ledger key -> amount */
	struct budget_mine {
		char		*id;
		long long	 amount;
		UT_hash_handle	 hh;
	}			*mine;
} bg;

/*
 * SQLite numbers $N parameters in the order they first appear: $1 (the
 * slice) comes first in the text.
 */
static struct store_stmt st_rebuild = STORE_STMT2(
    "SELECT usage.user_id, usage.api_key_id, users.email, users.groups, "
    "usage.ts / $1, sum(cost_micros), sum(input_tokens + output_tokens + "
    "cache_read_tokens + cache_write_tokens) FROM usage LEFT JOIN users ON "
    "users.id = usage.user_id WHERE usage.ts >= $2 AND cost_micros IS NOT "
    "NULL GROUP BY usage.user_id, usage.api_key_id, users.email, "
    "users.groups, usage.ts / $1",
    "SELECT usage.user_id, usage.api_key_id, users.email, users.groups, "
    "usage.ts / $1::bigint, sum(cost_micros)::bigint, sum(input_tokens + "
    "output_tokens + cache_read_tokens + cache_write_tokens)::bigint FROM "
    "usage LEFT JOIN users ON users.id = usage.user_id WHERE usage.ts >= "
    "$2::bigint AND cost_micros IS NOT NULL GROUP BY usage.user_id, "
    "usage.api_key_id, users.email, users.groups, usage.ts / $1::bigint");
static struct store_stmt st_day = STORE_STMT2(
    "SELECT user_id, count(*), sum(input_tokens), sum(output_tokens), "
    "sum(cache_read_tokens), sum(cache_write_tokens), "
    "sum(cache_write_1h_tokens), sum(coalesce(cost_micros, 0)) FROM usage "
    "WHERE ts >= $1 AND user_id IS NOT NULL GROUP BY user_id",
    "SELECT user_id, count(*), sum(input_tokens)::bigint, "
    "sum(output_tokens)::bigint, sum(cache_read_tokens)::bigint, "
    "sum(cache_write_tokens)::bigint, sum(cache_write_1h_tokens)::bigint, "
    "sum(coalesce(cost_micros, 0))::bigint FROM usage WHERE ts >= "
    "$1::bigint AND user_id IS NOT NULL GROUP BY user_id");
static struct store_stmt st_overrides = STORE_STMT("SELECT cap, user_id, "
    "limit_micros, soft_micros FROM budget_overrides");

static void	budget_load_run(struct store_load *);

/* a + b and a * b, saturating at LLONG_MAX (both are >= 0). */
static long long
add_sat(long long a, long long b)
{
	long long	r;

	if (__builtin_add_overflow(a, b, &r))
		return (LLONG_MAX);
	return (r);
}

static long long
mul_sat(long long a, long long b)
{
	long long	r;

	if (__builtin_mul_overflow(a, b, &r))
		return (LLONG_MAX);
	return (r);
}

static long long
nonneg(long long v)
{
	return (v > 0 ? v : 0);
}

/*
 * "12", "0.5", "3.000001" dollars into micro-dollars, exactly: at most
 * 12 digits before the point and 6 after; -1 for anything else.
 */
int
budget_parse_usd(const char *s, long long *out)
{
	long long	 whole = 0, frac = 0;
	int		 nw = 0, nf = 0;

	if (s == NULL)
		return (-1);
	if (*s == '$')
		s++;
	while (isdigit((unsigned char)*s)) {
		if (++nw > 12)
			return (-1);
		whole = whole * 10 + (*s++ - '0');
	}
	if (*s == '.') {
		s++;
		while (isdigit((unsigned char)*s)) {
			if (++nf > 6)
				return (-1);
			frac = frac * 10 + (*s++ - '0');
		}
		if (nf == 0)
			return (-1);
	}
	if (*s != '\0' || nw == 0)
		return (-1);
	while (nf++ < 6)
		frac *= 10;
	*out = whole * BUDGET_MICROS + frac;
	return (0);
}

/* Micro-dollars as dollars with six decimals: "0.012345". */
void
budget_usd(long long v, char *buf, size_t len)
{
	unsigned long long	a;

	a = v < 0 ? (unsigned long long)-(v + 1) + 1 : (unsigned long long)v;
	snprintf(buf, len, "%s%llu.%06llu", v < 0 ? "-" : "",
	    a / BUDGET_MICROS, a % BUDGET_MICROS);
}

/* The price of a Bedrock model id: 1 if known, 0 if not. */
int
budget_price(const struct config *c, const char *model, struct price *p)
{
	size_t	i;

	if (model == NULL)
		return (0);
	for (i = 0; i < c->nmodel_prices; i++) {
		if (c->model_prices[i].model != NULL &&
		    glob_match(c->model_prices[i].model, model)) {
			*p = c->model_prices[i].p;
			return (1);
		}
	}
	if (!c->models_builtin_prices)
		return (0);
	for (i = 0; i < nitems(builtin_prices); i++) {
		if (glob_match(builtin_prices[i].glob, model)) {
			*p = builtin_prices[i].p;
			return (1);
		}
	}
	return (0);
}

/*
 * What the tokens cost at p, in micro-dollars rounded up: the products
 * summed first (micro-dollars times tokens per million), divided once.
 */
long long
budget_cost(const struct price *p, const struct budget_tokens *t)
{
	long long	 sum = 0, cw1h, cw5;

	cw1h = nonneg(t->cache_write_1h);
	cw5 = nonneg(t->cache_write) - cw1h;
	if (cw5 < 0)
		cw5 = 0;
	sum = add_sat(sum, mul_sat(nonneg(t->input), p->input));
	sum = add_sat(sum, mul_sat(nonneg(t->output), p->output));
	sum = add_sat(sum, mul_sat(nonneg(t->cache_read), p->cache_read));
	sum = add_sat(sum, mul_sat(cw5, p->cache_write));
	sum = add_sat(sum, mul_sat(cw1h, p->cache_write_1h));
	if (sum == LLONG_MAX)
		return (LLONG_MAX / BUDGET_MICROS);
	return (sum / BUDGET_MICROS + (sum % BUDGET_MICROS != 0));
}

/* Local midnight of a day count on the zone's calendar, as an instant. */
static time_t
budget_midnight(const struct tz *z, long long days)
{
	return ((time_t)tz_local_to_utc(z, (int64_t)days * 86400));
}

/*
 * The window of cap that holds now: [*start, *end). A rolling window
 * starts at its oldest slice. 0, or -1 if the cap's window is unknown.
 */
int
budget_window(const struct budget_cap *cap, const struct tz *z, time_t now,
    time_t *start, time_t *end)
{
	long long	 days, y, slice, k;
	int		 m, d;

	if (cap->window == BUDGET_WIN_ROLLING) {
		slice = cap->days * 3600;
		k = tz_floor_div((long long)now, slice);
		*start = (time_t)((k - (BUDGET_SLICES - 1)) * slice);
		*end = (time_t)((k + 1) * slice);
		return (0);
	}
	days = tz_floor_div((long long)now + tz_offset(z, now), 86400);
	switch (cap->window) {
	case BUDGET_WIN_DAY:
		*start = budget_midnight(z, days);
		*end = budget_midnight(z, days + 1);
		break;
	case BUDGET_WIN_WEEK:
		days -= (tz_weekday(days) + 6) % 7;	/* back to Monday */
		*start = budget_midnight(z, days);
		*end = budget_midnight(z, days + 7);
		break;
	case BUDGET_WIN_MONTH:
		tz_civil_from_days(days, &y, &m, &d);
		*start = budget_midnight(z, tz_days_from_civil(y, m, 1));
		*end = budget_midnight(z, m == 12 ?
		    tz_days_from_civil(y + 1, 1, 1) :
		    tz_days_from_civil(y, m + 1, 1));
		break;
	default:
		return (-1);
	}
	/* A midnight the clocks skipped and the next: never empty. */
	if (*end <= *start)
		*end = *start + 1;
	if (now < *start)
		*start = now;
	return (0);
}

static const char *
budget_window_name(const struct budget_cap *cap, char *buf, size_t len)
{
	static const char *const names[] = { "day", "week", "month" };

	if (cap->window == BUDGET_WIN_ROLLING)
		snprintf(buf, len, "%lldd", cap->days);
	else
		bsp_strlcpy(buf, names[cap->window], len);
	return (buf);
}

static const char *
budget_scope_name(int scope)
{
	static const char *const names[] = { "user", "group", "key",
	    "global" };

	return (scope >= 0 && scope < 4 ? names[scope] : "?");
}

/*
 * The max_tokens a request body asks for (Anthropic's max_tokens,
 * Converse's inferenceConfig.maxTokens, OpenAI's max_tokens,
 * max_completion_tokens or max_output_tokens), or -1 if it names none.
 */
long long
budget_max_tokens(const uint8_t *body, size_t len)
{
	static const char *const names[] = { "max_tokens",
	    "max_completion_tokens", "max_output_tokens" };
	const char	*t = (const char *)body, *v;
	size_t		 i, vlen;
	long long	 n;

	if (body == NULL || len == 0)
		return (-1);
	for (i = 0; i < nitems(names); i++) {
		if (json_member(t, len, names[i], &v, &vlen) == 1 &&
		    (n = json_uint(v, vlen)) >= 0)
			return (n);
	}
	if (json_member(t, len, "inferenceConfig", &v, &vlen) == 1 &&
	    v[0] == '{' && json_member(v, vlen, "maxTokens", &v, &vlen) == 1 &&
	    (n = json_uint(v, vlen)) >= 0)
		return (n);
	return (-1);
}

static int
budget_glob_any(const struct strlist *l, const char *a, const char *b)
{
	size_t	i;

	if (l->n == 0)
		return (1);
	for (i = 0; i < l->n; i++) {
		if ((a != NULL && glob_match(l->v[i], a)) ||
		    (b != NULL && glob_match(l->v[i], b)))
			return (1);
	}
	return (0);
}

/*
 * The name of an entity in its ledger: as it is, or, when it is too long
 * to keep (a subject an IdP made long), its hash: never left uncapped.
 */
static const char *
budget_entity(const char *in, char out[BUDGET_ENTITY_MAX])
{
	uint8_t	h[CRYPTO_HASH_LEN];

	if (strlen(in) < BUDGET_ENTITY_MAX)
		return (in);
	crypto_hash_token(in, h);
	out[0] = '#';
	crypto_b64url_encode(h, sizeof h, out + 1, BUDGET_ENTITY_MAX - 1);
	return (out);
}

/* The ledger key of a cap's entity: "b/CAP/ENTITY". */
static void
budget_key(const struct budget_cap *cap, const char *entity, char *buf,
    size_t len)
{
	snprintf(buf, len, "b/%s/%s", cap->name, entity);
}

/* The limits of a user cap for this user: an override, or the cap's. */
static void
budget_limits(const struct budget_cap *cap, const char *entity,
    long long *limit, long long *soft)
{
	struct budget_override	*o = NULL;
	char			*id;

	*limit = cap->limit;
	*soft = cap->soft;
	if (cap->scope != BUDGET_SCOPE_USER || bg.overrides == NULL)
		return;
	xasprintf(&id, "%s\t%s", cap->name, entity);
	HASH_FIND_STR(bg.overrides, id, o);
	free(id);
	if (o == NULL)
		return;
	if (o->limit >= 0)
		*limit = o->limit;
	if (o->soft >= 0)
		*soft = o->soft;
}

/*
 * The counters' key, period and window of each slice of a cap's window at
 * now: calendar windows are one slice.
 */
static size_t
budget_slices(const struct budget_cap *cap, time_t start, time_t end,
    long long *period, long long win[BUDGET_SLICES])
{
	long long	 slice;
	size_t		 i;

	if (cap->window != BUDGET_WIN_ROLLING) {
		*period = (long long)(end - start);
		win[0] = (long long)start;
		return (1);
	}
	slice = cap->days * 3600;
	*period = slice * BUDGET_SLICES;
	for (i = 0; i < BUDGET_SLICES; i++)
		win[i] = (long long)start + (long long)i * slice;
	return (BUDGET_SLICES);
}

/* Read one app's spent amount and tokens (with reservations). */
static void
budget_read(struct budget_app *a)
{
	char			 key[BUDGET_KEY_MAX], id[BUDGET_KEY_MAX + 32];
	long long		 period, win[BUDGET_SLICES], x, y;
	struct budget_mine	*m;
	size_t			 i, n;

	budget_key(a->cap, a->entity, key, sizeof key);
	n = budget_slices(a->cap, a->start, a->end, &period, win);
	a->spent = a->tokens = a->mine = 0;
	for (i = 0; i < n; i++) {
		counters_get_at(key, period, win[i], &x, &y);
		a->spent = add_sat(a->spent, nonneg(x));
		a->tokens = add_sat(a->tokens, nonneg(y));
		snprintf(id, sizeof id, "%s@%lld", key, win[i]);
		HASH_FIND_STR(bg.mine, id, m);
		if (m != NULL)
			a->mine += m->amount;
	}
}

/* Add one entity's app to the list, if there is room. */
static void
budget_app_add(struct budget_app *v, size_t *n, size_t max,
    const struct budget_cap *cap, const char *entity, time_t now)
{
	struct budget_app	*a;
	char			 hashed[BUDGET_ENTITY_MAX];

	if (*n >= max) {
		(*n)++;		/* more than fit: the caller refuses */
		return;
	}
	a = &v[(*n)++];
	memset(a, 0, sizeof *a);
	a->cap = cap;
	bsp_strlcpy(a->entity, budget_entity(entity, hashed),
	    sizeof a->entity);
	budget_limits(cap, entity, &a->limit, &a->soft);
	if (budget_window(cap, cfg->budgets_tz, now, &a->start, &a->end) == -1)
		(*n)--;
	else
		budget_read(a);
}

/* The caps that apply to a principal, read at now; how many. */
static size_t
budget_apps(const struct config *c, const struct principal *p, time_t now,
    struct budget_app *v, size_t max)
{
	const struct budget_cap	*cap;
	size_t			 i, j, n = 0, ng;

	for (i = 0; i < c->nbudget_caps; i++) {
		cap = &c->budget_caps[i];
		switch (cap->scope) {
		case BUDGET_SCOPE_USER:
			if (p->sub != NULL &&
			    budget_glob_any(&cap->match, p->email, p->sub))
				budget_app_add(v, &n, max, cap, p->sub, now);
			break;
		case BUDGET_SCOPE_GROUP:
			for (j = 0, ng = 0; j < p->groups.n &&
			    ng < BUDGET_GROUPS_MAX; j++) {
				if (!budget_glob_any(&cap->match,
				    p->groups.v[j], NULL))
					continue;
				budget_app_add(v, &n, max, cap, p->groups.v[j],
				    now);
				ng++;
			}
			break;
		case BUDGET_SCOPE_KEY:
			if (p->key_id != NULL &&
			    budget_glob_any(&cap->match, p->key_id, NULL))
				budget_app_add(v, &n, max, cap, p->key_id,
				    now);
			break;
		case BUDGET_SCOPE_GLOBAL:
			budget_app_add(v, &n, max, cap, "*", now);
			break;
		}
	}
	return (n);
}

/* This daemon's reservation in a ledger slice, up or down. */
static void
budget_mine_add(const char *key, long long window, long long amount)
{
	struct budget_mine	*m;
	char			 id[BUDGET_KEY_MAX + 32];

	snprintf(id, sizeof id, "%s@%lld", key, window);
	HASH_FIND_STR(bg.mine, id, m);
	if (m == NULL) {
		if (amount == 0)
			return;
		m = xcalloc(1, sizeof *m);
		m->id = xstrdup(id);
		HASH_ADD_KEYPTR(hh, bg.mine, m->id, strlen(m->id), m);
	}
	m->amount += amount;
	if (m->amount == 0) {
		HASH_DEL(bg.mine, m);
		free(m->id);
		free(m);
	}
}

/* What this daemon has reserved for calls under way: the gauge. */
static void
budget_reserved(long long delta)
{
	bg.reserved_here += delta;
	if (bg.m_reserved != NULL)
		metric_set(bg.m_reserved, NULL, (double)bg.reserved_here /
		    (double)BUDGET_MICROS);
}

/* Log a soft threshold passed, once per ledger and window. */
static void
budget_warn_once(const struct budget_app *a, const struct principal *p)
{
	struct budget_warned	*w;
	char			 id[BUDGET_KEY_MAX + 32], spent[BUDGET_USD_LEN];
	char			 soft[BUDGET_USD_LEN], win[16];

	snprintf(id, sizeof id, "%s/%s@%lld", a->cap->name, a->entity,
	    (long long)a->start);
	HASH_FIND_STR(bg.warned, id, w);
	if (w != NULL)
		return;
	w = xcalloc(1, sizeof *w);
	w->id = xstrdup(id);
	w->until = (long long)a->end;
	HASH_ADD_KEYPTR(hh, bg.warned, w->id, strlen(w->id), w);
	budget_usd(a->spent, spent, sizeof spent);
	budget_usd(a->soft, soft, sizeof soft);
	{
		struct log_field f[] = {
			LFS("event", "budget.soft_threshold"),
			LFS("cap", a->cap->name),
			LFS("scope", budget_scope_name(a->cap->scope)),
			LFS("entity", a->entity),
			LFS("user", p->sub),
			LFS("window", budget_window_name(a->cap, win,
			    sizeof win)),
			LFS("spent_usd", spent),
			LFS("soft_usd", soft),
		};

		log_fields(LOG_LVL_WARN, "budget soft threshold passed", f,
		    nitems(f));
	}
}

/* The refusal of a call of worst case w by the cap of a. */
static void
budget_refuse(const struct budget_app *a, long long w,
    struct budget_refusal *why)
{
	char	lim[BUDGET_USD_LEN], spent[BUDGET_USD_LEN];
	char	worst[BUDGET_USD_LEN], res[32], wname[16], labels[256];

	why->code = 429;
	why->billing = 1;
	why->cap = a->cap->name;
	why->resets = a->end;
	time_iso8601(a->end, res, sizeof res);
	budget_usd(a->limit, lim, sizeof lim);
	budget_usd(a->spent, spent, sizeof spent);
	budget_usd(w, worst, sizeof worst);
	budget_window_name(a->cap, wname, sizeof wname);
	if (a->limit >= 0 && add_sat(a->spent, w) > a->limit)
		snprintf(why->msg, sizeof why->msg, "budget \"%s\" (%s %s, per "
		    "%s) exhausted: $%s of $%s spent or reserved, and this "
		    "request may cost up to $%s; it resets at %s", a->cap->name,
		    budget_scope_name(a->cap->scope), a->entity, wname, spent,
		    lim, worst, res);
	else
		snprintf(why->msg, sizeof why->msg, "budget \"%s\" (%s %s) "
		    "token cap exhausted: %lld of %lld tokens spent or reserved; "
		    "it resets at %s", a->cap->name, budget_scope_name(
		    a->cap->scope), a->entity, a->tokens, a->cap->limit_tokens,
		    res);
	if (bg.m_refusals != NULL) {
		metric_label(labels, sizeof labels, "cap", a->cap->name,
		    "scope", budget_scope_name(a->cap->scope), NULL);
		metric_add(bg.m_refusals, labels, 1);
	}
}

/*
 * Admit a call of model with body (body_len bytes; the output tokens it
 * asks for are read from it only when a cap applies) at now, or refuse
 * it. Admitted: 0, *hold the reservation (NULL when no cap applies) and
 * *note what the headers say. Refused: -1 and *why.
 */
int
budget_admit(const struct config *c, const struct principal *p,
    const char *model, const uint8_t *body, size_t body_len, time_t now,
    struct budget_hold **hold, struct budget_note *note,
    struct budget_refusal *why)
{
	struct budget_app	 v[BUDGET_LEDGERS_MAX], *a, *tight = NULL;
	struct budget_hold	*h;
	struct price		 pr;
	struct budget_tokens	 t;
	char			 key[BUDGET_KEY_MAX];
	long long		 period, win[BUDGET_SLICES], left, best = 0;
	long long		 in_price, max_out;
	size_t			 i, n, k;

	*hold = NULL;
	memset(note, 0, sizeof *note);
	memset(why, 0, sizeof *why);
	if (c->nbudget_caps == 0 || p == NULL)
		return (0);
	if ((n = budget_apps(c, p, now, v, nitems(v))) == 0)
		return (0);
	if (n > nitems(v)) {
		/* Fail closed: a cap left out could be passed. */
		why->code = 503;
		snprintf(why->msg, sizeof why->msg, "%zu budget ledgers apply "
		    "to this caller, more than the %zu a call may check; the "
		    "budgets need fewer caps or narrower matches", n,
		    nitems(v));
		log_warnx("budgets: %zu ledgers apply to %s, more than %zu; "
		    "calls refused", n, p->sub != NULL ? p->sub : "?",
		    nitems(v));
		return (-1);
	}
	if (!bg.loaded && !counters_shared()) {
		why->code = 503;
		snprintf(why->msg, sizeof why->msg, "the budgets are being "
		    "loaded from the database; try again shortly");
		return (-1);
	}
	if (!budget_price(c, model, &pr)) {
		if (c->budgets_unknown_model == 0) {
			why->code = 400;
			snprintf(why->msg, sizeof why->msg, "no price is known "
			    "for model %.200s and a budget applies "
			    "(budgets.unknown_model: refuse)", model);
			return (-1);
		}
		pr = c->budgets_default_price;
	}
	/* The worst case: every input token at the dearest input price. */
	in_price = pr.input;
	if (pr.cache_write > in_price)
		in_price = pr.cache_write;
	if (pr.cache_write_1h > in_price)
		in_price = pr.cache_write_1h;
	max_out = budget_max_tokens(body, body_len);
	memset(&t, 0, sizeof t);
	t.input = (long long)(body_len / (size_t)c->budgets_bytes_per_token) +
	    (body_len % (size_t)c->budgets_bytes_per_token != 0);
	t.output = max_out >= 0 ? max_out : c->budgets_default_max_tokens;
	pr.input = in_price;
	h = xcalloc(1, sizeof *h);
	h->v = xcalloc(n, sizeof *h->v);
	h->worst = budget_cost(&pr, &t);
	h->worst_tokens = add_sat(t.input, t.output);

	/* Of the caps this call would break, the one with least left. */
	for (i = 0; i < n; i++) {
		a = &v[i];
		if ((a->limit >= 0 && add_sat(a->spent, h->worst) > a->limit) ||
		    (a->cap->limit_tokens > 0 && add_sat(a->tokens,
		    h->worst_tokens) > a->cap->limit_tokens)) {
			left = a->limit >= 0 && add_sat(a->spent, h->worst) >
			    a->limit ? a->limit - a->spent : LLONG_MIN;
			if (tight == NULL || left < best) {
				tight = a;
				best = left;
			}
		}
	}
	if (tight != NULL) {
		budget_refuse(tight, h->worst, why);
		free(h->v);
		free(h);
		return (-1);
	}
	/* Admitted: reserve the worst case in every ledger. */
	tight = NULL;
	for (i = 0; i < n; i++) {
		a = &v[i];
		budget_key(a->cap, a->entity, key, sizeof key);
		k = budget_slices(a->cap, a->start, a->end, &period, win);
		bsp_strlcpy(h->v[h->n].key, key, sizeof h->v[h->n].key);
		h->v[h->n].period = period;
		h->v[h->n].window = win[k - 1];	/* the newest */
		counters_add_at(key, period, win[k - 1], h->worst,
		    h->worst_tokens);
		budget_mine_add(key, win[k - 1], h->worst);
		h->n++;
		if (a->limit < 0)
			continue;
		left = a->limit - a->spent;
		if (tight == NULL || left < best) {
			tight = a;
			best = left;
		}
		if (a->soft >= 0 && add_sat(a->spent, h->worst) > a->soft) {
			if (note->warn[0] == '\0')
				snprintf(note->warn, sizeof note->warn,
				    "%s: past the soft threshold", a->cap->name);
			budget_warn_once(a, p);
		}
	}
	budget_reserved(h->worst);
	if (tight != NULL) {
		note->have = 1;
		bsp_strlcpy(note->cap, tight->cap->name, sizeof note->cap);
		budget_window_name(tight->cap, note->window,
		    sizeof note->window);
		budget_usd(best > 0 ? best : 0, note->remaining,
		    sizeof note->remaining);
		time_iso8601(tight->end, note->resets, sizeof note->resets);
	}
	*hold = h;
	return (0);
}

/* The spend metrics of a settled call. */
static void
budget_count(const struct principal *p, const char *model, long long cost)
{
	char	labels[512];
	size_t	i;
	double	usd = (double)cost / (double)BUDGET_MICROS;

	if (bg.m_spend_model == NULL || cost <= 0)
		return;
	metric_label(labels, sizeof labels, "model", model, NULL);
	metric_add(bg.m_spend_model, labels, usd);
	if (p == NULL)
		return;
	metric_label(labels, sizeof labels, "user", p->email != NULL ?
	    p->email : p->sub, NULL);
	metric_add(bg.m_spend_user, labels, usd);
	for (i = 0; i < p->groups.n && i < BUDGET_GROUPS_MAX; i++) {
		metric_label(labels, sizeof labels, "group", p->groups.v[i],
		    NULL);
		metric_add(bg.m_spend_group, labels, usd);
	}
}

/* A user's day: made, or moved on to the day of start. */
static struct budget_day *
budget_day_get(const char *user, long long start)
{
	struct budget_day	*d;

	HASH_FIND_STR(bg.days, user, d);
	if (d == NULL) {
		d = xcalloc(1, sizeof *d);
		d->user = xstrdup(user);
		d->start = start;
		HASH_ADD_KEYPTR(hh, bg.days, d->user, strlen(d->user), d);
	}
	if (d->start != start) {
		memset(d->t, 0, sizeof d->t);
		d->requests = d->cost = 0;
		d->start = start;
	}
	return (d);
}

/* The start of today in budgets.time_zone. */
static long long
budget_today(time_t now)
{
	static const struct budget_cap	day = { .window = BUDGET_WIN_DAY };
	time_t				s, e;

	budget_window(&day, cfg->budgets_tz, now, &s, &e);
	return ((long long)s);
}

/*
 * A call ended with tokens t: its cost (-1: the model has no price), its
 * reservation (hold, may be NULL) settled and freed, the caller's day and
 * the metrics counted.
 */
long long
budget_settle(struct budget_hold *h, const struct config *c,
    const struct principal *p, const char *model,
    const struct budget_tokens *t, time_t now)
{
	struct budget_day	*d;
	struct price		 pr;
	long long		 cost = -1, charged, tokens;
	size_t			 i;

	if (budget_price(c, model, &pr))
		cost = budget_cost(&pr, t);
	else if (h != NULL)
		cost = budget_cost(&c->budgets_default_price, t);
	charged = cost > 0 ? cost : 0;
	tokens = add_sat(add_sat(nonneg(t->input), nonneg(t->output)),
	    add_sat(nonneg(t->cache_read), nonneg(t->cache_write)));
	if (h != NULL) {
		for (i = 0; i < h->n; i++) {
			counters_add_at(h->v[i].key, h->v[i].period,
			    h->v[i].window, charged - h->worst,
			    tokens - h->worst_tokens);
			budget_mine_add(h->v[i].key, h->v[i].window, -h->worst);
		}
		budget_reserved(-h->worst);
		free(h->v);
		free(h);
	}
	if (p != NULL && p->sub != NULL) {
		d = budget_day_get(p->sub, budget_today(now));
		d->requests++;
		d->t[0] += nonneg(t->input);
		d->t[1] += nonneg(t->output);
		d->t[2] += nonneg(t->cache_read);
		d->t[3] += nonneg(t->cache_write);
		d->t[4] += nonneg(t->cache_write_1h);
		d->cost = add_sat(d->cost, charged);
	}
	budget_count(p, model, charged);
	return (cost);
}

/* A reservation given back whole (the call never went upstream). */
void
budget_hold_free(struct budget_hold *h)
{
	size_t	i;

	if (h == NULL)
		return;
	for (i = 0; i < h->n; i++) {
		counters_add_at(h->v[i].key, h->v[i].period, h->v[i].window,
		    -h->worst, -h->worst_tokens);
		budget_mine_add(h->v[i].key, h->v[i].window, -h->worst);
	}
	budget_reserved(-h->worst);
	free(h->v);
	free(h);
}

static json_t *
budget_json_usd(long long v)
{
	char	buf[BUDGET_USD_LEN];

	budget_usd(v, buf, sizeof buf);
	return (json_string(buf));
}

/*
 * What GET /auth/me answers (and the self-service page shows): the
 * caller's usage today and every cap that applies to them.
 */
json_t *
budget_me(const struct principal *p, time_t now)
{
	struct budget_app	 v[BUDGET_LEDGERS_MAX], *a;
	struct budget_day	*d = NULL;
	json_t			*j, *caps, *cj;
	long long		 today = budget_today(now), left, spent;
	char			 iso[32], win[16];
	const char		*state;
	size_t			 i, n;

	if (p->sub != NULL)
		HASH_FIND_STR(bg.days, p->sub, d);
	if (d != NULL && d->start != today)
		d = NULL;
	time_iso8601((time_t)today, iso, sizeof iso);
	j = json_pack("{s:s?, s:s?, s:{s:s, s:s, s:s, s:o, s:I, s:{s:I, s:I, "
	    "s:I, s:I, s:I}}}", "user", p->sub, "email", p->email, "usage",
	    "window", "day", "time_zone", tz_name(cfg->budgets_tz), "since",
	    iso, "cost_usd", budget_json_usd(d != NULL ? d->cost : 0),
	    "requests", (json_int_t)(d != NULL ? d->requests : 0), "tokens",
	    "input", (json_int_t)(d != NULL ? d->t[0] : 0), "output",
	    (json_int_t)(d != NULL ? d->t[1] : 0), "cache_read",
	    (json_int_t)(d != NULL ? d->t[2] : 0), "cache_write",
	    (json_int_t)(d != NULL ? d->t[3] : 0), "cache_write_1h",
	    (json_int_t)(d != NULL ? d->t[4] : 0));
	caps = json_array();
	n = cfg->nbudget_caps > 0 ? budget_apps(cfg, p, now, v, nitems(v)) : 0;
	if (n > nitems(v))
		n = nitems(v);
	for (i = 0; i < n; i++) {
		a = &v[i];
		spent = a->spent - a->mine;
		left = a->limit >= 0 ? a->limit - a->spent : 0;
		if (left < 0)
			left = 0;
		if (a->limit >= 0 && a->spent >= a->limit)
			state = "refused";
		else if (a->cap->limit_tokens > 0 &&
		    a->tokens >= a->cap->limit_tokens)
			state = "refused";
		else if (a->soft >= 0 && a->spent > a->soft)
			state = "warn";
		else
			state = "ok";
		time_iso8601(a->end, iso, sizeof iso);
		cj = json_pack("{s:s, s:s, s:s, s:s, s:o, s:o, s:o, s:o*, "
		    "s:s, s:o*, s:s}", "name", a->cap->name, "scope",
		    budget_scope_name(a->cap->scope), "entity", a->entity,
		    "window", budget_window_name(a->cap, win, sizeof win),
		    "limit_usd", a->limit >= 0 ? budget_json_usd(a->limit) :
		    json_null(), "spent_usd", budget_json_usd(spent),
		    "reserved_usd", budget_json_usd(a->mine), "remaining_usd",
		    a->limit >= 0 ? budget_json_usd(left) : NULL, "resets_at",
		    iso, "soft_usd", a->soft >= 0 ? budget_json_usd(a->soft) :
		    NULL, "state", state);
		if (a->cap->limit_tokens > 0) {
			json_object_set_new(cj, "limit_tokens",
			    json_integer(a->cap->limit_tokens));
			json_object_set_new(cj, "spent_tokens",
			    json_integer(a->tokens));
		}
		time_iso8601(a->start, iso, sizeof iso);
		json_object_set_new(cj, "window_start", json_string(iso));
		json_array_append_new(caps, cj);
	}
	json_object_set_new(j, "budgets", caps);
	return (j);
}

/* A price entry's text into micro-dollars per million tokens. */
static void
budget_price_check(struct config *c, struct config_errors *errs,
    const char *where, const char *key, const char *text, long long *out,
    long long def)
{
	if (text == NULL) {
		*out = def;
		return;
	}
	if (budget_parse_usd(text, out) == -1)
		config_add_error(errs, c, where, "%s: \"%s\" is not an amount "
		    "of dollars (digits, a point and up to 6 decimals)", key,
		    text);
}

/* models.prices and budgets.*: amounts, names, the time zone. */
void
budget_config_check(struct config *c, struct config_errors *errs)
{
	struct model_price	*mp;
	struct budget_cap	*cap;
	struct price		*d = &c->budgets_default_price;
	char			*cause = NULL;
	size_t			 i, j;

	for (i = 0; i < c->nmodel_prices; i++) {
		mp = &c->model_prices[i];
		if (mp->model == NULL || mp->input == NULL ||
		    mp->output == NULL) {
			config_add_error(errs, c, mp->where, "models.prices[%zu]: "
			    "model, input and output must be set", i);
			continue;
		}
		budget_price_check(c, errs, mp->where, "input", mp->input,
		    &mp->p.input, 0);
		budget_price_check(c, errs, mp->where, "output", mp->output,
		    &mp->p.output, 0);
		budget_price_check(c, errs, mp->where, "cache_read",
		    mp->cache_read, &mp->p.cache_read, mp->p.input / 10);
		budget_price_check(c, errs, mp->where, "cache_write",
		    mp->cache_write, &mp->p.cache_write, mp->p.input / 4 * 5 +
		    mp->p.input % 4 * 5 / 4);
		budget_price_check(c, errs, mp->where, "cache_write_1h",
		    mp->cache_write_1h, &mp->p.cache_write_1h, mp->p.input * 2);
	}
	budget_price_check(c, errs, "budgets.default_price.input", "input",
	    c->budgets_default_input, &d->input, 0);
	budget_price_check(c, errs, "budgets.default_price.output", "output",
	    c->budgets_default_output, &d->output, 0);
	budget_price_check(c, errs, "budgets.default_price.cache_read",
	    "cache_read", c->budgets_default_cache_read, &d->cache_read, 0);
	budget_price_check(c, errs, "budgets.default_price.cache_write",
	    "cache_write", c->budgets_default_cache_write, &d->cache_write, 0);
	budget_price_check(c, errs, "budgets.default_price.cache_write_1h",
	    "cache_write_1h", c->budgets_default_cache_write_1h,
	    &d->cache_write_1h, 0);
	for (i = 0; i < c->nbudget_caps; i++) {
		cap = &c->budget_caps[i];
		cap->limit = cap->soft = -1;
		if (cap->name == NULL || !config_name_ok(cap->name) ||
		    strlen(cap->name) >= 64) {
			config_add_error(errs, c, cap->where, "budgets.caps[%zu]: "
			    "a name of letters, digits, - and _ is needed", i);
			continue;
		}
		for (j = 0; j < i; j++) {
			if (c->budget_caps[j].name != NULL &&
			    strcmp(c->budget_caps[j].name, cap->name) == 0)
				config_add_error(errs, c, cap->where,
				    "budgets.caps: \"%s\" is named twice",
				    cap->name);
		}
		if (cap->limit_usd != NULL &&
		    budget_parse_usd(cap->limit_usd, &cap->limit) == -1)
			config_add_error(errs, c, cap->where, "budgets.caps "
			    "\"%s\": limit_usd \"%s\" is not an amount of "
			    "dollars", cap->name, cap->limit_usd);
		if (cap->soft_usd != NULL &&
		    budget_parse_usd(cap->soft_usd, &cap->soft) == -1)
			config_add_error(errs, c, cap->where, "budgets.caps "
			    "\"%s\": soft_usd \"%s\" is not an amount of "
			    "dollars", cap->name, cap->soft_usd);
		if (cap->limit_usd == NULL && cap->soft_usd == NULL &&
		    cap->limit_tokens == 0)
			config_add_error(errs, c, cap->where, "budgets.caps "
			    "\"%s\": set limit_usd, soft_usd or limit_tokens",
			    cap->name);
		if (cap->limit >= 0 && cap->soft > cap->limit)
			config_add_error(errs, c, cap->where, "budgets.caps "
			    "\"%s\": soft_usd is above limit_usd", cap->name);
		if (cap->scope == BUDGET_SCOPE_GLOBAL && cap->match.n > 0)
			config_add_error(errs, c, cap->where, "budgets.caps "
			    "\"%s\": a global cap matches no one in particular; "
			    "remove match", cap->name);
	}
	if (c->budgets_time_zone != NULL && c->budgets_tz == NULL &&
	    (c->budgets_tz = tz_load(getenv("TZDIR"), c->budgets_time_zone,
	    &cause)) == NULL) {
		config_add_error(errs, c, "budgets.time_zone",
		    "budgets.time_zone: %s", cause);
		free(cause);
	}
}

static void
budget_override_free_all(void)
{
	struct budget_override	*o, *tmp;

	HASH_ITER(hh, bg.overrides, o, tmp) {
		HASH_DEL(bg.overrides, o);
		free(o->id);
		free(o);
	}
}

/* A row of the rebuild: its costs into the ledgers of one cap. */
struct budget_rebuild {
	const struct budget_cap	*cap;
	time_t			 start, end;
	long long		 slice;
	int			 rc;
};

/*
 * The steps of a load: overrides, then (once) the day and the ledgers;
 * the rows' callbacks get the loader too.
 */
struct budget_loader {
	int			 step;
	size_t			 cap;
	long long		 today;
	struct budget_rebuild	 rb;
	int			 rebuild;
};

/* A rebuilt row's cost and tokens into one entity's ledger slice. */
static void
budget_rebuild_add(const struct budget_cap *cap, const char *entity,
    long long period, long long w, const struct store_row *r)
{
	char	k[BUDGET_KEY_MAX], hashed[BUDGET_ENTITY_MAX];

	budget_key(cap, budget_entity(entity, hashed), k, sizeof k);
	counters_add_at(k, period, w, store_int(r, 5), store_int(r, 6));
}

static void
budget_rebuild_row(const struct store_row *r, void *arg)
{
	struct budget_loader	*ld = arg;
	struct budget_rebuild	*rb = &ld->rb;
	const struct budget_cap	*cap = rb->cap;
	const char		*user = store_text(r, 0), *key = store_text(r, 1);
	const char		*email = store_text(r, 2);
	struct strlist		 groups;
	long long		 period, win[BUDGET_SLICES], w;
	size_t			 i, n, ng;

	memset(&groups, 0, sizeof groups);
	n = budget_slices(cap, rb->start, rb->end, &period, win);
	w = cap->window == BUDGET_WIN_ROLLING ? store_int(r, 4) * rb->slice :
	    win[0];
	if (w < win[0] || w > win[n - 1])
		return;
	switch (cap->scope) {
	case BUDGET_SCOPE_USER:
		if (user != NULL && budget_glob_any(&cap->match, email, user))
			budget_rebuild_add(cap, user, period, w, r);
		break;
	case BUDGET_SCOPE_GROUP:
		strlist_from_json_text(&groups, store_text(r, 3));
		for (i = 0, ng = 0; i < groups.n && ng < BUDGET_GROUPS_MAX;
		    i++) {
			if (!budget_glob_any(&cap->match, groups.v[i], NULL))
				continue;
			budget_rebuild_add(cap, groups.v[i], period, w, r);
			ng++;
		}
		strlist_free(&groups);
		break;
	case BUDGET_SCOPE_KEY:
		if (key != NULL && budget_glob_any(&cap->match, key, NULL))
			budget_rebuild_add(cap, key, period, w, r);
		break;
	case BUDGET_SCOPE_GLOBAL:
		budget_rebuild_add(cap, "*", period, w, r);
		break;
	}
}

static void
budget_day_row(const struct store_row *r, void *arg)
{
	struct budget_loader	*ld = arg;
	struct budget_day	*d;
	int			 i;

	if (store_text(r, 0) == NULL)
		return;
	d = budget_day_get(store_text(r, 0), ld->today);
	d->requests = store_int(r, 1);
	for (i = 0; i < 5; i++)
		d->t[i] = store_int(r, 2 + i);
	d->cost = store_int(r, 7);
}

static void
budget_override_row(const struct store_row *r, void *arg)
{
	struct budget_override	*o;
	char			*id;

	if (store_text(r, 0) == NULL || store_text(r, 1) == NULL)
		return;
	xasprintf(&id, "%s\t%s", store_text(r, 0), store_text(r, 1));
	HASH_FIND_STR(bg.overrides, id, o);
	if (o != NULL) {
		free(id);
		return;
	}
	o = xcalloc(1, sizeof *o);
	o->id = id;
	o->limit = store_null(r, 2) ? -1 : store_int(r, 2);
	o->soft = store_null(r, 3) ? -1 : store_int(r, 3);
	HASH_ADD_KEYPTR(hh, bg.overrides, o->id, strlen(o->id), o);
}

static void	budget_load_step(int, void *);

static void
budget_load_next(struct budget_loader *ld)
{
	const struct budget_cap	*cap;
	time_t			 now = now_wall();

	switch (ld->step++) {
	case 0:
		budget_override_free_all();
		store_run(0, &st_overrides, NULL, 0, budget_override_row,
		    budget_load_step, ld);
		return;
	case 1:
		if (!ld->rebuild)
			break;
		ld->today = budget_today(now);
		store_run(0, &st_day, (struct store_param[]){ SP_INT(ld->today) },
		    1, budget_day_row, budget_load_step, ld);
		return;
	default:
		/* With PostgreSQL the ledgers are in rate_counters. */
		if (!ld->rebuild || counters_shared() ||
		    ld->cap >= cfg->nbudget_caps)
			break;
		cap = &cfg->budget_caps[ld->cap++];
		ld->rb.cap = cap;
		if (budget_window(cap, cfg->budgets_tz, now, &ld->rb.start,
		    &ld->rb.end) == -1) {
			budget_load_step(STORE_OK, ld);
			return;
		}
		ld->rb.slice = cap->window == BUDGET_WIN_ROLLING ?
		    cap->days * 3600 : BUDGET_BIG_SLICE;
		{
			struct store_param p[] = {
				SP_INT(ld->rb.slice), SP_INT(ld->rb.start),
			};

			store_run(0, &st_rebuild, p, nitems(p),
			    budget_rebuild_row, budget_load_step, ld);
		}
		return;
	}
	if (ld->rebuild)
		bg.loaded = 1;
	free(ld);
	store_load_done(&bg.load, STORE_OK);
}

static void
budget_load_step(int status, void *arg)
{
	struct budget_loader	*ld = arg;

	if (status != STORE_OK) {
		log_warnx("budgets: cannot read the database; will retry");
		free(ld);
		store_load_done(&bg.load, status);
		return;
	}
	budget_load_next(ld);
}

static void
budget_load_run(struct store_load *l)
{
	struct budget_loader	*ld;

	ld = xcalloc(1, sizeof *ld);
	ld->rebuild = !bg.loaded;
	budget_load_next(ld);
}

/* For /health/ready: with SQLite, the ledgers are rebuilt. */
int
budget_ready(const char **detail)
{
	if (cfg->nbudget_caps == 0 || bg.loaded || counters_shared())
		return (1);
	*detail = "the budgets are not loaded yet";
	return (0);
}

/* The metrics, and the first load when the database is there. */
int
budget_init(struct config *c, char **cause)
{
	const char	*detail;

	if (bg.m_spend_model == NULL) {
		bg.m_spend_model = metric_new("bsp_spend_usd_total",
		    METRIC_COUNTER, "What relayed calls cost, in dollars, by "
		    "model.");
		bg.m_spend_user = metric_new("bsp_spend_usd_by_user_total",
		    METRIC_COUNTER, "What relayed calls cost, in dollars, by "
		    "user.");
		bg.m_spend_group = metric_new("bsp_spend_usd_by_group_total",
		    METRIC_COUNTER, "What relayed calls cost, in dollars, by "
		    "group of the caller.");
		bg.m_refusals = metric_new("bsp_budget_refusals_total",
		    METRIC_COUNTER, "Calls refused because a budget cap was "
		    "reached, by cap and scope.");
		bg.m_reserved = metric_new("bsp_budget_reserved_usd",
		    METRIC_GAUGE, "Dollars this daemon has reserved against the "
		    "budget caps for calls under way.");
	}
	bg.load.run = budget_load_run;
	if (store_ready(&detail))
		store_load(&bg.load, NULL, NULL);
	return (0);
}

/* Another process wrote (budget set), or the database came up. */
void
budget_sync(void)
{
	store_load(&bg.load, NULL, NULL);
}

/* Housekeeping: soft-threshold notes of windows that are over. */
void
budget_maint(time_t now)
{
	struct budget_warned	*w, *tmp;
	struct budget_day	*d, *dtmp;
	long long		 today = budget_today(now);

	HASH_ITER(hh, bg.warned, w, tmp) {
		if (w->until <= (long long)now) {
			HASH_DEL(bg.warned, w);
			free(w->id);
			free(w);
		}
	}
	HASH_ITER(hh, bg.days, d, dtmp) {
		if (d->start != today) {
			HASH_DEL(bg.days, d);
			free(d->user);
			free(d);
		}
	}
	if (!bg.loaded && cfg->nbudget_caps > 0)
		store_load(&bg.load, NULL, NULL);
}

void
budget_free(void)
{
	struct budget_warned	*w, *tmp;
	struct budget_day	*d, *dtmp;
	struct budget_mine	*m, *mtmp;

	budget_override_free_all();
	HASH_ITER(hh, bg.warned, w, tmp) {
		HASH_DEL(bg.warned, w);
		free(w->id);
		free(w);
	}
	HASH_ITER(hh, bg.days, d, dtmp) {
		HASH_DEL(bg.days, d);
		free(d->user);
		free(d);
	}
	HASH_ITER(hh, bg.mine, m, mtmp) {
		HASH_DEL(bg.mine, m);
		free(m->id);
		free(m);
	}
	bg.loaded = 0;
	bg.reserved_here = 0;
}
