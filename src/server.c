/*
 * server.c: the inbound HTTP(S) server: listeners, connection tracking,
 * routing (the table is route-table.c's), request lifetime, reply helpers
 * and graceful shutdown.
 *
 * evhttp does the HTTP parsing. What it lacks in libevent 2.1 is added here:
 * connections are tracked from accept (bevcb) so a client that dribbles its
 * request head is dropped after server.timeouts.header, a client that
 * dribbles a body after server.timeouts.body, the connection count is
 * capped (in all and per client address), and a client that hangs up while
 * we wait on an upstream is noticed (EV_CLOSED) so the upstream call can be
 * cancelled.
 *
 * The head gate: evhttp is lenient where request smuggling needs it and
 * reads a whole body before anyone can look at the head. So the bytes of
 * each request head are taken out of evhttp's input as they arrive and
 * held here until the head is complete. Then http-head.c reads it strictly,
 * the route is found, and the credential of a protected route is checked
 * (auth_check). A head that passes goes back to evhttp, which reads the
 * body: up to server.max_body_bytes for an authenticated request, up to
 * SERVER_UNAUTH_BODY_MAX for any other. A head that is refused reaches
 * evhttp as a bodiless stand-in request that is answered with the refusal
 * and closes the connection, so that a body which follows is never read as
 * a request (what arrives of it is dropped, and the socket lingers a moment
 * so that the client sees the answer rather than a reset).
 *
 * Lifetime of a request: struct request is created when evhttp hands us a
 * complete request and holds one reference for evhttp. That reference is
 * dropped when the reply has been written (on_complete) or the client went
 * away; handlers waiting on callbacks hold references of their own. The
 * struct is freed on a later loop pass once the count reaches zero.
 */

#include <sys/types.h>
#include <sys/socket.h>
#include <netinet/in.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <uthash.h>

#include "bsp.h"
#include "http-head.h"
#include "web.h"

#define SERVER_MAX_LISTENERS	16
/*
 * evhttp listens with a backlog of 128: a burst of clients (a team starting
 * work, a reconnect storm after a network blip) overflows it and the lost
 * handshakes are retried by the clients' kernels after 1 s, then 3 s. The
 * kernel caps this at net.core.somaxconn (4096 on current Linux).
 */
#define SERVER_BACKLOG		4096
#define SERVER_JSON_MAX		65536
/* The largest body a request without a verified credential may carry. */
#define SERVER_UNAUTH_BODY_MAX	SERVER_JSON_MAX
/* A refused request's socket is read and emptied this long before close. */
#define SERVER_LINGER_SECS	5
#define SERVER_LINGER_MAX	256

enum conn_state {
	CONN_NEW,	/* accepted, no request yet */
	CONN_WAITING,	/* keep-alive, between requests */
	CONN_KEYS,	/* head held while a trusted issuer's keys arrive */
	CONN_BODY,	/* request head read, body arriving */
	CONN_ACTIVE,	/* a request is being handled */
};

/* What the head gate decided for the request whose head it read. */
struct server_gate {
	int			 done;		/* a verdict for the next request */
	int			 status;	/* refused before evhttp: a status */
	const char		*error;		/* ... its OAuth error code */
	char			 why[128];
	int			 mtype;		/* ... and what it asked for */
	char			*path;
	int			 flags;		/* its route's */
	struct auth_result	 auth;		/* RF_AUTH routes */
	struct auth_wait	*wait;
};

/* Connections per client address (IPv4, or IPv6 /64). */
struct server_client {
	char			 group[64];
	size_t			 n;
	UT_hash_handle		 hh;
};

/* A refused request's socket, read and emptied for a moment. */
struct server_linger {
	int				 fd;
	double				 until;
	struct event			 ev;
	TAILQ_ENTRY(server_linger)	 entry;
};

struct server_conn {
	struct bufferevent		*bev;
	struct evhttp_connection	*evcon;
	struct request			*req;
	enum conn_state			 state;
	int				 tls;
	int				 killed;
	double				 t_wait;	/* state entered */
	double				 t_first;	/* first byte of head */
	double				 t_head;	/* head complete */
	struct evbuffer			*head;		/* held from evhttp */
	size_t				 scanned;	/* no head end before */
	int				 in_gate;	/* our own input edits */
	int				 discard;	/* drop all input */
	struct server_gate		 gate;
	struct event			 gate_ev;
	struct server_client		*client;
	struct event			 adopt_ev;
	struct event			 closed_ev;
	int				 closed_ev_on;
	UT_hash_handle			 hh;
	TAILQ_ENTRY(server_conn)	 entry;
};

struct server_listener {
	struct evhttp_bound_socket	*bound;
	char				 addr[128];
	int				 port;
};

static struct {
	struct evhttp			*http;
	struct server_listener		 listeners[SERVER_MAX_LISTENERS];
	size_t				 nlisteners;
	SSL_CTX				*tls_ctx;
	SSL_CTX				*next_tls_ctx;	/* prepared by a reload */
	struct event			 sweep_ev;
	struct server_conn		*conn_hash;
	TAILQ_HEAD(, server_conn)	 conns;
	size_t				 nconns;
	struct server_client		*clients;
	TAILQ_HEAD(, server_linger)	 lingering;
	size_t				 nlinger;
	TAILQ_HEAD(, request)		 requests;
	size_t				 nrequests;
	TAILQ_HEAD(, request)		 dead;
	struct event			 reap_ev;
	int				 draining;
	struct event			 drain_ev;
	void				(*drained)(void);
	const struct route		*routes;	/* the routes layer's */
	size_t				 nroutes;
	void				(*route_none)(struct request *);
} srv;

static void	server_gencb(struct evhttp_request *, void *);
static void	request_finish(struct request *);
static void	request_drop_http(struct request *);
static void	conn_release(struct server_conn *);
static void	conn_kill(struct server_conn *, const char *);
static void	server_check_drained(void);
static void	conn_enter(struct server_conn *, enum conn_state);
static void	conn_head_check(struct server_conn *, int);
static void	conn_watch_hangup(struct server_conn *);
static void	conn_closed_ev_del(struct server_conn *);
static void	conn_closed_cb(struct evhttp_connection *, void *);


/*
 * Take the route table, and the handler of paths that match none of its
 * routes. The table must outlive the server.
 */
void
server_routes(const struct route *v, size_t n,
    void (*none)(struct request *))
{
	srv.routes = v;
	srv.nroutes = n;
	srv.route_none = none;
}

/* Match a raw path against a pattern, capturing "{}" segments. */
static int
route_match(const char *pattern, const char *path, struct request *r)
{
	const char	*p = pattern, *s = path, *e;
	size_t		 n = 0;

	while (*p != '\0') {
		if (p[0] == '{' && p[1] == '}') {
			e = s + strcspn(s, "/");
			if (e == s || n >= REQUEST_MAX_PARAMS)
				return (0);
			if (r != NULL) {
				r->params[n].p = s;
				r->params[n].len = (size_t)(e - s);
			}
			n++;
			s = e;
			p += 2;
			continue;
		}
		if (*p != *s)
			return (0);
		p++;
		s++;
	}
	if (*s != '\0')
		return (0);
	if (r != NULL)
		r->nparams = n;
	return (1);
}

/*
 * Find the route for a raw path; *allowed gets the methods any match
 * takes. With r, its parameters are captured too.
 */
static const struct route *
route_find(const struct config *c, const char *rawpath, int method,
    int *allowed, struct request *r)
{
	const struct route	*rt;
	const char		*path = rawpath;
	size_t			 i;
	int			 pass;

	if (srv.routes == NULL)
		fatalx("%s: no route table", __func__);
	*allowed = 0;
	for (pass = 0; pass < 2; pass++) {
		if (pass == 1) {
			if (strncmp(rawpath, "/bedrock/", 9) != 0)
				break;
			path = rawpath + 8;
		}
		for (i = 0; i < srv.nroutes; i++) {
			rt = &srv.routes[i];
			if (pass == 1 && !(rt->flags & RF_BEDROCK))
				continue;
			if (rt->pattern == NULL) {
				if (!c->metrics_enabled ||
				    strcmp(path, c->metrics_path) != 0)
					continue;
			} else if (!route_match(rt->pattern, path, NULL))
				continue;
			*allowed |= rt->methods;
			if ((rt->methods & method) == 0)
				continue;
			if (rt->pattern != NULL && r != NULL)
				route_match(rt->pattern, path, r);
			return (rt);
		}
		if (*allowed != 0)
			return (NULL);
	}
	return (NULL);
}

