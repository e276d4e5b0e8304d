/*
 * server-conn.c: the server's connections, tracked from accept: their
 * state (one enter function), the connection limits (in all and per
 * client address), hang-ups noticed while a request waits, the sweep
 * that drops clients too slow with a head or a body, and the drain at
 * shutdown.
 *
 * evhttp in libevent 2.1 has no head or body timeout, no connection cap
 * and does not notice a client that hangs up while we wait on an
 * upstream (EV_CLOSED), so that the upstream call can be cancelled: that
 * is added here.
 */

#include <sys/types.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <event2/http.h>

#include "bsp.h"
#include "server-int.h"

/* Shutting down: new connections are closed, and idle ones. */
int	 server_draining;

static struct {
	struct server_conn		*hash;	/* by bufferevent */
	TAILQ_HEAD(, server_conn)	 list;
	size_t				 n;
	struct server_client		*clients;
	struct event			 sweep_ev;
	void				(*drained)(void);
	struct event			 drain_ev;
} conns = {
	.list = TAILQ_HEAD_INITIALIZER(conns.list),
};

static const char *
server_conn_state_name(enum conn_state s)
{
	static const char *const names[] = {
		"new", "waiting", "keys", "body", "active"
	};

	return ((size_t)s < nitems(names) ? names[s] : "?");
}

/* The one place a connection changes state. */
void
server_conn_enter(struct server_conn *conn, enum conn_state s)
{
	if (log_trace_on(TRACE_HTTP))
		log_trace(TRACE_HTTP, "connection %p: %s -> %s", (void *)conn,
		    server_conn_state_name(conn->state),
		    server_conn_state_name(s));
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
	if (conn->gate_enter != NULL)
		conn->gate_enter(conn);
}

/* Forget the gate's verdict on the last head. */
void
server_conn_gate_clear(struct server_conn *conn)
{
	struct server_gate	*g = conn->gate;

	if (g == NULL)
		return;
	auth_wait_cancel(&g->wait, conn);
	auth_result_clear(&g->auth);
	free(g->path);
	free(g);
	conn->gate = NULL;
}

/* The gate's verdict on the head being read, made on first use. */
struct server_gate *
server_conn_gate(struct server_conn *conn)
{
	if (conn->gate == NULL)
		conn->gate = xcalloc(1, sizeof *conn->gate);
	return (conn->gate);
}

/* Count a connection against its client address; -1 over the limit. */
static int
server_conn_client_add(struct server_conn *conn)
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
	HASH_FIND_STR(conns.clients, group, cl);
	if (cl == NULL) {
		cl = xcalloc(1, sizeof *cl);
		bsp_strlcpy(cl->group, group, sizeof cl->group);
		HASH_ADD_STR(conns.clients, group, cl);
	}
	cl->n++;
	conn->client = cl;
	return (cl->n > (size_t)cfg->server_max_conns_per_client ? -1 : 0);
}

static void
server_conn_client_del(struct server_conn *conn)
{
	struct server_client	*cl = conn->client;

	if (cl == NULL)
		return;
	conn->client = NULL;
	if (--cl->n == 0) {
		HASH_DEL(conns.clients, cl);
		free(cl);
	}
}

/* The evhttp_connection behind our bufferevent, once evhttp made it. */
struct evhttp_connection *
server_conn_evcon(struct server_conn *conn)
{
	bufferevent_event_cb	 ecb;
	void			*cbarg;

	if (conn->evcon == NULL) {
		bufferevent_getcb(conn->bev, NULL, NULL, &ecb, &cbarg);
		if (ecb != NULL) {
			conn->evcon = cbarg;
			evhttp_connection_set_closecb(conn->evcon,
			    server_conn_closed_cb, conn);
		}
	}
	return (conn->evcon);
}

static void
server_conn_release(struct server_conn *conn)
{
	if (conn->evcon != NULL) {
		evhttp_connection_set_closecb(conn->evcon, NULL, NULL);
		conn->evcon = NULL;
	}
	if (conn->req != NULL) {
		conn->req->conn = NULL;
		conn->req = NULL;
	}
	event_del(&conn->work_ev);
	conn->work = 0;
	server_conn_hangup_unwatch(conn);
	server_conn_gate_clear(conn);
	server_conn_client_del(conn);
	if (conn->head != NULL)
		evbuffer_free(conn->head);
	if (conn->input_cb != NULL)
		evbuffer_remove_cb_entry(bufferevent_get_input(conn->bev),
		    conn->input_cb);
	HASH_DEL(conns.hash, conn);
	TAILQ_REMOVE(&conns.list, conn, entry);
	conns.n--;
	bufferevent_decref(conn->bev);
	free(conn);
	server_conns_check_drained();
}

