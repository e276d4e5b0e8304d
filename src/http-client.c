/*
 * http-client.c: the outbound HTTP/1.1 client (see http-client.h).
 *
 * How it sits on evhttp (libevent 2.1.12):
 *
 * - Each struct hc_conn owns one evhttp_connection with its bufferevent (and
 *   SSL). evhttp never reconnects on its own here: retries are 0, a
 *   connection carries one request at a time, and one that evhttp reset
 *   (closecb) is never given another request. It is freed, and the next
 *   request gets a new one: libevent #975/#491, a reset bufferevent_openssl
 *   cannot be reconnected with the same SSL.
 * - Names are resolved here with evdns_getaddrinfo() (shared per origin,
 *   cached briefly) and evhttp is handed the numeric address, which it
 *   resolves synchronously. That gives DNS errors of their own, a cancel
 *   that works, and one lookup for a burst of new connections.
 * - evhttp has no connect or first-byte timeout and no "connected" or
 *   "request written" event. Callbacks on the bufferevent's own evbuffers
 *   see both: evhttp only writes the request into the output buffer once
 *   the TCP (and TLS) connection is up, and the buffer drains as it is
 *   sent. The input buffer callback sees every read, for the idle timeout.
 * - evhttp requests are owned (evhttp_request_own), so the response head
 *   outlives evhttp's interest in it and on_done can run on a later pass.
 * - Pause: bufferevent_disable(EV_READ). While a response body is read
 *   evhttp itself never enables EV_READ again (it does in start_read, write
 *   and close detection, none of which happen mid-body), so this holds.
 *   Bytes evhttp already read are still handed to the chunk callback; they
 *   are held in req->data until hc_resume().
 * - Cancel and every failure only set flags, disable the bufferevent and
 *   shut the socket down (the upstream sees the close at once); the
 *   evhttp_connection is freed by the reaper on a later loop pass, never
 *   inside one of evhttp's callbacks.
 * - evhttp only hands over complete chunks, so an incomplete chunk sits in
 *   the bufferevent's input buffer: that buffer has a ceiling of its own.
 *
 * References on a struct hc_req: one for the caller (until on_done returns
 * or hc_cancel), one while it is attached to a connection. At zero it goes
 * on the dead list and the reaper frees it.
 */

#include <sys/types.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <event2/http.h>
#include <event2/http_struct.h>
#include <event2/keyvalq_struct.h>
#include <event2/util.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "bsp.h"
#include "crypto.h"
#include "http-client.h"

#define HC_MAX_ADDRS		8
#define HC_DNS_TTL		30.0	/* seconds a resolved address is used */
#define HC_MSG_LEN		192
#define HC_BACKSTOP_SEC		3600	/* evhttp's own timeouts, never hit */

enum hc_conn_state {
	HC_CONN_ACTIVE,		/* carrying a request (or connecting) */
	HC_CONN_IDLE,		/* in its origin's pool */
	HC_CONN_DEAD,		/* waiting for the reaper */
};

enum hc_phase {
	HC_PH_RESOLVE,		/* waiting for DNS or a connection */
	HC_PH_CONNECT,		/* evhttp connecting (TCP, TLS) */
	HC_PH_SEND,		/* request being written */
	HC_PH_WAIT,		/* written, waiting for the head */
	HC_PH_BODY,		/* head read, body arriving */
	HC_PH_DONE,
};

static const char *const hc_phase_names[] = {
	"resolve", "connect", "send", "wait", "body", "done",
};

struct hc_lookup {
	struct hc_origin			*origin;	/* NULL: gone */
	struct evdns_getaddrinfo_request	*gai;
};

/* Scheme, host and port: one keep-alive pool and one DNS cache. */
struct hc_origin {
	char			*key;		/* "https://host:port" */
	char			*host;		/* lower case, no brackets */
	char			*hosthdr;	/* Host header value */
	uint16_t		 port;
	int			 tls;
	int			 is_ip;
	int			 refcnt;

	TAILQ_HEAD(hc_conn_idle, hc_conn) idle;	/* most recently used first */
	size_t			 nidle;

	char			 addrs[HC_MAX_ADDRS][INET6_ADDRSTRLEN];
	size_t			 naddrs;
	size_t			 next_addr;
	double			 addrs_expire;	/* 0: never (IP literal) */
	struct hc_lookup	*lookup;
	TAILQ_HEAD(, hc_req)	 dns_wait;

	TAILQ_ENTRY(hc_origin)	 entry;
};

struct hc_target {
	struct hc_origin	*origin;
	char			*path;
};

struct hc_conn {
	struct hc_origin		*origin;	/* not a reference */
	struct evhttp_connection	*evcon;
	struct bufferevent		*bev;
	SSL				*ssl;
	struct evbuffer_cb_entry	*in_cb;
	struct evbuffer_cb_entry	*out_cb;
	enum hc_conn_state		 state;
	int				 closed;	/* evhttp closed it */
	unsigned			 nreqs;
	uint64_t			 bytes_in;	/* this request */
	int				 verify_err;	/* X509_V_ERR_* + 1 */
	int				 pin_failed;	/* no key in the chain pinned */
	struct hc_req			*req;
	struct event			 idle_ev;
	TAILQ_ENTRY(hc_conn)		 entry;		/* hc.conns / dead */
	TAILQ_ENTRY(hc_conn)		 idle_entry;
};

/* The request body, shared with the evbuffers that reference it. */
struct hc_body {
	int		 refcnt;
	size_t		 len;
	unsigned char	*data;		/* after the struct, or taken */
	int		 taken;		/* data is an allocation of its own */
};

struct hc_req {
	unsigned		 id;		/* for traces */
	int			 refcnt;
	struct hc_origin	*origin;	/* a reference */
	struct hc_conn		*conn;
	struct evhttp_request	*ereq;

	enum evhttp_cmd_type	 method;
	const char		*method_name;
	char			*path;
	char			**hnames;	/* into hblock */
	char			**hvalues;	/* hnames + nheaders */
	char			*hblock;	/* the names and values */
	size_t			 hblock_len;
	size_t			 nheaders;
	struct hc_body		*body;
	size_t			 max_body;
	int			 flags;
	long			 to_connect;	/* ms, -1 none */
	long			 to_first_byte;
	long			 to_idle;
	long			 to_total;
	void			(*on_head)(struct hc_req *, int,
				    const struct evkeyvalq *, void *);
	void			(*on_data)(struct hc_req *, struct evbuffer *,
				    void *);
	void			(*on_done)(struct hc_req *,
				    const struct hc_result *, void *);
	void			*arg;

	enum hc_phase		 phase;
	int			 finished;	/* outcome decided */
	int			 cancelled;
	int			 done_delivered;
	int			 paused;
	int			 retried;
	int			 retry_pending;
	int			 force_new;
	int			 in_dns_wait;
	int			 reused;
	int			 ev_error;	/* evhttp error + 1 */
	enum hc_error		 error;
	char			*msg;		/* HC_MSG_LEN, on failure */
	int			 status;
	struct evbuffer		*data;
	size_t			 undelivered;
	uint64_t		 body_bytes;

	double			 t_start;
	double			 t_connected;
	double			 t_head;
	double			 t_end;
	double			 t_phase;	/* phase start or last progress */

	struct event		 tmo_ev;
	double			 tmo_at;	/* when tmo_ev fires, if pending */
	struct event		*total_ev;	/* when to_total > 0 */
	int			 kicked;	/* on hc.kicks */
	uint64_t		 kick_gen;
	TAILQ_ENTRY(hc_req)	 kick_entry;	/* hc.kicks */

	TAILQ_ENTRY(hc_req)	 entry;		/* hc.reqs / hc.dead_reqs */
	TAILQ_ENTRY(hc_req)	 wait_entry;	/* origin->dns_wait */
};

static struct {
	int			 initialized;
	int			 pin_set;
	uint8_t			 pin[CRYPTO_HASH_LEN];	/* SPKI SHA-256 */
	int			 shutting_down;
	SSL_CTX			*ctx;		/* NULL: made at first use */
	SSL_CTX			*next_ctx;	/* prepared by a reload */
	int			 next_set;	/* next_ctx (or none) */
	int			 ssl_idx;
	unsigned		 next_id;
	struct hc_timeouts	 defaults;
	size_t			 max_conns;
	size_t			 pool_idle;
	long			 pool_idle_ms;
	TAILQ_HEAD(, hc_origin)	 origins;
	TAILQ_HEAD(, hc_conn)	 conns;
	TAILQ_HEAD(, hc_conn)	 dead_conns;
	TAILQ_HEAD(, hc_req)	 reqs;
	TAILQ_HEAD(, hc_req)	 dead_reqs;
	struct event		 reap_ev;
	/*
	 * Requests with deferred work (hc_req_kick), in order, run by one
	 * event: a struct event in each request was 128 of its bytes, held
	 * by every stream for its whole life.
	 */
	TAILQ_HEAD(, hc_req)	 kicks;
	uint64_t		 kick_gen;
	struct event		 kick_ev;
	struct hc_stats		 st;
} hc = {
	.ssl_idx = -1,
	.defaults = { 10000, 60000, 60000, HC_TIMEOUT_NONE },
	.max_conns = HC_MAX_CONNS,
	.pool_idle = HC_POOL_IDLE,
	.pool_idle_ms = HC_POOL_IDLE_MS,
	.origins = TAILQ_HEAD_INITIALIZER(hc.origins),
	.conns = TAILQ_HEAD_INITIALIZER(hc.conns),
	.dead_conns = TAILQ_HEAD_INITIALIZER(hc.dead_conns),
	.reqs = TAILQ_HEAD_INITIALIZER(hc.reqs),
	.dead_reqs = TAILQ_HEAD_INITIALIZER(hc.dead_reqs),
	.kicks = TAILQ_HEAD_INITIALIZER(hc.kicks),
};

static const struct {
	const char		*name;
	enum evhttp_cmd_type	 type;
} hc_methods[] = {
	{ "GET", EVHTTP_REQ_GET },
	{ "POST", EVHTTP_REQ_POST },
	{ "PUT", EVHTTP_REQ_PUT },
	{ "DELETE", EVHTTP_REQ_DELETE },
	{ "HEAD", EVHTTP_REQ_HEAD },
	{ "PATCH", EVHTTP_REQ_PATCH },
	{ "OPTIONS", EVHTTP_REQ_OPTIONS },
};

