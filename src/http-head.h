/*
 * http-head.h: a strict reader of HTTP/1.x request heads (RFC 9112).
 *
 * No libevent and no allocation: it reads a complete head (request line,
 * field lines, the empty line) from a buffer and says whether it is one a
 * server may act on. The server runs it on every head before evhttp, whose
 * own parser is lenient in the ways request smuggling needs.
 */

#ifndef HTTP_HEAD_H
#define HTTP_HEAD_H

#include <stddef.h>
#include <stdint.h>

#define HTTP_HEAD_MAX_FIELDS	128

/* A view into the buffer that was read; not NUL-terminated. */
struct http_span {
	const char	*p;
	size_t		 len;
};

struct http_head {
	struct http_span	 method;
	struct http_span	 target;	/* as sent, query included */
	struct http_span	 path;		/* target up to '?' */
	int			 minor;		/* HTTP/1.minor: 0 or 1 */
	size_t			 nfields;
	int			 chunked;	/* Transfer-Encoding: chunked */
	int			 has_length;	/* Content-Length given */
	uint64_t		 length;
	int			 close;		/* Connection: close */
	struct http_span	 authorization;	/* NULL p: absent */
	struct http_span	 api_key;	/* X-Api-Key */
};

size_t	 http_head_end(const char *, size_t);
int	 http_head_parse(const char *, size_t, size_t, struct http_head *,
	     const char **);
int	 http_head_has_body(const struct http_head *);

#endif /* HTTP_HEAD_H */
