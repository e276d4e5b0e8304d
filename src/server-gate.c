/*
 * server-gate.c: the head gate. evhttp is lenient where request smuggling
 * needs it and reads a whole body before anyone can look at the head. So
 * the bytes of each request head are taken out of evhttp's input as they
 * arrive and held here until the head is complete. Then http-head.c reads
 * it strictly, the route is found, and the credential of a protected route
 * is checked (auth_check). A head that passes goes back to evhttp, which
 * reads the body: up to server.max_body_bytes for an authenticated
 * request, up to SERVER_UNAUTH_BODY_MAX for any other. A head that is
 * refused reaches evhttp as a bodiless stand-in request that is answered
 * with the refusal and closes the connection, so that a body which follows
 * is never read as a request (what arrives of it is dropped, and the
 * socket lingers a moment so that the client sees the answer rather than a
 * reset).
 */

#include <sys/types.h>
#include <sys/queue.h>

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <event2/http.h>

#include "bsp.h"
#include "http-head.h"
#include "server-int.h"

/* A refused request's socket is read and emptied this long before close. */
#define GATE_LINGER_SECS	5
#define GATE_LINGER_MAX		256

/* A refused request's socket, read and emptied for a moment. */
struct gate_linger {
	int				 fd;
	double				 until;
	struct event			 ev;
	TAILQ_ENTRY(gate_linger)	 entry;
};

static struct {
	TAILQ_HEAD(, gate_linger)	 lingering;
	size_t				 nlinger;
} gate = {
	.lingering = TAILQ_HEAD_INITIALIZER(gate.lingering),
};

static void	gate_head_check(struct server_conn *, int);
static void	gate_watch(struct server_conn *);

/* Take what evhttp has not read yet: it is (the start of) a head. */
static void
gate_hold(struct server_conn *conn)
{
	conn->in_gate = 1;
	evbuffer_add_buffer(conn->head, bufferevent_get_input(conn->bev));
	conn->in_gate = 0;
}

/*
 * Refuse the held head before evhttp reads it: evhttp gets a bodiless
 * stand-in request, which server_dispatch_cb answers with the refusal; the
 * connection closes after the answer, and what else the client sends is
 * dropped (a body must never be read as a request).
 */
static void
gate_refuse(struct server_conn *conn, int status, const char *error,
    const char *why)
{
	static const char	 standin[] = "GET / HTTP/1.1\r\nHost: -\r\n"
				    "Connection: close\r\n\r\n";
	struct server_gate	*g = server_conn_gate(conn);
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
	server_conn_enter(conn, CONN_BODY);
}

/* Hand the held head (and what followed it) to evhttp. */
static void
gate_pass(struct server_conn *conn, size_t max_body)
{
	struct evhttp_connection	*evcon = server_conn_evcon(conn);

	server_conn_gate(conn)->done = 1;
	if (evcon != NULL)
		evhttp_connection_set_max_body_size(evcon,
		    (ev_ssize_t)max_body);
	conn->in_gate = 1;
	if (evbuffer_prepend_buffer(bufferevent_get_input(conn->bev),
	    conn->head) == -1)
		fatalx("%s: evbuffer_prepend_buffer", __func__);
	conn->in_gate = 0;
	server_conn_enter(conn, CONN_BODY);
}

/*
 * The verdict on a head whose credential (if its route needs one) has
 * been checked: refused before its body, or passed with a body ceiling.
 */
static void
gate_decide(struct server_conn *conn, int has_body, int has_length,
    uint64_t length)
{
	struct server_gate	*g = server_conn_gate(conn);
	size_t			 max = (size_t)cfg->server_max_body_bytes;

	if (g->auth.code != 0 && has_body) {
		/* 401/403: answered by server_auth_refuse(), before the body. */
		gate_refuse(conn, g->auth.code, NULL, g->auth.why);
		return;
	}
	if (g->auth.p == NULL && max > SERVER_UNAUTH_BODY_MAX)
		max = SERVER_UNAUTH_BODY_MAX;
	if (has_length && length > max) {
		gate_refuse(conn, 413, "invalid_request", g->auth.p != NULL ?
		    "request body is too large" : "request body is too large "
		    "for a request without valid credentials");
		return;
	}
	gate_pass(conn, max);
}

