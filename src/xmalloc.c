/*
 * xmalloc.c: allocation wrappers that never return NULL.
 *
 * Running out of memory is one of the few things the daemon does not try to
 * survive: every caller would otherwise need a path that cannot be tested.
 */

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


#include "bsp.h"

void *
xmalloc(size_t size)
{
	void	*p;

	if (size == 0)
		fatalx("xmalloc: zero size");
	if ((p = malloc(size)) == NULL)
		fatal("xmalloc: allocating %zu bytes", size);
	return (p);
}

void *
xcalloc(size_t nmemb, size_t size)
{
	void	*p;

	if (nmemb == 0 || size == 0)
		fatalx("xcalloc: zero size");
	if ((p = calloc(nmemb, size)) == NULL)
		fatal("xcalloc: allocating %zu * %zu bytes", nmemb, size);
	return (p);
}

void *
xreallocarray(void *ptr, size_t nmemb, size_t size)
{
	void	*p;

	if (nmemb == 0 || size == 0)
		fatalx("xreallocarray: zero size");
	if (SIZE_MAX / nmemb < size)
		fatalx("xreallocarray: %zu * %zu overflows", nmemb, size);
	if ((p = realloc(ptr, nmemb * size)) == NULL)
		fatal("xreallocarray: allocating %zu * %zu bytes", nmemb, size);
	return (p);
}

char *
xstrdup(const char *s)
{
	char	*p;

	if ((p = strdup(s)) == NULL)
		fatal("xstrdup");
	return (p);
}

char *
xstrndup(const char *s, size_t n)
{
	char	*p;

	if ((p = strndup(s, n)) == NULL)
		fatal("xstrndup");
	return (p);
}

/* Copy n bytes that may hold NULs into a new NUL-terminated string. */
char *
xmemdup0(const void *s, size_t n)
{
	char	*p;

	p = xmalloc(n + 1);
	if (n != 0)
		memcpy(p, s, n);
	p[n] = '\0';
	return (p);
}

int
xasprintf(char **ret, const char *fmt, ...)
{
	va_list	ap;
	int	i;

	va_start(ap, fmt);
	i = xvasprintf(ret, fmt, ap);
	va_end(ap);
	return (i);
}

int
xvasprintf(char **ret, const char *fmt, va_list ap)
{
	int	i;

	i = vasprintf(ret, fmt, ap);
	if (i < 0 || *ret == NULL)
		fatal("xvasprintf");
	return (i);
}

/* Free a buffer that held a secret, wiping it first. */
/* Wipe memory that held a secret; the compiler may not skip it. */
void
memzero(void *p, size_t len)
{
	explicit_bzero(p, len);
}

void
freezero(void *p, size_t len)
{
	if (p == NULL)
		return;
	memzero(p, len);
	free(p);
}

/* Free a NUL-terminated secret string. */
void
freezero_str(char *s)
{
	if (s == NULL)
		return;
	freezero(s, strlen(s));
}

/*
 * Bounded string copy and append that always terminate; return the length
 * they tried to create, like OpenBSD's strlcpy/strlcat.
 */
size_t
bsp_strlcpy(char *dst, const char *src, size_t dsize)
{
	size_t	len = strlen(src);

	if (dsize != 0) {
		size_t n = len >= dsize ? dsize - 1 : len;
		memcpy(dst, src, n);
		dst[n] = '\0';
	}
	return (len);
}

size_t
bsp_strlcat(char *dst, const char *src, size_t dsize)
{
	size_t	dlen = strnlen(dst, dsize);

	if (dlen == dsize)
		return (dlen + strlen(src));
	return (dlen + bsp_strlcpy(dst + dlen, src, dsize - dlen));
}