/* Headers the client writes itself; callers may not pass them. */
#define HC_OWNED(s)	{ s, sizeof(s) - 1 }
static const struct {
	const char	*name;
	size_t		 len;
} hc_owned_headers[] = {
	HC_OWNED("Host"), HC_OWNED("Content-Length"), HC_OWNED("Connection"),
	HC_OWNED("Expect"), HC_OWNED("Transfer-Encoding"), HC_OWNED("TE"),
	HC_OWNED("Upgrade"), HC_OWNED("Keep-Alive"),
	HC_OWNED("Proxy-Connection"), HC_OWNED("Trailer"),
};
#undef HC_OWNED

static const char *const hc_error_names[HC_ERR__MAX] = {
	[HC_OK] = "ok",
	[HC_ERR_DNS] = "dns",
	[HC_ERR_CONNECT] = "connect",
	[HC_ERR_TLS] = "tls",
	[HC_ERR_TIMEOUT_CONNECT] = "timeout_connect",
	[HC_ERR_TIMEOUT_FIRST_BYTE] = "timeout_first_byte",
	[HC_ERR_TIMEOUT_IDLE] = "timeout_idle",
	[HC_ERR_TIMEOUT_TOTAL] = "timeout_total",
	[HC_ERR_TOO_LARGE] = "too_large",
	[HC_ERR_TRUNCATED] = "truncated",
	[HC_ERR_PROTOCOL] = "protocol",
	[HC_ERR_LIMIT] = "limit",
	[HC_ERR_CANCELLED] = "cancelled",
};

static SSL_CTX	*hc_ctx_new(const char *, char **);
static int	 hc_verify_cb(int, X509_STORE_CTX *);
static int	 hc_ctx_ready(void);
static int	 hc_ctx_prepare(const char *, SSL_CTX **, char **);
static void	 hc_reap_schedule(void);
static void	 hc_reap_cb(evutil_socket_t, short, void *);
static void	 hc_reap(void);
static void	 hc_origin_unref(struct hc_origin *);
static void	 hc_origin_flush(struct hc_origin *);
static void	 hc_origin_resolve(struct hc_origin *);
static void	 hc_origin_dns_cb(int, struct evutil_addrinfo *, void *);
static struct hc_conn *hc_conn_new(struct hc_origin *);
static void	 hc_conn_kill(struct hc_conn *);
static void	 hc_conn_detach(struct hc_conn *);
static void	 hc_conn_free(struct hc_conn *);
static void	 hc_conn_release(struct hc_conn *, int);
static void	 hc_conn_idle_cb(evutil_socket_t, short, void *);
static void	 hc_conn_input_cb(struct evbuffer *,
		     const struct evbuffer_cb_info *, void *);
static void	 hc_conn_output_cb(struct evbuffer *,
		     const struct evbuffer_cb_info *, void *);
static void	 hc_ev_closed(struct evhttp_connection *, void *);
static int	 hc_ev_head(struct evhttp_request *, void *);
static void	 hc_ev_chunk(struct evhttp_request *, void *);
static void	 hc_ev_error(enum evhttp_request_error, void *);
static void	 hc_ev_done(struct evhttp_request *, void *);
static void	 hc_req_connect(struct hc_req *);
static void	 hc_req_open(struct hc_req *);
static void	 hc_req_send(struct hc_req *, struct hc_conn *, int);
static void	 hc_req_fail(struct hc_req *, enum hc_error, const char *, ...)
		     printflike(3, 4);
static void	 hc_req_succeed(struct hc_req *);
static void	 hc_req_end(struct hc_req *);
static void	 hc_req_enter(struct hc_req *, enum hc_phase);
static void	 hc_req_arm(struct hc_req *);
static void	 hc_req_tmo_cb(evutil_socket_t, short, void *);
static void	 hc_req_total_cb(evutil_socket_t, short, void *);
static void	 hc_req_kick(struct hc_req *);
static void	 hc_req_kicked(struct hc_req *);
static void	 hc_kicks_cb(evutil_socket_t, short, void *);
static void	 hc_req_deliver_data(struct hc_req *);
static void	 hc_req_deliver_done(struct hc_req *);
static void	 hc_req_unref(struct hc_req *);
static void	 hc_req_free(struct hc_req *);
static void	 hc_req_fail_connect(struct hc_req *, struct hc_conn *, int,
		     int);
static void	 hc_req_free_copies(struct hc_req *);
static void	 hc_body_cleanup(const void *, size_t, void *);

/* -------------------------------------------------------------------- */
/* Set-up, reload, shutdown, stats. */

int
hc_init(const char *ca_file, char **cause)
{
	if (hc.initialized) {
		xasprintf(cause, "http client already started");
		return (-1);
	}
	if (bsp_base == NULL) {
		xasprintf(cause, "http client needs an event base");
		return (-1);
	}
	if (hc_ctx_prepare(ca_file, &hc.ctx, cause) == -1)
		return (-1);
	hc.st.trust_loaded = 0;
	event_assign(&hc.reap_ev, bsp_base, -1, 0, hc_reap_cb, NULL);
	event_assign(&hc.kick_ev, bsp_base, -1, 0, hc_kicks_cb, NULL);
	hc.initialized = 1;
	hc.shutting_down = 0;
	return (0);
}

/* A reload in two steps: a new TLS context (trust store), then in use. */
int
hc_reload_prepare(const char *ca_file, char **cause)
{
	SSL_CTX	*ctx;

	if (!hc.initialized)
		return (hc_init(ca_file, cause));
	if (hc_ctx_prepare(ca_file, &ctx, cause) == -1)
		return (-1);
	SSL_CTX_free(hc.next_ctx);
	hc.next_ctx = ctx;
	hc.next_set = 1;
	return (0);
}

void
hc_reload_commit(void)
{
	struct hc_origin	*o;

	if (!hc.next_set)
		return;
	SSL_CTX_free(hc.ctx);	/* live SSL objects keep their reference */
	hc.ctx = hc.next_ctx;
	hc.st.trust_loaded = 0;
	hc.next_ctx = NULL;
	hc.next_set = 0;
	TAILQ_FOREACH(o, &hc.origins, entry)
		hc_origin_flush(o);
}

void
hc_reload_abort(void)
{
	SSL_CTX_free(hc.next_ctx);
	hc.next_ctx = NULL;
	hc.next_set = 0;
}

int
hc_reload(const char *ca_file, char **cause)
{
	if (hc_reload_prepare(ca_file, cause) == -1)
		return (-1);
	hc_reload_commit();
	return (0);
}

void
hc_shutdown(void)
{
	struct hc_req		*req, *next;
	struct hc_conn		*conn;
	struct hc_origin	*o;

	if (!hc.initialized)
		return;
	hc.shutting_down = 1;
	if (!TAILQ_EMPTY(&hc.reqs))
		log_debug("http client: cancelling requests at shutdown");
	/* hc_cancel() may move req to the dead list, never another one. */
	for (req = TAILQ_FIRST(&hc.reqs); req != NULL; req = next) {
		next = TAILQ_NEXT(req, entry);
		hc_cancel(req);
	}
	while ((conn = TAILQ_FIRST(&hc.conns)) != NULL)
		hc_conn_kill(conn);
	TAILQ_FOREACH(o, &hc.origins, entry) {
		if (o->lookup != NULL) {
			o->lookup->origin = NULL;
			if (o->lookup->gai != NULL)
				evdns_getaddrinfo_cancel(o->lookup->gai);
			o->lookup = NULL;
		}
	}
	hc_reap();
	event_del(&hc.reap_ev);
	event_del(&hc.kick_ev);
	hc_reload_abort();
	SSL_CTX_free(hc.ctx);
	hc.ctx = NULL;
	hc.st.trust_loaded = 0;
	hc.initialized = 0;
}

void
hc_set_timeouts(const struct hc_timeouts *to)
{
	if (to->connect_ms != 0)
		hc.defaults.connect_ms = to->connect_ms;
	if (to->first_byte_ms != 0)
		hc.defaults.first_byte_ms = to->first_byte_ms;
	if (to->idle_ms != 0)
		hc.defaults.idle_ms = to->idle_ms;
	if (to->total_ms != 0)
		hc.defaults.total_ms = to->total_ms;
}

void
hc_set_limits(size_t max_conns, size_t pool_idle, long pool_idle_ms)
{
	if (max_conns > 0)
		hc.max_conns = max_conns;
	hc.pool_idle = pool_idle;
	if (pool_idle_ms > 0)
		hc.pool_idle_ms = pool_idle_ms;
}

void
hc_get_stats(struct hc_stats *st)
{
	*st = hc.st;
	st->trust_objects = hc.ctx == NULL ? 0 : (size_t)sk_X509_OBJECT_num(
	    X509_STORE_get0_objects(SSL_CTX_get_cert_store(hc.ctx)));
	st->tls_ctx = hc.ctx != NULL;
}

const char *
hc_error_name(enum hc_error e)
{
	if ((int)e < 0 || e >= HC_ERR__MAX)
		return ("unknown");
	return (hc_error_names[e]);
}

/*
 * A client TLS context: verify the peer, TLS 1.2 or later. The system
 * trust store is added by hc_ctx_ready() before the context's first TLS
 * connection, not here: parsed into the store, the bundle (~150
 * certificates) took 1.2 MB, kept by every daemon whose upstreams are
 * plain HTTP (or that has not made a TLS call yet).
 */
