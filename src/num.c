/*
 * num.c: numbers written as text without printf, for what runs on every
 * relayed call (glibc's snprintf takes 1-1.5 k instructions for one
 * number). Depends on nothing of ours.
 */

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "bsp.h"

/* A long long in decimal into buf (at least 21 bytes); its length. */
size_t
num_lld(char *buf, long long v)
{
	char			 tmp[24];
	unsigned long long	 u;
	size_t			 n = 0, i = 0;

	u = v < 0 ? 0 - (unsigned long long)v : (unsigned long long)v;
	do {
		tmp[n++] = (char)('0' + u % 10);
		u /= 10;
	} while (u != 0);
	if (v < 0)
		buf[i++] = '-';
	while (n > 0)
		buf[i++] = tmp[--n];
	buf[i] = '\0';
	return (i);
}

/*
 * A double with six decimals into buf, as snprintf(buf, len, "%.6f")
 * writes it but for the last digit of a value halfway between two; its
 * length. Below 1e9 in size, v * 1e6 is an integer a double holds to the
 * unit; other values (and NaN) go to snprintf.
 */
size_t
num_fixed6(char *buf, size_t len, double v)
{
	long long	u;
	size_t		n;
	int		i;

	if (!(v > -1e9 && v < 1e9) || len < 32) {
		snprintf(buf, len, "%.6f", v);
		return (strlen(buf));
	}
	u = llround(v * 1e6);
	n = 0;
	if (u < 0 || (u == 0 && signbit(v)))
		buf[n++] = '-';
	if (u < 0)
		u = -u;
	n += num_lld(buf + n, u / 1000000);
	buf[n++] = '.';
	for (i = 5; i >= 0; i--, u /= 10)
		buf[n + (size_t)i] = (char)('0' + u % 10);
	n += 6;
	buf[n] = '\0';
	return (n);
}
