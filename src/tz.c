/*
 * tz.c: time zones without touching the process's TZ: a small reader of
 * the compiled zone files (TZif, RFC 8536) in the system's zoneinfo
 * directory, their POSIX TZ footer for the years after the last
 * transition, and the civil calendar (days since the epoch to a date and
 * back), all in integers. The budgets' day, week and month windows start at
 * local midnights found here.
 *
 * Only the 64-bit data of a version 2+ file is read (a version 1 file's
 * 32-bit data otherwise). Zones with leap seconds ("right/...") are
 * refused: their clocks are not the POSIX clock the daemon counts with.
 */

#include <sys/stat.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bsp.h"

#define TZ_FILE_MAX	(256 * 1024)
#define TZ_NAME_MAX	128
#define TZ_TRANS_MAX	4096
#define TZ_TYPES_MAX	256
#ifndef TZ_DIR
#define TZ_DIR		"/usr/share/zoneinfo"
#endif

/* A footer rule's day: Jn, n or Mm.w.d; and the local time of day. */
struct tz_rule {
	int		 kind;		/* 'J', 'N', 'M' */
	int		 n;		/* J and N: the day */
	int		 m, w, d;	/* M: month, week, weekday */
	long		 secs;		/* the time, local */
};

struct tz {
	char		*name;
	size_t		 n;
	int64_t		*trans;		/* transition instants, ascending */
	int32_t		*off;		/* the offset from each on */
	int32_t		 off0;		/* before the first */
	int		 footer;	/* a POSIX TZ rule after the last */
	int32_t		 std_off;	/* east of UTC, seconds */
	int32_t		 dst_off;
	int		 has_dst;
	struct tz_rule	 start, end;
};

static const char *tz_posix_offset(const char *, long *);
static int	 tz_posix_parse_rules(struct tz *, const char *);

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant). */
long long
tz_days_from_civil(long long y, int m, int d)
{
	long long	era, yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return (era * 146097 + doe - 719468);
}

/* The date of a day count since 1970-01-01. */
void
tz_civil_from_days(long long z, long long *y, int *m, int *d)
{
	long long	era, doe, yoe, doy, mp;

	z += 719468;
	era = (z >= 0 ? z : z - 146096) / 146097;
	doe = z - era * 146097;
	yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	mp = (5 * doy + 2) / 153;
	*d = (int)(doy - (153 * mp + 2) / 5 + 1);
	*m = (int)(mp < 10 ? mp + 3 : mp - 9);
	*y = yoe + era * 400 + (*m <= 2);
}

/* Floor division and the day of the week (0 Sunday) of a day count. */
long long
tz_floor_div(long long a, long long b)
{
	long long	q = a / b;

	if ((a % b != 0) && ((a < 0) != (b < 0)))
		q--;
	return (q);
}

int
tz_weekday(long long days)
{
	return ((int)(((days % 7) + 11) % 7));	/* 1970-01-01: Thursday */
}

static int
tz_leap(long long y)
{
	return ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0);
}

static int
tz_month_days(long long y, int m)
{
	static const int	 md[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30,
	    31, 30, 31 };

	return (m == 2 && tz_leap(y) ? 29 : md[m - 1]);
}

/* A name is a relative path of letters, digits and _+-/ without "..". */
static int
tz_name_ok(const char *s)
{
	size_t	i, len = strlen(s);

	if (len == 0 || len > TZ_NAME_MAX || s[0] == '/' ||
	    strstr(s, "..") != NULL || strstr(s, "//") != NULL)
		return (0);
	for (i = 0; i < len; i++) {
		if (!isalnum((unsigned char)s[i]) &&
		    strchr("_+-/", s[i]) == NULL)
			return (0);
	}
	return (1);
}

