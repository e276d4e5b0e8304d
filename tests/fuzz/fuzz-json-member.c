/*
 * fuzz-json-member.c: libFuzzer target for json_member() (and so
 * json_members()) and json_uint(), the relay's reader of the usage in an
 * answer.
 *
 * Each input is JSON text, read for a few member names (the relay's usage
 * names, and short ones a fuzzer finds easily). The reader must never
 * read outside the input, and jansson is the oracle: whenever jansson
 * loads the input as an object the way the relay loads an answer, the
 * reader either says it cannot tell (allowed only for an escaped member
 * name, nesting deeper than it reads anywhere in the text, even in a
 * duplicate member that jansson's object no longer holds, or a NUL byte,
 * which jansson 2.14 drops after a number where it should refuse it) or
 * agrees with jansson: no member when jansson has none, else a value text
 * that jansson loads to an equal value; and json_uint() of that text gives
 * the number exactly when jansson's value is a non-negative integer.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "bsp.h"

int		 LLVMFuzzerTestOneInput(const uint8_t *, size_t);
static int	 fz_text_depth(const uint8_t *, size_t);

static const char *const fz_names[] = {
	"usage", "input_tokens", "output_tokens", "a", "b", "", NULL
};

/*
 * The deepest nesting of [ and { in JSON text (valid JSON: brackets inside
 * strings do not count). Measured on the text, not on jansson's object,
 * which keeps only the last of duplicate members.
 */
static int
fz_text_depth(const uint8_t *p, size_t len)
{
	size_t	i;
	int	d = 0, max = 0, str = 0;

	for (i = 0; i < len; i++) {
		if (str) {
			if (p[i] == '\\')
				i++;
			else if (p[i] == '"')
				str = 0;
		} else if (p[i] == '"')
			str = 1;
		else if (p[i] == '[' || p[i] == '{') {
			if (++d > max)
				max = d;
		} else if (p[i] == ']' || p[i] == '}')
			d--;
	}
	return (max);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char	*text = (const char *)data, *v;
	const char *const *name;
	json_t		*j, *want, *got;
	size_t		 vlen;
	long long	 n, expect;
	int		 r, unreadable;

	j = json_loadb(text, size, 0, NULL);
	unreadable = memchr(data, '\\', size) != NULL ||
	    memchr(data, '\0', size) != NULL ||
	    (j != NULL && fz_text_depth(data, size) > 32);
	for (name = fz_names; *name != NULL; name++) {
		r = json_member(text, size, *name, &v, &vlen);
		n = r == 1 ? json_uint(v, vlen) : r == 0 ? -1 : -2;
		if (r == 1 && (v < text || v + vlen > text + size))
			abort();
		if (!json_is_object(j))
			continue;
		want = json_object_get(j, *name);
		if (r == -1) {
			if (!unreadable)
				abort();	/* jansson reads it: so must we */
			continue;
		}
		if ((r == 0) != (want == NULL))
			abort();
		if (r == 1) {
			got = json_loadb(v, vlen, JSON_DECODE_ANY, NULL);
			if (got == NULL || !json_equal(got, want))
				abort();
			json_decref(got);
		}
		expect = json_is_integer(want) &&
		    json_integer_value(want) >= 0 ? json_integer_value(want) :
		    -1;
		if (n == -2) {
			/* Only a value too long for the reader's digits. */
			if (r != 1 || vlen <= 18)
				abort();
		} else if (n != expect)
			abort();
	}
	json_decref(j);
	return (0);
}