static SSL_CTX *
hc_ctx_new(const char *ca_file, char **cause)
{
	SSL_CTX		*ctx;
	char		 ebuf[256];

	if (hc.ssl_idx == -1 && (hc.ssl_idx = SSL_get_ex_new_index(0, NULL,
	    NULL, NULL, NULL)) == -1) {
		xasprintf(cause, "SSL_get_ex_new_index failed");
		return (NULL);
	}
	if ((ctx = SSL_CTX_new(TLS_client_method())) == NULL) {
		xasprintf(cause, "SSL_CTX_new failed");
		return (NULL);
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	/*
	 * OpenSSL 3 reports an EOF without close_notify as an error, which
	 * libevent 2.1 cannot tell from a real one; HTTP framing is checked
	 * instead (see hc_ev_done).
	 */
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION |
	    SSL_OP_NO_RENEGOTIATION | SSL_OP_IGNORE_UNEXPECTED_EOF);
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, hc_verify_cb);
	if (ca_file != NULL && *ca_file != '\0' &&
	    SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1) {
		ERR_error_string_n(ERR_peek_last_error(), ebuf, sizeof ebuf);
		ERR_clear_error();
		xasprintf(cause, "%s: cannot load CA certificates: %s", ca_file,
		    ebuf);
		SSL_CTX_free(ctx);
		return (NULL);
	}
	ERR_clear_error();
	return (ctx);
}

/*
 * The context for a configuration: with a CA file, made now, so that a
 * file that cannot be read fails the start or the reload; without one,
 * none yet (*out NULL), made by hc_ctx_ready() at the first TLS
 * connection. Making it is OpenSSL's first use of its default provider,
 * about 2.5 MB of library pages and tables that a daemon whose upstreams
 * are plain HTTP, or that has made no TLS call yet, does not need.
 */
static int
hc_ctx_prepare(const char *ca_file, SSL_CTX **out, char **cause)
{
	*out = NULL;
	if (ca_file == NULL || *ca_file == '\0')
		return (0);
	if ((*out = hc_ctx_new(ca_file, cause)) == NULL)
		return (-1);
	return (0);
}

/* hc.ctx made if it was not, with the system trust store, once each. */
static int
hc_ctx_ready(void)
{
	char	*cause = NULL;

	if (hc.ctx == NULL) {
		if ((hc.ctx = hc_ctx_new(NULL, &cause)) == NULL) {
			log_warnx("http client: %s", cause);
			free(cause);
			return (-1);
		}
		hc.st.trust_loaded = 0;
	}
	if (hc.st.trust_loaded)
		return (0);
	if (SSL_CTX_set_default_verify_paths(hc.ctx) != 1)
		log_warnx("http client: cannot load the system trust store");
	ERR_clear_error();
	hc.st.trust_loaded = 1;
	return (0);
}

void
hc_set_spki_pin(const uint8_t *sha256)
{
	hc.pin_set = sha256 != NULL;
	if (sha256 != NULL)
		memcpy(hc.pin, sha256, sizeof hc.pin);
	else
		memset(hc.pin, 0, sizeof hc.pin);
}

/* Does a certificate of the chain have the pinned public key? */
static int
hc_chain_pinned(X509_STORE_CTX *xs)
{
	STACK_OF(X509)	*chain = X509_STORE_CTX_get0_chain(xs);
	uint8_t		 h[CRYPTO_HASH_LEN], *der, *p;
	int		 i, len, found = 0;

	for (i = 0; chain != NULL && i < sk_X509_num(chain) && !found; i++) {
		len = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(sk_X509_value(chain,
		    i)), NULL);
		if (len <= 0)
			continue;
		der = p = xmalloc((size_t)len);
		if (i2d_X509_PUBKEY(X509_get_X509_PUBKEY(sk_X509_value(chain,
		    i)), &p) == len) {
			crypto_sha256(der, (size_t)len, h);
			found = crypto_memeq(h, hc.pin, sizeof h);
		}
		free(der);
	}
	return (found);
}

/*
 * Remember why verification failed (the SSL is cleared before we look);
 * with a pin, a chain that verified must also hold the pinned key.
 */
static int
hc_verify_cb(int ok, X509_STORE_CTX *xs)
{
	SSL		*ssl;
	struct hc_conn	*conn;

	ssl = X509_STORE_CTX_get_ex_data(xs,
	    SSL_get_ex_data_X509_STORE_CTX_idx());
	if (ssl == NULL || hc.ssl_idx == -1)
		return (ok);
	conn = SSL_get_ex_data(ssl, hc.ssl_idx);
	if (ok && hc.pin_set && X509_STORE_CTX_get_error_depth(xs) == 0 &&
	    !hc_chain_pinned(xs)) {
		X509_STORE_CTX_set_error(xs,
		    X509_V_ERR_APPLICATION_VERIFICATION);
		if (conn != NULL && conn->verify_err == 0) {
			conn->pin_failed = 1;
			conn->verify_err =
			    X509_V_ERR_APPLICATION_VERIFICATION + 1;
		}
		return (0);
	}
	if (ok)
		return (ok);
	if (conn != NULL && conn->verify_err == 0)
		conn->verify_err = X509_STORE_CTX_get_error(xs) + 1;
	return (ok);
}

/* -------------------------------------------------------------------- */
/* Targets and origins. */

static int
hc_host_ok(const char *h)
{
	const char	*p;

	if (*h == '\0' || strlen(h) > 253)
		return (0);
	for (p = h; *p != '\0'; p++) {
		if (!isalnum((unsigned char)*p) && *p != '-' && *p != '.' &&
		    *p != '_')
			return (0);
	}
	return (1);
}

/*
 * The AWS metadata services answer plain http on link-local addresses only
 * (BEDROCK-FACTS section 4.2): EC2 IMDS and the ECS/EKS credential
 * endpoints. Nothing else may be reached without TLS but loopback.
 */
static int
hc_is_metadata_host(const char *h)
{
	static const char *const hosts[] = {
		"169.254.169.254", "169.254.170.2", "169.254.170.23",
		"[fd00:ec2::254]", "[fd00:ec2::23]", "fd00:ec2::254",
		"fd00:ec2::23",
	};
	size_t	i;

	for (i = 0; i < nitems(hosts); i++) {
		if (strcmp(h, hosts[i]) == 0)
			return (1);
	}
	return (0);
}

/* The port's digits in [p, end): NULL, or what is wrong with them. */
static const char *
hc_parse_port(const char *p, const char *end, uint16_t *port)
{
	long	n = 0;

	if (p == end)
		return ("an empty port");
	for (; p < end; p++) {
		if (!isdigit((unsigned char)*p) || n > 65535)
			return ("a malformed port");
		n = n * 10 + (*p - '0');
	}
	if (n < 1 || n > 65535)
		return ("a port out of range");
	*port = (uint16_t)n;
	return (NULL);
}

/* Parse the scheme and authority; *rest points at the path. */
static int
hc_parse_url(const char *url, int *tls, char **host, uint16_t *port,
    int *is_ip, const char **rest, char **cause)
{
	const char	*p, *end, *hs, *he, *ps;
	char		*h = NULL;
	struct in6_addr	 a6;
	struct in_addr	 a4;
	const char	*why;
	size_t		 i;
	int		 rc = -1;

	if (strncasecmp(url, "https://", 8) == 0) {
		*tls = 1;
		p = url + 8;
	} else if (strncasecmp(url, "http://", 7) == 0) {
		*tls = 0;
		p = url + 7;
	} else {
		xasprintf(cause, "not an http(s) URL");
		return (-1);
	}
	if (strchr(url, '#') != NULL) {
		xasprintf(cause, "URL must not contain a fragment");
		return (-1);
	}
	end = p + strcspn(p, "/?");
	if (memchr(p, '@', (size_t)(end - p)) != NULL) {
		xasprintf(cause, "URL must not contain user information");
		return (-1);
	}
	*is_ip = 0;
	ps = NULL;
	if (*p == '[') {
		hs = p + 1;
		he = memchr(hs, ']', (size_t)(end - hs));
		if (he == NULL) {
			xasprintf(cause, "URL has an unterminated IPv6 address");
			return (-1);
		}
		if (he + 1 < end) {
			if (he[1] != ':') {
				xasprintf(cause, "URL has a malformed host");
				return (-1);
			}
			ps = he + 2;
		}
	} else {
		hs = p;
		he = memchr(p, ':', (size_t)(end - p));
		if (he != NULL)
			ps = he + 1;
		else
			he = end;
	}
	if (he == hs) {
		xasprintf(cause, "URL has no host");
		return (-1);
	}
	h = xstrndup(hs, (size_t)(he - hs));
	for (i = 0; h[i] != '\0'; i++)
		h[i] = (char)tolower((unsigned char)h[i]);
	if (*p == '[') {
		if (inet_pton(AF_INET6, h, &a6) != 1) {
			xasprintf(cause, "URL has a malformed IPv6 address");
			goto out;
		}
		*is_ip = 1;
	} else if (inet_pton(AF_INET, h, &a4) == 1)
		*is_ip = 1;
	else if (!hc_host_ok(h)) {
		xasprintf(cause, "URL has a malformed host");
		goto out;
	}
	if (ps == NULL)
		*port = *tls ? 443 : 80;
	else if ((why = hc_parse_port(ps, end, port)) != NULL) {
		xasprintf(cause, "URL has %s", why);
		goto out;
	}
	if (!*tls && !url_is_loopback_host(h) && !hc_is_metadata_host(h)) {
		xasprintf(cause, "plain http is only allowed to loopback "
		    "addresses");
		goto out;
	}
	*host = h;
	h = NULL;
	*rest = end;
	rc = 0;
out:
	free(h);
	return (rc);
}

static struct hc_origin *
hc_origin_get(int tls, char *host, uint16_t port, int is_ip)
{
	struct hc_origin	*o;
	char			*key;
	int			 v6 = (strchr(host, ':') != NULL);

	xasprintf(&key, "%s://%s%s%s:%u", tls ? "https" : "http",
	    v6 ? "[" : "", host, v6 ? "]" : "", (unsigned)port);
	TAILQ_FOREACH(o, &hc.origins, entry) {
		if (strcmp(o->key, key) == 0) {
			free(key);
			free(host);
			o->refcnt++;
			return (o);
		}
	}
	o = xcalloc(1, sizeof *o);
	o->key = key;
	o->host = host;
	o->port = port;
	o->tls = tls;
	o->is_ip = is_ip;
	o->refcnt = 1;
	if (port == (tls ? 443 : 80))
		xasprintf(&o->hosthdr, "%s%s%s", v6 ? "[" : "", host,
		    v6 ? "]" : "");
	else
		xasprintf(&o->hosthdr, "%s%s%s:%u", v6 ? "[" : "", host,
		    v6 ? "]" : "", (unsigned)port);
	TAILQ_INIT(&o->idle);
	TAILQ_INIT(&o->dns_wait);
	if (is_ip) {
		bsp_strlcpy(o->addrs[0], host, sizeof o->addrs[0]);
		o->naddrs = 1;
	}
	TAILQ_INSERT_TAIL(&hc.origins, o, entry);
	return (o);
}

