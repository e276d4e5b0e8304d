/*
 * metrics.c: Prometheus text exposition.
 *
 * Metric families are created once at start; series are found by their
 * label string in a hash. The number of series per family is capped so that
 * labels derived from client input (a model id) cannot grow memory without
 * bound: past the cap, observations go to one overflow series.
 */

#include <sys/types.h>

#include <dirent.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <uthash.h>

#include "bsp.h"

#define METRIC_SERIES_MAX	2000

struct metric_series {
	char			*labels;
	double			 value;
	double			 sum;
	unsigned long long	 count;
	unsigned long long	*buckets;
	UT_hash_handle		 hh;
};

struct metric {
	char			*name;
	enum metric_type	 type;
	char			*help;
	struct metric_series	*series;
	struct metric_series	*last;		/* the last one used */
	unsigned int		 nseries;
	struct metric		*next;
};

static struct metric	*metrics_list, **metrics_tail = &metrics_list;

static const double	 metric_bounds[] = {
	0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
	2.5, 5, 10, 30, 60, 120, 300
};

struct metric	*m_requests, *m_request_seconds, *m_refreshes, *m_logins;
struct metric	*m_auth_failures;

struct metric *
metric_new(const char *name, enum metric_type type, const char *help)
{
	struct metric	*m;

	m = xcalloc(1, sizeof *m);
	m->name = xstrdup(name);
	m->type = type;
	m->help = xstrdup(help);
	*metrics_tail = m;
	metrics_tail = &m->next;
	return (m);
}

static struct metric_series *
metric_series(struct metric *m, const char *labels)
{
	struct metric_series	*s;

	/*
	 * Consecutive calls mostly add to the series the last one did (the
	 * same route, code, model): a compare, not a hash of the labels.
	 * Series live as long as the process.
	 */
	if (m->last != NULL && strcmp(m->last->labels, labels) == 0)
		return (m->last);
	HASH_FIND_STR(m->series, labels, s);
	if (s != NULL)
		return (m->last = s);
	if (m->nseries >= METRIC_SERIES_MAX) {
		labels = "overflow=\"true\"";
		HASH_FIND_STR(m->series, labels, s);
		if (s != NULL)
			return (s);
	}
	s = xcalloc(1, sizeof *s);
	s->labels = xstrdup(labels);
	if (m->type == METRIC_HISTOGRAM)
		s->buckets = xcalloc(nitems(metric_bounds),
		    sizeof *s->buckets);
	HASH_ADD_KEYPTR(hh, m->series, s->labels, strlen(s->labels), s);
	m->nseries++;
	return (m->last = s);
}

void
metric_add(struct metric *m, const char *labels, double v)
{
	metric_series(m, labels != NULL ? labels : "")->value += v;
}

/*
 * A series to add to again without finding it by its labels each time:
 * it lives as long as the process (past the cap, the overflow series).
 */
struct metric_series *
metric_get(struct metric *m, const char *labels)
{
	return (metric_series(m, labels != NULL ? labels : ""));
}

void
metric_series_add(struct metric_series *s, double v)
{
	s->value += v;
}

void
metric_set(struct metric *m, const char *labels, double v)
{
	metric_series(m, labels != NULL ? labels : "")->value = v;
}

void
metric_observe(struct metric *m, const char *labels, double v)
{
	struct metric_series	*s;
	size_t			 i;

	s = metric_series(m, labels != NULL ? labels : "");
	s->sum += v;
	s->count++;
	for (i = 0; i < nitems(metric_bounds); i++) {
		if (v <= metric_bounds[i])
			s->buckets[i]++;
	}
}

/*
 * Build a label string: metric_label(buf, len, "route", "x", "code", "200",
 * NULL) gives route="x",code="200". Values are escaped as the format says.
 */
void
metric_label(char *buf, size_t len, const char *key, ...)
{
	va_list		 ap;
	const char	*k, *v, *p;
	size_t		 o = 0, klen;

	buf[0] = '\0';
	va_start(ap, key);
	for (k = key; k != NULL; k = va_arg(ap, const char *)) {
		v = va_arg(ap, const char *);
		if (v == NULL)
			v = "";
		klen = strlen(k);
		if (o + klen + 4 >= len)
			break;
		if (o != 0)
			buf[o++] = ',';
		memcpy(buf + o, k, klen);
		o += klen;
		buf[o++] = '=';
		buf[o++] = '"';
		for (p = v; *p != '\0' && o + 4 < len; p++) {
			if (*p == '\\' || *p == '"') {
				buf[o++] = '\\';
				buf[o++] = *p;
			} else if (*p == '\n') {
				buf[o++] = '\\';
				buf[o++] = 'n';
			} else if ((unsigned char)*p >= 0x20)
				buf[o++] = *p;
		}
		if (o + 2 >= len)
			break;
		buf[o++] = '"';
		buf[o] = '\0';
	}
	va_end(ap);
	buf[o < len ? o : len - 1] = '\0';
}

/*
 * The series of bsp_http_requests_total and
 * bsp_http_request_duration_seconds for one route and status, found once:
 * a request's finish then costs no label formatting and no hash lookup.
 * Slots are keyed by the route name's address and checked against a copy
 * of the name; a slot taken by another pair is simply found again.
 */
#define METRIC_RC_SLOTS	128

static struct metric_rc {
	const char		*route;
	char			*name;
	int			 code;
	struct metric_series	*count;
	struct metric_series	*seconds;
} metric_rc[METRIC_RC_SLOTS];