/* TLS. */
static int
server_alpn_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
    const unsigned char *in, unsigned int inlen, void *arg)
{
	static const unsigned char	h1[] = "http/1.1";
	unsigned int			i;

	for (i = 0; i + 1 <= inlen && i + 1 + in[i] <= inlen; i += 1 + in[i]) {
		if (in[i] == 8 && memcmp(in + i + 1, h1, 8) == 0) {
			*out = in + i + 1;
			*outlen = 8;
			return (SSL_TLSEXT_ERR_OK);
		}
	}
	return (SSL_TLSEXT_ERR_NOACK);
}

static SSL_CTX *
server_tls_ctx(const struct config *c, char **cause)
{
	SSL_CTX		*ctx;
	unsigned long	 e;
	char		 buf[256];

	if ((ctx = SSL_CTX_new(TLS_server_method())) == NULL)
		fatalx("SSL_CTX_new");
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION |
	    SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
	    SSL_OP_NO_TICKET);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_alpn_select_cb(ctx, server_alpn_cb, NULL);
	if (SSL_CTX_use_certificate_chain_file(ctx,
	    c->server_tls_cert_file) != 1) {
		e = ERR_get_error();
		ERR_error_string_n(e, buf, sizeof buf);
		xasprintf(cause, "cannot load certificate %s: %s",
		    c->server_tls_cert_file, buf);
		goto fail;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, c->server_tls_key_file,
	    SSL_FILETYPE_PEM) != 1) {
		e = ERR_get_error();
		ERR_error_string_n(e, buf, sizeof buf);
		xasprintf(cause, "cannot load private key %s: %s",
		    c->server_tls_key_file, buf);
		goto fail;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		xasprintf(cause, "%s does not match %s", c->server_tls_key_file,
		    c->server_tls_cert_file);
		goto fail;
	}
	ERR_clear_error();
	return (ctx);
fail:
	ERR_clear_error();
	SSL_CTX_free(ctx);
	return (NULL);
}

/* Connection tracking. */
static const char *
conn_state_name(enum conn_state s)
{
	static const char *const names[] = {
		"new", "waiting", "keys", "body", "active"
	};

	return ((size_t)s < nitems(names) ? names[s] : "?");
}

/* The one place a connection changes state. */
static void
conn_enter(struct server_conn *conn, enum conn_state s)
{
	if (log_trace_on(TRACE_HTTP))
		log_trace(TRACE_HTTP, "connection %p: %s -> %s", (void *)conn,
		    conn_state_name(conn->state), conn_state_name(s));
	conn->state = s;
	switch (s) {
	case CONN_WAITING:
		conn->t_wait = now_mono();
		conn->t_first = 0;
		conn->scanned = 0;
		conn->discard = 0;
		break;
	case CONN_KEYS:
	case CONN_BODY:
		conn->t_head = now_mono();
		break;
	case CONN_NEW:
	case CONN_ACTIVE:
		break;
	}
}

static void
conn_gate_clear(struct server_conn *conn)
{
	struct server_gate	*g = &conn->gate;

	auth_wait_cancel(&g->wait, conn);
	auth_result_clear(&g->auth);
	free(g->path);
	memset(g, 0, sizeof *g);
}

/* Take what evhttp has not read yet: it is (the start of) a head. */
static void
conn_hold(struct server_conn *conn)
{
	conn->in_gate = 1;
	evbuffer_add_buffer(conn->head, bufferevent_get_input(conn->bev));
	conn->in_gate = 0;
}

/*
 * Refuse the held head before evhttp reads it: evhttp gets a bodiless
 * stand-in request, which server_gencb answers with the refusal; the
 * connection closes after the answer, and what else the client sends is
 * dropped (a body must never be read as a request).
 */
static void
conn_refuse(struct server_conn *conn, int status, const char *error,
    const char *why)
{
	static const char	 standin[] = "GET / HTTP/1.1\r\nHost: -\r\n"
				    "Connection: close\r\n\r\n";
	struct server_gate	*g = &conn->gate;
	struct evbuffer		*in = bufferevent_get_input(conn->bev);

	log_trace(TRACE_HTTP, "request head refused: %d %s", status, why);
	g->done = 1;
	g->status = status;
	g->error = error;
	bsp_strlcpy(g->why, why, sizeof g->why);
	conn->in_gate = 1;
	evbuffer_drain(conn->head, evbuffer_get_length(conn->head));
	evbuffer_drain(in, evbuffer_get_length(in));
	/* At the front: outside its own reads, a bufferevent's input is
	 * frozen at the end. */
	if (evbuffer_prepend(in, standin, sizeof standin - 1) == -1)
		fatalx("%s: evbuffer_prepend", __func__);
	conn->in_gate = 0;
	conn->discard = 1;
	conn_enter(conn, CONN_BODY);
}

/* The evhttp_connection behind our bufferevent, once evhttp made it. */
static struct evhttp_connection *
conn_evcon(struct server_conn *conn)
{
	bufferevent_event_cb	 ecb;
	void			*cbarg;

	if (conn->evcon == NULL) {
		bufferevent_getcb(conn->bev, NULL, NULL, &ecb, &cbarg);
		if (ecb != NULL) {
			conn->evcon = cbarg;
			evhttp_connection_set_closecb(conn->evcon,
			    conn_closed_cb, conn);
		}
	}
	return (conn->evcon);
}

/* Hand the held head (and what followed it) to evhttp. */
static void
conn_pass(struct server_conn *conn, size_t max_body)
{
	struct evhttp_connection	*evcon = conn_evcon(conn);

	conn->gate.done = 1;
	if (evcon != NULL)
		evhttp_connection_set_max_body_size(evcon,
		    (ev_ssize_t)max_body);
	conn->in_gate = 1;
	if (evbuffer_prepend_buffer(bufferevent_get_input(conn->bev),
	    conn->head) == -1)
		fatalx("%s: evbuffer_prepend_buffer", __func__);
	conn->in_gate = 0;
	conn_enter(conn, CONN_BODY);
}

/*
 * The verdict on a head whose credential (if its route needs one) has
 * been checked: refused before its body, or passed with a body ceiling.
 */
static void
conn_decide(struct server_conn *conn, int has_body, int has_length,
    uint64_t length)
{
	struct server_gate	*g = &conn->gate;
	size_t			 max = (size_t)cfg->server_max_body_bytes;

	if (g->auth.code != 0 && has_body) {
		/* 401/403: answered by auth_refuse(), before the body. */
		conn_refuse(conn, g->auth.code, NULL, g->auth.why);
		return;
	}
	if (g->auth.p == NULL && max > SERVER_UNAUTH_BODY_MAX)
		max = SERVER_UNAUTH_BODY_MAX;
	if (has_length && length > max) {
		conn_refuse(conn, 413, "invalid_request", g->auth.p != NULL ?
		    "request body is too large" : "request body is too large "
		    "for a request without valid credentials");
		return;
	}
	conn_pass(conn, max);
}

/* A trusted issuer's keys are in (or their fetch failed). */
static void
conn_keys_cb(void *arg)
{
	struct server_conn	*conn = arg;

	event_active(&conn->gate_ev, EV_TIMEOUT, 1);
}

static int
method_type(const struct http_span *m)
{
	static const struct {
		const char	*name;
		int		 type;
	} t[] = {
		{ "GET", EVHTTP_REQ_GET },
		{ "POST", EVHTTP_REQ_POST },
		{ "HEAD", EVHTTP_REQ_HEAD },
		{ "PUT", EVHTTP_REQ_PUT },
		{ "DELETE", EVHTTP_REQ_DELETE },
		{ "OPTIONS", EVHTTP_REQ_OPTIONS },
		{ "PATCH", EVHTTP_REQ_PATCH },
	};
	size_t	i;

	for (i = 0; i < nitems(t); i++) {
		if (m->len == strlen(t[i].name) &&
		    memcmp(m->p, t[i].name, m->len) == 0)
			return (t[i].type);
	}
	return (0);
}

/*
 * Look at the held bytes: once they hold a whole head, read it strictly,
 * find its route and check its credential, then pass it to evhttp or
 * refuse it (conn_pass, conn_refuse), or wait for keys (CONN_KEYS).
 */