/* Close every idle connection of an origin. */
static void
hc_origin_flush(struct hc_origin *o)
{
	struct hc_conn	*conn;

	while ((conn = TAILQ_FIRST(&o->idle)) != NULL)
		hc_conn_kill(conn);
}

static void
hc_origin_unref(struct hc_origin *o)
{
	if (--o->refcnt > 0)
		return;
	hc_origin_flush(o);
	if (o->lookup != NULL) {
		o->lookup->origin = NULL;
		if (o->lookup->gai != NULL)
			evdns_getaddrinfo_cancel(o->lookup->gai);
	}
	TAILQ_REMOVE(&hc.origins, o, entry);
	free(o->key);
	free(o->host);
	free(o->hosthdr);
	free(o);
}

struct hc_target *
hc_target_new(const char *url, char **cause)
{
	struct hc_target	*t;
	char			*host;
	const char		*rest, *p;
	uint16_t		 port;
	int			 tls, is_ip;

	if (hc_parse_url(url, &tls, &host, &port, &is_ip, &rest, cause) == -1)
		return (NULL);
	for (p = rest; *p != '\0'; p++) {
		if ((unsigned char)*p <= 0x20 || *p == 0x7f) {
			xasprintf(cause, "URL path has a space or control "
			    "character");
			free(host);
			return (NULL);
		}
	}
	t = xcalloc(1, sizeof *t);
	t->origin = hc_origin_get(tls, host, port, is_ip);
	if (*rest == '\0')
		t->path = xstrdup("/");
	else if (*rest == '?')
		xasprintf(&t->path, "/%s", rest);
	else
		t->path = xstrdup(rest);
	return (t);
}

void
hc_target_free(struct hc_target *t)
{
	if (t == NULL)
		return;
	hc_origin_unref(t->origin);
	free(t->path);
	free(t);
}

const char *
hc_target_path(const struct hc_target *t)
{
	return (t->path);
}

const char *
hc_target_host(const struct hc_target *t)
{
	return (t->origin->hosthdr);
}

int
hc_target_is_tls(const struct hc_target *t)
{
	return (t->origin->tls);
}

/* Start (or join) the DNS lookup for an origin. */
static void
hc_origin_resolve(struct hc_origin *o)
{
	struct evutil_addrinfo	 hints;
	struct hc_lookup	*lk;
	struct evdns_getaddrinfo_request *gai;
	struct hc_req		*req;

	if (o->lookup != NULL)
		return;
	if (bsp_dns == NULL) {
		while ((req = TAILQ_FIRST(&o->dns_wait)) != NULL) {
			TAILQ_REMOVE(&o->dns_wait, req, wait_entry);
			req->in_dns_wait = 0;
			hc_req_fail(req, HC_ERR_DNS, "cannot resolve %s: no "
			    "resolver", o->host);
		}
		return;
	}
	lk = xcalloc(1, sizeof *lk);
	lk->origin = o;
	o->lookup = lk;
	hc.st.dns_lookups++;
	memset(&hints, 0, sizeof hints);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_protocol = IPPROTO_TCP;
	hints.ai_flags = EVUTIL_AI_ADDRCONFIG;
	log_trace(TRACE_UPSTREAM, "resolving %s", o->host);
	gai = evdns_getaddrinfo(bsp_dns, o->host, NULL, &hints,
	    hc_origin_dns_cb, lk);
	/* The callback may have run already (hosts file). */
	if (o->lookup == lk)
		lk->gai = gai;
}

static void
hc_origin_dns_cb(int err, struct evutil_addrinfo *ai, void *arg)
{
	struct hc_lookup	*lk = arg;
	struct hc_origin	*o = lk->origin;
	struct evutil_addrinfo	*a;
	struct hc_req		*req;
	const void		*src;
	int			 pass;

	free(lk);
	if (o == NULL) {
		if (ai != NULL)
			evutil_freeaddrinfo(ai);
		return;
	}
	o->lookup = NULL;
	if (err == 0) {
		o->naddrs = 0;
		/* IPv4 first: v6 routes are often missing in containers. */
		for (pass = 0; pass < 2; pass++) {
			for (a = ai; a != NULL; a = a->ai_next) {
				if (o->naddrs == HC_MAX_ADDRS)
					break;
				if (a->ai_family == AF_INET && pass == 0)
					src = &((struct sockaddr_in *)
					    a->ai_addr)->sin_addr;
				else if (a->ai_family == AF_INET6 && pass == 1)
					src = &((struct sockaddr_in6 *)
					    a->ai_addr)->sin6_addr;
				else
					continue;
				if (evutil_inet_ntop(a->ai_family, src,
				    o->addrs[o->naddrs],
				    sizeof o->addrs[0]) != NULL)
					o->naddrs++;
			}
		}
		o->addrs_expire = now_mono() + HC_DNS_TTL;
		o->next_addr = 0;
	}
	if (ai != NULL)
		evutil_freeaddrinfo(ai);
	log_trace(TRACE_UPSTREAM, "resolved %s: %s, %zu addresses", o->host,
	    err == 0 ? "ok" : evutil_gai_strerror(err), o->naddrs);
	while ((req = TAILQ_FIRST(&o->dns_wait)) != NULL) {
		TAILQ_REMOVE(&o->dns_wait, req, wait_entry);
		req->in_dns_wait = 0;
		if (err != 0 || o->naddrs == 0)
			hc_req_fail(req, HC_ERR_DNS, "cannot resolve %s: %s",
			    o->host, err != 0 ? evutil_gai_strerror(err) :
			    "no usable address");
		else
			hc_req_open(req);
	}
}

/* -------------------------------------------------------------------- */
/* Connections. */

/*
 * The bufferevent of a new connection: TLS with the host name (or address)
 * checked against the certificate and SNI, or plain; NULL on failure.
 */
static struct bufferevent *
hc_conn_bev(struct hc_origin *o, struct hc_conn *conn)
{
	struct bufferevent	*bev;
	SSL			*ssl;
	int			 ok;

	if (!o->tls)
		return (bufferevent_socket_new(bsp_base, -1,
		    BEV_OPT_CLOSE_ON_FREE));
	if (hc_ctx_ready() == -1 || (ssl = SSL_new(hc.ctx)) == NULL)
		return (NULL);
	SSL_set_ex_data(ssl, hc.ssl_idx, conn);
	if (o->is_ip)
		ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl),
		    o->host) == 1;
	else if ((ok = SSL_set_tlsext_host_name(ssl, o->host) == 1 &&
	    SSL_set1_host(ssl, o->host) == 1))
		SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
	if (!ok) {
		SSL_free(ssl);
		return (NULL);
	}
	bev = bufferevent_openssl_socket_new(bsp_base, -1, ssl,
	    BUFFEREVENT_SSL_CONNECTING,
	    BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
	if (bev == NULL)
		return (NULL);	/* the SSL was freed by libevent */
	bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
	conn->ssl = ssl;
	return (bev);
}

/* A new connection to the origin's next address; NULL if none. */
static struct hc_conn *
hc_conn_new(struct hc_origin *o)
{
	struct hc_conn		*conn;
	struct bufferevent	*bev;
	const char		*addr;
	struct timeval		 tv = { HC_BACKSTOP_SEC, 0 };

	addr = o->addrs[o->next_addr++ % o->naddrs];
	conn = xcalloc(1, sizeof *conn);
	conn->origin = o;
	if ((bev = hc_conn_bev(o, conn)) == NULL) {
		ERR_clear_error();
		free(conn);
		return (NULL);
	}
	conn->evcon = evhttp_connection_base_bufferevent_new(bsp_base,
	    bsp_dns, bev, addr, o->port);
	if (conn->evcon == NULL)
		fatalx("%s: evhttp_connection_base_bufferevent_new", __func__);
	conn->bev = bev;
	evhttp_connection_set_retries(conn->evcon, 0);
	evhttp_connection_set_timeout_tv(conn->evcon, &tv);
	evhttp_connection_set_max_headers_size(conn->evcon, HC_MAX_HEAD);
	evhttp_connection_set_closecb(conn->evcon, hc_ev_closed, conn);
	conn->in_cb = evbuffer_add_cb(bufferevent_get_input(bev),
	    hc_conn_input_cb, conn);
	conn->out_cb = evbuffer_add_cb(bufferevent_get_output(bev),
	    hc_conn_output_cb, conn);
	if (conn->in_cb == NULL || conn->out_cb == NULL)
		fatalx("%s: evbuffer_add_cb", __func__);
	evtimer_assign(&conn->idle_ev, bsp_base, hc_conn_idle_cb, conn);
	conn->state = HC_CONN_ACTIVE;
	TAILQ_INSERT_TAIL(&hc.conns, conn, entry);
	hc.st.conns_live++;
	hc.st.conns_opened++;
	log_trace(TRACE_UPSTREAM, "connecting to %s (%s)", o->key, addr);
	return (conn);
}

/*
 * Take a connection out of service: no more reads or writes, the socket is
 * shut down so the upstream sees it go, the reaper frees it later.
 */
static void
hc_conn_kill(struct hc_conn *conn)
{
	evutil_socket_t	fd;

	if (conn->state == HC_CONN_DEAD)
		return;
	if (conn->state == HC_CONN_IDLE) {
		TAILQ_REMOVE(&conn->origin->idle, conn, idle_entry);
		conn->origin->nidle--;
		hc.st.conns_idle--;
		evtimer_del(&conn->idle_ev);
	}
	conn->state = HC_CONN_DEAD;
	conn->origin = NULL;
	if (conn->bev != NULL) {
		bufferevent_disable(conn->bev, EV_READ | EV_WRITE);
		fd = bufferevent_getfd(conn->bev);
		if (fd != -1)
			shutdown(fd, SHUT_RDWR);
	}
	TAILQ_REMOVE(&hc.conns, conn, entry);
	TAILQ_INSERT_TAIL(&hc.dead_conns, conn, entry);
	hc_reap_schedule();
}