void
metrics_request(const char *route, int code, double seconds)
{
	struct metric_rc	*rc;
	struct metric_series	*s;
	char			 labels[256], num[16];
	size_t			 i;

	rc = &metric_rc[(((uintptr_t)route >> 3) * 31 + (unsigned int)code) %
	    METRIC_RC_SLOTS];
	if (rc->route != route || rc->code != code || rc->name == NULL ||
	    strcmp(rc->name, route) != 0) {
		snprintf(num, sizeof num, "%d", code);
		metric_label(labels, sizeof labels, "route", route, "code", num,
		    NULL);
		free(rc->name);
		rc->name = xstrdup(route);
		rc->route = route;
		rc->code = code;
		rc->count = metric_series(m_requests, labels);
		rc->seconds = metric_series(m_request_seconds, labels);
	}
	rc->count->value += 1;
	s = rc->seconds;
	s->sum += seconds;
	s->count++;
	for (i = 0; i < nitems(metric_bounds); i++) {
		if (seconds <= metric_bounds[i])
			s->buckets[i]++;
	}
}

static const char *
metric_type_name(enum metric_type t)
{
	switch (t) {
	case METRIC_COUNTER:
		return ("counter");
	case METRIC_GAUGE:
		return ("gauge");
	case METRIC_HISTOGRAM:
		return ("histogram");
	}
	return ("untyped");
}

static void
metric_render_one(struct metric *m, struct evbuffer *out)
{
	struct metric_series	*s;
	size_t			 i;
	const char		*sep;

	evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s %s\n", m->name,
	    m->help, m->name, metric_type_name(m->type));
	for (s = m->series; s != NULL; s = s->hh.next) {
		sep = s->labels[0] != '\0' ? "," : "";
		if (m->type != METRIC_HISTOGRAM) {
			if (s->labels[0] != '\0')
				evbuffer_add_printf(out, "%s{%s} %.17g\n",
				    m->name, s->labels, s->value);
			else
				evbuffer_add_printf(out, "%s %.17g\n", m->name,
				    s->value);
			continue;
		}
		for (i = 0; i < nitems(metric_bounds); i++)
			evbuffer_add_printf(out, "%s_bucket{%s%sle=\"%g\"} "
			    "%llu\n", m->name, s->labels, sep, metric_bounds[i],
			    s->buckets[i]);
		evbuffer_add_printf(out, "%s_bucket{%s%sle=\"+Inf\"} %llu\n",
		    m->name, s->labels, sep, s->count);
		evbuffer_add_printf(out, "%s_sum{%s} %.17g\n%s_count{%s} %llu\n",
		    m->name, s->labels, s->sum, m->name, s->labels, s->count);
	}
}

/* Resident set size from the second field of /proc/self/statm. */
long long
process_rss_bytes(void)
{
	char		 buf[128], *p, *end;
	ssize_t		 n;
	int		 fd;
	long long	 rss;

	if ((fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC)) == -1)
		return (0);
	n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return (0);
	buf[n] = '\0';
	if ((p = strchr(buf, ' ')) == NULL)
		return (0);
	rss = strtoll(p + 1, &end, 10);
	if (end == p + 1)
		return (0);
	return (rss * sysconf(_SC_PAGESIZE));
}

static int
process_open_fds(void)
{
	DIR		*d;
	struct dirent	*de;
	int		 n = 0;

	if ((d = opendir("/proc/self/fd")) == NULL)
		return (0);
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] != '.')
			n++;
	}
	closedir(d);
	return (n - 1);	/* the directory stream's own descriptor */
}

void
metrics_init(void)
{
	if (m_requests != NULL)
		return;
	m_requests = metric_new("bsp_http_requests_total", METRIC_COUNTER,
	    "HTTP requests by route and status code.");
	m_request_seconds = metric_new("bsp_http_request_duration_seconds",
	    METRIC_HISTOGRAM, "HTTP request duration by route and status "
	    "code.");
	m_auth_failures = metric_new("bsp_auth_failures_total", METRIC_COUNTER,
	    "Refused credentials by reason.");
	m_logins = metric_new("bsp_logins_total", METRIC_COUNTER,
	    "Logins by provider and result.");
	m_refreshes = metric_new("bsp_token_refreshes_total", METRIC_COUNTER,
	    "Refresh token exchanges by result.");
}

/* Write every metric, then the process gauges read fresh from /proc. */
void
metrics_render(struct evbuffer *out)
{
	struct metric	*m;

	for (m = metrics_list; m != NULL; m = m->next)
		metric_render_one(m, out);
	evbuffer_add_printf(out, "# HELP bsp_process_resident_memory_bytes "
	    "Resident set size.\n# TYPE bsp_process_resident_memory_bytes "
	    "gauge\nbsp_process_resident_memory_bytes %lld\n",
	    process_rss_bytes());
	evbuffer_add_printf(out, "# HELP bsp_process_open_fds Open file "
	    "descriptors.\n# TYPE bsp_process_open_fds gauge\n"
	    "bsp_process_open_fds %d\n", process_open_fds());
	evbuffer_add_printf(out, "# HELP bsp_process_start_time_seconds "
	    "Start time since the epoch.\n# TYPE "
	    "bsp_process_start_time_seconds gauge\n"
	    "bsp_process_start_time_seconds %lld\n",
	    (long long)bsp_start_time);
}