static void
conn_head_check(struct server_conn *conn, int deferred)
{
	const struct config	*c = cfg;
	struct server_gate	*g = &conn->gate;
	const struct route	*rt;
	struct http_head	 h;
	const char		*p, *why;
	char			*authz = NULL, *key = NULL;
	size_t			 len, want, end, from, skip = 0;
	size_t			 limit = (size_t)c->server_max_header_bytes;
	int			 rc, allowed;

	/* Up to two empty lines before a request line are ignored. */
	while (conn->scanned == 0 && skip < 4 &&
	    evbuffer_get_length(conn->head) > 0 &&
	    ((p = (const char *)evbuffer_pullup(conn->head, 1))[0] == '\r' ||
	    p[0] == '\n')) {
		evbuffer_drain(conn->head, 1);
		skip++;
	}
	if ((len = evbuffer_get_length(conn->head)) == 0)
		return;
	want = len < limit + 2 ? len : limit + 2;
	if ((p = (const char *)evbuffer_pullup(conn->head,
	    (ev_ssize_t)want)) == NULL)
		fatalx("%s: evbuffer_pullup", __func__);
	from = conn->scanned > 2 ? conn->scanned - 2 : 0;
	end = http_head_end(p + from, want - from);
	if (end == 0) {
		conn->scanned = want;
		if (len > limit)
			conn_refuse(conn, 431, "invalid_request",
			    "request head is too large");
		goto out;
	}
	end += from;
	if (end > limit) {
		conn_refuse(conn, 431, "invalid_request",
		    "request head is too large");
		goto out;
	}

	conn_gate_clear(conn);
	rc = http_head_parse(p, end, HTTP_HEAD_MAX_FIELDS, &h, &why);
	g->mtype = method_type(&h.method);
	if (h.path.len > 0)
		g->path = xmemdup0(h.path.p, h.path.len);
	if (rc != 0) {
		conn_refuse(conn, rc, "invalid_request", why);
		goto out;
	}
	rt = route_find(c, g->path, g->mtype, &allowed, NULL);
	g->flags = rt != NULL ? rt->flags : 0;
	if (g->flags & RF_AUTH) {
		if (h.authorization.p != NULL)
			authz = xmemdup0(h.authorization.p,
			    h.authorization.len);
		if (h.api_key.p != NULL)
			key = xmemdup0(h.api_key.p, h.api_key.len);
		rc = auth_check(c, g->flags, authz, key, &g->auth, &g->wait,
		    conn_keys_cb, conn);
		if (rc == 1) {
			/* The body stays unread until there is a verdict. */
			conn_enter(conn, CONN_KEYS);
			bufferevent_disable(conn->bev, EV_READ);
			conn_watch_hangup(conn);
			goto out;
		}
	}
	conn_decide(conn, http_head_has_body(&h), h.has_length, h.length);
out:
	if (authz != NULL)
		freezero_str(authz);
	if (key != NULL)
		freezero_str(key);
	if (deferred && conn->state == CONN_BODY)
		bufferevent_trigger(conn->bev, EV_READ, 0);
}

/* Run the head gate outside evhttp's callbacks. */
static void
conn_gate_cb(int fd, short ev, void *arg)
{
	struct server_conn	*conn = arg;
	struct server_gate	*g = &conn->gate;
	struct http_head	 h;
	const char		*p, *why;
	char			*authz = NULL, *key = NULL;
	size_t			 end;

	if (conn->state == CONN_NEW || conn->state == CONN_WAITING) {
		conn_head_check(conn, 1);
		return;
	}
	if (conn->state != CONN_KEYS)
		return;
	/* The keys are in: the held head is whole; read it once more. */
	p = (const char *)evbuffer_pullup(conn->head, -1);
	end = http_head_end(p, evbuffer_get_length(conn->head));
	if (end == 0 || http_head_parse(p, end, HTTP_HEAD_MAX_FIELDS, &h,
	    &why) != 0)
		fatalx("%s: a held head no longer reads", __func__);
	if (h.authorization.p != NULL)
		authz = xmemdup0(h.authorization.p, h.authorization.len);
	if (h.api_key.p != NULL)
		key = xmemdup0(h.api_key.p, h.api_key.len);
	(void)auth_check(cfg, g->flags, authz, key, &g->auth, &g->wait, NULL,
	    conn);
	if (authz != NULL)
		freezero_str(authz);
	if (key != NULL)
		freezero_str(key);
	conn_closed_ev_del(conn);
	bufferevent_enable(conn->bev, EV_READ);
	conn_decide(conn, http_head_has_body(&h), h.has_length, h.length);
	bufferevent_trigger(conn->bev, EV_READ, 0);
}

static void
conn_input_cb(struct evbuffer *buf, const struct evbuffer_cb_info *info,
    void *arg)
{
	struct server_conn	*conn = arg;

	if (info->n_added == 0 || conn->in_gate)
		return;
	switch (conn->state) {
	case CONN_NEW:
	case CONN_WAITING:
		if (conn->t_first == 0)
			conn->t_first = now_mono();
		conn_hold(conn);
		conn_head_check(conn, 0);
		break;
	case CONN_KEYS:
		/* What follows the head waits too; read no more of it. */
		conn_hold(conn);
		bufferevent_disable(conn->bev, EV_READ);
		break;
	case CONN_ACTIVE:
		if (conn->discard) {
			conn->in_gate = 1;
			evbuffer_drain(buf, evbuffer_get_length(buf));
			conn->in_gate = 0;
		}
		break;
	case CONN_BODY:
		break;
	}
}

/* Count a connection against its client address; -1 over the limit. */
static int
conn_count_client(struct server_conn *conn)
{
	const struct sockaddr	*sa;
	struct server_client	*cl;
	char			 group[64];

	if (cfg->server_max_conns_per_client <= 0 || conn->evcon == NULL ||
	    (sa = evhttp_connection_get_addr(conn->evcon)) == NULL ||
	    (sa->sa_family != AF_INET && sa->sa_family != AF_INET6) ||
	    cidrlist_match(&cfg->trusted_proxies, sa) ||
	    sockaddr_group(sa, group, sizeof group) == -1)
		return (0);
	HASH_FIND_STR(srv.clients, group, cl);
	if (cl == NULL) {
		cl = xcalloc(1, sizeof *cl);
		bsp_strlcpy(cl->group, group, sizeof cl->group);
		HASH_ADD_STR(srv.clients, group, cl);
	}
	cl->n++;
	conn->client = cl;
	return (cl->n > (size_t)cfg->server_max_conns_per_client ? -1 : 0);
}

static void
conn_uncount_client(struct server_conn *conn)
{
	struct server_client	*cl = conn->client;

	if (cl == NULL)
		return;
	conn->client = NULL;
	if (--cl->n == 0) {
		HASH_DEL(srv.clients, cl);
		free(cl);
	}
}

/*
 * A refused request's client may still be sending its body: closing now,
 * with its bytes unread, would send a reset that can destroy our answer
 * before the client reads it. Keep reading (and dropping) for a moment,
 * with evhttp's shutdown of our side already sent.
 */
static void
server_linger_end(struct server_linger *l)
{
	event_del(&l->ev);
	close(l->fd);
	TAILQ_REMOVE(&srv.lingering, l, entry);
	srv.nlinger--;
	free(l);
}

static void
server_linger_cb(int fd, short ev, void *arg)
{
	struct server_linger	*l = arg;
	static char		 sink[16384];
	ssize_t			 n;

	if ((ev & EV_READ) && now_mono() < l->until) {
		n = read(fd, sink, sizeof sink);
		if (n > 0 || (n == -1 && (errno == EAGAIN || errno == EINTR)))
			return;
	}
	server_linger_end(l);
}

static void
server_linger(struct server_conn *conn)
{
	struct server_linger	*l;
	struct timeval		 tv = { SERVER_LINGER_SECS, 0 };
	evutil_socket_t		 fd;
	int			 dup;

	if (srv.nlinger >= SERVER_LINGER_MAX ||
	    (fd = bufferevent_getfd(conn->bev)) == -1 ||
	    (dup = fcntl(fd, F_DUPFD_CLOEXEC, 0)) == -1)
		return;
	l = xcalloc(1, sizeof *l);
	l->fd = dup;
	l->until = now_mono() + SERVER_LINGER_SECS;
	event_assign(&l->ev, bsp_base, dup, EV_READ | EV_PERSIST,
	    server_linger_cb, l);
	event_add(&l->ev, &tv);
	TAILQ_INSERT_TAIL(&srv.lingering, l, entry);
	srv.nlinger++;
}

static void
conn_closed_cb(struct evhttp_connection *evcon, void *arg)
{
	struct server_conn	*conn = arg;
	struct request		*r = conn->req;

	conn->evcon = NULL;
	if (r != NULL) {
		conn->req = NULL;
		r->conn = NULL;
		if (!r->replied) {
			/*
			 * evhttp has let go of the request; it stays ours
			 * until we free it.
			 */
			r->client_gone = 1;
			r->http_owned = 1;
			if (r->on_abort != NULL) {
				void (*fn)(struct request *) = r->on_abort;

				r->on_abort = NULL;
				fn(r);
			}
			request_finish(r);
		} else {
			/* evhttp frees the request with the connection. */
			r->http = NULL;
			if (!r->logged)
				request_finish(r);
		}
		request_unref(r);	/* evhttp's reference */
	}
	conn_release(conn);
}