/* Drop the link between a connection and its request. */
static void
hc_conn_detach(struct hc_conn *conn)
{
	struct hc_req	*req = conn->req;

	if (req == NULL)
		return;
	conn->req = NULL;
	req->conn = NULL;
	hc_req_unref(req);
}

static void
hc_conn_free(struct hc_conn *conn)
{
	evtimer_del(&conn->idle_ev);
	if (conn->ssl != NULL)
		SSL_set_ex_data(conn->ssl, hc.ssl_idx, NULL);
	evbuffer_remove_cb_entry(bufferevent_get_input(conn->bev),
	    conn->in_cb);
	evbuffer_remove_cb_entry(bufferevent_get_output(conn->bev),
	    conn->out_cb);
	/* Also frees the bufferevent, the SSL and closes the socket. */
	evhttp_connection_free(conn->evcon);
	hc_conn_detach(conn);
	hc.st.conns_live--;
	free(conn);
}

/* The request on this connection is complete: pool it or let it go. */
static void
hc_conn_release(struct hc_conn *conn, int reusable)
{
	struct hc_origin	*o = conn->origin;
	struct timeval		 tv;

	hc_conn_detach(conn);
	if (conn->state != HC_CONN_ACTIVE)
		return;
	if (!reusable || conn->closed || o == NULL || hc.shutting_down ||
	    o->nidle >= hc.pool_idle) {
		hc_conn_kill(conn);
		return;
	}
	conn->state = HC_CONN_IDLE;
	TAILQ_INSERT_HEAD(&o->idle, conn, idle_entry);
	o->nidle++;
	hc.st.conns_idle++;
	tv.tv_sec = hc.pool_idle_ms / 1000;
	tv.tv_usec = (hc.pool_idle_ms % 1000) * 1000;
	evtimer_add(&conn->idle_ev, &tv);
}

/* An idle connection, or NULL. */
static struct hc_conn *
hc_conn_take(struct hc_origin *o)
{
	struct hc_conn	*conn;

	while ((conn = TAILQ_FIRST(&o->idle)) != NULL) {
		if (conn->closed) {
			hc_conn_kill(conn);
			continue;
		}
		TAILQ_REMOVE(&o->idle, conn, idle_entry);
		o->nidle--;
		hc.st.conns_idle--;
		evtimer_del(&conn->idle_ev);
		conn->state = HC_CONN_ACTIVE;
		return (conn);
	}
	return (NULL);
}

/* Make room under the global limit by closing an idle connection. */
static int
hc_conn_evict_idle(void)
{
	struct hc_origin	*o;
	struct hc_conn		*conn;

	TAILQ_FOREACH(o, &hc.origins, entry) {
		if ((conn = TAILQ_LAST(&o->idle, hc_conn_idle)) != NULL) {
			hc_conn_kill(conn);
			return (0);
		}
	}
	return (-1);
}

static void
hc_conn_idle_cb(evutil_socket_t fd, short events, void *arg)
{
	struct hc_conn	*conn = arg;

	if (conn->state != HC_CONN_IDLE)
		return;
	hc.st.conns_closed_idle++;
	hc_conn_kill(conn);
}

/* evhttp closed the connection (reset or free). */
static void
hc_ev_closed(struct evhttp_connection *evcon, void *arg)
{
	struct hc_conn	*conn = arg;

	conn->closed = 1;
	if (conn->state == HC_CONN_IDLE) {
		log_trace(TRACE_UPSTREAM, "idle connection to %s closed",
		    conn->origin->key);
		hc.st.conns_closed_idle++;
		hc_conn_kill(conn);
	}
}

/* Every read: idle timer progress and the input ceiling. */
static void
hc_conn_input_cb(struct evbuffer *buf, const struct evbuffer_cb_info *info,
    void *arg)
{
	struct hc_conn	*conn = arg;
	struct hc_req	*req = conn->req;
	size_t		 limit;

	if (info->n_added == 0)
		return;
	conn->bytes_in += info->n_added;
	if (req == NULL || req->finished || conn->state == HC_CONN_DEAD)
		return;
	if (req->phase == HC_PH_BODY)
		req->t_phase = now_mono();
	/*
	 * evhttp moves body bytes out as they come, except an incomplete
	 * chunk, which it keeps here until the whole chunk has arrived.
	 */
	if (req->flags & HC_STREAM)
		limit = HC_MAX_CHUNK;
	else
		limit = req->max_body + HC_MAX_HEAD;
	if (evbuffer_get_length(buf) > limit) {
		if (req->flags & HC_STREAM)
			hc_req_fail(req, HC_ERR_PROTOCOL, "response chunk "
			    "larger than %d bytes", HC_MAX_CHUNK);
		else
			hc_req_fail(req, HC_ERR_TOO_LARGE, "response body "
			    "larger than %zu bytes", req->max_body);
	}
}

/* Request bytes queued (so connected) and written (progress). */
static void
hc_conn_output_cb(struct evbuffer *buf, const struct evbuffer_cb_info *info,
    void *arg)
{
	struct hc_conn	*conn = arg;
	struct hc_req	*req = conn->req;

	if (req == NULL || req->finished || conn->state == HC_CONN_DEAD)
		return;
	if (info->n_added > 0 && req->phase == HC_PH_CONNECT) {
		req->t_connected = now_mono();
		hc_req_enter(req, HC_PH_SEND);
	}
	if (info->n_deleted > 0 && req->phase == HC_PH_SEND) {
		if (evbuffer_get_length(buf) == 0)
			hc_req_enter(req, HC_PH_WAIT);
		else
			req->t_phase = now_mono();	/* write progress */
	}
}

/* -------------------------------------------------------------------- */
/* evhttp callbacks for a request. */

static int
hc_ev_head(struct evhttp_request *ereq, void *arg)
{
	struct hc_req		*req = arg;
	const struct evkeyvalq	*hdrs;
	const char		*cl;
	char			*end;
	unsigned long long	 n;
	int			 code;

	if (req->finished)
		return (-1);
	code = evhttp_request_get_response_code(ereq);
	if (code == 100)
		return (0);	/* evhttp reads the real head next */
	if (code < 200 || code > 999) {
		hc_req_fail(req, HC_ERR_PROTOCOL, "unexpected status %d", code);
		return (-1);
	}
	req->status = code;
	req->t_head = now_mono();
	hc_req_enter(req, HC_PH_BODY);
	/*
	 * The request will not be sent again (a stale connection is retried
	 * only before any response byte): what was kept to send it goes, and
	 * evhttp's list of its headers (the SigV4 Authorization among them)
	 * is cut to what evhttp still reads. A stream holds none of it.
	 */
	hc_req_free_copies(req);
	hc_headers_shed(evhttp_request_get_output_headers(ereq));
	hdrs = evhttp_request_get_input_headers(ereq);
	if (!(req->flags & HC_STREAM) &&
	    (cl = evhttp_find_header(hdrs, "Content-Length")) != NULL) {
		errno = 0;
		n = strtoull(cl, &end, 10);
		if (errno == 0 && *end == '\0' && n > req->max_body) {
			hc_req_fail(req, HC_ERR_TOO_LARGE, "response body of "
			    "%llu bytes is larger than %zu", n, req->max_body);
			return (-1);
		}
	}
	if ((req->flags & HC_STREAM) && req->on_head != NULL) {
		req->on_head(req, code, hdrs, req->arg);
		if (req->finished)
			return (-1);
	}
	if (req->paused && req->conn != NULL)
		bufferevent_disable(req->conn->bev, EV_READ);
	return (0);
}

static void
hc_ev_chunk(struct evhttp_request *ereq, void *arg)
{
	struct hc_req	*req = arg;
	struct evbuffer	*in = evhttp_request_get_input_buffer(ereq);
	size_t		 len = evbuffer_get_length(in);

	if (req->finished || len == 0)
		return;		/* evhttp drains it */
	req->body_bytes += len;
	if (req->max_body != 0 && req->body_bytes > req->max_body) {
		hc_req_fail(req, HC_ERR_TOO_LARGE, "response body larger than "
		    "%zu bytes", req->max_body);
		return;
	}
	evbuffer_add_buffer(req->data, in);
	req->undelivered += len;
	if ((req->flags & HC_STREAM) && !req->paused)
		hc_req_deliver_data(req);
}

static void
hc_ev_error(enum evhttp_request_error error, void *arg)
{
	struct hc_req	*req = arg;

	if (!req->finished)
		req->ev_error = (int)error + 1;
}

/* Whether a completed exchange leaves the connection fit for reuse. */
static int
hc_ev_reusable(struct hc_req *req, struct evhttp_request *ereq)
{
	const struct evkeyvalq	*hdrs = evhttp_request_get_input_headers(ereq);

	if (ereq->major != 1 || ereq->minor != 1)
		return (0);
	if (req->method == EVHTTP_REQ_HEAD || req->status == 204 ||
	    req->status == 304)
		return (1);
	/* A body ended by the connection closing leaves nothing to reuse. */
	return (ereq->chunked ||
	    evhttp_find_header(hdrs, "Content-Length") != NULL);
}

/*
 * evhttp is done with the request: the response is complete (ereq and a
 * head), or it failed (ereq NULL after hc_ev_error, or ereq without a head
 * when the connection could not be made).
 */
