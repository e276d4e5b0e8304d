/*
 * test-http-client.c: the outbound HTTP client against real local servers
 * on 127.0.0.1 ephemeral ports, in one event loop: plain and TLS evhttp
 * servers, a raw TCP server for hand-made answers, a listener that never
 * speaks TLS, and a DNS server that never answers. Certificates (a CA, a
 * good leaf, a leaf for the wrong name, a leaf from an unrelated CA) are
 * made at start with the OpenSSL API. No sleeps: everything is driven by
 * the loop and timers.
 */

#include <sys/types.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "bsp.h"
#include "http-client.h"
#include "tap.h"
#include "loop.h"

#define MB		(1024 * 1024)
#define MAX_SCONNS	1024

/* ------------------------------------------------------------------ */
/* The loop (also bsp_base; run_until and run_for are in loop.h). */

static struct event_base	*base;

/* ------------------------------------------------------------------ */
/* Certificates. */

static int	cert_serial = 1;

static int
add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
	X509V3_CTX	 v3;
	X509_EXTENSION	*ext;

	X509V3_set_ctx_nodb(&v3);
	X509V3_set_ctx(&v3, issuer, x, NULL, NULL, 0);
	if ((ext = X509V3_EXT_conf_nid(NULL, &v3, nid, value)) == NULL)
		return (-1);
	X509_add_ext(x, ext, -1);
	X509_EXTENSION_free(ext);
	return (0);
}

static X509 *
make_cert(EVP_PKEY *key, X509 *issuer, EVP_PKEY *ikey, const char *cn,
    const char *san)
{
	X509		*x = X509_new();
	X509_NAME	*n;

	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), cert_serial++);
	X509_gmtime_adj(X509_getm_notBefore(x), -3600);
	X509_gmtime_adj(X509_getm_notAfter(x), 86400);
	X509_set_pubkey(x, key);
	n = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC,
	    (const unsigned char *)cn, -1, -1, 0);
	X509_set_issuer_name(x, issuer != NULL ? X509_get_subject_name(issuer) :
	    n);
	if (issuer == NULL) {
		add_ext(x, x, NID_basic_constraints, "critical,CA:TRUE");
		add_ext(x, x, NID_key_usage, "critical,keyCertSign,cRLSign");
		add_ext(x, x, NID_subject_key_identifier, "hash");
	} else {
		add_ext(x, issuer, NID_basic_constraints, "CA:FALSE");
		add_ext(x, issuer, NID_key_usage,
		    "critical,digitalSignature,keyEncipherment");
		add_ext(x, issuer, NID_ext_key_usage, "serverAuth");
		add_ext(x, issuer, NID_subject_alt_name, san);
		add_ext(x, issuer, NID_authority_key_identifier, "keyid");
	}
	X509_sign(x, ikey != NULL ? ikey : key, EVP_sha256());
	return (x);
}

static char	 sni_seen[256];

static int
servername_cb(SSL *ssl, int *al, void *arg)
{
	const char	*name;

	name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
	bsp_strlcpy(sni_seen, name != NULL ? name : "", sizeof sni_seen);
	return (SSL_TLSEXT_ERR_OK);
}

static SSL_CTX *
server_ctx(X509 *cert, EVP_PKEY *key)
{
	SSL_CTX	*ctx = SSL_CTX_new(TLS_server_method());

	SSL_CTX_use_certificate(ctx, cert);
	SSL_CTX_use_PrivateKey(ctx, key);
	SSL_CTX_set_tlsext_servername_callback(ctx, servername_cb);
	return (ctx);
}

/* ------------------------------------------------------------------ */
/* The evhttp test servers (one gencb, several listeners). */

struct stream;
struct sconn {
	struct evhttp_connection	*evcon;
	int				 id;
	struct stream			*st;
	struct evhttp_request		*pending;	/* reply started */
};
static struct sconn	 sconns[MAX_SCONNS];
static int		 nsconns, next_sconn_id, sconn_closed_count;

struct stream {
	struct evhttp_request	*req;
	struct sconn		*sc;
	size_t			 total, sent, chunk;
};
static size_t		 stream_sent;	/* progress of the last stream */
static int		 stream_done;

static char		 last_uri[512];
static char		 last_xtest[128];
static char		 last_host[128];
static struct evhttp_request *held_reqs[16];
static int		 nheld;

static struct event	*closer_ev;

static void
sconn_closed(struct evhttp_connection *evcon, void *arg)
{
	int	i;

	for (i = 0; i < nsconns; i++) {
		if (sconns[i].evcon == evcon) {
			/*
			 * A request whose reply had started is disowned by
			 * evhttp when the client goes away: it is ours.
			 */
			if (sconns[i].pending != NULL &&
			    evhttp_request_get_connection(sconns[i].pending) ==
			    NULL)
				evhttp_request_free(sconns[i].pending);
			free(sconns[i].st);
			sconns[i] = sconns[--nsconns];
			sconn_closed_count++;
			return;
		}
	}
}

static struct sconn *
sconn_get(struct evhttp_request *req)
{
	struct evhttp_connection	*evcon;
	int				 i;

	evcon = evhttp_request_get_connection(req);
	for (i = 0; i < nsconns; i++) {
		if (sconns[i].evcon == evcon)
			return (&sconns[i]);
	}
	if (nsconns == MAX_SCONNS)
		abort();
	sconns[nsconns].evcon = evcon;
	sconns[nsconns].id = ++next_sconn_id;
	sconns[nsconns].st = NULL;
	sconns[nsconns].pending = NULL;
	evhttp_connection_set_closecb(evcon, sconn_closed, NULL);
	return (&sconns[nsconns++]);
}

/* Server side: close every connection (from outside evhttp callbacks). */
static void
drop_server_conns(void)
{
	while (nsconns > 0)
		evhttp_connection_free(sconns[0].evcon);
}

static void
closer_cb(evutil_socket_t fd, short ev, void *arg)
{
	drop_server_conns();
}

static unsigned char
pattern(size_t i)
{
	return ((unsigned char)((i * 131) ^ (i >> 11) ^ (i >> 19)));
}

static void stream_next(struct evhttp_connection *, void *);

static void
stream_next(struct evhttp_connection *evcon, void *arg)
{
	struct sconn	*sc = arg;
	struct stream	*st = sc->st;
	struct evbuffer	*b;
	unsigned char	 buf[65536];
	size_t		 n, i;

	if (st == NULL)
		return;
	if (st->sent == st->total) {
		evhttp_send_reply_end(st->req);
		free(st);
		sc->st = NULL;
		sc->pending = NULL;
		stream_done = 1;
		return;
	}
	n = st->total - st->sent;
	if (n > st->chunk)
		n = st->chunk;
	for (i = 0; i < n; i++)
		buf[i] = pattern(st->sent + i);
	b = evbuffer_new();
	evbuffer_add(b, buf, n);
	st->sent += n;
	stream_sent = st->sent;
	evhttp_send_reply_chunk_with_cb(st->req, b, stream_next, sc);
	evbuffer_free(b);
}

static void
trunc_sent(struct evhttp_request *req, void *arg)
{
	event_active(closer_ev, EV_TIMEOUT, 0);
}

static size_t
query_num(const char *uri, const char *key, size_t def)
{
	const char	*p;
	char		 k[32];

	snprintf(k, sizeof k, "%s=", key);
	if ((p = strstr(uri, k)) == NULL)
		return (def);
	return ((size_t)strtoull(p + strlen(k), NULL, 10));
}

/* /later's answer, when its time has come. */
static void
later_cb(evutil_socket_t fd, short ev, void *arg)
{
	struct evhttp_request	*req = arg;
	struct evbuffer		*b = evbuffer_new();

	evbuffer_add_printf(b, "late");
	evhttp_send_reply(req, 200, "OK", b);
	evbuffer_free(b);
}

