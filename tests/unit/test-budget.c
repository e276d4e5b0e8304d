/*
 * test-budget.c: the budgets' arithmetic: dollars and micro-dollars, the
 * price table, a call's cost (integers, rounded once, saturating), the
 * worst case of a body; the time zones read by tz.c against the C
 * library's own reading of the same files (localtime_r with TZ set, in
 * this test process only), and the day, week, month and rolling windows
 * across DST changes, midnights the clocks skip and half-hour zones.
 */

#include <sys/stat.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bsp.h"
#include "tap.h"

static char	 dir[] = "/tmp/bsp-test-budget.XXXXXX";

/* A configuration from YAML text; NULL (errors printed) if refused. */
static struct config *
load(const char *yaml, struct config_errors *errs)
{
	struct config_source	 src;
	struct config		*c;
	char			*path;
	FILE			*f;

	xasprintf(&path, "%s/c.yaml", dir);
	if ((f = fopen(path, "w")) == NULL)
		fatal("%s", path);
	fprintf(f, "database:\n  url: sqlite://%s/unused.db\n%s", dir, yaml);
	fclose(f);
	memset(&src, 0, sizeof src);
	src.path = path;
	src.path_explicit = 1;
	src.check = modules_config_check;
	memset(errs, 0, sizeof *errs);
	c = config_load(&src, errs);
	unlink(path);
	free(path);
	return (c);
}

static time_t
utc(int y, int mo, int d, int h, int mi)
{
	return ((time_t)(tz_days_from_civil(y, mo, d) * 86400 + h * 3600 +
	    mi * 60));
}

static void
test_usd(void)
{
	static const struct {
		const char	*s;
		long long	 v;		/* -1: refused */
	} t[] = {
		{ "0", 0 }, { "12", 12000000 }, { "0.01", 10000 },
		{ "3.000001", 3000001 }, { "$5", 5000000 }, { ".5", -1 },
		{ "1.", -1 }, { "-1", -1 }, { "1.2345678", -1 }, { "", -1 },
		{ "1e3", -1 }, { "999999999999.999999", 999999999999999999LL },
		{ "1000000000000", -1 }, { "0.1 ", -1 },
	};
	char		 buf[BUDGET_USD_LEN];
	long long	 v;
	size_t		 i;
	int		 rc;

	for (i = 0; i < nitems(t); i++) {
		v = -1;
		rc = budget_parse_usd(t[i].s, &v);
		if (t[i].v < 0)
			is_int(rc, -1, "\"%s\" is not an amount", t[i].s);
		else
			is_int(v, t[i].v, "\"%s\" is %lld micro-dollars",
			    t[i].s, t[i].v);
	}
	budget_usd(12345, buf, sizeof buf);
	is_str(buf, "0.012345", "micro-dollars as six decimals");
	budget_usd(0, buf, sizeof buf);
	is_str(buf, "0.000000", "zero");
	budget_usd(-5, buf, sizeof buf);
	is_str(buf, "-0.000005", "below zero");
	budget_usd(LLONG_MIN, buf, sizeof buf);
	is_str(buf, "-9223372036854.775808", "the least, without overflow");
	budget_usd(LLONG_MAX, buf, sizeof buf);
	is_str(buf, "9223372036854.775807", "the most");
}

static void
test_cost(void)
{
	struct price		 sonnet = { 3000000, 15000000, 300000, 3750000,
	    6000000 }, haiku3 = { 250000, 1250000, 30000, 300000, 500000 };
	struct budget_tokens	 t;
	long long		 sum = 0;
	int			 i;

	memset(&t, 0, sizeof t);
	t.input = 1000;
	t.output = 500;
	is_int(budget_cost(&sonnet, &t), 10500,
	    "1000 in + 500 out on Sonnet: $0.0105");
	t.cache_read = 10000;
	t.cache_write = 2000;
	t.cache_write_1h = 500;
	is_int(budget_cost(&sonnet, &t), 10500 + 3000 + 5625 + 3000,
	    "cache reads at $0.30, 1500 5-minute writes at $3.75, 500 1-hour "
	    "writes at $6");
	t.cache_write_1h = 5000;
	is_int(budget_cost(&sonnet, &t), 10500 + 3000 + 30000,
	    "more 1-hour writes than writes: all counted as 1-hour ones");
	memset(&t, 0, sizeof t);
	t.input = 1;
	is_int(budget_cost(&haiku3, &t), 1, "a quarter micro-dollar rounds up");
	t.input = 3;
	t.output = 1;
	is_int(budget_cost(&haiku3, &t), 2,
	    "summed before rounding: 0.75 + 1.25 is 2, not 1 + 2");
	t.input = -5;
	t.output = 0;
	is_int(budget_cost(&haiku3, &t), 0, "negative counts count nothing");
	/* No drift: a million one-token calls cost what one call of a
	 * million tokens does, at a price that divides evenly. */
	memset(&t, 0, sizeof t);
	t.input = 1;
	for (i = 0; i < 1000000; i++)
		sum += budget_cost(&sonnet, &t);
	t.input = 1000000;
	is_int(sum, budget_cost(&sonnet, &t), "a million calls of one token "
	    "at $3/M: $3, exactly");
	memset(&t, 0, sizeof t);
	t.input = LLONG_MAX;
	t.output = LLONG_MAX;
	ok(budget_cost(&sonnet, &t) == LLONG_MAX / 1000000,
	    "absurd counts saturate instead of overflowing");
}

