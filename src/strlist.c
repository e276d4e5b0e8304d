/*
 * strlist.c: lists of strings (configuration lists, groups, scopes,
 * model patterns): add, copy, look up, join, to and from JSON arrays.
 */

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "bsp.h"

void
strlist_add(struct strlist *l, const char *s)
{
	l->v = xreallocarray(l->v, l->n + 1, sizeof *l->v);
	l->v[l->n++] = xstrdup(s);
}

void
strlist_free(struct strlist *l)
{
	size_t	i;

	for (i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	l->v = NULL;
	l->n = 0;
}

void
strlist_copy(struct strlist *dst, const struct strlist *src)
{
	size_t	i;

	memset(dst, 0, sizeof *dst);
	for (i = 0; i < src->n; i++)
		strlist_add(dst, src->v[i]);
}

int
strlist_contains(const struct strlist *l, const char *s)
{
	size_t	i;

	for (i = 0; i < l->n; i++) {
		if (strcmp(l->v[i], s) == 0)
			return (1);
	}
	return (0);
}

int
strlist_contains_nocase(const struct strlist *l, const char *s)
{
	size_t	i;

	for (i = 0; i < l->n; i++) {
		if (strcasecmp(l->v[i], s) == 0)
			return (1);
	}
	return (0);
}

char *
strlist_join(const struct strlist *l, const char *sep)
{
	size_t	 i, len = 1, seplen = strlen(sep);
	char	*s;

	for (i = 0; i < l->n; i++)
		len += strlen(l->v[i]) + seplen;
	s = xmalloc(len);
	s[0] = '\0';
	for (i = 0; i < l->n; i++) {
		if (i != 0)
			bsp_strlcat(s, sep, len);
		bsp_strlcat(s, l->v[i], len);
	}
	return (s);
}

/* A JSON array of the list's strings. */
json_t *
strlist_to_json(const struct strlist *l)
{
	json_t	*a = json_array();
	size_t	 i;

	for (i = 0; i < l->n; i++)
		json_array_append_new(a, json_string(l->v[i]));
	return (a);
}

/* The strings of a JSON array in text (NULL or not an array: nothing). */
void
strlist_from_json_text(struct strlist *l, const char *text)
{
	json_t	*j, *v;
	size_t	 i;

	if (text == NULL || (j = json_loads(text, 0, NULL)) == NULL)
		return;
	json_array_foreach(j, i, v) {
		if (json_is_string(v))
			strlist_add(l, json_string_value(v));
	}
	json_decref(j);
}