static uint32_t
tz_be32(const uint8_t *p)
{
	return ((uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	    (uint32_t)p[2] << 8 | p[3]);
}

static int64_t
tz_be64(const uint8_t *p)
{
	return ((int64_t)((uint64_t)tz_be32(p) << 32 | tz_be32(p + 4)));
}

/* "hh[:mm[:ss]]" with an optional sign into seconds; NULL if bad. */
static const char *
tz_posix_time(const char *s, long *out)
{
	long	 sign = 1, h = 0, m = 0, sec = 0;

	if (*s == '+' || *s == '-')
		sign = *s++ == '-' ? -1 : 1;
	if (!isdigit((unsigned char)*s))
		return (NULL);
	while (isdigit((unsigned char)*s) && h < 1000)
		h = h * 10 + (*s++ - '0');
	if (*s == ':') {
		s++;
		if (!isdigit((unsigned char)s[0]) ||
		    !isdigit((unsigned char)s[1]))
			return (NULL);
		m = (s[0] - '0') * 10 + (s[1] - '0');
		s += 2;
		if (*s == ':') {
			s++;
			if (!isdigit((unsigned char)s[0]) ||
			    !isdigit((unsigned char)s[1]))
				return (NULL);
			sec = (s[0] - '0') * 10 + (s[1] - '0');
			s += 2;
		}
	}
	if (h > 167 || m > 59 || sec > 59)
		return (NULL);
	*out = sign * (h * 3600 + m * 60 + sec);
	return (s);
}

/* A POSIX offset: west of UTC positive; ours is east. */
static const char *
tz_posix_offset(const char *s, long *east)
{
	long	v;

	if ((s = tz_posix_time(s, &v)) == NULL || v < -25 * 3600 ||
	    v > 25 * 3600)
		return (NULL);
	*east = -v;
	return (s);
}

/* A zone abbreviation: letters, or <...> quoted. */
static const char *
tz_posix_name(const char *s)
{
	const char	*p = s;

	if (*p == '<') {
		while (*p != '\0' && *p != '>')
			p++;
		return (*p == '>' && p - s >= 4 ? p + 1 : NULL);
	}
	while (isalpha((unsigned char)*p))
		p++;
	return (p - s >= 3 ? p : NULL);
}

static const char *
tz_posix_rule(const char *s, struct tz_rule *r)
{
	long	v = 0;

	memset(r, 0, sizeof *r);
	r->secs = 7200;
	if (*s == 'M') {
		r->kind = 'M';
		s++;
		if (!isdigit((unsigned char)*s))
			return (NULL);
		while (isdigit((unsigned char)*s) && v < 100)
			v = v * 10 + (*s++ - '0');
		r->m = (int)v;
		if (*s++ != '.' || !isdigit((unsigned char)*s))
			return (NULL);
		r->w = *s++ - '0';
		if (*s++ != '.' || !isdigit((unsigned char)*s))
			return (NULL);
		r->d = *s++ - '0';
		if (r->m < 1 || r->m > 12 || r->w < 1 || r->w > 5 || r->d > 6)
			return (NULL);
	} else {
		r->kind = 'N';
		if (*s == 'J') {
			r->kind = 'J';
			s++;
		}
		if (!isdigit((unsigned char)*s))
			return (NULL);
		while (isdigit((unsigned char)*s) && v < 1000)
			v = v * 10 + (*s++ - '0');
		r->n = (int)v;
		if ((r->kind == 'J' && (v < 1 || v > 365)) ||
		    (r->kind == 'N' && v > 365))
			return (NULL);
	}
	if (*s == '/' && (s = tz_posix_time(s + 1, &r->secs)) == NULL)
		return (NULL);
	return (s);
}

/* The footer: "STD offset [DST [offset] [,rule,rule]]", or empty. */
static int
tz_posix_parse(struct tz *z, const char *s)
{
	long	 std, dst;

	if (*s == '\0')
		return (0);		/* no rule: the last type holds */
	if ((s = tz_posix_name(s)) == NULL ||
	    (s = tz_posix_offset(s, &std)) == NULL)
		return (-1);
	z->footer = 1;
	z->std_off = (int32_t)std;
	if (*s == '\0')
		return (0);
	if ((s = tz_posix_name(s)) == NULL)
		return (-1);
	dst = std + 3600;
	if (*s != ',' && *s != '\0' && (s = tz_posix_offset(s, &dst)) == NULL)
		return (-1);
	z->dst_off = (int32_t)dst;
	z->has_dst = 1;
	if (*s == '\0') {
		/* POSIX leaves it open; the US rules, as glibc does. */
		return (tz_posix_parse_rules(z, ",M3.2.0,M11.1.0"));
	}
	return (tz_posix_parse_rules(z, s));
}

static int
tz_posix_parse_rules(struct tz *z, const char *s)
{
	if (*s++ != ',' || (s = tz_posix_rule(s, &z->start)) == NULL ||
	    *s++ != ',' || (s = tz_posix_rule(s, &z->end)) == NULL ||
	    *s != '\0')
		return (-1);
	return (0);
}

/* The instant (as local seconds of that year) a rule names. */
static long long
tz_rule_local(const struct tz_rule *r, long long y)
{
	long long	days;
	int		wd1, day;

	switch (r->kind) {
	case 'J':
		days = tz_days_from_civil(y, 1, 1) + r->n - 1 +
		    (tz_leap(y) && r->n >= 60);
		break;
	case 'N':
		days = tz_days_from_civil(y, 1, 1) + r->n;
		break;
	default:
		days = tz_days_from_civil(y, r->m, 1);
		wd1 = tz_weekday(days);
		day = 1 + (r->d - wd1 + 7) % 7 + 7 * (r->w - 1);
		while (day > tz_month_days(y, r->m))
			day -= 7;
		days += day - 1;
		break;
	}
	return (days * 86400 + r->secs);
}

/* The footer's offset at t. */
static int32_t
tz_rule_offset(const struct tz *z, int64_t t)
{
	long long	y, s, e;
	int		m, d;

	if (!z->has_dst)
		return (z->std_off);
	tz_civil_from_days(tz_floor_div(t + z->std_off, 86400), &y, &m, &d);
	s = tz_rule_local(&z->start, y) - z->std_off;
	e = tz_rule_local(&z->end, y) - z->dst_off;
	if (s < e)
		return (t >= s && t < e ? z->dst_off : z->std_off);
	return (t >= e && t < s ? z->std_off : z->dst_off);
}

/* The offset east of UTC, in seconds, of the zone's clocks at t. */
int32_t
tz_offset(const struct tz *z, int64_t t)
{
	size_t	lo, hi, mid;

	if (z == NULL)
		return (0);
	if (z->n == 0)
		return (z->footer ? tz_rule_offset(z, t) : z->off0);
	if (t < z->trans[0])
		return (z->off0);
	if (t >= z->trans[z->n - 1])
		return (z->footer ? tz_rule_offset(z, t) : z->off[z->n - 1]);
	lo = 0;
	hi = z->n - 1;		/* trans[lo] <= t < trans[hi] */
	while (hi - lo > 1) {
		mid = lo + (hi - lo) / 2;
		if (t >= z->trans[mid])
			lo = mid;
		else
			hi = mid;
	}
	return (z->off[lo]);
}

/*
 * The first instant whose local time is at or after the local time l
 * (seconds since the epoch on the zone's clocks): l itself when it exists,
 * the earlier of two when the clocks went back, the end of the gap when
 * they jumped over it.
 */
int64_t
tz_local_to_utc(const struct tz *z, int64_t l)
{
	int64_t	 ua, ub, lo, hi, mid;
	int32_t	 oa, ob;
	int	 va, vb;

	oa = tz_offset(z, l - 2 * 86400);
	ob = tz_offset(z, l + 2 * 86400);
	ua = l - tz_offset(z, l - oa);
	ub = l - tz_offset(z, l - ob);
	va = ua + tz_offset(z, ua) == l;
	vb = ub + tz_offset(z, ub) == l;
	if (va && vb)
		return (ua < ub ? ua : ub);
	if (va)
		return (ua);
	if (vb)
		return (ub);
	/* A gap: the first instant whose local time is past l. */
	lo = l - 2 * 86400 - 26 * 3600;
	hi = l + 26 * 3600;
	while (hi - lo > 1) {
		mid = lo + (hi - lo) / 2;
		if (mid + tz_offset(z, mid) >= l)
			hi = mid;
		else
			lo = mid;
	}
	return (hi);
}

/* Read the whole file into memory; it is small. */
static uint8_t *
tz_read(const char *path, size_t *len, char **cause)
{
	struct stat	 sb;
	uint8_t		*buf;
	ssize_t		 n;
	size_t		 got = 0;
	int		 fd;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1) {
		xasprintf(cause, "%s: %s", path, strerror(errno));
		return (NULL);
	}
	if (fstat(fd, &sb) == -1 || !S_ISREG(sb.st_mode) ||
	    sb.st_size > TZ_FILE_MAX || sb.st_size < 44) {
		xasprintf(cause, "%s: not a zone file", path);
		close(fd);
		return (NULL);
	}
	buf = xmalloc((size_t)sb.st_size + 1);
	while (got < (size_t)sb.st_size) {
		n = read(fd, buf + got, (size_t)sb.st_size - got);
		if (n <= 0) {
			if (n == -1 && errno == EINTR)
				continue;
			xasprintf(cause, "%s: short read", path);
			free(buf);
			close(fd);
			return (NULL);
		}
		got += (size_t)n;
	}
	close(fd);
	buf[got] = '\0';
	*len = got;
	return (buf);
}