static void
test_prices(void)
{
	static const struct {
		const char	*model;
		long long	 input;		/* -1: unknown */
		long long	 cw1h;
	} t[] = {
		{ "us.anthropic.claude-sonnet-4-5-20250929-v1:0", 3000000,
		  6000000 },
		{ "global.anthropic.claude-opus-4-5-20251101-v1:0", 5000000,
		  10000000 },
		{ "anthropic.claude-opus-4-1-20250805-v1:0", 15000000,
		  30000000 },
		{ "eu.anthropic.claude-opus-4-20250514-v1:0", 15000000,
		  30000000 },
		{ "anthropic.claude-3-5-haiku-20241022-v1:0", 800000, 1600000 },
		{ "anthropic.claude-haiku-4-5-20251001-v1:0", 1000000,
		  2000000 },
		{ "us.anthropic.claude-sonnet-5", 2000000, 4000000 },
		{ "us.anthropic.claude-opus-5-5", 4000000, 8000000 },
		{ "us.anthropic.claude-opus-5", 5000000, 10000000 },
		{ "anthropic.claude-3-haiku-20240307-v1:0", 250000, 500000 },
		{ "meta.llama3-70b-instruct-v1:0", -1, -1 },
		{ "mine.model", 1000000, 2000000 },
	};
	struct config_errors	 errs;
	struct config		*c;
	struct price		 p;
	size_t			 i;
	int			 found;

	c = load("models:\n  prices:\n    - model: \"mine.*\"\n"
	    "      input: \"1\"\n      output: \"2.5\"\n"
	    "    - model: \"*claude-3-haiku*\"\n      input: \"0.25\"\n"
	    "      output: \"1.25\"\n      cache_write: \"0.3\"\n"
	    "      cache_write_1h: \"0.5\"\n", &errs);
	ok(c != NULL, "a price table loads");
	if (c == NULL) {
		config_errors_print(&errs, stderr);
		return;
	}
	for (i = 0; i < nitems(t); i++) {
		memset(&p, 0, sizeof p);
		found = budget_price(c, t[i].model, &p);
		if (t[i].input < 0)
			ok(!found, "%s has no price", t[i].model);
		else
			ok(found && p.input == t[i].input &&
			    p.cache_write_1h == t[i].cw1h,
			    "%s: $%lld.%06lld/M in", t[i].model,
			    t[i].input / 1000000, t[i].input % 1000000);
	}
	budget_price(c, "mine.model", &p);
	ok(p.output == 2500000 && p.cache_read == 100000 &&
	    p.cache_write == 1250000, "a configured price's cache prices "
	    "default to 0.1, 1.25 and 2 times input");
	/* Every model the built-in aliases name has a price. */
	c->models_builtin_prices = 1;
	{
		const char *ids[] = { "claude-sonnet-4-5", "claude-opus-4-1",
		    "claude-haiku-4-5", "claude-opus-4-5", "claude-opus-4-6",
		    "claude-sonnet-4-6", "claude-opus-4-7", "claude-sonnet-5",
		    "claude-opus-5", "claude-opus-5-5", "claude-3-7-sonnet-latest",
		    "claude-sonnet-4-0", "claude-opus-4-0",
		    "claude-3-5-haiku-latest", "claude-3-haiku-20240307" };
		char		*bid;
		const char	*why, *a, *b;

		for (i = 0; i < nitems(ids); i++) {
			bid = NULL;
			if (models_resolve(c, ids[i], &bid, &why, &a, &b) ==
			    -1 || bid == NULL) {
				ok(0, "%s resolves", ids[i]);
				continue;
			}
			ok(budget_price(c, bid, &p), "built-in alias %s (%s) "
			    "has a price", ids[i], bid);
			free(bid);
		}
	}
	c->models_builtin_prices = 0;
	ok(!budget_price(c, "anthropic.claude-sonnet-4-5-20250929-v1:0", &p),
	    "models.builtin_prices: false leaves the configured ones only");
	config_unref(c);

	c = load("models:\n  prices:\n    - model: x\n      input: \"1.0000001\"\n"
	    "      output: \"-2\"\nbudgets:\n  caps:\n    - name: a\n"
	    "      limit_usd: \"1\"\n      soft_usd: \"2\"\n    - name: a\n"
	    "      limit_usd: \"ten\"\n    - name: g\n      scope: global\n"
	    "      match: [x]\n      limit_usd: \"1\"\n  time_zone: "
	    "\"../../etc/passwd\"\n", &errs);
	ok(c == NULL, "bad amounts, names and a bad time zone are refused");
	ok(errs.n >= 7, "each reported (%zu errors)", errs.n);
	config_errors_free(&errs);
	if (c != NULL)
		config_unref(c);
	c = load("budgets:\n  time_zone: Nowhere/Atlantis\n", &errs);
	ok(c == NULL && errs.n == 1 && strstr(errs.v[0].msg,
	    "budgets.time_zone") != NULL, "an unknown zone is refused");
	config_errors_free(&errs);
	if (c != NULL)
		config_unref(c);
}