/* Learn the evhttp_connection behind our bufferevent, once evhttp made it. */
static void
conn_adopt_cb(int fd, short ev, void *arg)
{
	struct server_conn	*conn = arg;
	bufferevent_event_cb	 ecb;

	bufferevent_getcb(conn->bev, NULL, NULL, &ecb, NULL);
	if (ecb == NULL || conn_evcon(conn) == NULL) {
		conn_release(conn);
		return;
	}
	if ((long long)srv.nconns > cfg->server_max_connections) {
		log_warnx("connection limit (%lld) reached; closing a new "
		    "connection", cfg->server_max_connections);
		conn_kill(conn, "connection limit");
	} else if (conn_count_client(conn) == -1) {
		log_warnx("client %s has %zu connections (limit %lld); closing "
		    "a new one", conn->client->group, conn->client->n,
		    cfg->server_max_conns_per_client);
		conn_kill(conn, "connection limit per client");
	} else if (srv.draining)
		conn_kill(conn, "shutting down");
}

static struct bufferevent *
server_bevcb(struct event_base *base, void *arg)
{
	struct server_conn	*conn;
	struct bufferevent	*bev;
	SSL			*ssl;

	conn = xcalloc(1, sizeof *conn);
	if (srv.tls_ctx != NULL) {
		if ((ssl = SSL_new(srv.tls_ctx)) == NULL)
			fatalx("SSL_new");
		bev = bufferevent_openssl_socket_new(base, -1, ssl,
		    BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
		if (bev != NULL)
			bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
		conn->tls = 1;
	} else
		bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
	if (bev == NULL)
		fatalx("cannot create a bufferevent");
	conn->bev = bev;
	bufferevent_incref(bev);
	conn->state = CONN_NEW;
	conn->t_wait = now_mono();
	if ((conn->head = evbuffer_new()) == NULL)
		fatalx("evbuffer_new");
	evtimer_assign(&conn->gate_ev, base, conn_gate_cb, conn);
	evbuffer_add_cb(bufferevent_get_input(bev), conn_input_cb, conn);
	HASH_ADD_PTR(srv.conn_hash, bev, conn);
	TAILQ_INSERT_TAIL(&srv.conns, conn, entry);
	srv.nconns++;
	evtimer_assign(&conn->adopt_ev, base, conn_adopt_cb, conn);
	event_active(&conn->adopt_ev, EV_TIMEOUT, 1);
	return (bev);
}

static void
conn_closed_ev_del(struct server_conn *conn)
{
	if (conn->closed_ev_on) {
		event_del(&conn->closed_ev);
		conn->closed_ev_on = 0;
	}
}

static void
conn_release(struct server_conn *conn)
{
	if (conn->evcon != NULL) {
		evhttp_connection_set_closecb(conn->evcon, NULL, NULL);
		conn->evcon = NULL;
	}
	if (conn->req != NULL) {
		conn->req->conn = NULL;
		conn->req = NULL;
	}
	event_del(&conn->adopt_ev);
	event_del(&conn->gate_ev);
	conn_closed_ev_del(conn);
	conn_gate_clear(conn);
	conn_uncount_client(conn);
	evbuffer_free(conn->head);
	evbuffer_remove_cb(bufferevent_get_input(conn->bev), conn_input_cb,
	    conn);
	HASH_DEL(srv.conn_hash, conn);
	TAILQ_REMOVE(&srv.conns, conn, entry);
	srv.nconns--;
	bufferevent_decref(conn->bev);
	free(conn);
	server_check_drained();
}

/*
 * Make evhttp drop a connection: it sees an EOF, fails the connection and
 * calls our close callback. Deferred, so it never runs inside our loops.
 */
static void
conn_kill(struct server_conn *conn, const char *why)
{
	if (conn->killed)
		return;
	conn->killed = 1;
	log_trace(TRACE_HTTP, "closing connection: %s", why);
	bufferevent_trigger_event(conn->bev, BEV_EVENT_EOF | BEV_EVENT_READING,
	    BEV_TRIG_DEFER_CALLBACKS);
}

/* The client hung up while its request was being handled. */
static void
conn_hup_cb(int fd, short ev, void *arg)
{
	struct server_conn	*conn = arg;

	conn_closed_ev_del(conn);
	log_trace(TRACE_HTTP, "client closed the connection early");
	conn_kill(conn, "client hung up");
}

static void
server_sweep_cb(int fd, short ev, void *arg)
{
	struct server_conn	*conn, *next;
	bufferevent_event_cb	 ecb;
	double			 now = now_mono();
	const struct config	*c = cfg;

	for (conn = TAILQ_FIRST(&srv.conns); conn != NULL; conn = next) {
		next = TAILQ_NEXT(conn, entry);
		bufferevent_getcb(conn->bev, NULL, NULL, &ecb, NULL);
		if (ecb == NULL) {
			conn_release(conn);
			continue;
		}
		switch (conn->state) {
		case CONN_NEW:
			if (now - conn->t_wait > (double)c->to_header)
				conn_kill(conn, "no request head in time");
			break;
		case CONN_WAITING:
			if (conn->t_first != 0 &&
			    now - conn->t_first > (double)c->to_header)
				conn_kill(conn, "request head too slow");
			else if (srv.draining && conn->t_first == 0)
				conn_kill(conn, "shutting down");
			break;
		case CONN_KEYS:
			/* The fetch is bounded by oauth.timeout; this too. */
			if (now - conn->t_head > (double)(c->oauth_timeout +
			    c->to_header))
				conn_kill(conn, "no verdict on the credential");
			break;
		case CONN_BODY:
			if (now - conn->t_head > (double)c->to_body)
				conn_kill(conn, "request body too slow");
			break;
		case CONN_ACTIVE:
			break;
		}
	}
}

/*
 * A request still unanswered when its handler returns waits on something
 * (an upstream, an identity provider): notice if its client hangs up
 * meanwhile, so that the wait can be cancelled. Answered requests, most of
 * them, cost no extra system call.
 */
static void
request_watch_hangup(struct request *r)
{
	if (r->replied || r->client_gone || r->conn == NULL)
		return;
	conn_watch_hangup(r->conn);
}

static void
conn_watch_hangup(struct server_conn *conn)
{
	evutil_socket_t		 fd;

	if (conn->closed_ev_on || (fd = bufferevent_getfd(conn->bev)) == -1)
		return;
	event_assign(&conn->closed_ev, bsp_base, fd, EV_CLOSED, conn_hup_cb,
	    conn);
	if (event_add(&conn->closed_ev, NULL) == 0)
		conn->closed_ev_on = 1;
}

/*
 * Request ids: a random per-process prefix and a counter. Unique and
 * cheap; they are not secrets, so they need no system call each.
 */
static void
request_id_new(char *buf, size_t len)
{
	static char		 prefix[17];
	static uint64_t		 counter;

	if (prefix[0] == '\0')
		random_id(prefix, sizeof prefix);
	snprintf(buf, len, "%s%016llx", prefix,
	    (unsigned long long)++counter);
}

/* Request helpers. */
static int
request_id_ok(const char *s)
{
	size_t	len = strlen(s), i;

	if (len == 0 || len > 64)
		return (0);
	for (i = 0; i < len; i++) {
		if (!isalnum((unsigned char)s[i]) && s[i] != '-' &&
		    s[i] != '_' && s[i] != '.' && s[i] != ':')
			return (0);
	}
	return (1);
}

/*
 * The client address: the socket peer, or, when the peer is a trusted
 * proxy, the rightmost X-Forwarded-For entry that is not itself trusted.
 */
static void
request_client(struct request *r, const struct sockaddr *peer)
{
	struct evkeyvalq	*h;
	struct evkeyval		*kv;
	struct evbuffer		*all;
	const char		*proto = NULL;
	char			*list, *item, *comma;
	struct sockaddr_storage	 ss;
	size_t			 len, pos, ilen;

	if (peer != NULL) {
		memcpy(&r->client_sa, peer, peer->sa_family == AF_INET6 ?
		    sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in));
		sockaddr_str(peer, r->peer, sizeof r->peer);
	} else
		bsp_strlcpy(r->peer, "unknown", sizeof r->peer);
	bsp_strlcpy(r->client, r->peer, sizeof r->client);
	r->https = r->conn != NULL && r->conn->tls;
	if (peer == NULL || r->cfg->trusted_proxies.n == 0 ||
	    !cidrlist_match(&r->cfg->trusted_proxies, peer))
		return;

	/*
	 * Every X-Forwarded-For line, in order, as one list: a proxy may
	 * append its hop on a line of its own, after the client's lines.
	 * X-Forwarded-Proto: the last one, set by the nearest proxy.
	 */
	h = evhttp_request_get_input_headers(r->http);
	all = evbuffer_new();
	TAILQ_FOREACH(kv, h, next) {
		if (strcasecmp(kv->key, "X-Forwarded-Proto") == 0)
			proto = kv->value;
		else if (strcasecmp(kv->key, "X-Forwarded-For") == 0)
			evbuffer_add_printf(all, "%s%s",
			    evbuffer_get_length(all) > 0 ? "," : "", kv->value);
	}
	if (proto != NULL)
		r->https = strcasecmp(proto, "https") == 0;
	if ((len = evbuffer_get_length(all)) == 0) {
		evbuffer_free(all);
		return;
	}
	list = xmalloc(len + 1);
	evbuffer_remove(all, list, len);
	list[len] = '\0';
	evbuffer_free(all);

	/* From the right: the first hop our trusted proxies did not add. */
	pos = len;
	for (;;) {
		comma = memrchr(list, ',', pos);
		item = comma != NULL ? comma + 1 : list;
		list[pos] = '\0';
		while (*item == ' ' || *item == '\t')
			item++;
		ilen = strlen(item);
		while (ilen > 0 && (item[ilen - 1] == ' ' ||
		    item[ilen - 1] == '\t'))
			item[--ilen] = '\0';
		if (addr_parse(item, &ss) == -1)
			break;
		bsp_strlcpy(r->client, item, sizeof r->client);
		memcpy(&r->client_sa, &ss, sizeof ss);
		if (!cidrlist_match(&r->cfg->trusted_proxies,
		    (struct sockaddr *)&ss) || comma == NULL)
			break;
		pos = (size_t)(comma - list);
	}
	free(list);
}

