/*
 * text.c: text from the network and the configuration: shell-style globs,
 * printable ASCII, UTF-8 made safe for JSON and pages, one cookie from a
 * Cookie header, a percent-decoded path segment, and HTTP tokens.
 */

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "bsp.h"

/*
 * Shell-style glob: '*' matches any run (including none), '?' one character.
 * Iterative with single backtracking point, so it is linear-ish and cannot
 * be driven into exponential time by a hostile pattern or subject.
 */
int
glob_match(const char *pat, const char *s)
{
	const char	*star = NULL, *ss = NULL;

	while (*s != '\0') {
		if (*pat == '*') {
			star = pat++;
			ss = s;
		} else if (*pat == '?' || *pat == *s) {
			pat++;
			s++;
		} else if (star != NULL) {
			pat = star + 1;
			s = ++ss;
		} else
			return (0);
	}
	while (*pat == '*')
		pat++;
	return (*pat == '\0');
}

/* Printable ASCII only (no controls, no high bytes). */
int
str_is_printable(const char *s, size_t len)
{
	size_t	i;

	for (i = 0; i < len; i++) {
		if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] >= 0x7f)
			return (0);
	}
	return (1);
}

/*
 * A copy of text that is valid UTF-8 without control characters: invalid
 * bytes become U+FFFD, controls a space. For text from the network that
 * goes into JSON (jansson refuses invalid UTF-8) or onto a page.
 */
char *
utf8_sanitize(const char *s)
{
	const unsigned char	*u = (const unsigned char *)s;
	size_t			 len = strlen(s), i = 0, o = 0, n;
	char			*out;

	out = xmalloc(len * 3 + 1);
	while (i < len) {
		if ((n = utf8_seq(u + i, len - i)) == 0) {
			memcpy(out + o, "\xef\xbf\xbd", 3);
			o += 3;
			i++;
		} else if (n == 1 && (u[i] < 0x20 || u[i] == 0x7f)) {
			out[o++] = ' ';
			i++;
		} else {
			memcpy(out + o, u + i, n);
			o += n;
			i += n;
		}
	}
	out[o] = '\0';
	return (out);
}

/*
 * One cookie's value from a Cookie header into buf; -1 if it is missing,
 * present twice (which one would we believe?) or too long.
 */
int
cookie_find(const char *h, const char *name, char *buf, size_t len)
{
	size_t	nl = strlen(name), vl;
	int	found = 0;

	while (h != NULL && *h != '\0') {
		while (*h == ' ' || *h == ';')
			h++;
		vl = strcspn(h, ";");
		if (vl > nl && strncmp(h, name, nl) == 0 && h[nl] == '=') {
			if (found || vl - nl - 1 >= len)
				return (-1);	/* twice, or too long */
			memcpy(buf, h + nl + 1, vl - nl - 1);
			buf[vl - nl - 1] = '\0';
			found = 1;
		}
		h += vl;
	}
	return (found ? 0 : -1);
}

/*
 * Percent-decode a path segment once into a new string; NULL if it is
 * empty, malformed, longer than max decoded, or decodes to control
 * characters (a %00 included).
 */
char *
pct_decode_segment(const char *p, size_t len, size_t max)
{
	char	*out, *o;
	size_t	 i;
	int	 hi, lo;

	if (len == 0 || len > max * 3)
		return (NULL);
	out = o = xmalloc(len + 1);
	for (i = 0; i < len; i++) {
		if (p[i] == '%') {
			if (i + 2 >= len) {
				free(out);
				return (NULL);
			}
			hi = isxdigit((unsigned char)p[i + 1]) ?
			    (isdigit((unsigned char)p[i + 1]) ? p[i + 1] - '0' :
			    (tolower((unsigned char)p[i + 1]) - 'a' + 10)) : -1;
			lo = isxdigit((unsigned char)p[i + 2]) ?
			    (isdigit((unsigned char)p[i + 2]) ? p[i + 2] - '0' :
			    (tolower((unsigned char)p[i + 2]) - 'a' + 10)) : -1;
			if (hi < 0 || lo < 0) {
				free(out);
				return (NULL);
			}
			*o++ = (char)(hi * 16 + lo);
			i += 2;
		} else
			*o++ = p[i];
	}
	*o = '\0';
	if ((size_t)(o - out) > max ||
	    !str_is_printable(out, (size_t)(o - out))) {
		free(out);
		return (NULL);
	}
	return (out);
}

/*
 * The length of s if it is an RFC 9110 token (a method or a header name),
 * else 0: letters, digits and !#$%&'*+-.^_`|~, at least one.
 */
size_t
http_token_len(const char *s)
{
	const char	*p;

	for (p = s; *p != '\0'; p++) {
		if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		    (*p >= '0' && *p <= '9'))
			continue;
		switch (*p) {
		case '!': case '#': case '$': case '%': case '&': case '\'':
		case '*': case '+': case '-': case '.': case '^': case '_':
		case '`': case '|': case '~':
			continue;
		}
		return (0);
	}
	return ((size_t)(p - s));
}