static void
test_max_tokens(void)
{
	static const struct {
		const char	*body;
		long long	 n;
	} t[] = {
		{ "{\"max_tokens\":1024,\"messages\":[]}", 1024 },
		{ "{\"messages\":[{\"content\":\"max_tokens\"}],"
		  "\"max_tokens\":7}", 7 },
		{ "{\"inferenceConfig\":{\"maxTokens\":300},\"messages\":[]}",
		  300 },
		{ "{\"max_completion_tokens\":99}", 99 },
		{ "{\"messages\":[]}", -1 },
		{ "{\"max_tokens\":\"12\"}", -1 },
		{ "{\"max_tokens\":-3}", -1 },
		{ "not json", -1 },
	};
	size_t	i;

	for (i = 0; i < nitems(t); i++)
		is_int(budget_max_tokens((const uint8_t *)t[i].body,
		    strlen(t[i].body)), t[i].n, "max tokens of %s", t[i].body);
	is_int(budget_max_tokens(NULL, 0), -1, "no body");
}

/* The C library's offset of zone at t (TZ set in this process). */
static long
libc_offset(time_t t)
{
	struct tm	tm;

	localtime_r(&t, &tm);
	return (tm.tm_gmtoff);
}

/* The local date of t as a number, by the C library. */
static long
libc_date(time_t t)
{
	struct tm	tm;

	localtime_r(&t, &tm);
	return ((tm.tm_year + 1900L) * 10000 + (tm.tm_mon + 1) * 100 +
	    tm.tm_mday);
}

static const char *const zones[] = {
	"UTC", "Europe/Berlin", "America/New_York", "America/Sao_Paulo",
	"Australia/Lord_Howe", "Asia/Kolkata", "Pacific/Chatham",
	"America/Havana", "Africa/Casablanca", "Pacific/Apia",
};

static void
test_tz_oracle(void)
{
	struct tz	*z;
	char		*cause;
	time_t		 t, from = utc(1900, 1, 1, 0, 0), to = utc(2100, 1, 1, 0,
	    0);
	size_t		 i, bad, n;

	for (i = 0; i < nitems(zones); i++) {
		if ((z = tz_load(NULL, zones[i], &cause)) == NULL) {
			ok(0, "%s loads: %s", zones[i], cause);
			free(cause);
			continue;
		}
		setenv("TZ", zones[i], 1);
		tzset();
		bad = n = 0;
		for (t = from; t < to; t += 3 * 3600 + 7) {
			n++;
			if (tz_offset(z, t) != libc_offset(t) && bad++ < 3)
				diag("%s at %lld: %d, libc %ld", zones[i],
				    (long long)t, tz_offset(z, t),
				    libc_offset(t));
		}
		/* Every 15 minutes across the file's end (2037). */
		for (t = utc(2030, 1, 1, 0, 0); t < utc(2045, 1, 1, 0, 0);
		    t += 900) {
			n++;
			if (tz_offset(z, t) != libc_offset(t) && bad++ < 3)
				diag("%s at %lld: %d, libc %ld", zones[i],
				    (long long)t, tz_offset(z, t),
				    libc_offset(t));
		}
		is_int(bad, 0, "%s: the offset of %zu instants, 1900-2100, as "
		    "the C library reads the zone", zones[i], n);
		tz_free(z);
	}
	unsetenv("TZ");
	tzset();
}