static const char *
method_name(enum evhttp_cmd_type m)
{
	switch (m) {
	case EVHTTP_REQ_GET:
		return ("GET");
	case EVHTTP_REQ_POST:
		return ("POST");
	case EVHTTP_REQ_HEAD:
		return ("HEAD");
	case EVHTTP_REQ_PUT:
		return ("PUT");
	case EVHTTP_REQ_DELETE:
		return ("DELETE");
	case EVHTTP_REQ_OPTIONS:
		return ("OPTIONS");
	case EVHTTP_REQ_PATCH:
		return ("PATCH");
	default:
		return ("OTHER");
	}
}

/* Headers every response carries. */
static void
request_common_headers(struct request *r)
{
	struct evkeyvalq	*h = evhttp_request_get_output_headers(r->http);
	int			 flags = r->route != NULL ? r->route->flags : 0;

	evhttp_add_header(h, "X-Request-Id", r->id);
	evhttp_add_header(h, "X-Content-Type-Options", "nosniff");
	if (flags & RF_HTML) {
		evhttp_add_header(h, "Content-Security-Policy",
		    "default-src 'none'; script-src 'self'; style-src 'self'; "
		    "img-src 'self'; form-action 'self'; base-uri 'none'; "
		    "frame-ancestors 'none'");
		evhttp_add_header(h, "X-Frame-Options", "DENY");
		evhttp_add_header(h, "Referrer-Policy", "no-referrer");
	}
	if (flags & RF_NO_STORE) {
		evhttp_add_header(h, "Cache-Control", "no-store");
		evhttp_add_header(h, "Pragma", "no-cache");
	}
	if (r->https)
		evhttp_add_header(h, "Strict-Transport-Security",
		    "max-age=31536000");
	if (srv.draining)
		evhttp_add_header(h, "Connection", "close");
}

/* A request whose head the gate refused: answer it, and nothing else. */
static void
server_refused(struct request *r, struct server_gate *g)
{
	struct evbuffer	*in;
	int		 allowed;

	free(r->path);
	r->path = xstrdup(g->path != NULL ? g->path : "-");
	r->method = method_name(g->mtype);
	r->route = route_find(r->cfg, r->path, g->mtype, &allowed, NULL);
	if (r->conn != NULL) {
		/* Whatever came after the stand-in is the refused body. */
		in = bufferevent_get_input(r->conn->bev);
		r->conn->in_gate = 1;
		evbuffer_drain(in, evbuffer_get_length(in));
		r->conn->in_gate = 0;
	}
	if (g->error == NULL)
		auth_refuse(r, &g->auth);
	else
		server_error(r, g->status, g->error, g->why);
}

/* Route a request and run its handler. */
static void
server_dispatch(struct request *r, int method, struct server_gate *g)
{
	const char	*uri, *q;
	int		 allowed;
	char		 buf[256];

	if (g->status != 0) {
		server_refused(r, g);
		return;
	}
	uri = evhttp_request_get_uri(r->http);
	if (uri == NULL || uri[0] != '/') {
		r->path = xstrdup("-");
		server_error_oauth(r, 400, "invalid_request",
		    "request target must be an absolute path");
		return;
	}
	if ((q = strchr(uri, '?')) != NULL) {
		r->path = xstrndup(uri, (size_t)(q - uri));
		r->query = xstrdup(q + 1);
	} else
		r->path = xstrdup(uri);
	if (strchr(r->path, '#') != NULL ||
	    !str_is_printable(r->path, strlen(r->path))) {
		server_error_oauth(r, 400, "invalid_request",
		    "malformed request path");
		return;
	}

	r->route = route_find(r->cfg, r->path, method, &allowed, r);
	if (r->route == NULL) {
		if (allowed != 0) {
			buf[0] = '\0';
			if (allowed & EVHTTP_REQ_GET)
				bsp_strlcat(buf, ", GET, HEAD", sizeof buf);
			if (allowed & EVHTTP_REQ_POST)
				bsp_strlcat(buf, ", POST", sizeof buf);
			if (allowed & EVHTTP_REQ_DELETE)
				bsp_strlcat(buf, ", DELETE", sizeof buf);
			server_set_header(r, "Allow", buf + 2);
			server_error(r, 405, "invalid_request",
			    "method not allowed");
			return;
		}
		srv.route_none(r);
		return;
	}
	if ((r->route->flags & RF_METRICS) &&
	    !cidrlist_match(&r->cfg->metrics_acl,
	    (struct sockaddr *)&r->client_sa)) {
		server_error_oauth(r, 403, "access_denied",
		    "metrics are not available to this address");
		return;
	}
	log_trace(TRACE_HTTP, "%s %s -> %s", r->method, r->path,
	    r->route->name);
	if ((r->route->flags & RF_AUTH) && auth_request(r, &g->auth) != 0)
		return;
	r->route->handler(r);
	request_watch_hangup(r);
}

static void
server_gencb(struct evhttp_request *req, void *arg)
{
	struct request		*r;
	struct evhttp_connection *evcon;
	struct bufferevent	*bev;
	struct server_conn	*conn = NULL;
	struct server_gate	 gate;
	const char		*xid;
	int			 method;

	evcon = evhttp_request_get_connection(req);
	bev = evhttp_connection_get_bufferevent(evcon);
	HASH_FIND_PTR(srv.conn_hash, &bev, conn);

	r = xcalloc(1, sizeof *r);
	r->refcnt = 1;
	r->http = req;
	r->cfg = config_ref(cfg);
	r->t_start = now_mono();
	method = evhttp_request_get_command(req);
	r->method = method_name(method);
	TAILQ_INSERT_TAIL(&srv.requests, r, entry);
	srv.nrequests++;
	memset(&gate, 0, sizeof gate);
	if (conn != NULL) {
		if (conn->evcon == NULL) {
			conn->evcon = evcon;
			evhttp_connection_set_closecb(evcon, conn_closed_cb,
			    conn);
		}
		conn_enter(conn, CONN_ACTIVE);
		conn->req = r;
		r->conn = conn;
		/* The gate's verdict on this request's head is now ours. */
		if (conn->gate.done) {
			gate = conn->gate;
			memset(&conn->gate, 0, sizeof conn->gate);
		}
	}
	evhttp_request_set_on_complete_cb(req, NULL, NULL);

	xid = server_header(r, "X-Request-Id");
	if (xid != NULL && request_id_ok(xid))
		bsp_strlcpy(r->id, xid, sizeof r->id);
	else
		request_id_new(r->id, sizeof r->id);
	request_client(r, evhttp_connection_get_addr(evcon));

	server_dispatch(r, method, &gate);
	auth_result_clear(&gate.auth);
	free(gate.path);
}

/* Called by evhttp once the whole reply has been written. */
static void
server_complete_cb(struct evhttp_request *req, void *arg)
{
	struct request		*r = arg;
	struct server_conn	*conn = r->conn;

	struct evbuffer		*in;
	int			 discard;

	r->http = NULL;		/* evhttp frees it after this returns */
	if (conn != NULL) {
		conn->req = NULL;
		conn_closed_ev_del(conn);
		r->conn = NULL;
		discard = conn->discard;
		if (discard)
			server_linger(conn);	/* evhttp closes it next */
		conn_enter(conn, CONN_WAITING);
		in = bufferevent_get_input(conn->bev);
		if (srv.draining)
			conn_kill(conn, "shutting down");
		else if (!discard && evbuffer_get_length(in) > 0) {
			/*
			 * The next request's head came with this one's:
			 * through the gate before evhttp reads it.
			 */
			conn->t_first = now_mono();
			conn_hold(conn);
			event_active(&conn->gate_ev, EV_TIMEOUT, 1);
		}
	}
	request_unref(r);
}