/* Parse one TZif body of times of tsize bytes at p; 0 or -1. */
static int
tz_parse_body(struct tz *z, const uint8_t *p, size_t len, size_t tsize,
    size_t *used)
{
	uint32_t	 isut, isstd, leap, timecnt, typecnt, charcnt;
	int32_t		 types[TZ_TYPES_MAX];
	size_t		 need, i, o;
	uint8_t		 idx;

	if (len < 44 || memcmp(p, "TZif", 4) != 0)
		return (-1);
	isut = tz_be32(p + 20);
	isstd = tz_be32(p + 24);
	leap = tz_be32(p + 28);
	timecnt = tz_be32(p + 32);
	typecnt = tz_be32(p + 36);
	charcnt = tz_be32(p + 40);
	if (timecnt > TZ_TRANS_MAX || typecnt == 0 || typecnt > TZ_TYPES_MAX ||
	    charcnt > 4096 || leap > 4096 || isut > typecnt ||
	    isstd > typecnt)
		return (-1);
	need = 44 + timecnt * tsize + timecnt + typecnt * 6 + charcnt +
	    leap * (tsize + 4) + isstd + isut;
	if (need > len)
		return (-1);
	*used = need;
	if (leap != 0)
		return (-2);
	o = 44 + timecnt * tsize + timecnt;
	for (i = 0; i < typecnt; i++) {
		types[i] = (int32_t)tz_be32(p + o + i * 6);
		if (types[i] < -26 * 3600 || types[i] > 26 * 3600)
			return (-1);
	}
	free(z->trans);
	free(z->off);
	z->n = timecnt;
	z->trans = xcalloc(timecnt + 1, sizeof *z->trans);
	z->off = xcalloc(timecnt + 1, sizeof *z->off);
	z->off0 = types[0];
	for (i = 0; i < timecnt; i++) {
		z->trans[i] = tsize == 8 ? tz_be64(p + 44 + i * 8) :
		    (int32_t)tz_be32(p + 44 + i * 4);
		if (i > 0 && z->trans[i] <= z->trans[i - 1])
			return (-1);
		idx = p[44 + timecnt * tsize + i];
		if (idx >= typecnt)
			return (-1);
		z->off[i] = types[idx];
	}
	return (0);
}