static void
test_tz_files(void)
{
	struct tz	*z;
	char		*cause;
	char		 path[256];
	FILE		*f;

	z = tz_load(NULL, "../../etc/passwd", &cause);
	ok(z == NULL && cause != NULL, "a path out of the directory is "
	    "refused: %s", cause);
	free(cause);
	z = tz_load(NULL, "/etc/localtime", &cause);
	ok(z == NULL, "an absolute path is refused");
	free(cause);
	snprintf(path, sizeof path, "%s/Bad", dir);
	if ((f = fopen(path, "w")) != NULL) {
		fputs("TZif2\nnot really a zone file, but long enough to be "
		    "read\n", f);
		fclose(f);
	}
	z = tz_load(dir, "Bad", &cause);
	ok(z == NULL && cause != NULL, "a damaged file is refused: %s", cause);
	free(cause);
	unlink(path);
	if (access("/usr/share/zoneinfo/right/UTC", R_OK) == 0) {
		z = tz_load(NULL, "right/UTC", &cause);
		ok(z == NULL && strstr(cause, "leap") != NULL,
		    "a zone with leap seconds is refused");
		free(cause);
	} else
		ok(1, "# SKIP no right/UTC here");
}

static void
test_windows_known(void)
{
	static const struct {
		const char	*zone;
		int		 window;
		time_t		 now, start, end;
		const char	*what;
	} t[] = {
		{ "Europe/Berlin", BUDGET_WIN_DAY, 1774785600 /* 03-29 12Z */,
		  1774738800 /* 03-28T23Z */, 1774821600 /* 03-29T22Z */,
		  "Berlin, the day clocks go forward: 23 hours" },
		{ "Europe/Berlin", BUDGET_WIN_DAY, 1792929600 /* 10-25 12Z */,
		  1792879200 /* 10-24T22Z */, 1792969200 /* 10-25T23Z */,
		  "Berlin, the day clocks go back: 25 hours" },
		{ "America/Sao_Paulo", BUDGET_WIN_DAY,
		  1541332800 /* 2018-11-04T12Z */,
		  1541300400 /* 2018-11-04T03Z: 01:00 -02 */,
		  1541383200 /* 2018-11-05T02Z */,
		  "Sao Paulo 2018-11-04: midnight skipped, the day starts at "
		  "01:00" },
		{ "Australia/Lord_Howe", BUDGET_WIN_DAY,
		  1775390400 /* 2026-04-05T12Z */,
		  1775307600 /* 2026-04-04T13Z */,
		  1775395800 /* 2026-04-05T13:30Z */,
		  "Lord Howe, half an hour back: 24.5 hours" },
		{ "Asia/Kolkata", BUDGET_WIN_DAY, 1796644800 /* 12-07T12Z */,
		  1796581800 /* 12-06T18:30Z */, 1796668200,
		  "Kolkata, +05:30" },
		{ "Europe/Berlin", BUDGET_WIN_WEEK, 1796817600 /* 12-09 12Z */,
		  1796598000 /* 12-06T23Z, Monday 7th 00:00 */,
		  1797202800 /* 12-13T23Z */, "Berlin, a week from Monday" },
		{ "Europe/Berlin", BUDGET_WIN_MONTH, 1773576000 /* 03-15 12Z */,
		  1772319600 /* 02-28T23Z */, 1774994400 /* 03-31T22Z */,
		  "Berlin, March: from CET midnight to CEST midnight" },
		{ "UTC", BUDGET_WIN_MONTH, 1709208000 /* 2024-02-29T12Z */,
		  1706745600 /* 2024-02-01 */, 1709251200 /* 2024-03-01 */,
		  "UTC, a leap February" },
		{ "UTC", BUDGET_WIN_MONTH, 1798675200 /* 2026-12-31 */,
		  1796083200 /* 2026-12-01 */, 1798761600 /* 2027-01-01 */,
		  "UTC, December into January" },
	};
	struct budget_cap	 cap;
	struct tz		*z;
	char			*cause, a[32], b[32];
	time_t			 s, e;
	size_t			 i;

	for (i = 0; i < nitems(t); i++) {
		if ((z = tz_load(NULL, t[i].zone, &cause)) == NULL) {
			ok(0, "%s: %s", t[i].zone, cause);
			free(cause);
			continue;
		}
		memset(&cap, 0, sizeof cap);
		cap.window = t[i].window;
		budget_window(&cap, z, t[i].now, &s, &e);
		time_iso8601(s, a, sizeof a);
		time_iso8601(e, b, sizeof b);
		ok(s == t[i].start && e == t[i].end, "%s: %s to %s", t[i].what,
		    a, b);
		tz_free(z);
	}
}