void
server_conn_closed_cb(struct evhttp_connection *evcon, void *arg)
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
			server_request_finish(r);
		} else {
			/* evhttp frees the request with the connection. */
			r->http = NULL;
			if (!r->logged)
				server_request_finish(r);
		}
		request_unref(r);	/* evhttp's reference */
	}
	server_conn_release(conn);
}

/*
 * Learn the evhttp_connection behind our bufferevent, once evhttp made it;
 * -1 if there is none (the connection is let go).
 */
static int
server_conn_adopt(struct server_conn *conn)
{
	bufferevent_event_cb	 ecb;

	bufferevent_getcb(conn->bev, NULL, NULL, &ecb, NULL);
	if (ecb == NULL || server_conn_evcon(conn) == NULL) {
		server_conn_release(conn);
		return (-1);
	}
	if ((long long)conns.n > cfg->server_max_connections) {
		log_warnx("connection limit (%lld) reached; closing a new "
		    "connection", cfg->server_max_connections);
		server_conn_kill(conn, "connection limit");
	} else if (server_conn_client_add(conn) == -1) {
		log_warnx("client %s has %zu connections (limit %lld); closing "
		    "a new one", conn->client->group, conn->client->n,
		    cfg->server_max_conns_per_client);
		server_conn_kill(conn, "connection limit per client");
	} else if (server_draining)
		server_conn_kill(conn, "shutting down");
	return (0);
}

static void
server_conn_work_cb(int fd, short ev, void *arg)
{
	struct server_conn	*conn = arg;
	int			 what = conn->work;

	conn->work = 0;
	if ((what & CONN_WORK_ADOPT) && server_conn_adopt(conn) == -1)
		return;
	if ((what & CONN_WORK_GATE) && conn->gate_run != NULL)
		conn->gate_run(conn);
}

/* Have the connection do some work on a later pass of the loop. */
void
server_conn_work(struct server_conn *conn, int what)
{
	conn->work |= what;
	event_active(&conn->work_ev, EV_TIMEOUT, 1);
}

/* A connection just accepted, on its bufferevent. */
struct server_conn *
server_conn_new(struct bufferevent *bev, int tls)
{
	struct server_conn	*conn;

	conn = xcalloc(1, sizeof *conn);
	conn->bev = bev;
	conn->tls = tls;
	bufferevent_incref(bev);
	conn->state = CONN_NEW;
	conn->t_wait = now_mono();
	HASH_ADD_PTR(conns.hash, bev, conn);
	TAILQ_INSERT_TAIL(&conns.list, conn, entry);
	conns.n++;
	evtimer_assign(&conn->work_ev, bufferevent_get_base(bev),
	    server_conn_work_cb, conn);
	server_conn_work(conn, CONN_WORK_ADOPT);
	return (conn);
}

/* The connection of a bufferevent, or NULL. */
struct server_conn *
server_conn_find(struct bufferevent *bev)
{
	struct server_conn	*conn = NULL;

	HASH_FIND_PTR(conns.hash, &bev, conn);
	return (conn);
}

/*
 * Make evhttp drop a connection: it sees an EOF, fails the connection and
 * calls our close callback. Deferred, so it never runs inside our loops.
 */
void
server_conn_kill(struct server_conn *conn, const char *why)
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
server_conn_hangup_cb(int fd, short ev, void *arg)
{
	struct server_conn	*conn = arg;

	server_conn_hangup_unwatch(conn);
	log_trace(TRACE_HTTP, "client closed the connection early");
	server_conn_kill(conn, "client hung up");
}

/* Notice if the client hangs up (EV_CLOSED) while we wait. */
void
server_conn_watch_hangup(struct server_conn *conn)
{
	evutil_socket_t		 fd;

	if (conn->closed_ev_on || (fd = bufferevent_getfd(conn->bev)) == -1)
		return;
	event_assign(&conn->closed_ev, bsp_base, fd, EV_CLOSED,
	    server_conn_hangup_cb, conn);
	if (event_add(&conn->closed_ev, NULL) == 0)
		conn->closed_ev_on = 1;
}

void
server_conn_hangup_unwatch(struct server_conn *conn)
{
	if (conn->closed_ev_on) {
		event_del(&conn->closed_ev);
		conn->closed_ev_on = 0;
	}
}

