/*
 * http-client.h: the outbound HTTP/1.1 client, shared by the Bedrock relay
 * (long streams, many at once) and the login code (small JSON answers from
 * identity providers, JWKS, STS, IMDS).
 *
 * Every call is an evhttp_connection on bsp_base over a bufferevent_openssl
 * (https) or a plain bufferevent (http, loopback hosts only), with names
 * resolved through bsp_dns. Nothing blocks.
 *
 * A target is parsed once from a URL. Targets with the same scheme, host and
 * port share one keep-alive pool (at most HC_POOL_IDLE idle connections).
 * A connection that was closed, reset, cancelled, timed out or answered with
 * an unframed body is never reused: it is freed and the next request gets a
 * fresh one (new SSL, new bufferevent). A request sent on a reused
 * connection that fails before any response byte arrived (the server had
 * closed it while idle) is resent once on a fresh connection, whatever the
 * method, unless the request has HC_NO_RETRY.
 *
 * TLS: SSL_VERIFY_PEER against the system trust store plus an optional CA
 * file, TLS 1.2 or later, host name (or IP address) checked against the
 * certificate, SNI for names. Dirty shutdowns are allowed; a body framed by
 * Content-Length or chunked encoding that ends early is HC_ERR_TRUNCATED. A
 * body framed only by the connection closing cannot be checked (HTTP/1.1
 * servers do not send those in practice).
 *
 * Callbacks: on_head and on_data run inside libevent's read path; on_done
 * always runs on a later loop pass, never inside hc_start(). From any of
 * them a caller may call hc_pause(), hc_resume(), hc_cancel() or start new
 * requests. Nothing here is thread-safe: one loop, one thread.
 *
 * Lifetime: a struct hc_req belongs to the caller from hc_start() until
 * on_done returns or hc_cancel() returns, whichever comes first; after that
 * the handle must not be used. Memory is freed on a later loop pass.
 */

#ifndef HTTP_CLIENT_H
#define HTTP_CLIENT_H

#include <stddef.h>
#include <stdint.h>

struct evbuffer;
struct evkeyvalq;
struct hc_target;
struct hc_req;
struct hc_body;

/* Why a request failed. Stable: hc_error_name() gives metric labels. */
enum hc_error {
	HC_OK = 0,
	HC_ERR_DNS,		/* name did not resolve */
	HC_ERR_CONNECT,		/* TCP failed, or closed before a response */
	HC_ERR_TLS,		/* handshake or certificate verification */
	HC_ERR_TIMEOUT_CONNECT,	/* DNS + TCP + TLS took longer than connect */
	HC_ERR_TIMEOUT_FIRST_BYTE, /* no response head within first_byte */
	HC_ERR_TIMEOUT_IDLE,	/* body stalled for longer than idle */
	HC_ERR_TIMEOUT_TOTAL,	/* whole exchange longer than total */
	HC_ERR_TOO_LARGE,	/* body above max_body */
	HC_ERR_TRUNCATED,	/* connection ended inside a framed body */
	HC_ERR_PROTOCOL,	/* malformed response */
	HC_ERR_LIMIT,		/* global connection limit reached */
	HC_ERR_CANCELLED,	/* hc_cancel(); counted, never delivered */
	HC_ERR__MAX
};

/*
 * Timeouts in milliseconds. 0 takes the default (hc_set_timeouts()),
 * HC_TIMEOUT_NONE disables that timeout. All are enforced by our own timers:
 *   connect	from hc_start() until the request can be written: DNS, TCP
 *		and the TLS handshake (not used on a reused connection);
 *   first_byte	from the last request byte written until the response head
 *		is complete (while writing, from the last write progress);
 *   idle	longest gap between two reads of the body (not while paused);
 *   total	the whole exchange, pauses included.
 */
#define HC_TIMEOUT_NONE		(-1L)
struct hc_timeouts {
	long	connect_ms;
	long	first_byte_ms;
	long	idle_ms;
	long	total_ms;
};
/* Defaults until hc_set_timeouts(): 10 s, 60 s, 60 s, none. */

/*
 * A request header. The client owns Host (from the target), Content-Length
 * (from the body), Connection, Expect, Transfer-Encoding, TE, Upgrade,
 * Keep-Alive, Proxy-Connection and Trailer: passing any of them is an error.
 * Names must be HTTP tokens; values must not contain CR, LF or NUL.
 * Header values are never logged.
 */
struct hc_header {
	const char	*name;
	const char	*value;
};