/* A trusted issuer's keys are in (or their fetch failed). */
static void
gate_keys_cb(void *arg)
{
	struct server_conn	*conn = arg;

	server_conn_work(conn, CONN_WORK_GATE);
}

static int
gate_method(const struct http_span *m)
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
 * refuse it (gate_pass, gate_refuse), or wait for keys (CONN_KEYS).
 */
static void
gate_head_check(struct server_conn *conn, int deferred)
{
	const struct config	*c = cfg;
	struct server_gate	*g;
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
			gate_refuse(conn, 431, "invalid_request",
			    "request head is too large");
		goto out;
	}
	end += from;
	if (end > limit) {
		gate_refuse(conn, 431, "invalid_request",
		    "request head is too large");
		goto out;
	}

	server_conn_gate_clear(conn);
	g = server_conn_gate(conn);
	rc = http_head_parse(p, end, HTTP_HEAD_MAX_FIELDS, &h, &why);
	g->mtype = gate_method(&h.method);
	if (h.path.len > 0)
		g->path = xmemdup0(h.path.p, h.path.len);
	if (rc != 0) {
		gate_refuse(conn, rc, "invalid_request", why);
		goto out;
	}
	rt = server_route_find(c, g->path, g->mtype, &allowed, NULL, NULL);
	g->flags = rt != NULL ? rt->flags : 0;
	if (g->flags & RF_AUTH) {
		if (h.authorization.p != NULL)
			authz = xmemdup0(h.authorization.p,
			    h.authorization.len);
		if (h.api_key.p != NULL)
			key = xmemdup0(h.api_key.p, h.api_key.len);
		rc = auth_check(c, g->flags, authz, key, &g->auth, &g->wait,
		    gate_keys_cb, conn);
		if (rc == 1) {
			/* The body stays unread until there is a verdict. */
			server_conn_enter(conn, CONN_KEYS);
			bufferevent_disable(conn->bev, EV_READ);
			server_conn_watch_hangup(conn);
			goto out;
		}
	}
	gate_decide(conn, http_head_has_body(&h), h.has_length, h.length);
out:
	if (authz != NULL)
		freezero_str(authz);
	if (key != NULL)
		freezero_str(key);
	if (deferred && conn->state == CONN_BODY)
		bufferevent_trigger(conn->bev, EV_READ, 0);
}

/* Run the head gate outside evhttp's callbacks (CONN_WORK_GATE). */
static void
gate_run(struct server_conn *conn)
{
	struct server_gate	*g;
	struct http_head	 h;
	const char		*p, *why;
	char			*authz = NULL, *key = NULL;
	size_t			 end;

	if (conn->state == CONN_NEW || conn->state == CONN_WAITING) {
		gate_head_check(conn, 1);
		return;
	}
	if (conn->state != CONN_KEYS)
		return;
	g = server_conn_gate(conn);
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
	server_conn_hangup_unwatch(conn);
	bufferevent_enable(conn->bev, EV_READ);
	gate_decide(conn, http_head_has_body(&h), h.has_length, h.length);
	bufferevent_trigger(conn->bev, EV_READ, 0);
}

