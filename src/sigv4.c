/*
 * sigv4.c: AWS Signature Version 4 request signing.
 *
 * Builds the canonical request (botocore auth.py SigV4Auth and
 * @smithy/signature-v4 behaviour for non-S3 services: the wire path is
 * normalised and encoded once more, the query is decoded and re-encoded),
 * the string to sign, and the Authorization header. The signing key and
 * the signature are crypto.c's (crypto_sigv4_sign): no key byte is held
 * here.
 */

#include <sys/types.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>


#include "bsp.h"
#include "crypto.h"
#include "sigv4.h"

#define SIGV4_HASH_LEN		32
#define SIGV4_REQUEST_TYPE	"aws4_request"

#define SIGV4_SBUF_INLINE	1024

/*
 * A string under construction, with a ceiling. It starts in its own
 * inline storage and moves to the heap only when it outgrows it, so a
 * signature of an ordinary request allocates nothing; initialised in
 * place (sigv4_sbuf_init), never copied.
 */
struct sigv4_sbuf {
	char	*p;
	size_t	 len;
	size_t	 cap;
	int	 overflow;
	int	 heap;			/* p is allocated */
	char	 inl[SIGV4_SBUF_INLINE];
};

/* A header to sign, as offsets into the scratch buffer (which may move). */
struct sigv4_hdr {
	size_t	 name;		/* lowercased */
	size_t	 value;		/* trimmed, whitespace runs collapsed */
	size_t	 idx;		/* input order, to keep repeats in order */
};

struct sigv4_seg {
	const char	*p;
	size_t		 len;
};

struct sigv4_qparam {
	char	*key;		/* encoded */
	char	*value;		/* encoded */
};

/* Everything sigv4_sign() and sigv4_canonical() share. */
struct sigv4_ctx {
	struct sigv4_sbuf	 creq;
	struct sigv4_sbuf	 sts;
	struct sigv4_sbuf	 signed_headers;
	struct sigv4_sbuf	 scratch;	/* header names and values */
	char			 amz_date[SIGV4_AMZDATE_LEN];
	char			 date[9];
	char			 content_sha256[SIGV4_HEX_LEN];
};

static void	 sigv4_sbuf_init(struct sigv4_sbuf *);
static char	*sigv4_sbuf_reserve(struct sigv4_sbuf *, size_t);
static void	 sigv4_sbuf_add(struct sigv4_sbuf *, const void *, size_t);
static void	 sigv4_sbuf_adds(struct sigv4_sbuf *, const char *);
static void	 sigv4_sbuf_addc(struct sigv4_sbuf *, char);
static char	*sigv4_sbuf_take(struct sigv4_sbuf *);
static void	 sigv4_sbuf_free(struct sigv4_sbuf *);
static int	 sigv4_unreserved(unsigned char);
static void	 sigv4_encode(struct sigv4_sbuf *, const char *, size_t, int);
static int	 sigv4_hexval(int);
static char	*sigv4_decode_encode(const char *, size_t);
static int	 sigv4_qparam_cmp(const void *, const void *);
static void	 sigv4_add_uri(struct sigv4_sbuf *, const char *);
static void	 sigv4_add_query(struct sigv4_sbuf *, const char *);
static int	 sigv4_is_token(const char *);
static int	 sigv4_field_ok(const char *);
static int	 sigv4_reserved_header(const char *);
static int	 sigv4_scratch_name(struct sigv4_sbuf *, const char *,
		     size_t *);
static int	 sigv4_scratch_value(struct sigv4_sbuf *, const char *,
		     size_t *);
static void	 sigv4_hdr_sort(const struct sigv4_sbuf *, struct sigv4_hdr *,
		     size_t);
static int	 sigv4_amz_date(time_t, char [SIGV4_AMZDATE_LEN]);
static int	 sigv4_cat(char *, size_t, size_t *, const char *);
static int	 sigv4_add_headers(struct sigv4_ctx *,
		     const struct sigv4_request *, const struct sigv4_creds *,
		     const char **);