/*
 * What on_done receives; valid only during the callback.
 *   status, headers	0 and NULL if no response head arrived;
 *   body		buffered mode: the whole body (the callback may move
 *			it out with evbuffer_remove_buffer()); streaming: the
 *			bytes on_data left unconsumed, usually empty;
 *   message		"" on success, else a short text without secrets,
 *			e.g. "certificate verify failed: unable to get local
 *			issuer certificate".
 */
struct hc_result {
	enum hc_error		 error;
	const char		*message;
	int			 status;
	const struct evkeyvalq	*headers;
	struct evbuffer		*body;
	uint64_t		 body_bytes;	/* body bytes received */
	int			 reused;	/* on a pooled connection */
	double			 t_connect;	/* seconds; 0 if reused */
	double			 t_head;	/* start to response head */
	double			 t_total;
};

/* hc_request.flags */
#define HC_STREAM	0x01	/* on_head + on_data; else buffered */
#define HC_NO_RETRY	0x02	/* never resend, even on a stale pooled conn */

/*
 * One request. Everything is copied by hc_start(): the strings and the body
 * may be freed as soon as it returns.
 *   method	GET POST PUT DELETE HEAD PATCH OPTIONS
 *   path	origin-form request target ("/a/b%3Ac?x=1"), sent byte for
 *		byte as given; no bytes <= 0x20 or 0x7f
 *   max_body	buffered: required ceiling (> 0); HC_ERR_TOO_LARGE when the
 *		body (or its Content-Length) is larger; streaming: 0 for no
 *		ceiling
 *   on_head	streaming: status and headers, before any body byte
 *   on_data	streaming: new body bytes appended to data; consume what you
 *		can (evbuffer_remove / evbuffer_add_buffer / drain), the rest
 *		stays in data and is handed back with the next bytes
 *   on_done	exactly once per request, unless hc_cancel() or
 *		hc_shutdown() came first
 */
struct hc_request {
	const char		*method;
	const char		*path;
	const struct hc_header	*headers;
	size_t			 nheaders;
	const void		*body;
	size_t			 body_len;
	struct hc_body		*shared_body;	/* or: a reference taken */
	size_t			 max_body;
	struct hc_timeouts	 timeouts;
	int			 flags;
	void			(*on_head)(struct hc_req *, int,
				    const struct evkeyvalq *, void *);
	void			(*on_data)(struct hc_req *, struct evbuffer *,
				    void *);
	void			(*on_done)(struct hc_req *,
				    const struct hc_result *, void *);
	void			*arg;
};

/*
 * A request body shared by its caller (which may send it again) and the
 * requests that send it, instead of a copy each: hc_body_new() copies the
 * bytes once, hc_body_take() takes a malloc'd buffer as it is; a request
 * given it as shared_body holds a reference until its output has let go
 * of them.
 */
struct hc_body	*hc_body_new(const void *, size_t);
struct hc_body	*hc_body_take(void *, size_t);
void		 hc_body_unref(struct hc_body *);
const void	*hc_body_data(const struct hc_body *);
size_t		 hc_body_len(const struct hc_body *);

/* Counters for the metrics endpoint; gauges are current values. */
struct hc_stats {
	uint64_t	 requests;		/* hc_start() that succeeded */
	uint64_t	 conns_opened;
	uint64_t	 conns_reused;		/* requests on a pooled conn */
	uint64_t	 conns_closed_idle;	/* pooled conns the server or
						   the idle expiry closed */
	uint64_t	 retries;		/* stale pooled conn, resent */
	uint64_t	 dns_lookups;
	uint64_t	 errors[HC_ERR__MAX];	/* by kind; [HC_OK] unused */
	size_t		 conns_live;		/* gauge, idle included */
	size_t		 conns_idle;		/* gauge */
	size_t		 requests_live;		/* gauge */
	int		 trust_loaded;		/* the system trust store, in
						   the TLS context in use */
	size_t		 trust_objects;		/* certificates and CRLs in
						   that context's store */
	int		 tls_ctx;		/* a TLS context exists (without
						   a CA file: from the first
						   TLS connection on) */
};

#define HC_POOL_IDLE		64	/* idle connections kept per origin */
#define HC_POOL_IDLE_MS		30000	/* an idle connection is closed after */
#define HC_MAX_CONNS		4096	/* all connections, all origins */
#define HC_MAX_HEAD		(64 * 1024)	/* response head ceiling */
/*
 * evhttp hands over only complete chunks, so an incomplete one is held
 * whole: a chunk above this is HC_ERR_PROTOCOL (streaming). A buffered
 * request's ceiling is max_body.
 */
#define HC_MAX_CHUNK		(16 * 1024 * 1024)

/*
 * Start the client: build the TLS context (system trust store plus ca_file
 * if not NULL). bsp_base must be set; bsp_dns may be NULL if only IP
 * literals are used. Returns 0, or -1 with *cause allocated.
 */