static void
gate_input_cb(struct evbuffer *buf, const struct evbuffer_cb_info *info,
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
		gate_hold(conn);
		gate_head_check(conn, 0);
		break;
	case CONN_KEYS:
		/* What follows the head waits too; read no more of it. */
		gate_hold(conn);
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

/* Put a connection just accepted behind the gate. */
void
server_gate_attach(struct server_conn *conn)
{
	conn->gate_enter = gate_watch;
	conn->gate_run = gate_run;
	gate_watch(conn);
}

/*
 * The gate watches a connection's input only while it has work there: a
 * head to hold (NEW, WAITING, KEYS) or a refused request's bytes to drop.
 * A buffer with a callback runs it at every change, and evhttp drains a
 * line at a time: ~40 calls of gate_input_cb for nothing a relayed call.
 * (A callback may remove itself: libevent takes the next one first.) The
 * buffer that holds a head is there only then too: a stream's connection
 * holds neither for its minutes.
 */
static void
gate_watch(struct server_conn *conn)
{
	struct evbuffer	*in = bufferevent_get_input(conn->bev);
	int		 want;

	switch (conn->state) {
	case CONN_NEW:
	case CONN_WAITING:
	case CONN_KEYS:
		want = 1;
		break;
	case CONN_ACTIVE:
		want = conn->discard;
		break;
	default:
		want = 0;
		break;
	}
	if (want && conn->input_cb == NULL) {
		if ((conn->head = evbuffer_new()) == NULL ||
		    (conn->input_cb = evbuffer_add_cb(in, gate_input_cb,
		    conn)) == NULL)
			fatalx("%s: evbuffer", __func__);
	} else if (!want && conn->input_cb != NULL &&
	    evbuffer_get_length(conn->head) == 0) {
		/* (Passed on by gate_pass, dropped by gate_refuse: empty.) */
		evbuffer_remove_cb_entry(in, conn->input_cb);
		conn->input_cb = NULL;
		evbuffer_free(conn->head);
		conn->head = NULL;
	}
}

/*
 * A refused request's client may still be sending its body: closing now,
 * with its bytes unread, would send a reset that can destroy our answer
 * before the client reads it. Keep reading (and dropping) for a moment,
 * with evhttp's shutdown of our side already sent.
 */
static void
gate_linger_end(struct gate_linger *l)
{
	event_del(&l->ev);
	close(l->fd);
	TAILQ_REMOVE(&gate.lingering, l, entry);
	gate.nlinger--;
	free(l);
}

static void
gate_linger_cb(int fd, short ev, void *arg)
{
	struct gate_linger	*l = arg;
	static char		 sink[16384];
	ssize_t			 n;

	if ((ev & EV_READ) && now_mono() < l->until) {
		n = read(fd, sink, sizeof sink);
		if (n > 0 || (n == -1 && (errno == EAGAIN || errno == EINTR)))
			return;
	}
	gate_linger_end(l);
}

static void
gate_linger(struct server_conn *conn)
{
	struct gate_linger	*l;
	struct timeval		 tv = { GATE_LINGER_SECS, 0 };
	evutil_socket_t		 fd;
	int			 dup;

	if (gate.nlinger >= GATE_LINGER_MAX ||
	    (fd = bufferevent_getfd(conn->bev)) == -1 ||
	    (dup = fcntl(fd, F_DUPFD_CLOEXEC, 0)) == -1)
		return;
	l = xcalloc(1, sizeof *l);
	l->fd = dup;
	l->until = now_mono() + GATE_LINGER_SECS;
	event_assign(&l->ev, bsp_base, dup, EV_READ | EV_PERSIST,
	    gate_linger_cb, l);
	event_add(&l->ev, &tv);
	TAILQ_INSERT_TAIL(&gate.lingering, l, entry);
	gate.nlinger++;
}

/*
 * A reply has been written: a refused request's connection lingers and
 * closes; any other waits for its next request, whose head may have come
 * with this one's and goes through the gate before evhttp reads it.
 */
void
server_gate_next(struct server_conn *conn)
{
	struct evbuffer	*in;
	int		 discard = conn->discard;

	if (discard)
		gate_linger(conn);	/* evhttp closes it next */
	server_conn_enter(conn, CONN_WAITING);
	in = bufferevent_get_input(conn->bev);
	if (server_draining)
		server_conn_kill(conn, "shutting down");
	else if (!discard && evbuffer_get_length(in) > 0) {
		conn->t_first = now_mono();
		gate_hold(conn);
		server_conn_work(conn, CONN_WORK_GATE);
	}
}

/* Close the lingering sockets. */
void
server_gate_free(void)
{
	while (TAILQ_FIRST(&gate.lingering) != NULL)
		gate_linger_end(TAILQ_FIRST(&gate.lingering));
}