/* Access log line and metrics, once per request. */
static void
request_finish(struct request *r)
{
	char			 labels[256], code[8];
	double			 dur = now_mono() - r->t_start;
	int			 status = r->client_gone && !r->replied ? 499 :
				    r->status;
	const char		*rname = r->route != NULL ? r->route->name :
				    "none";
	struct log_field	 f[] = {
		LFS("id", r->id),
		LFS("method", r->method),
		LFS("path", r->path),
		LFS("route", rname),
		LFI("status", status),
		LFI("bytes", (long long)r->bytes_out),
		LFD("duration", dur),
		LFS("client", r->client),
		LFS("user", r->log_user),
		LFS("model", r->log_model),
		LFI("upstream_status", r->upstream_status),
		LFI("tokens_in", r->tokens_in),
		LFI("tokens_out", r->tokens_out),
		LFS("error", r->log_error),
	};
	size_t			 n = nitems(f);

	if (r->logged)
		return;
	r->logged = 1;
	if (r->upstream_status == 0)
		f[10].key = NULL;
	if (r->tokens_in == 0 && r->tokens_out == 0)
		f[11].key = f[12].key = NULL;
	if (r->cfg->log_access)
		log_fields(LOG_LVL_INFO, "request", f, n);
	snprintf(code, sizeof code, "%d", status);
	metric_label(labels, sizeof labels, "route", rname, "code", code, NULL);
	metric_add(m_requests, labels, 1);
	metric_observe(m_request_seconds, labels, dur);
}

static void
request_drop_http(struct request *r)
{
	/* A request evhttp disowned when its client left: ours to free. */
	if (r->http != NULL && r->http_owned)
		evhttp_request_free(r->http);
	r->http = NULL;
}

static void
server_reap_cb(int fd, short ev, void *arg)
{
	struct request	*r;

	while ((r = TAILQ_FIRST(&srv.dead)) != NULL) {
		TAILQ_REMOVE(&srv.dead, r, entry);
		if (r->state_free != NULL)
			r->state_free(r->state);
		principal_unref(r->principal);
		request_drop_http(r);
		config_unref(r->cfg);
		free(r->path);
		free(r->query);
		free(r->log_user);
		free(r->log_model);
		free(r);
	}
	server_check_drained();
}

void
request_ref(struct request *r)
{
	r->refcnt++;
}

void
request_unref(struct request *r)
{
	if (--r->refcnt > 0)
		return;
	if (r->conn != NULL) {
		r->conn->req = NULL;
		r->conn = NULL;
	}
	TAILQ_REMOVE(&srv.requests, r, entry);
	srv.nrequests--;
	TAILQ_INSERT_TAIL(&srv.dead, r, entry);
	event_active(&srv.reap_ev, EV_TIMEOUT, 1);
}

void
request_set_user(struct request *r, const char *user)
{
	free(r->log_user);
	r->log_user = user != NULL ? xstrdup(user) : NULL;
}

void
request_set_model(struct request *r, const char *model, size_t len)
{
	free(r->log_model);
	r->log_model = model != NULL ? xmemdup0(model, len) : NULL;
}

const char *
server_header(struct request *r, const char *name)
{
	if (r->http == NULL)
		return (NULL);
	return (evhttp_find_header(evhttp_request_get_input_headers(r->http),
	    name));
}

void
server_set_header(struct request *r, const char *name, const char *value)
{
	if (r->http == NULL)
		return;
	evhttp_remove_header(evhttp_request_get_output_headers(r->http), name);
	evhttp_add_header(evhttp_request_get_output_headers(r->http), name,
	    value);
}

/* The request body as one contiguous buffer. */
int
server_body(struct request *r, const uint8_t **p, size_t *len)
{
	struct evbuffer	*in;

	*p = NULL;
	*len = 0;
	if (r->http == NULL)
		return (-1);
	in = evhttp_request_get_input_buffer(r->http);
	*len = evbuffer_get_length(in);
	if (*len == 0) {
		*p = (const uint8_t *)"";
		return (0);
	}
	if ((*p = evbuffer_pullup(in, -1)) == NULL)
		return (-1);
	return (0);
}

/*
 * The body as a JSON object: strict (no duplicate members), bounded in size
 * and depth. NULL with *why if it is not one.
 */
json_t *
server_body_json(struct request *r, const char **why)
{
	const uint8_t	*p;
	size_t		 len, i;
	json_error_t	 err;
	json_t		*j;
	int		 depth = 0, maxdepth = 0, instr = 0;

	*why = "request body must be a JSON object";
	if (server_body(r, &p, &len) == -1 || len == 0)
		return (NULL);
	if (len > SERVER_JSON_MAX) {
		*why = "request body is too large";
		return (NULL);
	}
	/* Bound nesting before jansson recurses. */
	for (i = 0; i < len; i++) {
		if (instr) {
			if (p[i] == '\\')
				i++;
			else if (p[i] == '"')
				instr = 0;
		} else if (p[i] == '"')
			instr = 1;
		else if (p[i] == '{' || p[i] == '[') {
			if (++depth > maxdepth)
				maxdepth = depth;
		} else if (p[i] == '}' || p[i] == ']')
			depth--;
	}
	if (maxdepth > 16) {
		*why = "request body is nested too deeply";
		return (NULL);
	}
	j = json_loadb((const char *)p, len, JSON_REJECT_DUPLICATES, &err);
	if (j == NULL || !json_is_object(j)) {
		json_decref(j);
		return (NULL);
	}
	return (j);
}

/*
 * The value of name in an x-www-form-urlencoded string, decoded, into buf.
 * NULL if it is missing, repeated (parameter pollution), does not fit, or
 * the string holds an encoded NUL (which would cut a value short).
 */
static const char *
server_urlencoded_one(const char *str, const char *name, char *buf,
    size_t len)
{
	struct evkeyvalq	 q;
	struct evkeyval		*kv;
	const char		*found = NULL;
	int			 n = 0;

	if (strcasestr(str, "%00") != NULL)
		return (NULL);
	TAILQ_INIT(&q);
	if (evhttp_parse_query_str(str, &q) == 0) {
		TAILQ_FOREACH(kv, &q, next) {
			if (strcmp(kv->key, name) == 0) {
				found = kv->value;
				n++;
			}
		}
	}
	if (n != 1 || strlen(found) >= len)
		found = NULL;
	else {
		bsp_strlcpy(buf, found, len);
		found = buf;
	}
	evhttp_clear_headers(&q);
	return (found);
}

/*
 * One field of an application/x-www-form-urlencoded body, decoded, into
 * buf; NULL if missing, repeated or too long.
 */
const char *
server_form(struct request *r, const char *name, char *buf, size_t len)
{
	const uint8_t	*p;
	size_t		 blen;
	char		*copy;
	const char	*found;

	if (server_body(r, &p, &blen) == -1 || blen == 0 ||
	    blen > SERVER_JSON_MAX)
		return (NULL);
	copy = xmemdup0(p, blen);
	found = server_urlencoded_one(copy, name, buf, len);
	freezero(copy, blen);
	return (found);
}

/* Does the request body claim to be of this media type? */
int
server_content_type_is(struct request *r, const char *type)
{
	const char	*ct = server_header(r, "Content-Type");
	size_t		 len = strlen(type);

	return (ct != NULL && strncasecmp(ct, type, len) == 0 &&
	    (ct[len] == '\0' || ct[len] == ';' || ct[len] == ' '));
}

/*
 * One query parameter, decoded, into buf. NULL if it is missing, repeated
 * (parameter pollution), or does not fit.
 */
const char *
server_query(struct request *r, const char *name, char *buf, size_t len)
{
	if (r->query == NULL)
		return (NULL);
	return (server_urlencoded_one(r->query, name, buf, len));
}

static const char *
reason_phrase(int code)
{
	switch (code) {
	case 200:
		return ("OK");
	case 201:
		return ("Created");
	case 204:
		return ("No Content");
	case 302:
		return ("Found");
	case 304:
		return ("Not Modified");
	case 400:
		return ("Bad Request");
	case 401:
		return ("Unauthorized");
	case 403:
		return ("Forbidden");
	case 404:
		return ("Not Found");
	case 405:
		return ("Method Not Allowed");
	case 408:
		return ("Request Timeout");
	case 413:
		return ("Payload Too Large");
	case 431:
		return ("Request Header Fields Too Large");
	case 424:
		return ("Failed Dependency");
	case 429:
		return ("Too Many Requests");
	case 500:
		return ("Internal Server Error");
	case 501:
		return ("Not Implemented");
	case 502:
		return ("Bad Gateway");
	case 503:
		return ("Service Unavailable");
	case 504:
		return ("Gateway Timeout");
	case 505:
		return ("HTTP Version Not Supported");
	default:
		return (NULL);
	}
}