static void
gencb(struct evhttp_request *req, void *arg)
{
	const char	*uri = evhttp_request_get_uri(req);
	struct evkeyvalq *in = evhttp_request_get_input_headers(req);
	struct evkeyvalq *out = evhttp_request_get_output_headers(req);
	struct evbuffer	*b = evbuffer_new(), *body;
	struct sconn	*sc = sconn_get(req);
	const char	*h;
	size_t		 n, c, i;
	char		*big;
	struct timeval	 tv;

	bsp_strlcpy(last_uri, uri, sizeof last_uri);
	h = evhttp_find_header(in, "X-Test");
	bsp_strlcpy(last_xtest, h != NULL ? h : "", sizeof last_xtest);
	h = evhttp_find_header(in, "Host");
	bsp_strlcpy(last_host, h != NULL ? h : "", sizeof last_host);

	if (strncmp(uri, "/echo", 5) == 0) {
		body = evhttp_request_get_input_buffer(req);
		evbuffer_add_printf(b, "%s %s|",
		    evhttp_request_get_command(req) == EVHTTP_REQ_POST ?
		    "POST" : "GET", uri);
		evbuffer_add_buffer(b, body);
		evhttp_send_reply(req, 200, "OK", b);
	} else if (strncmp(uri, "/id", 3) == 0) {
		evbuffer_add_printf(b, "%d", sc->id);
		evhttp_send_reply(req, 200, "OK", b);
	} else if (strncmp(uri, "/close", 6) == 0) {
		evhttp_add_header(out, "Connection", "close");
		evbuffer_add_printf(b, "bye");
		evhttp_send_reply(req, 200, "OK", b);
	} else if (strncmp(uri, "/never", 6) == 0) {
		if (nheld < (int)nitems(held_reqs))
			held_reqs[nheld++] = req;
	} else if (strncmp(uri, "/later", 6) == 0) {
		n = query_num(uri, "ms", 200);
		tv.tv_sec = (time_t)(n / 1000);
		tv.tv_usec = (suseconds_t)(n % 1000 * 1000);
		event_base_once(bsp_base, -1, EV_TIMEOUT, later_cb, req, &tv);
	} else if (strncmp(uri, "/stall", 6) == 0) {
		evhttp_send_reply_start(req, 200, "OK");
		sc->pending = req;
		evbuffer_add_printf(b, "hello");
		evhttp_send_reply_chunk(req, b);
	} else if (strncmp(uri, "/big", 4) == 0) {
		n = query_num(uri, "n", 1000);
		c = query_num(uri, "c", 0);
		big = xmalloc(n + 1);
		memset(big, 'a', n);
		if (c == 0) {
			evbuffer_add(b, big, n);
			evhttp_send_reply(req, 200, "OK", b);
		} else {
			evhttp_send_reply_start(req, 200, "OK");
			for (i = 0; i < n; i += c) {
				evbuffer_add(b, big + i, n - i < c ? n - i : c);
				evhttp_send_reply_chunk(req, b);
			}
			evhttp_send_reply_end(req);
		}
		free(big);
	} else if (strncmp(uri, "/trunc", 6) == 0) {
		evhttp_add_header(out, "Content-Length", "1000");
		evbuffer_add(b, "0123456789", 10);
		evhttp_request_set_on_complete_cb(req, trunc_sent, NULL);
		evhttp_send_reply(req, 200, "OK", b);
	} else if (strncmp(uri, "/stream", 7) == 0) {
		sc->st = xcalloc(1, sizeof *sc->st);
		sc->st->req = req;
		sc->st->sc = sc;
		sc->st->total = query_num(uri, "n", MB);
		sc->st->chunk = query_num(uri, "c", 16384);
		stream_sent = 0;
		stream_done = 0;
		evhttp_add_header(out, "Content-Type",
		    "application/vnd.amazon.eventstream");
		evhttp_send_reply_start(req, 200, "OK");
		sc->pending = req;
		stream_next(evhttp_request_get_connection(req), sc);
	} else
		evhttp_send_error(req, 404, NULL);
	evbuffer_free(b);
}

static struct bufferevent *
tls_bevcb(struct event_base *b, void *arg)
{
	return (bufferevent_openssl_socket_new(b, -1, SSL_new(arg),
	    BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE));
}

static int
listener_port(struct evconnlistener *l)
{
	struct sockaddr_in	sin;
	socklen_t		len = sizeof sin;

	getsockname(evconnlistener_get_fd(l), (struct sockaddr *)&sin, &len);
	return (ntohs(sin.sin_port));
}

static struct evconnlistener *
listen_any(evconnlistener_cb cb, void *arg)
{
	struct sockaddr_in	sin;

	memset(&sin, 0, sizeof sin);
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	return (evconnlistener_new_bind(base, cb, arg,
	    LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_FREE, 1024,
	    (struct sockaddr *)&sin, sizeof sin));
}

static struct evhttp *
http_server(SSL_CTX *ctx, int *port)
{
	struct evhttp		*http = evhttp_new(base);
	struct evconnlistener	*l = listen_any(NULL, NULL);

	evhttp_set_gencb(http, gencb, NULL);
	if (ctx != NULL)
		evhttp_set_bevcb(http, tls_bevcb, ctx);
	evhttp_bind_listener(http, l);
	*port = listener_port(l);
	return (http);
}

/* ------------------------------------------------------------------ */
/* Raw servers: a canned answer, and one that never speaks. */

static const char	*raw_answer;
static int		 raw_close;
static int		 raw_fds[64];
static int		 nraw_fds;

static void
raw_event(struct bufferevent *bev, short what, void *arg)
{
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
		bufferevent_free(bev);
}

static void
raw_written(struct bufferevent *bev, void *arg)
{
	if (raw_close)
		bufferevent_free(bev);
}

static void
raw_read(struct bufferevent *bev, void *arg)
{
	struct evbuffer		*in = bufferevent_get_input(bev);
	struct evbuffer_ptr	 p;

	p = evbuffer_search(in, "\r\n\r\n", 4, NULL);
	if (p.pos == -1)
		return;
	evbuffer_drain(in, evbuffer_get_length(in));
	bufferevent_write(bev, raw_answer, strlen(raw_answer));
}

static void
raw_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
    int len, void *arg)
{
	struct bufferevent	*bev;

	bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
	bufferevent_setcb(bev, raw_read, raw_written, raw_event, NULL);
	/* Not EV_WRITE: an idle write event would call raw_written. */
	bufferevent_enable(bev, EV_READ);
}

static void
mute_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
    int len, void *arg)
{
	if (nraw_fds < (int)nitems(raw_fds))
		raw_fds[nraw_fds++] = fd;
	else
		close(fd);
}

/* ------------------------------------------------------------------ */
/* Client-side result capture. */

struct res {
	int		 done;
	enum hc_error	 err;
	char		 msg[256];
	int		 status;
	char		*body;
	size_t		 body_len;
	int		 reused;
	int		 heads;
	int		 head_status;
	char		 ctype[64];
	size_t		 data_calls;
	size_t		 bytes;
	size_t		 mismatches;
	size_t		 sent_at_first_data;
	int		 paused;
	int		 data_while_paused;
	size_t		 max_buffered;
	size_t		 max_buffered_paused;
	size_t		 since_pause;
	int		 npauses;
	size_t		 cancel_after;
	int		 cancel_in_head;
	int		 cancelled;
	int		 calls_after_cancel;
	struct hc_req	*req;
	struct event	*resume_ev;
	struct event	*sample_ev;
	struct event	*pause_ev;
	size_t		 pause_every;
	int		 pause_outside;	/* from an event, not on_data */
	double		 pause_start;
	size_t		 mid_sent;	/* server progress mid-pause */
	size_t		 late_growth;	/* second half of pause 1 */
	size_t		 lead_at_resume;	/* after pause 1 */
	size_t		 sent_at_resume;
	size_t		 max_ahead;	/* sent by the server, not consumed */
};

static void
res_clear(struct res *r)
{
	free(r->body);
	memset(r, 0, sizeof *r);
}