void
tz_free(struct tz *z)
{
	if (z == NULL)
		return;
	free(z->name);
	free(z->trans);
	free(z->off);
	free(z);
}

/*
 * The zone name (e.g. "Europe/Berlin", "UTC") read from dir (NULL: the
 * system's zoneinfo directory); NULL and *cause if it cannot be.
 */
struct tz *
tz_load(const char *dir, const char *name, char **cause)
{
	struct tz	*z;
	uint8_t		*buf = NULL;
	char		*path = NULL, *foot = NULL, *nl;
	size_t		 len, used;
	int		 rc;

	*cause = NULL;
	if (!tz_name_ok(name)) {
		xasprintf(cause, "\"%s\" is not a time zone name", name);
		return (NULL);
	}
	xasprintf(&path, "%s/%s", dir != NULL ? dir : TZ_DIR, name);
	if ((buf = tz_read(path, &len, cause)) == NULL) {
		free(path);
		return (NULL);
	}
	z = xcalloc(1, sizeof *z);
	z->name = xstrdup(name);
	rc = tz_parse_body(z, buf, len, 4, &used);
	if (rc == 0 && buf[4] >= '2') {
		rc = tz_parse_body(z, buf + used, len - used, 8, &len);
		if (rc == 0) {
			/* The footer: "\nTZ\n". */
			foot = (char *)buf + used + len;
			if (*foot != '\n' || (nl = strchr(foot + 1, '\n')) ==
			    NULL)
				rc = -1;
			else {
				*nl = '\0';
				if (tz_posix_parse(z, foot + 1) == -1)
					rc = -1;
			}
		}
	}
	if (rc != 0) {
		xasprintf(cause, "%s: %s", path, rc == -2 ? "a zone with leap "
		    "seconds cannot be used" : "not a valid zone file");
		tz_free(z);
		z = NULL;
	}
	free(buf);
	free(path);
	return (z);
}

const char *
tz_name(const struct tz *z)
{
	return (z != NULL ? z->name : "UTC");
}