/* Send a complete reply. The body buffer is drained (may be NULL). */
void
server_reply(struct request *r, int code, const char *ctype,
    struct evbuffer *body)
{
	if (r->replied)
		fatalx("%s: request %s replied twice", __func__, r->id);
	r->status = code;
	if (body != NULL)
		r->bytes_out = evbuffer_get_length(body);
	if (r->client_gone || r->http == NULL) {
		r->replied = 1;
		request_finish(r);
		if (body != NULL)
			evbuffer_drain(body, evbuffer_get_length(body));
		return;
	}
	request_common_headers(r);
	if (ctype != NULL)
		server_set_header(r, "Content-Type", ctype);
	r->replied = 1;
	request_finish(r);
	evhttp_request_set_on_complete_cb(r->http, server_complete_cb, r);
	evhttp_send_reply(r->http, code, reason_phrase(code), body);
}

void
server_reply_json(struct request *r, int code, json_t *j)
{
	struct evbuffer	*b = evbuffer_new();
	char		*s;

	if (j == NULL) {
		/* A value jansson refused: never the client's problem. */
		log_warnx("request %s: a reply could not be built", r->id);
		evbuffer_free(b);
		server_reply_text(r, 500, "application/json",
		    "{\"message\":\"internal error\"}\n");
		return;
	}
	s = json_dumps(j, JSON_COMPACT);
	json_decref(j);
	if (s == NULL)
		fatalx("json_dumps");
	evbuffer_add(b, s, strlen(s));
	evbuffer_add(b, "\n", 1);
	free(s);
	server_reply(r, code, "application/json", b);
	evbuffer_free(b);
}

void
server_reply_text(struct request *r, int code, const char *ctype,
    const char *text)
{
	struct evbuffer	*b = evbuffer_new();

	evbuffer_add(b, text, strlen(text));
	server_reply(r, code, ctype, b);
	evbuffer_free(b);
}

/* RFC 6749 error shape, for the auth routes and all that is not Bedrock. */
void
server_error_oauth(struct request *r, int code, const char *error,
    const char *desc)
{
	json_t	*j;

	char	*clean;

	r->log_error = error;
	j = json_pack("{s:s}", "error", error);
	if (desc != NULL) {
		/* May carry an identity provider's words: valid UTF-8 only. */
		clean = utf8_sanitize(desc);
		json_object_set_new(j, "error_description",
		    json_string(clean));
		free(clean);
	}
	server_reply_json(r, code, j);
}

/* Bedrock's own error shape, so SDKs raise the right exception. */
void
server_error_bedrock(struct request *r, int code, const char *type,
    const char *fmt, ...)
{
	va_list	 ap;
	char	*msg;

	char	*clean;

	va_start(ap, fmt);
	xvasprintf(&msg, fmt, ap);
	va_end(ap);
	clean = utf8_sanitize(msg);
	r->log_error = type;
	server_set_header(r, "x-amzn-ErrorType", type);
	server_reply_json(r, code, json_pack("{s:s}", "message", clean));
	free(clean);
	free(msg);
}

/* An error in whichever shape the route speaks. */
void
server_error(struct request *r, int code, const char *error,
    const char *desc)
{
	const char	*type;

	if (r->route == NULL || !(r->route->flags & RF_BEDROCK)) {
		server_error_oauth(r, code, error, desc);
		return;
	}
	switch (code) {
	case 400:
	case 405:
	case 413:
	case 431:
	case 505:
		type = "ValidationException";
		break;
	case 401:
		type = "UnrecognizedClientException";
		break;
	case 403:
		type = "AccessDeniedException";
		break;
	case 404:
		type = "ResourceNotFoundException";
		break;
	case 429:
		type = "ThrottlingException";
		break;
	case 503:
		type = "ServiceUnavailableException";
		break;
	default:
		type = "InternalServerException";
		break;
	}
	server_error_bedrock(r, code, type, "%s", desc);
}

/* Streaming replies. */
void
server_stream_start(struct request *r, int code)
{
	r->status = code;
	r->streaming = 1;
	if (r->client_gone || r->http == NULL)
		return;
	request_common_headers(r);
	evhttp_send_reply_start(r->http, code, reason_phrase(code));
}

static void
server_stream_drained(struct evhttp_connection *evcon, void *arg)
{
	struct request	*r = arg;

	if (r->on_drained != NULL && !r->client_gone)
		r->on_drained(r);
}

/*
 * Send a chunk. When the connection's output has been written out the
 * drained callback (if any) runs: the caller's cue to read more upstream.
 */
void
server_stream_write(struct request *r, struct evbuffer *buf,
    void (*drained)(struct request *))
{
	size_t	len = evbuffer_get_length(buf);

	r->bytes_out += len;
	r->on_drained = drained;
	if (r->client_gone || r->http == NULL || len == 0) {
		evbuffer_drain(buf, len);
		return;
	}
	evhttp_send_reply_chunk_with_cb(r->http, buf,
	    drained != NULL ? server_stream_drained : NULL, r);
}

/* Bytes queued to the client but not yet written. */
size_t
server_stream_pending(struct request *r)
{
	struct evhttp_connection	*evcon;
	struct bufferevent		*bev;

	if (r->client_gone || r->http == NULL ||
	    (evcon = evhttp_request_get_connection(r->http)) == NULL)
		return (0);
	bev = evhttp_connection_get_bufferevent(evcon);
	return (evbuffer_get_length(bufferevent_get_output(bev)));
}

void
server_stream_end(struct request *r)
{
	if (r->replied)
		fatalx("%s: request %s ended twice", __func__, r->id);
	r->replied = 1;
	r->on_drained = NULL;
	request_finish(r);
	if (r->client_gone || r->http == NULL)
		return;
	evhttp_request_set_on_complete_cb(r->http, server_complete_cb, r);
	evhttp_send_reply_end(r->http);
}

/* Listeners and lifecycle. */
static int
server_bind(struct config *c, char **cause)
{
	struct evhttp_bound_socket	*b;
	struct sockaddr_storage		 ss;
	socklen_t			 slen = sizeof ss;
	size_t				 i;
	char				 host[INET6_ADDRSTRLEN];
	int				 port;
	struct evconnlistener		*l;
	const char			*h;

	for (i = 0; i < c->nlisten; i++) {
		if (srv.nlisteners == SERVER_MAX_LISTENERS) {
			xasprintf(cause, "too many listeners");
			return (-1);
		}
		h = c->listen[i].host;
		b = evhttp_bind_socket_with_handle(srv.http, h,
		    (ev_uint16_t)strtol(c->listen[i].port, NULL, 10));
		if (b == NULL) {
			xasprintf(cause, "cannot listen on %s%s%s:%s: %s",
			    strchr(h, ':') ? "[" : "", h,
			    strchr(h, ':') ? "]" : "", c->listen[i].port,
			    strerror(errno));
			return (-1);
		}
		l = evhttp_bound_socket_get_listener(b);
		/* Listening again only sets the queue length. */
		if (listen(evconnlistener_get_fd(l), SERVER_BACKLOG) == -1)
			log_warn("listen backlog on %s:%s", h,
			    c->listen[i].port);
		slen = sizeof ss;
		if (getsockname(evconnlistener_get_fd(l),
		    (struct sockaddr *)&ss, &slen) == -1)
			fatal("getsockname");
		sockaddr_str((struct sockaddr *)&ss, host, sizeof host);
		port = ntohs(ss.ss_family == AF_INET6 ?
		    ((struct sockaddr_in6 *)&ss)->sin6_port :
		    ((struct sockaddr_in *)&ss)->sin_port);
		srv.listeners[srv.nlisteners].bound = b;
		srv.listeners[srv.nlisteners].port = port;
		snprintf(srv.listeners[srv.nlisteners].addr,
		    sizeof srv.listeners[0].addr, "%s%s%s:%d",
		    ss.ss_family == AF_INET6 ? "[" : "", host,
		    ss.ss_family == AF_INET6 ? "]" : "", port);
		srv.nlisteners++;
	}
	return (0);
}

static void
server_apply_limits(struct config *c)
{
	evhttp_set_timeout(srv.http, (int)c->to_idle);
	evhttp_set_max_body_size(srv.http, (ev_ssize_t)c->server_max_body_bytes);
	evhttp_set_max_headers_size(srv.http,
	    (ev_ssize_t)c->server_max_header_bytes);
}