static void
on_done(struct hc_req *req, const struct hc_result *hr, void *arg)
{
	struct res	*r = arg;
	const char	*ct;

	if (r->cancelled)
		r->calls_after_cancel++;
	r->done = 1;
	r->err = hr->error;
	bsp_strlcpy(r->msg, hr->message, sizeof r->msg);
	r->status = hr->status;
	r->reused = hr->reused;
	if (hr->headers != NULL &&
	    (ct = evhttp_find_header(hr->headers, "Content-Type")) != NULL)
		bsp_strlcpy(r->ctype, ct, sizeof r->ctype);
	r->body_len = evbuffer_get_length(hr->body);
	r->body = xmalloc(r->body_len + 1);
	evbuffer_remove(hr->body, r->body, r->body_len);
	r->body[r->body_len] = '\0';
	r->req = NULL;
}

static void
on_head(struct hc_req *req, int status, const struct evkeyvalq *h, void *arg)
{
	struct res	*r = arg;

	if (r->cancelled)
		r->calls_after_cancel++;
	r->heads++;
	r->head_status = status;
	if (r->cancel_in_head) {
		r->cancelled = 1;
		hc_cancel(req);
	}
}

/* The first pause is long enough to see the server stall. */
static void
do_pause(struct res *r)
{
	struct timeval	tv = { 0, r->npauses == 0 ? 300000 : 50000 };

	r->paused = 1;
	r->npauses++;
	r->pause_start = now_mono();
	r->mid_sent = (size_t)-1;
	hc_pause(r->req);
	evtimer_add(r->resume_ev, &tv);
}

static void
pause_cb(evutil_socket_t fd, short ev, void *arg)
{
	do_pause(arg);
}

static void
resume_cb(evutil_socket_t fd, short ev, void *arg)
{
	struct res	*r = arg;

	if (r->npauses == 1) {
		r->late_growth = stream_sent - r->mid_sent;
		r->lead_at_resume = stream_sent - r->bytes;
		r->sent_at_resume = stream_sent;
	}
	r->paused = 0;
	hc_resume(r->req);
}

static void
sample_cb(evutil_socket_t fd, short ev, void *arg)
{
	struct res	*r = arg;
	size_t		 n;

	if (r->req == NULL)
		return;
	if (stream_sent - r->bytes > r->max_ahead)
		r->max_ahead = stream_sent - r->bytes;
	if (!r->paused)
		return;
	n = hc_buffered(r->req);
	if (n > r->max_buffered_paused)
		r->max_buffered_paused = n;
	if (r->mid_sent == (size_t)-1 && now_mono() - r->pause_start >= 0.15)
		r->mid_sent = stream_sent;
}

/* Streaming consumer: checks the pattern, pauses, cancels. */
static void
on_data(struct hc_req *req, struct evbuffer *data, void *arg)
{
	struct res	*r = arg;
	unsigned char	 buf[16384];
	size_t		 n, i, held;

	if (r->cancelled) {
		r->calls_after_cancel++;
		return;
	}
	if (r->paused)
		r->data_while_paused++;
	if (r->data_calls++ == 0)
		r->sent_at_first_data = stream_sent;
	held = hc_buffered(req);
	if (held > r->max_buffered)
		r->max_buffered = held;
	while ((n = evbuffer_get_length(data)) > 0) {
		if (n > sizeof buf)
			n = sizeof buf;
		evbuffer_remove(data, buf, n);
		for (i = 0; i < n; i++) {
			if (buf[i] != pattern(r->bytes + i))
				r->mismatches++;
		}
		r->bytes += n;
		r->since_pause += n;
	}
	if (r->cancel_after != 0 && r->bytes >= r->cancel_after) {
		r->cancelled = 1;
		hc_cancel(req);
		return;
	}
	if (r->pause_every != 0 && r->since_pause >= r->pause_every) {
		r->since_pause = 0;
		if (r->pause_outside)
			event_active(r->pause_ev, EV_TIMEOUT, 0);
		else
			do_pause(r);
	}
}

static struct hc_target *
target(const char *prefix, int port)
{
	char			 url[256];
	char			*cause = NULL;
	struct hc_target	*t;

	snprintf(url, sizeof url, "%s:%d", prefix, port);
	if ((t = hc_target_new(url, &cause)) == NULL) {
		diag("target %s: %s", url, cause);
		free(cause);
	}
	return (t);
}

/* Start a request into r; 0, or -1 (r marked done) if it cannot start. */
static int
begin(struct hc_target *t, const char *method, const char *path,
    const struct hc_header *h, size_t nh, const char *body, size_t blen,
    const struct hc_timeouts *to, size_t cap, int stream, struct res *r)
{
	struct hc_request	 rq;
	char			*cause = NULL;

	hc_request_init(&rq, method, path, h, nh, body, blen, cap, to, on_done,
	    r);
	rq.flags = stream ? HC_STREAM : 0;
	rq.on_head = on_head;
	rq.on_data = on_data;
	if ((r->req = hc_start(t, &rq, &cause)) == NULL) {
		diag("hc_start: %s", cause);
		free(cause);
		r->done = 1;
		r->err = HC_ERR__MAX;
		return (-1);
	}
	return (0);
}

/* Start a request and run until it is done. */
static void
fetch(struct hc_target *t, const char *method, const char *path,
    const struct hc_header *h, size_t nh, const char *body, size_t blen,
    const struct hc_timeouts *to, size_t cap, int stream, struct res *r)
{
	if (begin(t, method, path, h, nh, body, blen, to, cap, stream,
	    r) == -1)
		return;
	if (run_until(&r->done, 60) == -1)
		diag("request %s did not finish", path);
}

static int
count_fds(void)
{
	int	fd, n = 0;

	for (fd = 0; fd < 4096; fd++) {
		if (fcntl(fd, F_GETFD) != -1)
			n++;
	}
	return (n);
}

/* ------------------------------------------------------------------ */

static char	ca_path[64] = "/tmp/hc-test-ca-XXXXXX";

/* libevent's own messages (evdns giving up) as TAP comments. */
static void
libevent_log(int severity, const char *msg)
{
	diag("libevent: %s", msg);
}

/*
 * hc_headers_shed: all but Connection and Proxy-Connection go, those stay
 * in their order, whatever the case of their names.
 */
static void
test_headers_shed(void)
{
	struct evkeyvalq	 h;
	struct evkeyval		*kv;
	char			 got[256];
	size_t			 o = 0;

	TAILQ_INIT(&h);
	evhttp_add_header(&h, "Content-Type", "application/json");
	evhttp_add_header(&h, "connection", "keep-alive");
	evhttp_add_header(&h, "Authorization", "AWS4-HMAC-SHA256 secret");
	evhttp_add_header(&h, "Proxy-Connection", "close");
	evhttp_add_header(&h, "X-Amz-Date", "20261207T000000Z");
	evhttp_add_header(&h, "Connection", "Upgrade");
	hc_headers_shed(&h);
	got[0] = '\0';
	TAILQ_FOREACH(kv, &h, next)
		o += (size_t)snprintf(got + o, sizeof got - o, "%s=%s;",
		    kv->key, kv->value);
	is_str(got, "connection=keep-alive;Proxy-Connection=close;"
	    "Connection=Upgrade;", "headers shed: the connection headers "
	    "kept in order, the rest gone");
	ok(evhttp_find_header(&h, "Authorization") == NULL,
	    "headers shed: the signature is gone");
	evhttp_clear_headers(&h);
	evhttp_add_header(&h, "Authorization", "x");
	hc_headers_shed(&h);
	ok(TAILQ_EMPTY(&h), "headers shed: a list without them is emptied");
}