static void	 sigv4_hex(const unsigned char *, size_t, char *);
static int	 sigv4_sha256_hex(const void *, size_t, char *);
static int	 sigv4_check(const struct sigv4_request *,
		     const struct sigv4_creds *, const char **);
static int	 sigv4_build(struct sigv4_ctx *, const struct sigv4_request *,
		     const struct sigv4_creds *, const char **);
static void	 sigv4_ctx_free(struct sigv4_ctx *);

static void
sigv4_sbuf_init(struct sigv4_sbuf *sb)
{
	sb->p = sb->inl;
	sb->len = 0;
	sb->cap = sizeof sb->inl;
	sb->overflow = 0;
	sb->heap = 0;
	sb->p[0] = '\0';
}

/*
 * Room for len more bytes (and a NUL) at sb->p + sb->len, or NULL when
 * that would pass the ceiling (the buffer is then marked overflowed).
 */
static char *
sigv4_sbuf_reserve(struct sigv4_sbuf *sb, size_t len)
{
	size_t	 newcap;
	char	*np;

	if (sb->overflow)
		return (NULL);
	if (len > SIGV4_MAX_CANONICAL - sb->len) {
		sb->overflow = 1;
		return (NULL);
	}
	if (sb->len + len + 1 > sb->cap) {
		newcap = sb->cap;
		while (newcap < sb->len + len + 1)
			newcap *= 2;
		if (sb->heap)
			np = xreallocarray(sb->p, newcap, 1);
		else {
			np = xmalloc(newcap);
			memcpy(np, sb->p, sb->len + 1);
		}
		sb->p = np;
		sb->cap = newcap;
		sb->heap = 1;
	}
	return (sb->p + sb->len);
}

static void
sigv4_sbuf_add(struct sigv4_sbuf *sb, const void *data, size_t len)
{
	char	*o;

	if ((o = sigv4_sbuf_reserve(sb, len)) == NULL)
		return;
	if (len != 0)
		memcpy(o, data, len);
	sb->len += len;
	sb->p[sb->len] = '\0';
}

static void
sigv4_sbuf_adds(struct sigv4_sbuf *sb, const char *s)
{
	sigv4_sbuf_add(sb, s, strlen(s));
}

static void
sigv4_sbuf_addc(struct sigv4_sbuf *sb, char c)
{
	if (!sb->overflow && sb->len + 2 <= sb->cap &&
	    sb->len < SIGV4_MAX_CANONICAL) {
		sb->p[sb->len++] = c;
		sb->p[sb->len] = '\0';
		return;
	}
	sigv4_sbuf_add(sb, &c, 1);
}

/* Hand over the string, allocated (NULL if overflowed); sb is reset. */
static char *
sigv4_sbuf_take(struct sigv4_sbuf *sb)
{
	char	*p;

	if (sb->overflow) {
		sigv4_sbuf_free(sb);
		return (NULL);
	}
	p = sb->heap ? sb->p : xmemdup0(sb->p, sb->len);
	sigv4_sbuf_init(sb);
	return (p);
}

static void
sigv4_sbuf_free(struct sigv4_sbuf *sb)
{
	if (sb->heap)
		free(sb->p);
	sigv4_sbuf_init(sb);
}

static int
sigv4_unreserved(unsigned char c)
{
	return ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
	    (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.' ||
	    c == '~');
}

/* UriEncode(): unreserved bytes stay, the rest become %XX (upper case). */
static void
sigv4_encode(struct sigv4_sbuf *sb, const char *s, size_t len, int keep_slash)
{
	static const char	 hex[] = "0123456789ABCDEF";
	unsigned char		 c;
	char			 pct[3];
	size_t			 i;

	size_t			 run;

	for (i = 0; i < len; i += run) {
		/* A run of bytes that stay as they are, in one copy. */
		for (run = 0; i + run < len; run++) {
			c = (unsigned char)s[i + run];
			if (!sigv4_unreserved(c) && !(keep_slash && c == '/'))
				break;
		}
		if (run != 0) {
			sigv4_sbuf_add(sb, s + i, run);
			continue;
		}
		c = (unsigned char)s[i];
		pct[0] = '%';
		pct[1] = hex[c >> 4];
		pct[2] = hex[c & 0xf];
		sigv4_sbuf_add(sb, pct, 3);
		run = 1;
	}
}

