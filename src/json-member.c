/*
 * json-member.c: members of a JSON object read from its text, without
 * building the object (the relay's usage counts; jansson decides whatever
 * this reader cannot).
 */

#include <ctype.h>
#include <string.h>

#include "bsp.h"

/*
 * A reader for one member of a JSON object, without building the object:
 * the relay reads the usage of every answer, and jansson's whole tree for
 * a 255-byte answer costs ten times what finding the member does. It
 * checks the structure (strings, nesting, separators) but takes numbers
 * and literals as runs of their characters; whatever it cannot read the
 * way jansson would (an escaped member name, nesting deeper than
 * JSON_SCAN_DEPTH, anything malformed) makes it answer -1, and the caller
 * then asks jansson. tests/fuzz/fuzz-json-member.c holds it to jansson's
 * answers.
 */
#define JSON_SCAN_DEPTH	32

static const char *
json_scan_ws(const char *p, const char *end)
{
	while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' ||
	    *p == '\r'))
		p++;
	return (p);
}

/* Past the string that starts at p ('"'); NULL if it does not end. */
static const char *
json_scan_string(const char *p, const char *end, int *escaped)
{
	*escaped = 0;
	for (p++; p < end; p++) {
		if (*p == '"')
			return (p + 1);
		if ((unsigned char)*p < 0x20)
			return (NULL);
		if (*p == '\\') {
			*escaped = 1;
			if (++p == end)
				return (NULL);
		}
	}
	return (NULL);
}

/* Past the value that starts at p; NULL if it cannot be read. */
static const char *
json_scan_value(const char *p, const char *end, int depth)
{
	const char	*s;
	char		 close;
	int		 escaped;

	if (p == end)
		return (NULL);
	if (*p == '"')
		return (json_scan_string(p, end, &escaped));
	if (*p != '{' && *p != '[') {
		for (s = p; p < end && (isalnum((unsigned char)*p) ||
		    *p == '-' || *p == '+' || *p == '.'); p++)
			;
		return (p > s ? p : NULL);
	}
	if (depth >= JSON_SCAN_DEPTH)
		return (NULL);
	close = *p == '{' ? '}' : ']';
	if ((p = json_scan_ws(p + 1, end)) < end && *p == close)
		return (p + 1);
	for (;;) {
		if (close == '}') {
			if (p == end || *p != '"' ||
			    (p = json_scan_string(p, end, &escaped)) == NULL)
				return (NULL);
			if ((p = json_scan_ws(p, end)) == end || *p != ':')
				return (NULL);
			p = json_scan_ws(p + 1, end);
		}
		if ((p = json_scan_value(p, end, depth + 1)) == NULL ||
		    (p = json_scan_ws(p, end)) == end)
			return (NULL);
		if (*p == close)
			return (p + 1);
		if (*p != ',')
			return (NULL);
		p = json_scan_ws(p + 1, end);
	}
}

/*
 * Each member of the JSON object text[0..len), in order, to cb with its
 * name (unescaped: a name with an escape makes the object unreadable) and
 * its value's text: 0 when the whole text was read, -1 when this reader
 * cannot tell (cb may have been called; what it saw does not count).
 */
int
json_members(const char *text, size_t len, json_member_cb cb, void *arg)
{
	const char	*p, *end = text + len, *k, *v;
	size_t		 klen;
	int		 escaped;

	p = json_scan_ws(text, end);
	if (p == end || *p != '{')
		return (-1);
	if ((p = json_scan_ws(p + 1, end)) < end && *p == '}')
		return (json_scan_ws(p + 1, end) == end ? 0 : -1);
	for (;;) {
		if (p == end || *p != '"')
			return (-1);
		k = p + 1;
		if ((p = json_scan_string(p, end, &escaped)) == NULL || escaped)
			return (-1);
		klen = (size_t)(p - 1 - k);
		if ((p = json_scan_ws(p, end)) == end || *p != ':')
			return (-1);
		v = p = json_scan_ws(p + 1, end);
		if ((p = json_scan_value(p, end, 1)) == NULL)
			return (-1);
		cb(arg, k, klen, v, (size_t)(p - v));
		if ((p = json_scan_ws(p, end)) == end)
			return (-1);
		if (*p == '}')
			return (json_scan_ws(p + 1, end) == end ? 0 : -1);
		if (*p != ',')
			return (-1);
		p = json_scan_ws(p + 1, end);
	}
}

struct json_member_find {
	const char	*name;
	size_t		 nlen;
	const char	*v;
	size_t		 vlen;
};

static void
json_member_match(void *arg, const char *k, size_t klen, const char *v,
    size_t vlen)
{
	struct json_member_find	*f = arg;

	if (klen == f->nlen && memcmp(k, f->name, klen) == 0) {
		f->v = v;		/* the last one, as jansson keeps */
		f->vlen = vlen;
	}
}

/*
 * The text of member name's value in the JSON object text[0..len): 1 and
 * *v, *vlen when there is one (the last, as jansson keeps the last of
 * duplicates), 0 when there is none, -1 when this reader cannot tell.
 */
int
json_member(const char *text, size_t len, const char *name, const char **v,
    size_t *vlen)
{
	struct json_member_find	f = { name, strlen(name), NULL, 0 };

	*v = NULL;
	*vlen = 0;
	if (json_members(text, len, json_member_match, &f) == -1)
		return (-1);
	if (f.v == NULL)
		return (0);
	*v = f.v;
	*vlen = f.vlen;
	return (1);
}

/*
 * A value's text as a non-negative integer, as jansson would take it
 * (digits only, no fraction or exponent): the number, -1 for anything
 * else, -2 when this reader cannot tell (19 digits and more).
 */
long long
json_uint(const char *v, size_t vlen)
{
	size_t		i;
	long long	n = 0;

	if (vlen == 2 && memcmp(v, "-0", 2) == 0)
		return (0);
	if (vlen > 18 && isdigit((unsigned char)v[0]))
		return (-2);		/* near the limits: jansson decides */
	if (vlen == 0 || vlen > 18 || (vlen > 1 && v[0] == '0'))
		return (-1);
	for (i = 0; i < vlen; i++) {
		if (!isdigit((unsigned char)v[i]))
			return (-1);
		n = n * 10 + (v[i] - '0');
	}
	return (n);
}