/* Start listening. Returns -1 with a cause if a listener cannot bind. */
int
server_init(struct config *c, char **cause)
{
	struct timeval	 tv = { 1, 0 };
	size_t		 i;
	char		*url;

	TAILQ_INIT(&srv.conns);
	TAILQ_INIT(&srv.requests);
	TAILQ_INIT(&srv.dead);
	TAILQ_INIT(&srv.lingering);
	if (c->server_tls_cert_file != NULL &&
	    (srv.tls_ctx = server_tls_ctx(c, cause)) == NULL)
		return (-1);
	if ((srv.http = evhttp_new(bsp_base)) == NULL)
		fatalx("evhttp_new");
	evhttp_set_allowed_methods(srv.http, EVHTTP_REQ_GET | EVHTTP_REQ_POST |
	    EVHTTP_REQ_HEAD | EVHTTP_REQ_DELETE | EVHTTP_REQ_PUT |
	    EVHTTP_REQ_OPTIONS | EVHTTP_REQ_PATCH);
	evhttp_set_default_content_type(srv.http, "application/json");
	evhttp_set_flags(srv.http, EVHTTP_SERVER_LINGERING_CLOSE);
	server_apply_limits(c);
	evhttp_set_bevcb(srv.http, server_bevcb, NULL);
	evhttp_set_gencb(srv.http, server_gencb, NULL);
	if (server_bind(c, cause) == -1)
		return (-1);

	/* Port 0 picked a port: the default public URL follows it. */
	if (config_where(c, "server.public_url") == NULL &&
	    srv.nlisteners > 0 && strcmp(c->listen[0].port, "0") == 0) {
		const char *h = c->listen[0].host;

		if (strcmp(h, "0.0.0.0") == 0 || strcmp(h, "::") == 0)
			h = "127.0.0.1";
		xasprintf(&url, "%s://%s%s%s:%d",
		    srv.tls_ctx != NULL ? "https" : "http",
		    strchr(h, ':') ? "[" : "", h, strchr(h, ':') ? "]" : "",
		    srv.listeners[0].port);
		free(c->server_public_url);
		c->server_public_url = url;
	}
	for (i = 0; i < srv.nlisteners; i++) {
		struct log_field f[] = {
			LFS("addr", srv.listeners[i].addr),
			LFS("tls", srv.tls_ctx != NULL ? "yes" : "no"),
		};
		log_fields(LOG_LVL_INFO, "listening", f, nitems(f));
	}
	event_assign(&srv.sweep_ev, bsp_base, -1, EV_PERSIST, server_sweep_cb,
	    NULL);
	event_add(&srv.sweep_ev, &tv);
	evtimer_assign(&srv.reap_ev, bsp_base, server_reap_cb, NULL);
	return (0);
}

int
server_bound_port(int i)
{
	if (i < 0 || (size_t)i >= srv.nlisteners)
		return (-1);
	return (srv.listeners[i].port);
}

/*
 * A reloaded configuration, in two steps: prepare loads the new TLS
 * certificate (and may fail), commit applies the new limits and puts the
 * certificate in use. The listeners stay as they are; a change there
 * needs a restart.
 */
int
server_reload_prepare(struct config *c, char **cause)
{
	server_reload_abort();
	if (c->server_tls_cert_file != NULL &&
	    (srv.next_tls_ctx = server_tls_ctx(c, cause)) == NULL)
		return (-1);
	return (0);
}

void
server_reload_abort(void)
{
	SSL_CTX_free(srv.next_tls_ctx);
	srv.next_tls_ctx = NULL;
}

void
server_reload_commit(struct config *c)
{
	SSL_CTX	*ctx = srv.next_tls_ctx;
	size_t	 i;
	int	 same = c->nlisten == cfg->nlisten;

	srv.next_tls_ctx = NULL;
	for (i = 0; same && i < c->nlisten; i++) {
		if (strcmp(c->listen[i].host, cfg->listen[i].host) != 0 ||
		    (strcmp(c->listen[i].port, cfg->listen[i].port) != 0 &&
		    strcmp(c->listen[i].port, "0") != 0))
			same = 0;
	}
	if (!same)
		log_warnx("the listen address changed; it takes effect only "
		    "after a restart");
	if ((ctx != NULL) != (srv.tls_ctx != NULL))
		log_warnx("turning TLS on or off takes effect only after a "
		    "restart");
	else if (ctx != NULL) {
		SSL_CTX_free(srv.tls_ctx);
		srv.tls_ctx = ctx;
		ctx = NULL;
		log_info("TLS certificate reloaded from %s",
		    c->server_tls_cert_file);
	}
	SSL_CTX_free(ctx);
	server_apply_limits(c);
	/* Port 0 picked a port at start: a default public URL keeps it. */
	if (same && config_where(c, "server.public_url") == NULL &&
	    srv.nlisteners > 0 && c->nlisten > 0 &&
	    strcmp(c->listen[0].port, "0") == 0 && cfg->server_public_url !=
	    NULL) {
		free(c->server_public_url);
		c->server_public_url = xstrdup(cfg->server_public_url);
		c->public_https = cfg->public_https;
	}
}

size_t
server_inflight(void)
{
	return (srv.nrequests);
}

/* Connections that still have work: a request, or one half received. */
static size_t
server_busy(void)
{
	struct server_conn	*conn;
	size_t			 n = 0;

	TAILQ_FOREACH(conn, &srv.conns, entry) {
		if (conn->state == CONN_ACTIVE || conn->state == CONN_BODY ||
		    conn->t_first != 0)
			n++;
	}
	return (n + srv.nrequests);
}

static void
server_check_drained(void)
{
	void	(*fn)(void);

	if (!srv.draining || srv.drained == NULL || server_busy() != 0)
		return;
	fn = srv.drained;
	srv.drained = NULL;
	event_del(&srv.drain_ev);
	log_info("all requests finished");
	fn();
}

static void
server_drain_timeout_cb(int fd, short ev, void *arg)
{
	void	(*fn)(void) = srv.drained;

	srv.drained = NULL;
	log_warnx("shutdown timeout: %zu requests still in flight",
	    server_busy());
	if (fn != NULL)
		fn();
}

/*
 * Stop accepting, let requests in flight finish (up to
 * server.shutdown_timeout), then call done.
 */
void
server_shutdown(void (*done)(void))
{
	struct timeval		 tv;
	struct server_conn	*conn, *next;
	size_t			 i;

	if (srv.draining)
		return;
	srv.draining = 1;
	srv.drained = done;
	for (i = 0; i < srv.nlisteners; i++)
		evhttp_del_accept_socket(srv.http, srv.listeners[i].bound);
	srv.nlisteners = 0;
	for (conn = TAILQ_FIRST(&srv.conns); conn != NULL; conn = next) {
		next = TAILQ_NEXT(conn, entry);
		if ((conn->state == CONN_NEW || conn->state == CONN_WAITING) &&
		    conn->t_first == 0)
			conn_kill(conn, "shutting down");
	}
	log_info("shutting down: %zu requests in flight", server_busy());
	tv.tv_sec = (time_t)cfg->server_shutdown_timeout;
	tv.tv_usec = 0;
	evtimer_assign(&srv.drain_ev, bsp_base, server_drain_timeout_cb, NULL);
	evtimer_add(&srv.drain_ev, &tv);
	server_check_drained();
}

/* Free everything; in-flight requests are abandoned. */
void
server_free(void)
{
	struct request		*r;
	struct server_conn	*conn;

	if (event_initialized(&srv.sweep_ev))
		event_del(&srv.sweep_ev);
	if (event_initialized(&srv.drain_ev))
		event_del(&srv.drain_ev);
	srv.draining = 1;
	srv.drained = NULL;
	/*
	 * evhttp frees the requests still on its connections; forget ours
	 * (those it had already disowned stay ours to free).
	 */
	TAILQ_FOREACH(r, &srv.requests, entry) {
		r->on_drained = NULL;
		if (!r->http_owned)
			r->http = NULL;
	}
	if (srv.http != NULL)
		evhttp_free(srv.http);	/* closes connections: conn_closed_cb */
	srv.http = NULL;
	if (srv.conns.tqh_last == NULL)
		return;		/* server_init() never ran */
	while ((conn = TAILQ_FIRST(&srv.conns)) != NULL)
		conn_release(conn);
	while (TAILQ_FIRST(&srv.lingering) != NULL)
		server_linger_end(TAILQ_FIRST(&srv.lingering));
	while ((r = TAILQ_FIRST(&srv.requests)) != NULL) {
		r->refcnt = 1;
		request_unref(r);
	}
	server_reap_cb(-1, 0, NULL);
	if (event_initialized(&srv.reap_ev))
		event_del(&srv.reap_ev);
	SSL_CTX_free(srv.tls_ctx);
	srv.tls_ctx = NULL;
}