static void
hc_ev_done(struct evhttp_request *ereq, void *arg)
{
	struct hc_req	*req = arg;
	struct hc_conn	*conn = req->conn;
	int		 saved_errno = errno, everr;

	if (req->finished || conn == NULL)
		return;
	if (ereq != NULL && req->ev_error == 0 && req->phase == HC_PH_BODY) {
		hc_req_enter(req, HC_PH_DONE);
		hc_conn_release(conn, hc_ev_reusable(req, ereq));
		hc_req_succeed(req);
		return;
	}

	everr = req->ev_error - 1;
	switch (req->phase) {
	case HC_PH_RESOLVE:
	case HC_PH_CONNECT:
		hc_req_fail_connect(req, conn, everr, saved_errno);
		break;
	case HC_PH_SEND:
	case HC_PH_WAIT:
		if (everr == EVREQ_HTTP_TIMEOUT)
			hc_req_fail(req, HC_ERR_TIMEOUT_FIRST_BYTE,
			    "no response within the time limit");
		else if (everr == EVREQ_HTTP_INVALID_HEADER ||
		    everr == EVREQ_HTTP_DATA_TOO_LONG)
			hc_req_fail(req, HC_ERR_PROTOCOL, "malformed or "
			    "oversized response head");
		else if (req->reused && conn->bytes_in == 0 &&
		    !req->retried && !(req->flags & HC_NO_RETRY) &&
		    !hc.shutting_down) {
			/* The server closed the pooled connection first. */
			log_trace(TRACE_UPSTREAM, "stale connection to %s, "
			    "retrying", req->origin->key);
			hc.st.retries++;
			req->retried = 1;
			req->force_new = 1;
			req->retry_pending = 1;
			hc_req_enter(req, HC_PH_RESOLVE);
			hc_conn_kill(conn);
			hc_conn_detach(conn);
			hc_req_kick(req);
		} else
			hc_req_fail(req, HC_ERR_CONNECT, "connection closed "
			    "before the response");
		break;
	case HC_PH_BODY:
		if (everr == EVREQ_HTTP_TIMEOUT)
			hc_req_fail(req, HC_ERR_TIMEOUT_IDLE, "response body "
			    "stalled");
		else if (everr == EVREQ_HTTP_INVALID_HEADER ||
		    everr == EVREQ_HTTP_DATA_TOO_LONG)
			hc_req_fail(req, HC_ERR_PROTOCOL, "malformed response "
			    "body framing");
		else
			hc_req_fail(req, HC_ERR_TRUNCATED, "response body "
			    "truncated after %llu bytes",
			    (unsigned long long)req->body_bytes);
		break;
	case HC_PH_DONE:
		break;
	}
}

/* Why the connection could not be made: TLS, timeout or TCP. */
static void
hc_req_fail_connect(struct hc_req *req, struct hc_conn *conn, int everr,
    int saved_errno)
{
	unsigned long	 e, last = 0;
	char		 ebuf[128];

	if (conn->pin_failed) {
		hc_req_fail(req, HC_ERR_TLS, "certificate verify failed: no "
		    "key in the server's certificate chain is the pinned one");
		return;
	}
	if (conn->verify_err != 0) {
		hc_req_fail(req, HC_ERR_TLS, "certificate verify failed: %s",
		    X509_verify_cert_error_string(conn->verify_err - 1));
		return;
	}
	if (conn->ssl != NULL) {
		while ((e = bufferevent_get_openssl_error(conn->bev)) != 0) {
			if (ERR_GET_LIB(e) != 0)
				last = e;
		}
		if (last != 0) {
			ERR_error_string_n(last, ebuf, sizeof ebuf);
			hc_req_fail(req, HC_ERR_TLS, "TLS handshake failed: %s",
			    ERR_reason_error_string(last) != NULL ?
			    ERR_reason_error_string(last) : ebuf);
			return;
		}
	}
	if (everr == EVREQ_HTTP_TIMEOUT) {
		hc_req_fail(req, HC_ERR_TIMEOUT_CONNECT, "connect timed out");
		return;
	}
	switch (saved_errno) {
	case ECONNREFUSED:
	case ECONNRESET:
	case ETIMEDOUT:
	case EHOSTUNREACH:
	case ENETUNREACH:
	case EADDRNOTAVAIL:
	case EPIPE:
	case EMFILE:
	case ENFILE:
		hc_req_fail(req, HC_ERR_CONNECT, "cannot connect to %s: %s",
		    req->origin->key, strerror(saved_errno));
		break;
	default:
		hc_req_fail(req, HC_ERR_CONNECT, "cannot connect to %s",
		    req->origin->key);
		break;
	}
}

/* -------------------------------------------------------------------- */
/* Requests. */

static long
hc_timeout(long want, long def)
{
	if (want == 0)
		want = def;
	return (want < 0 ? -1 : want);
}

/*
 * Is the request one this client can send? The index of its method in
 * hc_methods[], or -1 with *cause.
 */
static int
hc_request_check(const struct hc_request *r, char **cause)
{
	const char	*p;
	size_t		 i, j, len;
	int		 m = -1;

	for (i = 0; r->method != NULL && i < nitems(hc_methods); i++) {
		if (strcmp(r->method, hc_methods[i].name) == 0)
			m = (int)i;
	}
	if (m == -1) {
		xasprintf(cause, "unsupported method");
		return (-1);
	}
	if (r->path == NULL || r->path[0] != '/') {
		xasprintf(cause, "request path must start with /");
		return (-1);
	}
	for (p = r->path; *p != '\0'; p++) {
		if ((unsigned char)*p <= 0x20 || *p == 0x7f) {
			xasprintf(cause, "request path has a space or control "
			    "character");
			return (-1);
		}
	}
	if (r->nheaders > 0 && r->headers == NULL) {
		xasprintf(cause, "request headers are missing");
		return (-1);
	}
	for (i = 0; i < r->nheaders; i++) {
		if (r->headers[i].name == NULL || r->headers[i].value == NULL ||
		    (len = http_token_len(r->headers[i].name)) == 0) {
			xasprintf(cause, "invalid request header name");
			return (-1);
		}
		if (strpbrk(r->headers[i].value, "\r\n") != NULL) {
			xasprintf(cause, "request header %s has a line break",
			    r->headers[i].name);
			return (-1);
		}
		for (j = 0; j < nitems(hc_owned_headers); j++) {
			if (len == hc_owned_headers[j].len &&
			    strcasecmp(r->headers[i].name,
			    hc_owned_headers[j].name) == 0) {
				xasprintf(cause, "request header %s is set by "
				    "the client", hc_owned_headers[j].name);
				return (-1);
			}
		}
	}
	if (r->on_done == NULL) {
		xasprintf(cause, "request has no completion callback");
		return (-1);
	}
	if (!(r->flags & HC_STREAM) && r->max_body == 0) {
		xasprintf(cause, "buffered request needs a body ceiling");
		return (-1);
	}
	if (r->body_len > 0 && r->body == NULL && r->shared_body == NULL) {
		xasprintf(cause, "request body is missing");
		return (-1);
	}
	return (m);
}

/* A request's own copy of everything in r (method m), on the live list. */
static struct hc_req *
hc_req_new(struct hc_target *t, const struct hc_request *r, int m)
{
	struct hc_req	*req;
	size_t		 i, len, n;
	char		*p;

	req = xcalloc(1, sizeof *req);
	req->refcnt = 1;
	req->origin = t->origin;
	req->origin->refcnt++;
	req->method = hc_methods[m].type;
	req->method_name = hc_methods[m].name;
	req->path = xstrdup(r->path);
	req->nheaders = r->nheaders;
	/* The headers in one block, not two strings each (~20 a call). */
	if (r->nheaders > 0) {
		for (len = 0, i = 0; i < r->nheaders; i++)
			len += strlen(r->headers[i].name) +
			    strlen(r->headers[i].value) + 2;
		req->hnames = xcalloc(2 * r->nheaders, sizeof *req->hnames);
		req->hvalues = req->hnames + r->nheaders;
		req->hblock = p = xmalloc(len);
		req->hblock_len = len;
		for (i = 0; i < r->nheaders; i++) {
			n = strlen(r->headers[i].name) + 1;
			req->hnames[i] = memcpy(p, r->headers[i].name, n);
			p += n;
			n = strlen(r->headers[i].value) + 1;
			req->hvalues[i] = memcpy(p, r->headers[i].value, n);
			p += n;
		}
	}
	if (r->shared_body != NULL) {
		req->body = r->shared_body;
		req->body->refcnt++;
	} else if (r->body_len > 0 || req->method == EVHTTP_REQ_POST ||
	    req->method == EVHTTP_REQ_PUT || req->method == EVHTTP_REQ_PATCH)
		req->body = hc_body_new(r->body, r->body_len);
	req->max_body = r->max_body;
	req->flags = r->flags;
	req->to_connect = hc_timeout(r->timeouts.connect_ms,
	    hc.defaults.connect_ms);
	req->to_first_byte = hc_timeout(r->timeouts.first_byte_ms,
	    hc.defaults.first_byte_ms);
	req->to_idle = hc_timeout(r->timeouts.idle_ms, hc.defaults.idle_ms);
	req->to_total = hc_timeout(r->timeouts.total_ms, hc.defaults.total_ms);
	req->on_head = r->on_head;
	req->on_data = r->on_data;
	req->on_done = r->on_done;
	req->arg = r->arg;
	if ((req->data = evbuffer_new()) == NULL)
		fatalx("%s: evbuffer_new", __func__);
	evtimer_assign(&req->tmo_ev, bsp_base, hc_req_tmo_cb, req);
	TAILQ_INSERT_TAIL(&hc.reqs, req, entry);
	return (req);
}

struct hc_req *
hc_start(struct hc_target *t, const struct hc_request *r, char **cause)
{
	struct hc_req	*req;
	struct timeval	 tv;
	int		 m;

	if (!hc.initialized || hc.shutting_down) {
		xasprintf(cause, "http client is not running");
		return (NULL);
	}
	if ((m = hc_request_check(r, cause)) == -1)
		return (NULL);
	req = hc_req_new(t, r, m);
	hc.st.requests++;
	hc.st.requests_live++;

	req->id = ++hc.next_id;
	req->t_start = now_mono();
	req->phase = HC_PH_RESOLVE;
	req->t_phase = req->t_start;
	if (log_trace_on(TRACE_UPSTREAM)) {
		char	path[96];

		log_escape(req->path, strcspn(req->path, "?"), path,
		    sizeof path);
		log_trace(TRACE_UPSTREAM, "request %u: %s %s%s", req->id,
		    req->method_name, req->origin->key, path);
	}
	if (req->to_total > 0) {
		if ((req->total_ev = evtimer_new(bsp_base, hc_req_total_cb,
		    req)) == NULL)
			fatalx("%s: evtimer_new", __func__);
		tv.tv_sec = req->to_total / 1000;
		tv.tv_usec = (req->to_total % 1000) * 1000;
		evtimer_add(req->total_ev, &tv);
	}
	hc_req_arm(req);
	hc_req_connect(req);
	return (req);
}