static int
sigv4_hexval(int c)
{
	if (c >= '0' && c <= '9')
		return (c - '0');
	if (c >= 'a' && c <= 'f')
		return (c - 'a' + 10);
	if (c >= 'A' && c <= 'F')
		return (c - 'A' + 10);
	return (-1);
}

/*
 * Percent-decode a query key or value and encode it again canonically.
 * A '%' not followed by two hex digits is taken literally; '+' is a
 * literal plus, as in @smithy/signature-v4 (it becomes %2B).
 */
static char *
sigv4_decode_encode(const char *s, size_t len)
{
	struct sigv4_sbuf	 sb;
	char			 c;
	size_t			 i;
	int			 hi, lo;

	sigv4_sbuf_init(&sb);
	for (i = 0; i < len; i++) {
		c = s[i];
		if (c == '%' && len - i >= 3 &&
		    (hi = sigv4_hexval((unsigned char)s[i + 1])) != -1 &&
		    (lo = sigv4_hexval((unsigned char)s[i + 2])) != -1) {
			c = (char)((hi << 4) | lo);
			i += 2;
		}
		sigv4_encode(&sb, &c, 1, 0);
	}
	return (sigv4_sbuf_take(&sb));
}

static int
sigv4_qparam_cmp(const void *a, const void *b)
{
	const struct sigv4_qparam	*pa = a, *pb = b;
	int				 r;

	if ((r = strcmp(pa->key, pb->key)) != 0)
		return (r);
	return (strcmp(pa->value, pb->value));
}

/*
 * Canonical URI: remove "." and ".." segments and empty segments
 * (botocore normalize_url_path), keep a leading and a trailing '/', and
 * UriEncode each segment of what is left. The path is not decoded.
 */
static void
sigv4_add_uri(struct sigv4_sbuf *sb, const char *path)
{
	struct sigv4_seg	*segs;
	const char		*s;
	size_t			 nmax, n, i, plen, start, end, len;

	if (path == NULL || *path == '\0') {
		sigv4_sbuf_addc(sb, '/');
		return;
	}
	plen = strlen(path);
	nmax = 1;
	for (s = path; *s != '\0'; s++) {
		if (*s == '/')
			nmax++;
	}
	segs = xreallocarray(NULL, nmax, sizeof *segs);
	n = 0;
	for (start = 0; start <= plen; start = end + 1) {
		for (end = start; end < plen && path[end] != '/'; end++)
			;
		s = path + start;
		len = end - start;
		if (len == 0 || (len == 1 && s[0] == '.'))
			continue;
		if (len == 2 && s[0] == '.' && s[1] == '.') {
			if (n > 0)
				n--;
			continue;
		}
		segs[n].p = s;
		segs[n].len = len;
		n++;
	}
	if (path[0] == '/')
		sigv4_sbuf_addc(sb, '/');
	for (i = 0; i < n; i++) {
		if (i > 0)
			sigv4_sbuf_addc(sb, '/');
		sigv4_encode(sb, segs[i].p, segs[i].len, 0);
	}
	if (path[plen - 1] == '/' && n > 0)
		sigv4_sbuf_addc(sb, '/');
	free(segs);
}

/*
 * Canonical query: split on '&' (empty pieces are skipped), split each
 * piece at its first '=', decode and re-encode both halves, sort by key
 * then value, join as k=v with '&'.
 */
