/*
 * clock.c: time: the monotonic and wall clocks, ISO 8601 UTC stamps and
 * durations ("30s", "10m", "90d") as the configuration writes them.
 */

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <time.h>

#include "bsp.h"

double
now_mono(void)
{
	struct timespec	ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((double)ts.tv_sec + (double)ts.tv_nsec / 1e9);
}

time_t
now_wall(void)
{
	return (time(NULL));
}

void
time_iso8601(time_t t, char *buf, size_t len)
{
	struct tm	tm;

	gmtime_r(&t, &tm);
	if (strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		bsp_strlcpy(buf, "?", len);
}

/* "30", "30s", "10m", "2h", "90d", "1w" into seconds. */
int
parse_duration(const char *s, long long *out)
{
	char		*end;
	long long	 v, mul = 1;

	if (*s == '\0' || !isdigit((unsigned char)*s))
		return (-1);
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0)
		return (-1);
	if (*end != '\0') {
		if (end[1] != '\0')
			return (-1);
		switch (*end) {
		case 's':
			mul = 1;
			break;
		case 'm':
			mul = 60;
			break;
		case 'h':
			mul = 3600;
			break;
		case 'd':
			mul = 86400;
			break;
		case 'w':
			mul = 7 * 86400;
			break;
		default:
			return (-1);
		}
	}
	if (v > LLONG_MAX / mul)
		return (-1);
	*out = v * mul;
	return (0);
}