void
hc_request_init(struct hc_request *r, const char *method, const char *path,
    const struct hc_header *headers, size_t nheaders, const void *body,
    size_t body_len, size_t max_body, const struct hc_timeouts *to,
    void (*done)(struct hc_req *, const struct hc_result *, void *),
    void *arg)
{
	memset(r, 0, sizeof *r);
	r->method = method;
	r->path = path;
	r->headers = headers;
	r->nheaders = nheaders;
	r->body = body;
	r->body_len = body_len;
	r->max_body = max_body;
	if (to != NULL)
		r->timeouts = *to;
	r->on_done = done;
	r->arg = arg;
}

struct hc_req *
hc_fetch(struct hc_target *t, const char *method, const char *path,
    const struct hc_header *headers, size_t nheaders, const void *body,
    size_t body_len, size_t max_body,
    void (*done)(struct hc_req *, const struct hc_result *, void *),
    void *arg, char **cause)
{
	struct hc_request	r;

	hc_request_init(&r, method, path, headers, nheaders, body, body_len,
	    max_body, NULL, done, arg);
	return (hc_start(t, &r, cause));
}

/* Find a connection: the pool, the DNS cache, or a lookup. */
static void
hc_req_connect(struct hc_req *req)
{
	struct hc_origin	*o = req->origin;
	struct hc_conn		*conn;

	if (!req->force_new && (conn = hc_conn_take(o)) != NULL) {
		hc_req_send(req, conn, 1);
		return;
	}
	if (o->naddrs > 0 && (o->addrs_expire == 0 ||
	    o->addrs_expire > now_mono())) {
		hc_req_open(req);
		return;
	}
	TAILQ_INSERT_TAIL(&o->dns_wait, req, wait_entry);
	req->in_dns_wait = 1;
	hc_origin_resolve(o);
}

/* A fresh connection, within the global limit. */
static void
hc_req_open(struct hc_req *req)
{
	struct hc_conn	*conn;

	if (!req->force_new && (conn = hc_conn_take(req->origin)) != NULL) {
		hc_req_send(req, conn, 1);
		return;
	}
	if (hc.st.conns_live >= hc.max_conns && hc_conn_evict_idle() == -1) {
		hc_req_fail(req, HC_ERR_LIMIT, "too many upstream connections "
		    "(%zu)", hc.max_conns);
		return;
	}
	if ((conn = hc_conn_new(req->origin)) == NULL) {
		hc_req_fail(req, HC_ERR_CONNECT, "cannot set up a connection "
		    "to %s", req->origin->key);
		return;
	}
	hc_req_send(req, conn, 0);
}

/* Build the evhttp request and hand it to the connection. */
static void
hc_req_send(struct hc_req *req, struct hc_conn *conn, int reused)
{
	struct evhttp_request	*ereq;
	struct evkeyvalq	*out;
	char			 len[32];
	size_t			 i;

	conn->req = req;
	req->conn = conn;
	req->refcnt++;
	conn->nreqs++;
	conn->bytes_in = 0;
	req->reused = reused;
	req->ev_error = 0;	/* a retry starts clean */
	if (reused)
		hc.st.conns_reused++;

	if ((ereq = evhttp_request_new(hc_ev_done, req)) == NULL)
		fatalx("%s: evhttp_request_new", __func__);
	evhttp_request_own(ereq);
	req->ereq = ereq;
	evhttp_request_set_header_cb(ereq, hc_ev_head);
	evhttp_request_set_chunked_cb(ereq, hc_ev_chunk);
	evhttp_request_set_error_cb(ereq, hc_ev_error);
	out = evhttp_request_get_output_headers(ereq);
	evhttp_add_header(out, "Host", req->origin->hosthdr);
	for (i = 0; i < req->nheaders; i++) {
		if (evhttp_add_header(out, req->hnames[i],
		    req->hvalues[i]) == -1) {
			hc_req_fail(req, HC_ERR_PROTOCOL, "invalid request "
			    "header %s", req->hnames[i]);
			return;
		}
	}
	if (req->body != NULL) {
		num_lld(len, (long long)req->body->len);
		evhttp_add_header(out, "Content-Length", len);
		if (req->body->len > 0) {
			req->body->refcnt++;
			if (evbuffer_add_reference(
			    evhttp_request_get_output_buffer(ereq),
			    req->body->data, req->body->len, hc_body_cleanup,
			    req->body) == -1)
				fatalx("%s: evbuffer_add_reference", __func__);
		}
	}

	/*
	 * Only a request on a pooled connection, first time, is ever sent
	 * again (a stale connection, hc_ev_error): any other has its copies
	 * in the evhttp request now, and a burst of new connections (a
	 * thousand streams starting) holds them once, not twice, until the
	 * answers come.
	 */
	if (!reused || req->retried || (req->flags & HC_NO_RETRY))
		hc_req_free_copies(req);

	hc_req_enter(req, HC_PH_CONNECT);
	/* A reused connection writes at once: hc_conn_output_cb moves on. */
	if (evhttp_make_request(conn->evcon, ereq, req->method,
	    req->path) == -1)
		hc_req_fail(req, HC_ERR_CONNECT, "cannot send the request to "
		    "%s", req->origin->key);
}

struct hc_body *
hc_body_new(const void *data, size_t len)
{
	struct hc_body	*body;

	body = xcalloc(1, sizeof *body + len + 1);
	body->refcnt = 1;
	body->len = len;
	body->data = (unsigned char *)(body + 1);
	if (len > 0)
		memcpy(body->data, data, len);
	return (body);
}

/* The same, of data (malloc'd), which it takes instead of copying. */
struct hc_body *
hc_body_take(void *data, size_t len)
{
	struct hc_body	*body;

	body = xcalloc(1, sizeof *body);
	body->refcnt = 1;
	body->len = len;
	body->data = data;
	body->taken = 1;
	return (body);
}

void
hc_body_unref(struct hc_body *body)
{
	if (body == NULL || --body->refcnt > 0)
		return;
	if (body->taken)
		free(body->data);
	free(body);
}

const void *
hc_body_data(const struct hc_body *body)
{
	return (body->data);
}

size_t
hc_body_len(const struct hc_body *body)
{
	return (body->len);
}

/* An evbuffer let go of the body bytes it referenced. */
static void
hc_body_cleanup(const void *data, size_t len, void *arg)
{
	hc_body_unref(arg);
}

/* The one place a request changes phase. */
static void
hc_req_enter(struct hc_req *req, enum hc_phase ph)
{
	log_trace(TRACE_UPSTREAM, "request %u: %s -> %s", req->id,
	    hc_phase_names[req->phase], hc_phase_names[ph]);
	req->phase = ph;
	req->t_phase = now_mono();
	hc_req_arm(req);
}

/* The timeout that applies now, in ms, or -1. */
static long
hc_req_phase_timeout(struct hc_req *req)
{
	switch (req->phase) {
	case HC_PH_RESOLVE:
	case HC_PH_CONNECT:
		return (req->to_connect);
	case HC_PH_SEND:
	case HC_PH_WAIT:
		return (req->to_first_byte);
	case HC_PH_BODY:
		return (req->paused ? -1 : req->to_idle);
	case HC_PH_DONE:
		break;
	}
	return (-1);
}

/*
 * (Re)arm the phase timer for t_phase + the phase's timeout. Progress only
 * moves t_phase; the timer notices when it fires and waits the rest. So
 * does a new phase whose deadline is later than the one armed (a call
 * moves through four or five): the timer is left as it is, no clock read
 * and no reordering of libevent's timer heap.
 */
static void
hc_req_arm(struct hc_req *req)
{
	struct timeval	 tv;
	double		 at, left;
	long		 ms;

	ms = hc_req_phase_timeout(req);
	if (req->finished || ms < 0) {
		evtimer_del(&req->tmo_ev);
		return;
	}
	at = req->t_phase + (double)ms / 1000.0;
	if (at >= req->tmo_at && evtimer_pending(&req->tmo_ev, NULL))
		return;
	left = at - now_mono();
	if (left < 0)
		left = 0;
	tv.tv_sec = (time_t)left;
	tv.tv_usec = (suseconds_t)((left - (double)tv.tv_sec) * 1e6);
	evtimer_add(&req->tmo_ev, &tv);
	req->tmo_at = at;
}

static void
hc_req_tmo_cb(evutil_socket_t fd, short events, void *arg)
{
	struct hc_req	*req = arg;
	long		 ms;

	if (req->finished)
		return;
	ms = hc_req_phase_timeout(req);
	if (ms < 0)
		return;
	if (now_mono() + 0.0005 < req->t_phase + (double)ms / 1000.0) {
		hc_req_arm(req);
		return;
	}
	switch (req->phase) {
	case HC_PH_RESOLVE:
	case HC_PH_CONNECT:
		hc_req_fail(req, HC_ERR_TIMEOUT_CONNECT, "no connection to %s "
		    "within %ld ms", req->origin->key, ms);
		break;
	case HC_PH_SEND:
	case HC_PH_WAIT:
		hc_req_fail(req, HC_ERR_TIMEOUT_FIRST_BYTE, "no response "
		    "within %ld ms", ms);
		break;
	case HC_PH_BODY:
		hc_req_fail(req, HC_ERR_TIMEOUT_IDLE, "response body stalled "
		    "for %ld ms", ms);
		break;
	case HC_PH_DONE:
		break;
	}
}

static void
hc_req_total_cb(evutil_socket_t fd, short events, void *arg)
{
	struct hc_req	*req = arg;

	hc_req_fail(req, HC_ERR_TIMEOUT_TOTAL, "exchange took longer than %ld "
	    "ms", req->to_total);
}