/* Windows against the C library, at many instants in every zone. */
static void
test_windows_oracle(void)
{
	struct budget_cap	 cap;
	struct tz		*z;
	char			*cause;
	time_t			 now, s, e;
	size_t			 i, bad, n;
	struct tm		 tm, tp;
	int			 w;

	for (i = 0; i < nitems(zones); i++) {
		if ((z = tz_load(NULL, zones[i], &cause)) == NULL) {
			free(cause);
			continue;
		}
		setenv("TZ", zones[i], 1);
		tzset();
		bad = n = 0;
		for (now = utc(1995, 1, 1, 0, 0); now < utc(2060, 1, 1, 0, 0);
		    now += 86400 * 3 + 3600 * 5 + 13) {
			for (w = BUDGET_WIN_DAY; w <= BUDGET_WIN_MONTH; w++) {
				memset(&cap, 0, sizeof cap);
				cap.window = w;
				budget_window(&cap, z, now, &s, &e);
				n++;
				localtime_r(&s, &tm);
				localtime_r(&now, &tp);
				/* now in [s, e); s the first instant of its
				 * local day, e of the next window's. */
				if (!(s <= now && now < e) ||
				    libc_date(s) == libc_date(s - 1) ||
				    libc_date(e) == libc_date(e - 1) ||
				    (w == BUDGET_WIN_DAY && (libc_date(s) !=
				    libc_date(now) || libc_date(e - 1) !=
				    libc_date(now))) ||
				    (w == BUDGET_WIN_WEEK && tm.tm_wday != 1) ||
				    (w == BUDGET_WIN_MONTH && (tm.tm_mday != 1 ||
				    tm.tm_mon != tp.tm_mon))) {
					if (bad++ < 3)
						diag("%s w%d at %lld: %lld-%lld",
						    zones[i], w, (long long)now,
						    (long long)s, (long long)e);
				}
			}
		}
		is_int(bad, 0, "%s: %zu day, week and month windows start and "
		    "end at local midnights (or the first instant of a day)",
		    zones[i], n);
		tz_free(z);
	}
	unsetenv("TZ");
	tzset();
}

static void
test_rolling(void)
{
	struct budget_cap	 cap;
	time_t			 now, s, e;
	size_t			 bad = 0;

	memset(&cap, 0, sizeof cap);
	cap.window = BUDGET_WIN_ROLLING;
	cap.days = 7;
	for (now = 1700000000; now < 1700000000 + 30 * 86400; now += 1237) {
		budget_window(&cap, NULL, now, &s, &e);
		/* 25 slices of 7 hours: back between 7 days and 7 days 7 h. */
		if (e - s != 25 * 7 * 3600 || s > now - 7 * 86400 ||
		    now - 7 * 86400 - s >= 7 * 3600 || e <= now ||
		    e > now + 7 * 3600)
			bad++;
	}
	is_int(bad, 0, "a rolling week reaches back 7 days to 7 days 7 hours "
	    "and moves on within 7 hours");
}

int
main(void)
{
	log_init("test-budget");
	if (mkdtemp(dir) == NULL)
		fatal("mkdtemp");
	test_usd();
	test_cost();
	test_prices();
	test_max_tokens();
	test_tz_files();
	test_tz_oracle();
	test_windows_known();
	test_windows_oracle();
	test_rolling();
	rmdir(dir);
	return (tap_done());
}
