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

/* A string under construction, with a ceiling. */
struct sigv4_sbuf {
	char	*p;
	size_t	 len;
	size_t	 cap;
	int	 overflow;
};

struct sigv4_hdr {
	char	*name;		/* lowercased */
	char	*value;		/* trimmed, whitespace runs collapsed */
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
	char			 amz_date[SIGV4_AMZDATE_LEN];
	char			 date[9];
	char			 content_sha256[SIGV4_HEX_LEN];
};

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
static char	*sigv4_header_value(const char *);
static int	 sigv4_hdr_cmp(const void *, const void *);
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
sigv4_sbuf_add(struct sigv4_sbuf *sb, const void *data, size_t len)
{
	size_t	newcap;

	if (sb->overflow)
		return;
	if (len > SIGV4_MAX_CANONICAL - sb->len) {
		sb->overflow = 1;
		return;
	}
	if (sb->len + len + 1 > sb->cap) {
		newcap = sb->cap == 0 ? 256 : sb->cap;
		while (newcap < sb->len + len + 1)
			newcap *= 2;
		sb->p = xreallocarray(sb->p, newcap, 1);
		sb->cap = newcap;
	}
	if (len != 0)
		memcpy(sb->p + sb->len, data, len);
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
	sigv4_sbuf_add(sb, &c, 1);
}

/* Hand over the string (never NULL unless overflowed). */
static char *
sigv4_sbuf_take(struct sigv4_sbuf *sb)
{
	char	*p;

	if (sb->overflow) {
		sigv4_sbuf_free(sb);
		return (NULL);
	}
	if (sb->p == NULL)
		sigv4_sbuf_add(sb, "", 0);
	p = sb->p;
	memset(sb, 0, sizeof *sb);
	return (p);
}