/* The outcome is decided: stop timers, log, deliver on a later pass. */
static void
hc_req_end(struct hc_req *req)
{
	char	 path[96];
	size_t	 n;

	req->finished = 1;
	req->t_end = now_mono();
	hc.st.requests_live--;
	evtimer_del(&req->tmo_ev);
	if (req->total_ev != NULL)
		evtimer_del(req->total_ev);
	if (req->in_dns_wait) {
		TAILQ_REMOVE(&req->origin->dns_wait, req, wait_entry);
		req->in_dns_wait = 0;
	}
	if (log_trace_on(TRACE_UPSTREAM)) {
		n = strcspn(req->path, "?");
		log_escape(req->path, n, path, sizeof path);
		log_trace(TRACE_UPSTREAM, "request %u: %s %s%s%s: %d %s "
		    "%.3fs%s%s%s", req->id, req->method_name, req->origin->key,
		    path,
		    req->path[n] != '\0' ? "?..." : "", req->status,
		    hc_error_name(req->error), req->t_end - req->t_start,
		    req->reused ? " reused" : "", req->msg != NULL ?
		    ": " : "", req->msg != NULL ? req->msg : "");
	}
	hc_req_kick(req);
}

static void
hc_req_fail(struct hc_req *req, enum hc_error err, const char *fmt, ...)
{
	va_list	ap;

	if (req->finished)
		return;
	if (req->msg == NULL)
		req->msg = xmalloc(HC_MSG_LEN);
	va_start(ap, fmt);
	vsnprintf(req->msg, HC_MSG_LEN, fmt, ap);
	va_end(ap);
	req->error = err;
	hc.st.errors[err]++;
	if (req->conn != NULL)
		hc_conn_kill(req->conn);
	hc_req_end(req);
}

static void
hc_req_succeed(struct hc_req *req)
{
	if (req->finished)
		return;
	req->error = HC_OK;
	free(req->msg);
	req->msg = NULL;
	hc_req_end(req);
}

static void
hc_req_kick(struct hc_req *req)
{
	if (req->cancelled || req->kicked)
		return;
	req->kicked = 1;
	req->kick_gen = hc.kick_gen;
	TAILQ_INSERT_TAIL(&hc.kicks, req, kick_entry);
	/* Activating an active event only merges the flags. */
	event_active(&hc.kick_ev, EV_TIMEOUT, 0);
}

static void
hc_req_unkick(struct hc_req *req)
{
	if (req->kicked) {
		TAILQ_REMOVE(&hc.kicks, req, kick_entry);
		req->kicked = 0;
	}
}

/*
 * The requests kicked before this pass, in order (those kicked while it
 * runs wait for the next one: the event is active again by then). A
 * request cancelled or freed meanwhile has left the list.
 */
static void
hc_kicks_cb(evutil_socket_t fd, short events, void *arg)
{
	struct hc_req	*req;
	uint64_t	 gen = hc.kick_gen++;

	while ((req = TAILQ_FIRST(&hc.kicks)) != NULL &&
	    req->kick_gen <= gen) {
		hc_req_unkick(req);
		hc_req_kicked(req);
	}
}

/* Deferred work: a retry, held body bytes, on_done. */
static void
hc_req_kicked(struct hc_req *req)
{
	if (req->cancelled || req->done_delivered)
		return;
	if (req->retry_pending) {
		req->retry_pending = 0;
		if (!req->finished) {
			if (req->ereq != NULL) {
				evhttp_request_free(req->ereq);
				req->ereq = NULL;
			}
			hc_req_connect(req);
			return;
		}
		/* It timed out meanwhile: deliver that. */
	}
	if (req->finished && req->error != HC_OK) {
		hc_req_deliver_done(req);
		return;
	}
	if (req->paused)
		return;
	if ((req->flags & HC_STREAM) && req->undelivered > 0) {
		hc_req_deliver_data(req);
		if (req->cancelled || req->paused)
			return;
	}
	if (req->finished)
		hc_req_deliver_done(req);
}

static void
hc_req_deliver_data(struct hc_req *req)
{
	req->undelivered = 0;
	if (req->on_data == NULL) {
		evbuffer_drain(req->data, evbuffer_get_length(req->data));
		return;
	}
	req->on_data(req, req->data, req->arg);
}

static void
hc_req_deliver_done(struct hc_req *req)
{
	struct hc_result	r;

	memset(&r, 0, sizeof r);
	r.error = req->error;
	r.message = req->msg != NULL ? req->msg : "";
	r.status = req->status;
	if (req->status != 0 && req->ereq != NULL)
		r.headers = evhttp_request_get_input_headers(req->ereq);
	r.body = req->data;
	r.body_bytes = req->body_bytes;
	r.reused = req->reused;
	if (!req->reused && req->t_connected > 0)
		r.t_connect = req->t_connected - req->t_start;
	if (req->t_head > 0)
		r.t_head = req->t_head - req->t_start;
	r.t_total = req->t_end - req->t_start;
	req->done_delivered = 1;
	req->on_done(req, &r, req->arg);
	hc_req_unref(req);
}

void
hc_cancel(struct hc_req *req)
{
	if (req == NULL || req->cancelled || req->done_delivered)
		return;
	req->cancelled = 1;
	if (!req->finished) {
		req->error = HC_ERR_CANCELLED;
		if (req->msg == NULL)
			req->msg = xmalloc(HC_MSG_LEN);
		bsp_strlcpy(req->msg, "cancelled", HC_MSG_LEN);
		hc.st.errors[HC_ERR_CANCELLED]++;
		if (req->conn != NULL)
			hc_conn_kill(req->conn);
		hc_req_end(req);
	}
	hc_req_unkick(req);
	hc_req_unref(req);
}

void
hc_pause(struct hc_req *req)
{
	if (req->cancelled || req->done_delivered || req->paused)
		return;
	req->paused = 1;
	if (req->finished)
		return;
	if (req->phase == HC_PH_BODY && req->conn != NULL)
		bufferevent_disable(req->conn->bev, EV_READ);
	hc_req_arm(req);
}

void
hc_resume(struct hc_req *req)
{
	if (req->cancelled || req->done_delivered || !req->paused)
		return;
	req->paused = 0;
	if (!req->finished && req->phase == HC_PH_BODY && req->conn != NULL &&
	    req->conn->state == HC_CONN_ACTIVE) {
		bufferevent_enable(req->conn->bev, EV_READ);
		req->t_phase = now_mono();
		hc_req_arm(req);
	}
	if (req->undelivered > 0 || req->finished)
		hc_req_kick(req);
}

int
hc_status(const struct hc_req *req)
{
	return (req->status);
}

const struct evkeyvalq *
hc_headers(const struct hc_req *req)
{
	if (req->status == 0 || req->ereq == NULL)
		return (NULL);
	return (evhttp_request_get_input_headers(req->ereq));
}

void
hc_headers_shed(struct evkeyvalq *h)
{
	struct evkeyvalq	 keep;
	struct evkeyval		*kv, *next;

	/*
	 * Those kept are moved aside, the rest cleared at once (not found
	 * and removed one by one), and the kept put back in their order.
	 */
	TAILQ_INIT(&keep);
	for (kv = TAILQ_FIRST(h); kv != NULL; kv = next) {
		next = TAILQ_NEXT(kv, next);
		if (strcasecmp(kv->key, "Connection") == 0 ||
		    strcasecmp(kv->key, "Proxy-Connection") == 0) {
			TAILQ_REMOVE(h, kv, next);
			TAILQ_INSERT_TAIL(&keep, kv, next);
		}
	}
	evhttp_clear_headers(h);
	TAILQ_CONCAT(h, &keep, next);
}

size_t
hc_buffered(const struct hc_req *req)
{
	size_t	n = evbuffer_get_length(req->data);

	if (req->conn != NULL && req->conn->bev != NULL)
		n += evbuffer_get_length(bufferevent_get_input(req->conn->bev));
	return (n);
}

/* The request's own copies of its headers and body, kept to send it. */
static void
hc_req_free_copies(struct hc_req *req)
{
	/* Values may be secrets (SigV4's Authorization): wiped. */
	if (req->hblock != NULL)
		freezero(req->hblock, req->hblock_len);
	free(req->hnames);
	req->hnames = req->hvalues = NULL;
	req->hblock = NULL;
	req->hblock_len = 0;
	req->nheaders = 0;
	hc_body_unref(req->body);	/* the output buffer may still hold it */
	req->body = NULL;
}

static void
hc_req_unref(struct hc_req *req)
{
	if (--req->refcnt > 0)
		return;
	TAILQ_REMOVE(&hc.reqs, req, entry);
	TAILQ_INSERT_TAIL(&hc.dead_reqs, req, entry);
	hc_reap_schedule();
}

static void
hc_req_free(struct hc_req *req)
{
	if (req->ereq != NULL)
		evhttp_request_free(req->ereq);
	event_del(&req->tmo_ev);
	if (req->total_ev != NULL)
		event_free(req->total_ev);
	hc_req_unkick(req);
	free(req->msg);
	evbuffer_free(req->data);
	hc_req_free_copies(req);
	free(req->path);
	hc_origin_unref(req->origin);
	free(req);
}

/* -------------------------------------------------------------------- */
/* The reaper: frees what was let go, on a later loop pass. */

static void
hc_reap_schedule(void)
{
	/* Activating an active event only merges the flags. */
	if (hc.initialized)
		event_active(&hc.reap_ev, EV_TIMEOUT, 0);
}

static void
hc_reap_cb(evutil_socket_t fd, short events, void *arg)
{
	hc_reap();
}

static void
hc_reap(void)
{
	struct hc_conn	*conn;
	struct hc_req	*req;

	for (;;) {
		if ((conn = TAILQ_FIRST(&hc.dead_conns)) != NULL) {
			TAILQ_REMOVE(&hc.dead_conns, conn, entry);
			hc_conn_free(conn);
			continue;
		}
		if ((req = TAILQ_FIRST(&hc.dead_reqs)) != NULL) {
			TAILQ_REMOVE(&hc.dead_reqs, req, entry);
			hc_req_free(req);
			continue;
		}
		break;
	}
}