static void
sigv4_add_query(struct sigv4_sbuf *sb, const char *query)
{
	struct sigv4_qparam	*qp;
	const char		*s, *eq;
	size_t			 nmax, n, i, qlen, start, end, klen;

	if (query == NULL || *query == '\0')
		return;
	qlen = strlen(query);
	nmax = 1;
	for (s = query; *s != '\0'; s++) {
		if (*s == '&')
			nmax++;
	}
	qp = xreallocarray(NULL, nmax, sizeof *qp);
	n = 0;
	for (start = 0; start <= qlen; start = end + 1) {
		for (end = start; end < qlen && query[end] != '&'; end++)
			;
		if (end == start)
			continue;
		s = query + start;
		if ((eq = memchr(s, '=', end - start)) == NULL)
			klen = end - start;
		else
			klen = eq - s;
		qp[n].key = sigv4_decode_encode(s, klen);
		if (eq == NULL)
			qp[n].value = sigv4_decode_encode("", 0);
		else
			qp[n].value = sigv4_decode_encode(eq + 1,
			    end - start - klen - 1);
		if (qp[n].key == NULL || qp[n].value == NULL) {
			sb->overflow = 1;
			free(qp[n].key);
			free(qp[n].value);
			break;
		}
		n++;
	}
	qsort(qp, n, sizeof *qp, sigv4_qparam_cmp);
	for (i = 0; i < n; i++) {
		if (i > 0)
			sigv4_sbuf_addc(sb, '&');
		sigv4_sbuf_adds(sb, qp[i].key);
		sigv4_sbuf_addc(sb, '=');
		sigv4_sbuf_adds(sb, qp[i].value);
		free(qp[i].key);
		free(qp[i].value);
	}
	free(qp);
}

/* An RFC 9110 token (method or header name). */
static int
sigv4_is_token(const char *s)
{
	return (s != NULL && http_token_len(s) > 0);
}

/* Access key id, region, service: printable, no '/', ',' or space. */
static int
sigv4_field_ok(const char *s)
{
	const unsigned char	*p;

	if (s == NULL || *s == '\0' || strlen(s) >= SIGV4_MAX_FIELD)
		return (0);
	for (p = (const unsigned char *)s; *p != '\0'; p++) {
		if (*p <= 0x20 || *p >= 0x7f || *p == '/' || *p == ',')
			return (0);
	}
	return (1);
}

static int
sigv4_reserved_header(const char *lname)
{
	static const char *const reserved[] = {
		"host", "authorization", "x-amz-date",
		"x-amz-security-token", "x-amz-content-sha256",
	};
	size_t	i;

	for (i = 0; i < nitems(reserved); i++) {
		if (strcmp(lname, reserved[i]) == 0)
			return (1);
	}
	return (0);
}

/* A header name, lowercased, into the scratch buffer at *off. */
static int
sigv4_scratch_name(struct sigv4_sbuf *sb, const char *name, size_t *off)
{
	size_t	 len = strlen(name), i;
	char	*o;

	if ((o = sigv4_sbuf_reserve(sb, len + 1)) == NULL)
		return (-1);
	for (i = 0; i < len; i++)
		o[i] = name[i] >= 'A' && name[i] <= 'Z' ?
		    name[i] - 'A' + 'a' : name[i];
	o[len] = '\0';
	*off = sb->len;
	sb->len += len + 1;
	sb->p[sb->len] = '\0';
	return (0);
}

/*
 * A header value, trimmed and with whitespace runs collapsed, into the
 * scratch buffer at *off; -1 on CR or LF (or past the ceiling).
 */
static int
sigv4_scratch_value(struct sigv4_sbuf *sb, const char *v, size_t *off)
{
	size_t	 len, n = 0;
	char	*o;
	int	 space = 0;

	if (strpbrk(v, "\r\n") != NULL)
		return (-1);
	while (*v == ' ' || *v == '\t')
		v++;
	len = strlen(v);
	if ((o = sigv4_sbuf_reserve(sb, len + 1)) == NULL)
		return (-1);
	for (; *v != '\0'; v++) {
		if (*v == ' ' || *v == '\t') {
			space = 1;
			continue;
		}
		if (space)
			o[n++] = ' ';
		space = 0;
		o[n++] = *v;
	}
	o[n] = '\0';
	*off = sb->len;
	sb->len += n + 1;
	sb->p[sb->len] = '\0';
	return (0);
}

