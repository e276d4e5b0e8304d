/*
 * server-dispatch.c: what happens to a complete request evhttp hands us:
 * it is tied to its connection and to the head gate's verdict, its route
 * is found, the credential of a protected route is taken, and its handler
 * runs. A request whose head the gate refused is answered with the
 * refusal and nothing else.
 */

#include <sys/queue.h>

#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/http.h>

#include "bsp.h"
#include "server-int.h"

/* A request whose head the gate refused: answer it, and nothing else. */
static void
dispatch_refused(struct request *r, struct server_gate *g)
{
	struct evbuffer		*in;
	const struct route	*owner;
	int			 allowed;

	free(r->path);
	r->path = xstrdup(g->path != NULL ? g->path : "-");
	r->method = server_method_name(g->mtype);
	/* A known path with another method: its family's words still. */
	r->route = server_route_find(r->cfg, r->path, g->mtype, &allowed,
	    &owner, NULL);
	if (r->route == NULL)
		r->route = owner;
	if (r->conn != NULL) {
		/* Whatever came after the stand-in is the refused body. */
		in = bufferevent_get_input(r->conn->bev);
		r->conn->in_gate = 1;
		evbuffer_drain(in, evbuffer_get_length(in));
		r->conn->in_gate = 0;
	}
	if (g->error == NULL)
		server_auth_refuse(r, &g->auth);
	else
		server_error(r, g->status, g->error, g->why);
}

/*
 * A request still unanswered when its handler returns waits on something
 * (an upstream, an identity provider): notice if its client hangs up
 * meanwhile, so that the wait can be cancelled. Answered requests, most of
 * them, cost no extra system call.
 */
static void
dispatch_watch_hangup(struct request *r)
{
	if (r->replied || r->client_gone || r->conn == NULL)
		return;
	server_conn_watch_hangup(r->conn);
}

/* Route a request and run its handler. */
static void
dispatch_route(struct request *r, int method, struct server_gate *g)
{
	const struct route	*owner;
	const char		*uri, *q;
	int			 allowed;
	char			 buf[256];

	if (g->status != 0) {
		dispatch_refused(r, g);
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

	r->route = server_route_find(r->cfg, r->path, method, &allowed, &owner,
	    r);
	if (r->route == NULL) {
		if (allowed != 0) {
			/*
			 * The path is known: the 405 is in the envelope of
			 * its route's API (Anthropic, OpenAI, Bedrock), and
			 * is logged under its name; the handler never runs.
			 */
			r->route = owner;
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
		server_route_none(r);
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
	if ((r->route->flags & RF_AUTH) &&
	    server_auth_request(r, &g->auth) != 0)
		return;
	r->route->handler(r);
	dispatch_watch_hangup(r);
}

/* evhttp's callback for every complete request. */
void
server_dispatch_cb(struct evhttp_request *req, void *arg)
{
	struct request		*r;
	struct evhttp_connection *evcon;
	struct server_conn	*conn;
	struct server_gate	 gate;
	int			 method;

	evcon = evhttp_request_get_connection(req);
	conn = server_conn_find(evhttp_connection_get_bufferevent(evcon));
	method = evhttp_request_get_command(req);
	r = server_request_new(req, method);
	memset(&gate, 0, sizeof gate);
	if (conn != NULL) {
		if (conn->evcon == NULL) {
			conn->evcon = evcon;
			evhttp_connection_set_closecb(evcon,
			    server_conn_closed_cb, conn);
		}
		server_conn_enter(conn, CONN_ACTIVE);
		conn->req = r;
		r->conn = conn;
		/* The gate's verdict on this request's head is now ours. */
		if (conn->gate != NULL && conn->gate->done) {
			gate = *conn->gate;
			free(conn->gate);
			conn->gate = NULL;
		}
	}
	evhttp_request_set_on_complete_cb(req, NULL, NULL);
	server_request_start(r, conn != NULL && conn->tls,
	    evhttp_connection_get_addr(evcon));

	dispatch_route(r, method, &gate);
	auth_result_clear(&gate.auth);
	free(gate.path);
}
