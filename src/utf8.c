/*
 * utf8.c: one step of UTF-8 validation. It calls nothing, so that the
 * log's escaper (log.c) can use it without reaching back up through the
 * allocating text helpers (text.c), xmalloc.c and log.c's fatal().
 */

#include <stddef.h>

#include "bsp.h"

/* Length of the valid UTF-8 sequence at s, or 0 if it is not one. */
size_t
utf8_seq(const unsigned char *s, size_t left)
{
	size_t	n, i;

	if (s[0] < 0x80)
		return (1);
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		n = 2;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		n = 3;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		n = 4;
	else
		return (0);
	if (n > left)
		return (0);
	for (i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return (0);
	}
	if (n == 3 && s[0] == 0xe0 && s[1] < 0xa0)
		return (0);
	if (n == 3 && s[0] == 0xed && s[1] >= 0xa0)
		return (0);
	if (n == 4 && s[0] == 0xf0 && s[1] < 0x90)
		return (0);
	if (n == 4 && s[0] == 0xf4 && s[1] >= 0x90)
		return (0);
	return (n);
}