/*
 * Sort by name, repeats in input order: an insertion sort (stable), as
 * there are only a few headers.
 */
static void
sigv4_hdr_sort(const struct sigv4_sbuf *sb, struct sigv4_hdr *h, size_t n)
{
	struct sigv4_hdr	t;
	size_t			i, j;

	for (i = 1; i < n; i++) {
		t = h[i];
		for (j = i; j > 0 &&
		    strcmp(sb->p + h[j - 1].name, sb->p + t.name) > 0; j--)
			h[j] = h[j - 1];
		h[j] = t;
	}
}

/* Canonical headers and the signed-header list. */
static int
sigv4_add_headers(struct sigv4_ctx *ctx, const struct sigv4_request *req,
    const struct sigv4_creds *creds, const char **errstr)
{
	struct sigv4_hdr	 h[SIGV4_MAX_HEADERS + 4];
	struct sigv4_sbuf	*sc = &ctx->scratch;
	const char		*name, *value;
	size_t			 n = 0, i;

	if (req->nheaders > SIGV4_MAX_HEADERS) {
		*errstr = "too many headers to sign";
		return (-1);
	}
	if (req->nheaders != 0 && req->headers == NULL) {
		*errstr = "missing headers";
		return (-1);
	}
	for (i = 0; i < req->nheaders; i++) {
		if (!sigv4_is_token(req->headers[i].name) ||
		    req->headers[i].value == NULL) {
			*errstr = "invalid header name";
			return (-1);
		}
		if (sigv4_scratch_name(sc, req->headers[i].name,
		    &h[n].name) == -1)
			goto toolong;
		h[n].idx = n;
		n++;
		if (sigv4_reserved_header(sc->p + h[n - 1].name)) {
			*errstr = "header is set by the signer";
			return (-1);
		}
		if (sigv4_scratch_value(sc, req->headers[i].value,
		    &h[n - 1].value) == -1) {
			if (sc->overflow)
				goto toolong;
			*errstr = "header value has CR or LF";
			return (-1);
		}
	}
	if (req->host == NULL || *req->host == '\0' ||
	    sigv4_scratch_value(sc, req->host, &h[n].value) == -1 ||
	    sc->p[h[n].value] == '\0') {
		if (sc->overflow)
			goto toolong;
		*errstr = "invalid host";
		return (-1);
	}
	if (sigv4_scratch_name(sc, "host", &h[n].name) == -1)
		goto toolong;
	h[n].idx = n;
	n++;
	if (sigv4_scratch_name(sc, "x-amz-date", &h[n].name) == -1 ||
	    sigv4_scratch_value(sc, ctx->amz_date, &h[n].value) == -1)
		goto toolong;
	h[n].idx = n;
	n++;
	if (creds->session_token != NULL && *creds->session_token != '\0') {
		if (sigv4_scratch_name(sc, "x-amz-security-token",
		    &h[n].name) == -1)
			goto toolong;
		h[n].idx = n;
		if (sigv4_scratch_value(sc, creds->session_token,
		    &h[n++].value) == -1) {
			if (sc->overflow)
				goto toolong;
			*errstr = "invalid session token";
			return (-1);
		}
	}
	if (req->flags & SIGV4_CONTENT_SHA256) {
		if (sigv4_scratch_name(sc, "x-amz-content-sha256",
		    &h[n].name) == -1 ||
		    sigv4_scratch_value(sc, ctx->content_sha256,
		    &h[n].value) == -1)
			goto toolong;
		h[n].idx = n;
		n++;
	}

	sigv4_hdr_sort(sc, h, n);
	for (i = 0; i < n; i++) {
		name = sc->p + h[i].name;
		value = sc->p + h[i].value;
		if (i > 0 && strcmp(name, sc->p + h[i - 1].name) == 0) {
			sigv4_sbuf_addc(&ctx->creq, ',');
			sigv4_sbuf_adds(&ctx->creq, value);
			continue;
		}
		if (i > 0) {
			sigv4_sbuf_addc(&ctx->creq, '\n');
			sigv4_sbuf_addc(&ctx->signed_headers, ';');
		}
		sigv4_sbuf_adds(&ctx->creq, name);
		sigv4_sbuf_addc(&ctx->creq, ':');
		sigv4_sbuf_adds(&ctx->creq, value);
		sigv4_sbuf_adds(&ctx->signed_headers, name);
	}
	sigv4_sbuf_adds(&ctx->creq, "\n\n");
	return (0);
toolong:
	*errstr = "canonical request too long";
	return (-1);
}

