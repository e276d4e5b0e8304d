/*
 * sigv4.h: AWS Signature Version 4 for the re-signing proxy.
 *
 * The path is signed exactly as it goes on the wire: the canonical URI is
 * UriEncode() of the (dot-segment normalised) wire path, so an already
 * encoded "%3A" becomes "%253A" (BEDROCK-FACTS §3.2). Never decode the
 * path before signing, and send byte for byte the path that was signed.
 */

#ifndef SIGV4_H
#define SIGV4_H

#include <stddef.h>
#include <time.h>

#define SIGV4_ALGORITHM		"AWS4-HMAC-SHA256"
#define SIGV4_MAX_HEADERS	32	/* extra headers a caller may sign */
#define SIGV4_MAX_FIELD		256	/* access key id, region, service */
#define SIGV4_MAX_CANONICAL	(256 * 1024)	/* canonical request ceiling */
#define SIGV4_AUTH_LEN		2048
#define SIGV4_AMZDATE_LEN	17	/* "20150830T123600Z" + NUL */
#define SIGV4_HEX_LEN		65	/* hex SHA-256 + NUL */

/* Flags for sigv4_request.flags. */
#define SIGV4_CONTENT_SHA256	0x01	/* send and sign X-Amz-Content-Sha256 */

struct sigv4_header {
	const char	*name;
	const char	*value;
};

struct sigv4_creds {
	const char	*access_key_id;
	const char	*secret_access_key;
	const char	*session_token;		/* NULL or "" if none */
};

/*
 * host is the Host header as sent (with ":port" if not the default), path
 * the raw wire path without the query, query the raw query without '?'
 * (NULL or "" if none), payload the exact body bytes sent.
 */
struct sigv4_request {
	const char			*method;
	const char			*host;
	const char			*path;
	const char			*query;
	const struct sigv4_header	*headers;	/* extra, to sign */
	size_t				 nheaders;
	const void			*payload;
	size_t				 payload_len;
	const char			*region;
	const char			*service;	/* "bedrock" */
	time_t				 when;
	int				 flags;
};

/*
 * The headers to add to the request. out[] points into this struct (and at
 * the session token in the creds), in the order Authorization, X-Amz-Date,
 * then X-Amz-Security-Token and X-Amz-Content-Sha256 when used.
 */
struct sigv4_result {
	char			 authorization[SIGV4_AUTH_LEN];
	char			 amz_date[SIGV4_AMZDATE_LEN];
	char			 content_sha256[SIGV4_HEX_LEN];	/* always set */
	char			 signature[SIGV4_HEX_LEN];
	const char		*security_token;		/* or NULL */
	struct sigv4_header	 out[4];
	size_t			 nout;
};

/*
 * Sign a request. Returns 0, or -1 with *errstr set to a static string
 * (the caller has nothing to free; nothing is logged). The extra
 * headers must not include Host, Authorization or X-Amz-* headers the
 * signer owns; names must be HTTP tokens and values free of CR, LF, NUL.
 */
int	 sigv4_sign(const struct sigv4_request *, const struct sigv4_creds *,
	    struct sigv4_result *, const char **);

/*
 * The canonical request and string to sign for a request, as allocated
 * strings the caller frees (for tests and debug traces).
 */
int	 sigv4_canonical(const struct sigv4_request *,
	    const struct sigv4_creds *, char **, char **, const char **);

/* Pieces of the canonical request, allocated; NULL if over the ceiling. */
char	*sigv4_canonical_uri(const char *);
char	*sigv4_canonical_query(const char *);

/*
 * One path label (a model id) encoded as the AWS SDKs send it: every byte
 * but A-Z a-z 0-9 - _ . ~ as upper-case %XX, '/' and ':' included.
 * Allocated; NULL if over the ceiling.
 */
char	*sigv4_uri_encode(const char *, size_t);

/* Forget (and wipe) every cached signing key, e.g. on credential change. */
void	 sigv4_cache_clear(void);

/* Number of signing-key derivations so far (cache misses; for tests). */
unsigned long sigv4_cache_derivations(void);

#endif /* SIGV4_H */