static void
sigv4_sbuf_free(struct sigv4_sbuf *sb)
{
	free(sb->p);
	memset(sb, 0, sizeof *sb);
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

	for (i = 0; i < len; i++) {
		c = (unsigned char)s[i];
		if (sigv4_unreserved(c) || (keep_slash && c == '/'))
			sigv4_sbuf_addc(sb, (char)c);
		else {
			pct[0] = '%';
			pct[1] = hex[c >> 4];
			pct[2] = hex[c & 0xf];
			sigv4_sbuf_add(sb, pct, 3);
		}
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
	struct sigv4_sbuf	 sb = { NULL, 0, 0, 0 };
	char			 c;
	size_t			 i;
	int			 hi, lo;

	sigv4_sbuf_add(&sb, "", 0);
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
	const unsigned char	*p;

	if (s == NULL || *s == '\0')
		return (0);
	for (p = (const unsigned char *)s; *p != '\0'; p++) {
		if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
		    (*p >= '0' && *p <= '9'))
			continue;
		if (strchr("!#$%&'*+-.^_`|~", *p) == NULL)
			return (0);
	}
	return (1);
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

/* Trim a header value and collapse whitespace runs; NULL on CR or LF. */
static char *
sigv4_header_value(const char *v)
{
	char	*out, *o;
	int	 space;

	if (strpbrk(v, "\r\n") != NULL)
		return (NULL);
	while (*v == ' ' || *v == '\t')
		v++;
	out = o = xmalloc(strlen(v) + 1);
	space = 0;
	for (; *v != '\0'; v++) {
		if (*v == ' ' || *v == '\t') {
			space = 1;
			continue;
		}
		if (space)
			*o++ = ' ';
		space = 0;
		*o++ = *v;
	}
	*o = '\0';
	return (out);
}

static int
sigv4_hdr_cmp(const void *a, const void *b)
{
	const struct sigv4_hdr	*ha = a, *hb = b;
	int			 r;

	if ((r = strcmp(ha->name, hb->name)) != 0)
		return (r);
	return (ha->idx < hb->idx ? -1 : ha->idx > hb->idx);
}

/* Canonical headers and the signed-header list. */
static int
sigv4_add_headers(struct sigv4_ctx *ctx, const struct sigv4_request *req,
    const struct sigv4_creds *creds, const char **errstr)
{
	struct sigv4_hdr	 h[SIGV4_MAX_HEADERS + 4];
	size_t			 n = 0, i;
	char			*p;
	int			 rv = -1;

	memset(h, 0, sizeof h);
	if (req->nheaders > SIGV4_MAX_HEADERS) {
		*errstr = "too many headers to sign";
		goto out;
	}
	if (req->nheaders != 0 && req->headers == NULL) {
		*errstr = "missing headers";
		goto out;
	}
	for (i = 0; i < req->nheaders; i++) {
		if (!sigv4_is_token(req->headers[i].name) ||
		    req->headers[i].value == NULL) {
			*errstr = "invalid header name";
			goto out;
		}
		h[n].name = xstrdup(req->headers[i].name);
		for (p = h[n].name; *p != '\0'; p++) {
			if (*p >= 'A' && *p <= 'Z')
				*p = *p - 'A' + 'a';
		}
		h[n].idx = n;
		n++;
		if (sigv4_reserved_header(h[n - 1].name)) {
			*errstr = "header is set by the signer";
			goto out;
		}
		if ((h[n - 1].value =
		    sigv4_header_value(req->headers[i].value)) == NULL) {
			*errstr = "header value has CR or LF";
			goto out;
		}
	}
	if (req->host == NULL || *req->host == '\0' ||
	    (h[n].value = sigv4_header_value(req->host)) == NULL ||
	    *h[n].value == '\0') {
		*errstr = "invalid host";
		goto out;
	}
	h[n].name = xstrdup("host");
	h[n].idx = n;
	n++;
	h[n].name = xstrdup("x-amz-date");
	h[n].value = xstrdup(ctx->amz_date);
	h[n].idx = n;
	n++;
	if (creds->session_token != NULL && *creds->session_token != '\0') {
		h[n].name = xstrdup("x-amz-security-token");
		h[n].idx = n;
		if ((h[n++].value =
		    sigv4_header_value(creds->session_token)) == NULL) {
			*errstr = "invalid session token";
			goto out;
		}
	}
	if (req->flags & SIGV4_CONTENT_SHA256) {
		h[n].name = xstrdup("x-amz-content-sha256");
		h[n].value = xstrdup(ctx->content_sha256);
		h[n].idx = n;
		n++;
	}

	qsort(h, n, sizeof *h, sigv4_hdr_cmp);
	for (i = 0; i < n; i++) {
		if (i > 0 && strcmp(h[i].name, h[i - 1].name) == 0) {
			sigv4_sbuf_addc(&ctx->creq, ',');
			sigv4_sbuf_adds(&ctx->creq, h[i].value);
			continue;
		}
		if (i > 0) {
			sigv4_sbuf_addc(&ctx->creq, '\n');
			sigv4_sbuf_addc(&ctx->signed_headers, ';');
		}
		sigv4_sbuf_adds(&ctx->creq, h[i].name);
		sigv4_sbuf_addc(&ctx->creq, ':');
		sigv4_sbuf_adds(&ctx->creq, h[i].value);
		sigv4_sbuf_adds(&ctx->signed_headers, h[i].name);
	}
	sigv4_sbuf_adds(&ctx->creq, "\n\n");
	rv = 0;
out:
	for (i = 0; i < nitems(h); i++) {
		free(h[i].name);
		free(h[i].value);
	}
	return (rv);
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
	struct tm	tm;
	char		hash[SIGV4_HEX_LEN];
	int		rc = -1;

	memset(ctx, 0, sizeof *ctx);
	if (sigv4_check(req, creds, errstr) == -1)
		return (-1);
	if (gmtime_r(&req->when, &tm) == NULL ||
	    strftime(ctx->amz_date, sizeof ctx->amz_date, "%Y%m%dT%H%M%SZ",
	    &tm) != SIGV4_AMZDATE_LEN - 1) {
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
}

int
sigv4_sign(const struct sigv4_request *req, const struct sigv4_creds *creds,
    struct sigv4_result *res, const char **errstr)
{
	struct sigv4_ctx	 ctx;
	uint8_t			 sig[SIGV4_HASH_LEN];
	const char		*dummy;
	int			 n, rv = -1;

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
	n = snprintf(res->authorization, sizeof res->authorization,
	    "%s Credential=%s/%s/%s/%s/%s, SignedHeaders=%s, Signature=%s",
	    SIGV4_ALGORITHM, creds->access_key_id, ctx.date, req->region,
	    req->service, SIGV4_REQUEST_TYPE, ctx.signed_headers.p,
	    res->signature);
	if (n < 0 || (size_t)n >= sizeof res->authorization) {
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
	struct sigv4_sbuf	sb = { NULL, 0, 0, 0 };

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
	struct sigv4_sbuf	sb = { NULL, 0, 0, 0 };

	sigv4_sbuf_add(&sb, "", 0);
	sigv4_encode(&sb, s, len, 0);
	return (sigv4_sbuf_take(&sb));
}

char *
sigv4_canonical_query(const char *query)
{
	struct sigv4_sbuf	sb = { NULL, 0, 0, 0 };

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