static void
sigv4_hex(const unsigned char *in, size_t len, char *out)
{
	static const char	hex[] = "0123456789abcdef";
	size_t			i;

	for (i = 0; i < len; i++) {
		out[2 * i] = hex[in[i] >> 4];
		out[2 * i + 1] = hex[in[i] & 0xf];
	}
	out[2 * len] = '\0';
}

static int
sigv4_sha256_hex(const void *data, size_t len, char *out)
{
	uint8_t	dg[CRYPTO_HASH_LEN];

	crypto_sha256(data, len, dg);
	sigv4_hex(dg, sizeof dg, out);
	return (0);
}

/* "%Y%m%dT%H%M%SZ" of a UTC time (years 1000 to 9999), without strftime. */
static int
sigv4_amz_date(time_t when, char out[SIGV4_AMZDATE_LEN])
{
	struct tm	tm;
	int		v[6], w[6] = { 4, 2, 2, 2, 2, 2 }, i, j;
	char		*o = out;

	if (gmtime_r(&when, &tm) == NULL || tm.tm_year < 1000 - 1900 ||
	    tm.tm_year > 9999 - 1900)
		return (-1);
	v[0] = tm.tm_year + 1900;
	v[1] = tm.tm_mon + 1;
	v[2] = tm.tm_mday;
	v[3] = tm.tm_hour;
	v[4] = tm.tm_min;
	v[5] = tm.tm_sec;
	for (i = 0; i < 6; i++) {
		if (i == 3)
			*o++ = 'T';
		for (j = w[i] - 1; j >= 0; j--) {
			o[j] = (char)('0' + v[i] % 10);
			v[i] /= 10;
		}
		o += w[i];
	}
	*o++ = 'Z';
	*o = '\0';
	return (0);
}

/* Append s to dst (size dsize) at *off; -1 if it does not fit. */
static int
sigv4_cat(char *dst, size_t dsize, size_t *off, const char *s)
{
	size_t	len = strlen(s);

	if (len >= dsize - *off)
		return (-1);
	memcpy(dst + *off, s, len + 1);
	*off += len;
	return (0);
}

/* Refuse what cannot be signed: each field the signer relies on. */
static int
sigv4_check(const struct sigv4_request *req, const struct sigv4_creds *creds,
    const char **errstr)
{
	if (req == NULL || creds == NULL) {
		*errstr = "missing request or credentials";
		return (-1);
	}
	if (!sigv4_is_token(req->method)) {
		*errstr = "invalid method";
		return (-1);
	}
	if (!sigv4_field_ok(req->region) || !sigv4_field_ok(req->service)) {
		*errstr = "invalid region or service";
		return (-1);
	}
	if (!sigv4_field_ok(creds->access_key_id) ||
	    creds->secret_access_key == NULL ||
	    *creds->secret_access_key == '\0' ||
	    strlen(creds->secret_access_key) > CRYPTO_SIGV4_SECRET_MAX) {
		*errstr = "invalid credentials";
		return (-1);
	}
	if (req->payload == NULL && req->payload_len != 0) {
		*errstr = "missing payload";
		return (-1);
	}
	return (0);
}