int		 hc_init(const char *, char **);
/*
 * Pin the public key of every TLS peer (the laptop client, which talks to
 * one proxy): a handshake succeeds only if the SHA-256 of the DER
 * SubjectPublicKeyInfo of a certificate in the verified chain is this
 * one (curl's --pinnedpubkey sha256//, RFC 7469's pin-sha256), on top of
 * the usual checks. NULL removes the pin.
 */
void		 hc_set_spki_pin(const uint8_t *);
/*
 * Rebuild the TLS context with a new CA file (aws.ca_file changed). On
 * failure the old one stays. Idle pooled connections are closed; requests
 * in flight keep their connections.
 */
int		 hc_reload(const char *, char **);
int		 hc_reload_prepare(const char *, char **);
void		 hc_reload_commit(void);
void		 hc_reload_abort(void);
/*
 * Close every connection and free every request still live without calling
 * its callbacks (cancel yours first), the pools and the TLS context.
 * Targets stay valid until hc_target_free(). hc_start() fails afterwards.
 */
void		 hc_shutdown(void);
void		 hc_set_timeouts(const struct hc_timeouts *);
/* Global connection ceiling, idle connections per origin, idle expiry. */
void		 hc_set_limits(size_t, size_t, long);
void		 hc_get_stats(struct hc_stats *);
const char	*hc_error_name(enum hc_error);

/*
 * Parse "https://host[:port][/path[?query]]" (or http:// to a loopback
 * host). Userinfo and fragments are refused. The path and query are kept
 * for hc_target_path(); requests give their own path.
 */
struct hc_target *hc_target_new(const char *, char **);
void		 hc_target_free(struct hc_target *);
const char	*hc_target_path(const struct hc_target *);	/* "/" if none */
const char	*hc_target_host(const struct hc_target *);	/* Host value */
int		 hc_target_is_tls(const struct hc_target *);

/*
 * Start a request; the answer comes through the callbacks. Returns NULL
 * with *cause allocated only when the request itself is invalid (bad
 * method, path or header) or after hc_shutdown(); network errors always go
 * to on_done.
 */
struct hc_req	*hc_start(struct hc_target *, const struct hc_request *,
		     char **);
/*
 * Fill a request: method, path, headers, body (NULL and 0 for none),
 * max_body, timeouts (NULL: the defaults of hc_set_timeouts()) and on_done
 * with its arg. The rest is cleared: a stream sets flags, on_head and
 * on_data afterwards. Nothing is copied; hc_start() does that.
 */
void		 hc_request_init(struct hc_request *, const char *,
		     const char *, const struct hc_header *, size_t,
		     const void *, size_t, size_t, const struct hc_timeouts *,
		     void (*)(struct hc_req *, const struct hc_result *,
		     void *), void *);
/*
 * Buffered request with default timeouts, for JSON and form exchanges:
 * on_done gets the whole body (up to max_body bytes) in result->body.
 */
struct hc_req	*hc_fetch(struct hc_target *, const char *, const char *,
		     const struct hc_header *, size_t, const void *, size_t,
		     size_t, void (*)(struct hc_req *, const struct hc_result *,
		     void *), void *, char **);
/*
 * Stop all callbacks now; close the upstream connection (never pooled);
 * free everything on a later loop pass. Safe from any callback of this
 * request and from outside; a no-op once on_done has started.
 */
void		 hc_cancel(struct hc_req *);
/*
 * Flow control for streams: hc_pause() stops reading from the upstream
 * socket (its kernel buffers fill and TCP pushes back); at most what was
 * already read (a few KiB, one TLS record or one incomplete chunk) is held
 * here. hc_resume() hands the held bytes to on_data on a later loop pass and
 * reads on. The idle timeout does not run while paused; total does. A
 * request that completes while paused delivers on_done after hc_resume();
 * a failure is delivered at once.
 */
void		 hc_pause(struct hc_req *);
void		 hc_resume(struct hc_req *);
int		 hc_status(const struct hc_req *);		/* 0 before */
const struct evkeyvalq *hc_headers(const struct hc_req *);	/* or NULL */
/* Body bytes held by the client for this request (not yet consumed). */
size_t		 hc_buffered(const struct hc_req *);

/*
 * An evhttp header list cut down to what evhttp itself still reads once the
 * head it belongs to has been sent or read: Connection and
 * Proxy-Connection, which decide at the end of the message whether the
 * connection is kept. For long streams, whose heads are not needed again.
 */
void		 hc_headers_shed(struct evkeyvalq *);

#endif /* HTTP_CLIENT_H */
