/*
 * xmalloc.c: allocation wrappers that never return NULL.
 *
 * Running out of memory is one of the few things the daemon does not try to
 * survive: every caller would otherwise need a path that cannot be tested.
 */

#include <errno.h>
#include <malloc.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


#include <event2/event.h>

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
 * libevent's memory, kept for it. A relayed call makes and frees dozens
 * of its blocks: a strdup of every header name and value on both sides,
 * its requests, and buffer chains of 1, 2, 4, 8 or 16 KiB
 * (evbuffer_chain_new rounds up to a power of two) for each socket read
 * and each message written. glibc's per-thread cache keeps 7 free blocks
 * of a size, so most of them went through its bins, and every request of
 * 1 KiB or more first merged all the small blocks waiting in its fast bins
 * (malloc_consolidate): 15 % of the relay's CPU was in malloc and free.
 * So the blocks libevent frees are kept by size, up to EVMEM_KEEP of a
 * size and EVMEM_KEEP_BYTES of it (1.3 MB if every size were full; a
 * busy daemon fills a few), and handed to it again (under callgrind,
 * 271.8 k -> 243.6 k instructions a relayed call).
 *
 * Each is an ordinary block from malloc: one freed with free() (a line
 * from evbuffer_readln) is no error. A block is classed by what
 * malloc_usable_size says it holds (under AddressSanitizer, exactly what
 * was asked for), rounded down, and handed out for a request of at most
 * that; a request missing a kept block is malloc'd at its class's size.
 */
#define EVMEM_SMALL	64		/* usable 24, 40, ... 1016: 16 i + 8 */
#define EVMEM_LARGE	5		/* 1, 2, 4, 8, 16 KiB */
#define EVMEM_KEEP	32		/* blocks of a class, at most */
#define EVMEM_KEEP_BYTES 65536		/* and bytes */

static void	*evmem_kept[EVMEM_SMALL + EVMEM_LARGE][EVMEM_KEEP];
static int	 evmem_nkept[EVMEM_SMALL + EVMEM_LARGE];

/* The size a block of class c holds at least. */
static size_t
evmem_size(int c)
{
	if (c < EVMEM_SMALL)
		return (16 * (size_t)c + 8);
	return ((size_t)1024 << (c - EVMEM_SMALL));
}

void *
evmem_malloc(size_t size)
{
	int	c;

	if (size > (size_t)1024 << (EVMEM_LARGE - 1))
		return (malloc(size));
	if (size <= 24)
		c = 1;
	else if (size <= 16 * (EVMEM_SMALL - 1) + 8)
		c = (int)((size - 8 + 15) / 16);
	else
		for (c = EVMEM_SMALL; evmem_size(c) < size; c++)
			;
	if (evmem_nkept[c] > 0)
		return (evmem_kept[c][--evmem_nkept[c]]);
	return (malloc(evmem_size(c)));
}

void
evmem_free(void *p)
{
	size_t	n;
	int	c;

	if (p == NULL)
		return;
	n = malloc_usable_size(p);
	if (n < 24 || n >= (size_t)1024 << EVMEM_LARGE) {
		free(p);
		return;
	}
	if (n < 1024)
		c = (int)((n - 8) / 16);
	else
		for (c = EVMEM_SMALL; c + 1 < EVMEM_SMALL + EVMEM_LARGE &&
		    evmem_size(c + 1) <= n; c++)
			;
	if (evmem_nkept[c] == EVMEM_KEEP ||
	    evmem_nkept[c] * evmem_size(c) >= EVMEM_KEEP_BYTES)
		free(p);
	else
		evmem_kept[c][evmem_nkept[c]++] = p;
}

/*
 * Before anything of libevent's is made. Not with jemalloc, whose own
 * per-thread cache does this (the kept blocks cost it 3.5 k instructions
 * a relayed call under callgrind, where with glibc they save 28 k).
 */
void
evmem_init(void)
{
#ifndef BSP_JEMALLOC
	event_set_mem_functions(evmem_malloc, realloc, evmem_free);
#endif
}

/* The kept blocks, freed (at exit, for leak checkers). */
void
evmem_release(void)
{
	int	c;

	for (c = 0; c < EVMEM_SMALL + EVMEM_LARGE; c++)
		while (evmem_nkept[c] > 0)
			free(evmem_kept[c][--evmem_nkept[c]]);
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