/* Validate the inputs and build the canonical request and string to sign. */
static int
sigv4_build(struct sigv4_ctx *ctx, const struct sigv4_request *req,
    const struct sigv4_creds *creds, const char **errstr)
{
	char		hash[SIGV4_HEX_LEN];
	int		rc = -1;

	sigv4_sbuf_init(&ctx->creq);
	sigv4_sbuf_init(&ctx->sts);
	sigv4_sbuf_init(&ctx->signed_headers);
	sigv4_sbuf_init(&ctx->scratch);
	if (sigv4_check(req, creds, errstr) == -1)
		return (-1);
	if (sigv4_amz_date(req->when, ctx->amz_date) == -1) {
		*errstr = "invalid time";
		return (-1);
	}
	memcpy(ctx->date, ctx->amz_date, 8);
	ctx->date[8] = '\0';
	if (sigv4_sha256_hex(req->payload, req->payload_len,
	    ctx->content_sha256) == -1) {
		*errstr = "SHA-256 failed";
		return (-1);
	}

	sigv4_sbuf_adds(&ctx->creq, req->method);
	sigv4_sbuf_addc(&ctx->creq, '\n');
	sigv4_add_uri(&ctx->creq, req->path);
	sigv4_sbuf_addc(&ctx->creq, '\n');
	sigv4_add_query(&ctx->creq, req->query);
	sigv4_sbuf_addc(&ctx->creq, '\n');
	if (sigv4_add_headers(ctx, req, creds, errstr) == -1)
		goto out;
	sigv4_sbuf_add(&ctx->creq, ctx->signed_headers.p,
	    ctx->signed_headers.len);
	sigv4_sbuf_addc(&ctx->creq, '\n');
	sigv4_sbuf_adds(&ctx->creq, ctx->content_sha256);
	if (ctx->creq.overflow || ctx->signed_headers.overflow) {
		*errstr = "canonical request too long";
		goto out;
	}

	if (sigv4_sha256_hex(ctx->creq.p, ctx->creq.len, hash) == -1) {
		*errstr = "SHA-256 failed";
		goto out;
	}
	sigv4_sbuf_adds(&ctx->sts, SIGV4_ALGORITHM "\n");
	sigv4_sbuf_adds(&ctx->sts, ctx->amz_date);
	sigv4_sbuf_addc(&ctx->sts, '\n');
	sigv4_sbuf_adds(&ctx->sts, ctx->date);
	sigv4_sbuf_addc(&ctx->sts, '/');
	sigv4_sbuf_adds(&ctx->sts, req->region);
	sigv4_sbuf_addc(&ctx->sts, '/');
	sigv4_sbuf_adds(&ctx->sts, req->service);
	sigv4_sbuf_adds(&ctx->sts, "/" SIGV4_REQUEST_TYPE "\n");
	sigv4_sbuf_adds(&ctx->sts, hash);
	if (ctx->sts.overflow) {
		*errstr = "string to sign too long";
		goto out;
	}
	rc = 0;
out:
	if (rc == -1)
		sigv4_ctx_free(ctx);
	return (rc);
}

static void
sigv4_ctx_free(struct sigv4_ctx *ctx)
{
	sigv4_sbuf_free(&ctx->creq);
	sigv4_sbuf_free(&ctx->sts);
	sigv4_sbuf_free(&ctx->signed_headers);
	sigv4_sbuf_free(&ctx->scratch);
}

int
sigv4_sign(const struct sigv4_request *req, const struct sigv4_creds *creds,
    struct sigv4_result *res, const char **errstr)
{
	struct sigv4_ctx	 ctx;
	uint8_t			 sig[SIGV4_HASH_LEN];
	const char		*dummy;
	char			*a;
	size_t			 o = 0, as;
	int			 rv = -1;

	if (errstr == NULL)
		errstr = &dummy;
	*errstr = NULL;
	memset(res, 0, sizeof *res);
	if (sigv4_build(&ctx, req, creds, errstr) == -1)
		return (-1);