static void
server_conns_sweep_cb(int fd, short ev, void *arg)
{
	struct server_conn	*conn, *next;
	bufferevent_event_cb	 ecb;
	double			 now = now_mono();
	const struct config	*c = cfg;

	for (conn = TAILQ_FIRST(&conns.list); conn != NULL; conn = next) {
		next = TAILQ_NEXT(conn, entry);
		bufferevent_getcb(conn->bev, NULL, NULL, &ecb, NULL);
		if (ecb == NULL) {
			server_conn_release(conn);
			continue;
		}
		switch (conn->state) {
		case CONN_NEW:
			if (now - conn->t_wait > (double)c->to_header)
				server_conn_kill(conn,
				    "no request head in time");
			break;
		case CONN_WAITING:
			if (conn->t_first != 0 &&
			    now - conn->t_first > (double)c->to_header)
				server_conn_kill(conn, "request head too slow");
			else if (server_draining && conn->t_first == 0)
				server_conn_kill(conn, "shutting down");
			break;
		case CONN_KEYS:
			/* The fetch is bounded by oauth.timeout; this too. */
			if (now - conn->t_head > (double)(c->oauth_timeout +
			    c->to_header))
				server_conn_kill(conn,
				    "no verdict on the credential");
			break;
		case CONN_BODY:
			if (now - conn->t_head > (double)c->to_body)
				server_conn_kill(conn, "request body too slow");
			break;
		case CONN_ACTIVE:
			break;
		}
	}
}

/* Look at every connection once a second. */
void
server_conns_sweep_start(void)
{
	struct timeval	 tv = { 1, 0 };

	event_assign(&conns.sweep_ev, bsp_base, -1, EV_PERSIST,
	    server_conns_sweep_cb, NULL);
	event_add(&conns.sweep_ev, &tv);
}

/* Connections that still have work: a request, or one half received. */
static size_t
server_conns_busy(void)
{
	struct server_conn	*conn;
	size_t			 n = 0;

	TAILQ_FOREACH(conn, &conns.list, entry) {
		if (conn->state == CONN_ACTIVE || conn->state == CONN_BODY ||
		    conn->t_first != 0)
			n++;
	}
	return (n + server_inflight());
}

/* Draining, and nothing left to do: tell whoever asked for the drain. */
void
server_conns_check_drained(void)
{
	void	(*fn)(void);

	if (!server_draining || conns.drained == NULL ||
	    server_conns_busy() != 0)
		return;
	fn = conns.drained;
	conns.drained = NULL;
	event_del(&conns.drain_ev);
	log_info("all requests finished");
	fn();
}

static void
server_conns_drain_timeout_cb(int fd, short ev, void *arg)
{
	void	(*fn)(void) = conns.drained;

	conns.drained = NULL;
	log_warnx("shutdown timeout: %zu requests still in flight",
	    server_conns_busy());
	if (fn != NULL)
		fn();
}

/*
 * Close idle connections, let requests in flight finish (up to
 * server.shutdown_timeout), then call done. The listeners are closed.
 */
void
server_conns_drain(void (*done)(void))
{
	struct timeval		 tv;
	struct server_conn	*conn, *next;

	server_draining = 1;
	conns.drained = done;
	for (conn = TAILQ_FIRST(&conns.list); conn != NULL; conn = next) {
		next = TAILQ_NEXT(conn, entry);
		if ((conn->state == CONN_NEW || conn->state == CONN_WAITING) &&
		    conn->t_first == 0)
			server_conn_kill(conn, "shutting down");
	}
	log_info("shutting down: %zu requests in flight", server_conns_busy());
	tv.tv_sec = (time_t)cfg->server_shutdown_timeout;
	tv.tv_usec = 0;
	evtimer_assign(&conns.drain_ev, bsp_base,
	    server_conns_drain_timeout_cb, NULL);
	evtimer_add(&conns.drain_ev, &tv);
	server_conns_check_drained();
}

/* Stop the sweep and the drain: the server is being freed. */
void
server_conns_stop(void)
{
	if (event_initialized(&conns.sweep_ev))
		event_del(&conns.sweep_ev);
	if (event_initialized(&conns.drain_ev))
		event_del(&conns.drain_ev);
	server_draining = 1;
	conns.drained = NULL;
}

/* Free the connections evhttp has not closed. */
void
server_conns_free(void)
{
	struct server_conn	*conn;

	while ((conn = TAILQ_FIRST(&conns.list)) != NULL)
		server_conn_release(conn);
}