int
main(void)
{
	EVP_PKEY		*ca_key, *other_key, *leaf_key;
	X509			*ca, *other, *leaf_ok, *leaf_wrong, *leaf_other;
	SSL_CTX			*ctx_ok, *ctx_wrong, *ctx_other;
	struct evhttp		*h_plain, *h_ok, *h_wrong, *h_other;
	struct evconnlistener	*l_raw, *l_mute;
	int			 p_plain, p_ok, p_wrong, p_other, p_raw, p_mute;
	int			 p_closed, closed_fd, dns_fd, fd, i, n;
	int			 fds_before;
	struct sockaddr_in	 sin;
	socklen_t		 slen;
	char			 buf[256], *cause = NULL;
	struct hc_target	*t_plain, *t_ok, *t_okname, *t_wrong, *t_wrongname;
	struct hc_target	*t_other, *t_raw, *t_mute, *t_closed, *t_dns;
	struct hc_target	*t;
	struct hc_stats		 st, st0;
	struct hc_timeouts	 to;
	struct hc_header	 hdr[2];
	struct res		 r, many[200];
	struct hc_request	 rq;
	struct hc_req		*req;
	FILE			*f;
	double			 t0;
	const char		*big_env;
	size_t			 big;
	struct hc_body		*sb;
	char			*sbig;
	const char		*what;
	int			 k;
	static const struct {
		const char	*name, *why;	/* why: NULL if taken */
	} names[] = {
		{ "X-Ok!#$%&'*+-.^_`|~09az", NULL },
		{ "Tex", NULL },		/* not "TE" */
		{ "Hosts", NULL },
		{ "X-Amz-Date", NULL },
		{ "", "invalid request header name" },
		{ "Bad Name", "invalid request header name" },
		{ "X(Y)", "invalid request header name" },
		{ "X:Y", "invalid request header name" },
		{ "X\x80", "invalid request header name" },
		{ "content-length", "is set by the client" },
		{ "te", "is set by the client" },
		{ "TRANSFER-ENCODING", "is set by the client" },
		{ "Proxy-Connection", "is set by the client" },
		{ "trailer", "is set by the client" },
	};

	signal(SIGPIPE, SIG_IGN);
	log_init("test-http-client");
	if (getenv("HC_TRACE") != NULL)
		log_set_trace(TRACE_UPSTREAM);
	big_env = getenv("HC_TEST_BIG_MB");
	big = (size_t)(big_env != NULL ? strtoul(big_env, NULL, 10) : 50) * MB;
	fds_before = count_fds();
	test_headers_shed();

	event_set_log_callback(libevent_log);
	base = event_base_new();
	bsp_base = base;
	closer_ev = event_new(base, -1, 0, closer_cb, NULL);

	/* A DNS server that never answers, and the hosts file. */
	dns_fd = socket(AF_INET, SOCK_DGRAM, 0);
	memset(&sin, 0, sizeof sin);
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	bind(dns_fd, (struct sockaddr *)&sin, sizeof sin);
	slen = sizeof sin;
	getsockname(dns_fd, (struct sockaddr *)&sin, &slen);
	bsp_dns = evdns_base_new(base, 0);
	snprintf(buf, sizeof buf, "127.0.0.1:%d", ntohs(sin.sin_port));
	evdns_base_nameserver_ip_add(bsp_dns, buf);
	evdns_base_set_option(bsp_dns, "timeout:", "0.2");
	evdns_base_set_option(bsp_dns, "attempts:", "1");
	evdns_base_load_hosts(bsp_dns, "/etc/hosts");

	/* Certificates. */
	ca_key = EVP_EC_gen("P-256");
	other_key = EVP_EC_gen("P-256");
	leaf_key = EVP_EC_gen("P-256");
	ca = make_cert(ca_key, NULL, NULL, "hc test CA", NULL);
	other = make_cert(other_key, NULL, NULL, "hc other CA", NULL);
	leaf_ok = make_cert(leaf_key, ca, ca_key, "localhost",
	    "IP:127.0.0.1,DNS:localhost");
	leaf_wrong = make_cert(leaf_key, ca, ca_key, "wrong.example",
	    "DNS:wrong.example");
	leaf_other = make_cert(leaf_key, other, other_key, "localhost",
	    "IP:127.0.0.1,DNS:localhost");
	fd = mkstemp(ca_path);
	f = fdopen(fd, "w");
	PEM_write_X509(f, ca);
	fclose(f);
	ctx_ok = server_ctx(leaf_ok, leaf_key);
	ctx_wrong = server_ctx(leaf_wrong, leaf_key);
	ctx_other = server_ctx(leaf_other, leaf_key);

	/* Servers. */
	h_plain = http_server(NULL, &p_plain);
	h_ok = http_server(ctx_ok, &p_ok);
	h_wrong = http_server(ctx_wrong, &p_wrong);
	h_other = http_server(ctx_other, &p_other);
	l_raw = listen_any(raw_accept, NULL);
	p_raw = listener_port(l_raw);
	l_mute = listen_any(mute_accept, NULL);
	p_mute = listener_port(l_mute);
	closed_fd = socket(AF_INET, SOCK_STREAM, 0);	/* never listening */
	sin.sin_port = 0;
	bind(closed_fd, (struct sockaddr *)&sin, sizeof sin);
	slen = sizeof sin;
	getsockname(closed_fd, (struct sockaddr *)&sin, &slen);
	p_closed = ntohs(sin.sin_port);

	/* Set-up. */
	ok(hc_init("/nonexistent/ca.pem", &cause) == -1 && cause != NULL,
	    "hc_init refuses a missing CA file");
	diag("%s", cause);
	free(cause);
	cause = NULL;
	ok(hc_init(ca_path, &cause) == 0, "hc_init with the test CA");
	ok(hc_reload("/nonexistent/ca.pem", &cause) == -1,
	    "reload with a bad CA file fails");
	free(cause);
	cause = NULL;
	ok(hc_reload(ca_path, &cause) == 0, "reload with the test CA");

	/* Targets. */
	t = hc_target_new("http://example.com/x", &cause);
	ok(t == NULL && cause != NULL && strstr(cause, "loopback") != NULL,
	    "plain http to a non-loopback host refused");
	free(cause);
	cause = NULL;
	t = hc_target_new("https://user@example.com/", &cause);
	ok(t == NULL, "userinfo refused");
	free(cause);
	cause = NULL;
	t = hc_target_new("https://example.com/#frag", &cause);
	ok(t == NULL, "fragment refused");
	free(cause);
	cause = NULL;
	t = hc_target_new("https://example.com:70000/", &cause);
	ok(t == NULL, "port out of range refused");
	free(cause);
	cause = NULL;
	t = hc_target_new("https://Example.COM/.well-known/jwks.json?a=1",
	    &cause);
	ok(t != NULL, "https target parsed");
	if (t != NULL) {
		is_str(hc_target_host(t), "example.com", "Host lower case, "
		    "default port omitted");
		is_str(hc_target_path(t), "/.well-known/jwks.json?a=1",
		    "target path kept");
		ok(hc_target_is_tls(t), "https is TLS");
		hc_target_free(t);
	}
	t = hc_target_new("http://[::1]:8080", &cause);
	ok(t != NULL && strcmp(hc_target_host(t), "[::1]:8080") == 0 &&
	    strcmp(hc_target_path(t), "/") == 0, "IPv6 loopback target");
	hc_target_free(t);

	t_plain = target("http://127.0.0.1", p_plain);
	t_ok = target("https://127.0.0.1", p_ok);
	t_okname = target("https://localhost", p_ok);
	t_wrong = target("https://127.0.0.1", p_wrong);
	t_wrongname = target("https://localhost", p_wrong);
	t_other = target("https://127.0.0.1", p_other);
	t_raw = target("http://127.0.0.1", p_raw);
	t_mute = target("https://127.0.0.1", p_mute);
	t_closed = target("http://127.0.0.1", p_closed);
	t_dns = target("https://nonexistent.invalid", 443);

	/* hc_request_init() fills what it is given and clears the rest. */
	memset(&rq, 0xa5, sizeof rq);
	to.connect_ms = 1;
	to.first_byte_ms = 2;
	to.idle_ms = 3;
	to.total_ms = HC_TIMEOUT_NONE;
	hc_request_init(&rq, "POST", "/p", hdr, 2, "b", 1, 7, &to, on_done,
	    &r);
	ok(strcmp(rq.method, "POST") == 0 && strcmp(rq.path, "/p") == 0 &&
	    rq.headers == hdr && rq.nheaders == 2 && rq.body_len == 1 &&
	    memcmp(rq.body, "b", 1) == 0 && rq.max_body == 7 &&
	    rq.on_done == on_done && rq.arg == &r,
	    "request init: the fields given");
	ok(rq.timeouts.connect_ms == 1 && rq.timeouts.first_byte_ms == 2 &&
	    rq.timeouts.idle_ms == 3 && rq.timeouts.total_ms == HC_TIMEOUT_NONE,
	    "request init: the four timeouts");
	ok(rq.flags == 0 && rq.on_head == NULL && rq.on_data == NULL,
	    "request init: buffered, no stream callbacks");
	hc_request_init(&rq, "GET", "/", NULL, 0, NULL, 0, 1, NULL, on_done,
	    NULL);
	ok(rq.timeouts.connect_ms == 0 && rq.timeouts.first_byte_ms == 0 &&
	    rq.timeouts.idle_ms == 0 && rq.timeouts.total_ms == 0 &&
	    rq.body == NULL && rq.headers == NULL && rq.arg == NULL,
	    "request init: no timeouts given means the defaults");

	/* Invalid requests fail at once. */
	hdr[0].name = "Host";
	hdr[0].value = "evil";
	hc_request_init(&rq, "GET", "/x", hdr, 1, NULL, 0, 100, NULL, on_done,
	    NULL);
	ok(hc_start(t_plain, &rq, &cause) == NULL, "caller may not set Host");
	free(cause);
	cause = NULL;
	for (i = 0; i < (int)nitems(names); i++) {
		hdr[0].name = names[i].name;
		hdr[0].value = "v";
		hc_request_init(&rq, "GET", "/never", hdr, 1, NULL, 0, 100,
		    NULL, on_done, NULL);
		req = hc_start(t_plain, &rq, &cause);
		if (names[i].why == NULL)
			ok(req != NULL && cause == NULL, "header name \"%s\" "
			    "taken", names[i].name);
		else
			ok(req == NULL && cause != NULL &&
			    strstr(cause, names[i].why) != NULL, "header name "
			    "\"%s\" refused (%s)", names[i].name,
			    cause != NULL ? cause : "taken");
		if (req != NULL)
			hc_cancel(req);
		free(cause);
		cause = NULL;
	}
	hdr[0].name = "X-A";
	hdr[0].value = "a\r\nInjected: 1";
	ok(hc_start(t_plain, &rq, &cause) == NULL, "CRLF in a value refused");
	free(cause);
	cause = NULL;
	rq.nheaders = 0;
	rq.path = "/a b";
	ok(hc_start(t_plain, &rq, &cause) == NULL, "space in the path refused");
	free(cause);
	cause = NULL;
	rq.path = "/x";
	rq.max_body = 0;
	ok(hc_start(t_plain, &rq, &cause) == NULL,
	    "buffered request without a ceiling refused");
	free(cause);
	cause = NULL;

	/* GET round trip, path byte for byte. */
	memset(&r, 0, sizeof r);
	hdr[0].name = "X-Test";
	hdr[0].value = "hello";
	fetch(t_plain, "GET", "/echo/model/a%3Ab:0/invoke?x=1&y=%2F%20+",
	    hdr, 1, NULL, 0, NULL, MB, 0, &r);
	is_int(r.err, HC_OK, "GET: ok (%s)", r.msg);
	is_int(r.status, 200, "GET: status 200");
	is_str(last_uri, "/echo/model/a%3Ab:0/invoke?x=1&y=%2F%20+",
	    "GET: request target sent byte for byte");
	is_str(r.body, "GET /echo/model/a%3Ab:0/invoke?x=1&y=%2F%20+|",
	    "GET: body");
	is_str(last_xtest, "hello", "GET: extra header sent");
	snprintf(buf, sizeof buf, "127.0.0.1:%d", p_plain);
	is_str(last_host, buf, "GET: Host from the target");
	res_clear(&r);

	/* POST round trip with binary body. */
	fetch(t_plain, "POST", "/echo", NULL, 0, "a\0b{\"x\":1}", 10, NULL,
	    MB, 0, &r);
	is_int(r.err, HC_OK, "POST: ok (%s)", r.msg);
	ok(r.body_len == 21 && memcmp(r.body, "POST /echo|a\0b{\"x\":1}", 21)
	    == 0, "POST: body round trip, NUL included");
	res_clear(&r);

	/* A shared body: sent from the caller's buffer, which the request
	 * keeps while it needs it; two requests at once on one body. */
	sbig = xmalloc(300000);
	for (i = 0; i < 300000; i++)
		sbig[i] = (char)('a' + i % 26);
	sb = hc_body_new(sbig, 300000);
	ok(hc_body_len(sb) == 300000 && memcmp(hc_body_data(sb), sbig,
	    300000) == 0, "shared body: the bytes copied once");
	/* Then the same with a buffer taken as it is (freed with it). */
	for (k = 0; k < 2; k++) {
		what = k == 0 ? "shared body" : "taken body";
		if (k == 1)
			sb = hc_body_take(memcpy(xmalloc(300000), sbig,
			    300000), 300000);
		for (i = 0; i < 2; i++) {
			hc_request_init(&rq, "POST", "/echo", NULL, 0, NULL,
			    0, MB, NULL, on_done, &many[i]);
			rq.shared_body = sb;
			memset(&many[i], 0, sizeof many[i]);
			ok((many[i].req = hc_start(t_plain, &rq, &cause)) !=
			    NULL, "%s: request %d started (%s)", what, i,
			    cause != NULL ? cause : "ok");
			free(cause);
			cause = NULL;
		}
		hc_body_unref(sb);	/* the requests hold it now */
		for (i = 0; i < 2; i++) {
			if (run_until(&many[i].done, 60) == -1)
				diag("%s: request %d did not finish", what, i);
			ok(many[i].err == HC_OK && many[i].body_len ==
			    300011 && memcmp(many[i].body, "POST /echo|",
			    11) == 0 && memcmp(many[i].body + 11, sbig,
			    300000) == 0, "%s: request %d sent it whole, "
			    "after the caller let go", what, i);
			res_clear(&many[i]);
		}
	}
	free(sbig);

	/* Keep-alive reuse. */
	drop_server_conns();
	run_for(0.05);
	n = sconn_closed_count;
	hc_get_stats(&st0);
	fetch(t_plain, "GET", "/id", NULL, 0, NULL, 0, NULL, 100, 0, &r);
	snprintf(buf, sizeof buf, "%s", r.body);
	is_int(r.reused, 0, "keep-alive: first request on a new connection");
	res_clear(&r);
	fetch(t_plain, "GET", "/id", NULL, 0, NULL, 0, NULL, 100, 0, &r);
	is_str(r.body, buf, "keep-alive: server saw the same connection");
	is_int(r.reused, 1, "keep-alive: second request reused it");
	res_clear(&r);
	hc_get_stats(&st);
	is_int(st.conns_opened - st0.conns_opened, 1,
	    "keep-alive: one connection opened for two requests");
	is_int(st.conns_idle, 1, "keep-alive: one idle connection pooled");

	/* Server closes the idle pooled connection: detected, dropped. */
	drop_server_conns();
	n = 0;
	for (i = 0; i < 100 && n == 0; i++) {
		run_for(0.01);
		hc_get_stats(&st);
		n = (st.conns_idle == 0);
	}
	ok(n, "idle close (plain): dropped from the pool");
	fetch(t_plain, "GET", "/id", NULL, 0, NULL, 0, NULL, 100, 0, &r);
	ok(r.err == HC_OK && r.reused == 0,
	    "idle close (plain): next request on a fresh connection (%s)",
	    r.msg);
	res_clear(&r);

	/* Same, before the client noticed: the stale one is retried. */
	hc_get_stats(&st0);
	drop_server_conns();
	fetch(t_plain, "GET", "/id", NULL, 0, NULL, 0, NULL, 100, 0, &r);
	hc_get_stats(&st);
	ok(r.err == HC_OK && r.reused == 0, "stale pooled connection: "
	    "request succeeds on a fresh one (%s)", r.msg);
	is_int(st.retries - st0.retries, 1, "stale pooled connection: one "
	    "retry");
	res_clear(&r);

	/* Connection: close is not pooled. */
	hc_get_stats(&st0);
	fetch(t_plain, "GET", "/close", NULL, 0, NULL, 0, NULL, 100, 0, &r);
	ok(r.err == HC_OK && strcmp(r.body, "bye") == 0,
	    "Connection: close answer read");
	res_clear(&r);
	run_for(0.02);
	hc_get_stats(&st);
	is_int(st.conns_idle, 0, "Connection: close: not pooled");
	ok(!st.trust_loaded && st.trust_objects == 1, "plain HTTP only: the "
	    "system trust store is not loaded (%zu object, the test CA)",
	    st.trust_objects);

	/* TLS. */
	sni_seen[0] = '\0';
	fetch(t_ok, "GET", "/echo", NULL, 0, NULL, 0, NULL, MB, 0, &r);
	is_int(r.err, HC_OK, "TLS by IP with the CA file (%s)", r.msg);
	hc_get_stats(&st);
	ok(st.trust_loaded && (access(X509_get_default_cert_file(), R_OK) != 0 ||
	    st.trust_objects > 1), "the first TLS connection loads the system "
	    "trust store (%zu objects)", st.trust_objects);
	is_str(sni_seen, "", "TLS by IP: no SNI");
	res_clear(&r);
	hc_get_stats(&st0);
	fetch(t_okname, "GET", "/echo", NULL, 0, NULL, 0, NULL, MB, 0, &r);
	is_int(r.err, HC_OK, "TLS by name (hosts file) (%s)", r.msg);
	is_str(sni_seen, "localhost", "TLS by name: SNI sent");
	res_clear(&r);
	fetch(t_okname, "POST", "/echo", NULL, 0, "xyz", 3, NULL, MB, 0, &r);
	ok(r.err == HC_OK && r.reused == 1 &&
	    strcmp(r.body, "POST /echo|xyz") == 0, "TLS: keep-alive POST");
	res_clear(&r);
	hc_get_stats(&st);
	is_int(st.dns_lookups - st0.dns_lookups, 1, "one DNS lookup");
	fetch(t_other, "GET", "/echo", NULL, 0, NULL, 0, NULL, MB, 0, &r);
	is_int(r.err, HC_ERR_TLS, "unknown CA refused");
	ok(strstr(r.msg, "certificate verify failed: unable to get local "
	    "issuer certificate") != NULL, "unknown CA: %s", r.msg);
	res_clear(&r);
	fetch(t_wrongname, "GET", "/echo", NULL, 0, NULL, 0, NULL, MB, 0, &r);
	is_int(r.err, HC_ERR_TLS, "wrong host name refused");
	ok(strstr(r.msg, "hostname mismatch") != NULL, "wrong name: %s",
	    r.msg);
	res_clear(&r);
	fetch(t_wrong, "GET", "/echo", NULL, 0, NULL, 0, NULL, MB, 0, &r);
	is_int(r.err, HC_ERR_TLS, "wrong IP address refused");
	ok(strstr(r.msg, "IP address mismatch") != NULL, "wrong IP: %s",
	    r.msg);
	res_clear(&r);

	/* TLS: the server closes the idle connection. */
	fetch(t_ok, "GET", "/id", NULL, 0, NULL, 0, NULL, 100, 0, &r);
	res_clear(&r);
	hc_get_stats(&st);
	ok(st.conns_idle >= 1, "TLS connection pooled");
	drop_server_conns();
	n = 0;
	for (i = 0; i < 100 && n == 0; i++) {
		run_for(0.01);
		hc_get_stats(&st);
		n = (st.conns_idle == 0);
	}
	ok(n, "idle close (TLS): dropped from the pool");
	fetch(t_ok, "GET", "/id", NULL, 0, NULL, 0, NULL, 100, 0, &r);
	ok(r.err == HC_OK && r.reused == 0,
	    "idle close (TLS): next request on a fresh connection (%s)", r.msg);
	res_clear(&r);
	hc_get_stats(&st0);
	drop_server_conns();
	fetch(t_ok, "GET", "/id", NULL, 0, NULL, 0, NULL, 100, 0, &r);
	hc_get_stats(&st);
	ok(r.err == HC_OK, "stale pooled TLS connection: request succeeds "
	    "(%s)", r.msg);
	res_clear(&r);

	/* Connect errors and timeouts. */
	memset(&to, 0, sizeof to);
	to.connect_ms = 200;
	t0 = now_mono();
	fetch(t_mute, "GET", "/", NULL, 0, NULL, 0, &to, 100, 0, &r);
	is_int(r.err, HC_ERR_TIMEOUT_CONNECT, "TLS never answered: connect "
	    "timeout (%s)", r.msg);
	ok(now_mono() - t0 >= 0.19 && now_mono() - t0 < 2,
	    "connect timeout after %.3fs", now_mono() - t0);
	res_clear(&r);
	fetch(t_closed, "GET", "/", NULL, 0, NULL, 0, NULL, 100, 0, &r);
	is_int(r.err, HC_ERR_CONNECT, "connection refused (%s)", r.msg);
	res_clear(&r);
	fetch(t_dns, "GET", "/", NULL, 0, NULL, 0, NULL, 100, 0, &r);
	is_int(r.err, HC_ERR_DNS, "DNS failure (%s)", r.msg);
	res_clear(&r);
	memset(&to, 0, sizeof to);
	to.first_byte_ms = 200;
	fetch(t_plain, "GET", "/never", NULL, 0, NULL, 0, &to, 100, 0, &r);
	is_int(r.err, HC_ERR_TIMEOUT_FIRST_BYTE, "first byte timeout (%s)",
	    r.msg);
	res_clear(&r);
	/* Each phase's own deadline: a short one passed does not end a
	 * later phase with a longer one, nor does the longer one, armed
	 * after, outlast a shorter one that follows. */
	memset(&to, 0, sizeof to);
	to.connect_ms = 100;
	to.first_byte_ms = 600;
	t0 = now_mono();
	fetch(t_plain, "GET", "/later?ms=300", NULL, 0, NULL, 0, &to, 100, 0,
	    &r);
	ok(r.err == HC_OK && r.status == 200 && now_mono() - t0 >= 0.29,
	    "an answer after the connect timeout's time, within the first "
	    "byte's (%s, %.3fs)", r.msg,
	    now_mono() - t0);
	res_clear(&r);
	memset(&to, 0, sizeof to);
	to.connect_ms = 5000;
	to.first_byte_ms = 200;
	t0 = now_mono();
	fetch(t_plain, "GET", "/never", NULL, 0, NULL, 0, &to, 100, 0, &r);
	ok(r.err == HC_ERR_TIMEOUT_FIRST_BYTE && now_mono() - t0 < 1,
	    "first byte timeout after a longer connect timeout: %.3fs",
	    now_mono() - t0);
	res_clear(&r);
	memset(&to, 0, sizeof to);
	to.idle_ms = 200;
	fetch(t_plain, "GET", "/stall", NULL, 0, NULL, 0, &to, 0, 1, &r);
	is_int(r.err, HC_ERR_TIMEOUT_IDLE, "idle timeout (%s)", r.msg);
	ok(r.heads == 1 && r.head_status == 200 && r.bytes == 5,
	    "idle timeout: head and first bytes delivered before");
	res_clear(&r);
	memset(&to, 0, sizeof to);
	to.idle_ms = 5000;
	to.total_ms = 300;
	fetch(t_plain, "GET", "/stall", NULL, 0, NULL, 0, &to, 0, 1, &r);
	is_int(r.err, HC_ERR_TIMEOUT_TOTAL, "total timeout (%s)", r.msg);
	res_clear(&r);

	/* Ceilings and truncation. */
	fetch(t_plain, "GET", "/big?n=2000000", NULL, 0, NULL, 0, NULL, MB,
	    0, &r);
	is_int(r.err, HC_ERR_TOO_LARGE, "Content-Length above the cap (%s)",
	    r.msg);
	res_clear(&r);
	fetch(t_plain, "GET", "/big?n=2000000&c=65536", NULL, 0, NULL, 0,
	    NULL, MB, 0, &r);
	is_int(r.err, HC_ERR_TOO_LARGE, "chunked body above the cap (%s)",
	    r.msg);
	res_clear(&r);
	fetch(t_plain, "GET", "/big?n=3000000&c=3000000", NULL, 0, NULL, 0,
	    NULL, MB, 0, &r);
	is_int(r.err, HC_ERR_TOO_LARGE, "one chunk above the cap (%s)", r.msg);
	res_clear(&r);
	fetch(t_plain, "GET", "/big?n=1048576&c=1000", NULL, 0, NULL, 0,
	    NULL, MB, 0, &r);
	ok(r.err == HC_OK && r.body_len == MB, "body of exactly the cap");
	res_clear(&r);
	fetch(t_plain, "GET", "/trunc", NULL, 0, NULL, 0, NULL, MB, 0, &r);
	is_int(r.err, HC_ERR_TRUNCATED, "truncated Content-Length body (%s)",
	    r.msg);
	res_clear(&r);
	fetch(t_ok, "GET", "/trunc", NULL, 0, NULL, 0, NULL, MB, 0, &r);
	is_int(r.err, HC_ERR_TRUNCATED, "truncated body over TLS, dirty "
	    "shutdown (%s)", r.msg);
	res_clear(&r);
	raw_answer = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
	    "5\r\nhello\r\n5\r\nworld\r\n";
	raw_close = 1;
	fetch(t_raw, "GET", "/", NULL, 0, NULL, 0, NULL, MB, 0, &r);
	is_int(r.err, HC_ERR_TRUNCATED, "chunked body without its last chunk "
	    "(%s)", r.msg);
	res_clear(&r);
	raw_answer = "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil close";
	fetch(t_raw, "GET", "/", NULL, 0, NULL, 0, NULL, MB, 0, &r);
	ok(r.err == HC_OK && strcmp(r.body, "until close") == 0,
	    "body ended by close is accepted (%s)", r.msg);
	res_clear(&r);
	raw_answer = "HTTP/1.1 abc\r\n\r\n";
	fetch(t_raw, "GET", "/", NULL, 0, NULL, 0, NULL, MB, 0, &r);
	is_int(r.err, HC_ERR_PROTOCOL, "malformed status line (%s)", r.msg);
	res_clear(&r);
	raw_answer = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
	    "zz\r\nhello\r\n";
	fetch(t_raw, "GET", "/", NULL, 0, NULL, 0, NULL, MB, 0, &r);
	is_int(r.err, HC_ERR_PROTOCOL, "malformed chunk size (%s)", r.msg);
	res_clear(&r);

	/* The convenience call. */
	memset(&r, 0, sizeof r);
	hdr[0].name = "Content-Type";
	hdr[0].value = "application/x-www-form-urlencoded";
	r.req = hc_fetch(t_ok, "POST", "/echo", hdr, 1, "a=1&b=2", 7, 4096,
	    on_done, &r, &cause);
	run_until(&r.done, 10);
	ok(r.err == HC_OK && strcmp(r.body, "POST /echo|a=1&b=2") == 0,
	    "hc_fetch: form POST over TLS");
	res_clear(&r);

	/* Cancel at once, while connecting: nothing is called. */
	memset(&r, 0, sizeof r);
	req = hc_fetch(t_okname, "GET", "/echo", NULL, 0, NULL, 0, 100,
	    on_done, &r, &cause);
	hc_cancel(req);
	req = hc_fetch(t_mute, "GET", "/", NULL, 0, NULL, 0, 100, on_done, &r,
	    &cause);
	run_for(0.02);
	hc_cancel(req);
	run_for(0.05);
	ok(!r.done, "cancel while connecting: no callback");

	/* Streaming: incremental, paused, cancelled. */
	fetch(t_plain, "GET", "/stream?n=4194304&c=16384", NULL, 0, NULL, 0,
	    NULL, 0, 1, &r);
	ok(r.err == HC_OK && r.bytes == 4194304 && r.mismatches == 0,
	    "stream: 4 MiB intact (%s)", r.msg);
	ok(r.heads == 1 && strcmp(r.ctype,
	    "application/vnd.amazon.eventstream") == 0,
	    "stream: head delivered once, headers readable");
	ok(r.sent_at_first_data < 4194304, "stream: first bytes arrived when "
	    "the server had sent %zu of 4194304", r.sent_at_first_data);
	ok(r.data_calls > 1, "stream: %zu data callbacks", r.data_calls);
	res_clear(&r);

	for (i = 0; i < 2; i++) {
		size_t	total = i == 0 ? big : 24 * MB;

		memset(&r, 0, sizeof r);
		r.resume_ev = evtimer_new(base, resume_cb, &r);
		r.sample_ev = event_new(base, -1, EV_PERSIST, sample_cb, &r);
		r.pause_ev = event_new(base, -1, 0, pause_cb, &r);
		r.pause_outside = (i == 1);
		{
			struct timeval tv5 = { 0, 5000 };
			evtimer_add(r.sample_ev, &tv5);
		}
		r.pause_every = total / 10;
		snprintf(buf, sizeof buf, "/stream?n=%zu&c=16384", total);
		t0 = now_mono();
		fetch(i == 0 ? t_plain : t_ok, "GET", buf, NULL, 0, NULL, 0,
		    NULL, 0, 1, &r);
		diag("%s %zu MiB stream, %d pauses: %.2fs, max held %zu bytes "
		    "(%zu while paused), server at most %zu bytes ahead",
		    i == 0 ? "plain" : "TLS", total / MB, r.npauses,
		    now_mono() - t0, r.max_buffered, r.max_buffered_paused,
		    r.max_ahead);
		ok(r.err == HC_OK && r.bytes == total && r.mismatches == 0,
		    "pause/resume (%s): every byte intact after resume (%s)",
		    i == 0 ? "plain" : "TLS", r.msg);
		ok(r.npauses >= 9 && r.data_while_paused == 0,
		    "pause/resume (%s): %d pauses, no data while paused",
		    i == 0 ? "plain" : "TLS", r.npauses);
		ok(r.max_buffered_paused < 256 * 1024 && r.max_buffered <
		    256 * 1024, "pause/resume (%s): held bytes bounded "
		    "(%zu)", i == 0 ? "plain" : "TLS", r.max_buffered);
		/*
		 * Unpaused, 300 ms is many MiB. Paused, the server gets as
		 * far as the kernel's socket buffers let it, then stalls.
		 */
		diag("pause 1 (300 ms): server %zu bytes ahead, %zu in the "
		    "last 150 ms", r.lead_at_resume, r.late_growth);
		ok(r.lead_at_resume < 8 * MB && r.sent_at_resume < total &&
		    r.late_growth < MB, "pause/resume (%s): the server was "
		    "held back by TCP while paused", i == 0 ? "plain" : "TLS");
		event_free(r.pause_ev);
		event_free(r.resume_ev);
		event_free(r.sample_ev);
		res_clear(&r);
	}

	/* Cancel mid-stream: the server sees the connection go. */
	memset(&r, 0, sizeof r);
	r.cancel_after = MB;
	n = sconn_closed_count;
	begin(t_plain, "GET", "/stream?n=52428800&c=16384", NULL, 0, NULL, 0,
	    NULL, 0, 1, &r);
	run_until(&r.cancelled, 10);
	ok(r.cancelled, "cancel: cancelled from on_data");
	for (i = 0; i < 500 && sconn_closed_count == n; i++)
		run_for(0.01);
	ok(sconn_closed_count > n, "cancel: the server saw the connection "
	    "close");
	run_for(0.05);
	ok(r.calls_after_cancel == 0 && !r.done, "cancel: no callback after "
	    "hc_cancel");
	res_clear(&r);

	/* Cancel from on_head. */
	memset(&r, 0, sizeof r);
	r.cancel_in_head = 1;
	n = sconn_closed_count;
	begin(t_ok, "GET", "/stream?n=52428800&c=16384", NULL, 0, NULL, 0,
	    NULL, 0, 1, &r);
	run_until(&r.cancelled, 10);
	for (i = 0; i < 500 && sconn_closed_count == n; i++)
		run_for(0.01);
	run_for(0.05);
	ok(r.cancelled && r.heads == 1 && r.data_calls == 0 && !r.done &&
	    r.calls_after_cancel == 0 && sconn_closed_count > n,
	    "cancel from on_head (TLS): no body, no callback, server saw "
	    "the close");
	res_clear(&r);

	/* Cancel from outside while waiting for the head. */
	memset(&r, 0, sizeof r);
	hc_request_init(&rq, "GET", "/never", NULL, 0, NULL, 0, 100, NULL,
	    on_done, &r);
	req = hc_start(t_plain, &rq, &cause);
	run_for(0.05);
	hc_cancel(req);
	run_for(0.05);
	ok(!r.done, "cancel from outside: no callback");
	hc_get_stats(&st);
	ok(st.errors[HC_ERR_CANCELLED] >= 2, "cancellations counted");

	/* The global connection limit. */
	hc_set_limits(2, HC_POOL_IDLE, HC_POOL_IDLE_MS);
	{
		struct res	lim[3];

		memset(lim, 0, sizeof lim);
		for (i = 0; i < 3; i++) {
			hc_request_init(&rq, "GET", "/never", NULL, 0, NULL, 0,
			    100, NULL, on_done, &lim[i]);
			lim[i].req = hc_start(t_mute, &rq, &cause);
		}
		run_for(0.05);
		ok(lim[2].done && lim[2].err == HC_ERR_LIMIT && !lim[0].done &&
		    !lim[1].done, "global connection limit (%s)", lim[2].msg);
		hc_cancel(lim[0].req);
		hc_cancel(lim[1].req);
		for (i = 0; i < 3; i++)
			res_clear(&lim[i]);
	}
	hc_set_limits(HC_MAX_CONNS, HC_POOL_IDLE, 100);
	run_for(0.05);

	/* Idle connections expire. */
	hc_get_stats(&st0);
	fetch(t_plain, "GET", "/id", NULL, 0, NULL, 0, NULL, 100, 0, &r);
	res_clear(&r);
	run_for(0.3);
	hc_get_stats(&st);
	ok(st.conns_idle == 0 && st.conns_closed_idle > st0.conns_closed_idle,
	    "idle pooled connections expire");
	hc_set_limits(HC_MAX_CONNS, HC_POOL_IDLE, HC_POOL_IDLE_MS);

	/* 200 at once. */
	hc_get_stats(&st0);
	memset(many, 0, sizeof many);
	for (i = 0; i < 200; i++) {
		hc_request_init(&rq, "GET", "/echo", NULL, 0, NULL, 0, 1000,
		    NULL, on_done, &many[i]);
		many[i].req = hc_start(i % 2 ? t_ok : t_plain, &rq, &cause);
	}
	n = 0;
	for (i = 0; i < 2000 && n < 200; i++) {
		run_for(0.01);
		for (n = 0, fd = 0; fd < 200; fd++)
			n += many[fd].done;
	}
	for (n = 0, fd = 0; fd < 200; fd++)
		n += (many[fd].done && many[fd].err == HC_OK &&
		    strcmp(many[fd].body, "GET /echo|") == 0);
	is_int(n, 200, "200 concurrent requests (plain and TLS) succeed");
	hc_get_stats(&st);
	diag("200 concurrent: %llu opened, %llu reused, %zu idle now",
	    (unsigned long long)(st.conns_opened - st0.conns_opened),
	    (unsigned long long)(st.conns_reused - st0.conns_reused),
	    st.conns_idle);
	ok(st.conns_idle <= 2 * HC_POOL_IDLE, "pool kept within its size");
	for (i = 0; i < 200; i++)
		res_clear(&many[i]);

	/*
	 * Without a CA file no TLS context is made until a TLS connection
	 * needs one (OpenSSL's provider and tables: ~2.5 MB); then it is,
	 * with the system trust store, and verifies as before.
	 */
	ok(hc_reload(NULL, &cause) == 0, "reload without a CA file");
	hc_get_stats(&st);
	ok(!st.tls_ctx && !st.trust_loaded && st.trust_objects == 0,
	    "without a CA file: no TLS context yet");
	fetch(t_plain, "GET", "/id", NULL, 0, NULL, 0, NULL, 100, 0, &r);
	hc_get_stats(&st);
	ok(r.err == HC_OK && !st.tls_ctx, "plain HTTP: still none");
	res_clear(&r);
	fetch(t_ok, "GET", "/echo", NULL, 0, NULL, 0, NULL, MB, 0, &r);
	hc_get_stats(&st);
	ok(st.tls_ctx && st.trust_loaded, "the first TLS connection makes "
	    "it, with the system trust store");
	is_int(r.err, HC_ERR_TLS, "and it verifies: the test CA is not in "
	    "the system store (%s)", r.msg);
	res_clear(&r);
	ok(hc_reload(ca_path, &cause) == 0, "reload with the test CA again");
	hc_get_stats(&st);
	ok(st.tls_ctx && !st.trust_loaded, "with a CA file: made at once, so "
	    "that a bad file fails the reload");
	fetch(t_ok, "GET", "/echo", NULL, 0, NULL, 0, NULL, MB, 0, &r);
	is_int(r.err, HC_OK, "TLS with the test CA again (%s)", r.msg);
	res_clear(&r);

	/* Shutdown with a request in flight: no callback, nothing left. */
	memset(&r, 0, sizeof r);
	hc_request_init(&rq, "GET", "/never", NULL, 0, NULL, 0, 100, NULL,
	    on_done, &r);
	hc_start(t_plain, &rq, &cause);
	run_for(0.05);
	hc_get_stats(&st);
	diag("before shutdown: %zu connections, %zu idle, %zu requests",
	    st.conns_live, st.conns_idle, st.requests_live);
	hc_shutdown();
	hc_get_stats(&st);
	ok(st.conns_live == 0 && st.conns_idle == 0 && st.requests_live == 0,
	    "shutdown: no connection or request left");
	ok(hc_fetch(t_plain, "GET", "/", NULL, 0, NULL, 0, 10, on_done, &r,
	    &cause) == NULL, "no request after shutdown");
	free(cause);
	run_for(0.05);
	ok(!r.done, "shutdown: no callback");

	hc_target_free(t_plain);
	hc_target_free(t_ok);
	hc_target_free(t_okname);
	hc_target_free(t_wrong);
	hc_target_free(t_wrongname);
	hc_target_free(t_other);
	hc_target_free(t_raw);
	hc_target_free(t_mute);
	hc_target_free(t_closed);
	hc_target_free(t_dns);

	for (i = 0; i < nraw_fds; i++)
		close(raw_fds[i]);
	close(closed_fd);
	close(dns_fd);
	evhttp_free(h_plain);
	evhttp_free(h_ok);
	evhttp_free(h_wrong);
	evhttp_free(h_other);
	evconnlistener_free(l_raw);
	evconnlistener_free(l_mute);
	evdns_base_free(bsp_dns, 0);
	event_free(closer_ev);
	run_for(0.05);
	event_base_free(base);
	ok(count_fds() <= fds_before, "no file descriptor left open (%d, "
	    "was %d)", count_fds(), fds_before);
	SSL_CTX_free(ctx_ok);
	SSL_CTX_free(ctx_wrong);
	SSL_CTX_free(ctx_other);
	X509_free(ca);
	X509_free(other);
	X509_free(leaf_ok);
	X509_free(leaf_wrong);
	X509_free(leaf_other);
	EVP_PKEY_free(ca_key);
	EVP_PKEY_free(other_key);
	EVP_PKEY_free(leaf_key);
	unlink(ca_path);
	return (tap_done());
}