	if (crypto_sigv4_sign(creds->secret_access_key, ctx.date, req->region,
	    req->service, ctx.sts.p, ctx.sts.len, sig) == -1) {
		*errstr = "HMAC failed";
		goto out;
	}
	sigv4_hex(sig, sizeof sig, res->signature);
	a = res->authorization;
	as = sizeof res->authorization;
	if (sigv4_cat(a, as, &o, SIGV4_ALGORITHM " Credential=") == -1 ||
	    sigv4_cat(a, as, &o, creds->access_key_id) == -1 ||
	    sigv4_cat(a, as, &o, "/") == -1 ||
	    sigv4_cat(a, as, &o, ctx.date) == -1 ||
	    sigv4_cat(a, as, &o, "/") == -1 ||
	    sigv4_cat(a, as, &o, req->region) == -1 ||
	    sigv4_cat(a, as, &o, "/") == -1 ||
	    sigv4_cat(a, as, &o, req->service) == -1 ||
	    sigv4_cat(a, as, &o, "/" SIGV4_REQUEST_TYPE ", SignedHeaders=")
	    == -1 ||
	    sigv4_cat(a, as, &o, ctx.signed_headers.p) == -1 ||
	    sigv4_cat(a, as, &o, ", Signature=") == -1 ||
	    sigv4_cat(a, as, &o, res->signature) == -1) {
		*errstr = "authorization header too long";
		goto out;
	}
	memcpy(res->amz_date, ctx.amz_date, sizeof res->amz_date);
	memcpy(res->content_sha256, ctx.content_sha256,
	    sizeof res->content_sha256);

	res->out[res->nout].name = "Authorization";
	res->out[res->nout++].value = res->authorization;
	res->out[res->nout].name = "X-Amz-Date";
	res->out[res->nout++].value = res->amz_date;
	if (creds->session_token != NULL && *creds->session_token != '\0') {
		res->security_token = creds->session_token;
		res->out[res->nout].name = "X-Amz-Security-Token";
		res->out[res->nout++].value = creds->session_token;
	}
	if (req->flags & SIGV4_CONTENT_SHA256) {
		res->out[res->nout].name = "X-Amz-Content-Sha256";
		res->out[res->nout++].value = res->content_sha256;
	}
	rv = 0;
out:
	if (rv == -1)
		memset(res, 0, sizeof *res);
	sigv4_ctx_free(&ctx);
	return (rv);
}

int
sigv4_canonical(const struct sigv4_request *req,
    const struct sigv4_creds *creds, char **creq, char **sts,
    const char **errstr)
{
	struct sigv4_ctx	 ctx;
	const char		*dummy;

	if (errstr == NULL)
		errstr = &dummy;
	*errstr = NULL;
	*creq = *sts = NULL;
	if (sigv4_build(&ctx, req, creds, errstr) == -1)
		return (-1);
	*creq = sigv4_sbuf_take(&ctx.creq);
	*sts = sigv4_sbuf_take(&ctx.sts);
	sigv4_ctx_free(&ctx);
	return (0);
}

char *
sigv4_canonical_uri(const char *path)
{
	struct sigv4_sbuf	sb;

	sigv4_sbuf_init(&sb);
	sigv4_add_uri(&sb, path);
	return (sigv4_sbuf_take(&sb));
}

/*
 * UriEncode() of len bytes of s, '/' included: what the AWS SDKs send for
 * a path label such as a model id. NULL if over the canonical ceiling.
 */
char *
sigv4_uri_encode(const char *s, size_t len)
{
	struct sigv4_sbuf	sb;

	sigv4_sbuf_init(&sb);
	sigv4_encode(&sb, s, len, 0);
	return (sigv4_sbuf_take(&sb));
}

char *
sigv4_canonical_query(const char *query)
{
	struct sigv4_sbuf	sb;

	sigv4_sbuf_init(&sb);
	sigv4_add_query(&sb, query);
	return (sigv4_sbuf_take(&sb));
}

void
sigv4_cache_clear(void)
{
	crypto_sigv4_clear();
}

unsigned long
sigv4_cache_derivations(void)
{
	return (crypto_sigv4_derivations());
}
