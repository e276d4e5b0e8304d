/*
 * client-relay.c: "relay", a listener on this machine's loopback address
 * that sends Bedrock runtime requests on to the proxy with the profile's
 * current access token, so that tools which only sign with SigV4 (the AWS
 * CLI, SDKs, anything that knows only AWS_ENDPOINT_URL_BEDROCK_RUNTIME)
 * use the proxy unchanged, with dummy AWS keys.
 *
 * Other users of the machine reach a loopback port too: every path must
 * start with the user's relay secret (client_relay_secret(), a file only
 * the user can read), compared in constant time, and only the Bedrock
 * runtime operations are carried (client_relay_route()): no other route
 * of the proxy is reachable with the user's token. What a request's
 * signature says is discarded (Authorization, X-Amz-Date,
 * X-Amz-Security-Token, X-Amz-Content-Sha256, X-Api-Key go) and so is
 * the query (no relayed operation has one; a presigned URL's X-Amz-*
 * must not travel to the proxy's logs). Answers are streamed back as
 * they arrive, and reading from the proxy pauses while the local client
 * is behind; an answer the proxy breaks off is broken off here too. The
 * token is refreshed before it is due (under the profile's lock, shared
 * with "token"), and once more if the proxy refuses it. Requests whose
 * Host is not a loopback name are refused (DNS rebinding), and so are
 * requests a browser sends (Origin, Sec-Fetch-*): a web page must not
 * spend the user's session.
 */

#include <sys/types.h>
#include <sys/queue.h>

#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "bsp.h"
#include "client.h"

#define RELAY_DEFAULT_HOST	"127.0.0.1"
#define RELAY_DEFAULT_PORT	"8377"
/* The proxy's own default server.max_body_bytes: more would be refused. */
#define RELAY_MAX_BODY		(25 * 1024 * 1024)
#define RELAY_MAX_REQUESTS	64	/* in progress at once; more get 503 */
#define RELAY_HIGH_WATER	(256 * 1024)	/* pause the proxy above */

struct relay_req {
	TAILQ_ENTRY(relay_req)	 entry;
	struct relay		*rl;
	struct evhttp_request	*req;
	struct evhttp_connection *evcon;
	struct hc_req		*up;
	int			 waiting;	/* for the refresh */
	int			 retried;	/* after a 401 */
	int			 started;	/* reply head sent */
	int			 paused;
	int			 status;
	uint64_t		 bytes;
	double			 t0;
	char			*path;		/* after the secret, no query */
};
TAILQ_HEAD(relay_reqs, relay_req);

struct relay {
	struct client_opts	 o;
	struct client_session	 s;
	char			*secret;
	int			 nreqs;
	struct hc_target	*t;
	struct evhttp		*http;
	struct client_refresh	*refresh;
	int			 refresh_force;
	struct relay_reqs	 waiting;
	struct relay_reqs	 live;
	struct event		 ev_term;
	struct event		 ev_int;
};

static void	relay_send(struct relay_req *);
static void	relay_refresh(struct relay *, int);

/* A JSON error in Bedrock's shape, which every AWS SDK surfaces. */
static void
relay_error(struct evhttp_request *req, int code, const char *type,
    const char *msg)
{
	struct evbuffer	*b = evbuffer_new();
	json_t		*j = json_pack("{s:s}", "message", msg);
	char		*s = client_json_text(j);

	if (b == NULL)
		fatalx("evbuffer_new");
	evbuffer_add(b, s, strlen(s));
	free(s);
	evhttp_add_header(evhttp_request_get_output_headers(req),
	    "Content-Type", "application/json");
	evhttp_add_header(evhttp_request_get_output_headers(req),
	    "x-amzn-ErrorType", type);
	evhttp_send_reply(req, code, code == 401 ? "Unauthorized" :
	    code == 403 ? "Forbidden" : code == 502 ? "Bad Gateway" : "Error",
	    b);
	evbuffer_free(b);
}

static void
relay_log(struct relay_req *rr)
{
	const char		*uri = rr->path != NULL ? rr->path : "-";
	char			 path[256];
	struct log_field	 f[] = {
		LFS("method", NULL),
		LFS("path", path),
		LFI("status", rr->status),
		LFI("bytes", (long long)rr->bytes),
		LFI("ms", (long long)((now_mono() - rr->t0) * 1000)),
	};

	switch (evhttp_request_get_command(rr->req)) {
	case EVHTTP_REQ_GET:
		f[0].str = "GET";
		break;
	case EVHTTP_REQ_POST:
		f[0].str = "POST";
		break;
	default:
		f[0].str = "OTHER";
		break;
	}
	/* Never the secret: only what follows it. */
	log_escape(uri, strlen(uri), path, sizeof path);
	log_fields(LOG_LVL_INFO, "request", f, nitems(f));
}

/* Forget a request: its upstream cancelled, its callbacks unhooked. */
static void
relay_req_free(struct relay_req *rr)
{
	struct relay	*rl = rr->rl;

	if (rr->up != NULL)
		hc_cancel(rr->up);
	if (rr->waiting)
		TAILQ_REMOVE(&rl->waiting, rr, entry);
	else
		TAILQ_REMOVE(&rl->live, rr, entry);
	if (rr->evcon != NULL)
		evhttp_connection_set_closecb(rr->evcon, NULL, NULL);
	if (rr->req != NULL)
		evhttp_request_set_on_complete_cb(rr->req, NULL, NULL);
	rl->nreqs--;
	free(rr->path);
	free(rr);
}

/* The reply went out whole. */
static void
relay_complete(struct evhttp_request *req, void *arg)
{
	struct relay_req	*rr = arg;

	relay_log(rr);
	rr->req = NULL;
	relay_req_free(rr);
}

/* The local client left (or the relay stops). */
static void
relay_closed(struct evhttp_connection *evcon, void *arg)
{
	struct relay_req	*rr = arg;
	struct evhttp_request	*req = rr->req;

	rr->status = rr->status != 0 ? rr->status : 499;
	relay_log(rr);
	rr->evcon = NULL;
	rr->req = NULL;
	relay_req_free(rr);
	/*
	 * A connection that failed under a request we had not finished
	 * leaves that request to us (libevent detaches it); one freed by
	 * evhttp_free() takes its requests along.
	 */
	if (req != NULL && evhttp_request_get_connection(req) == NULL)
		evhttp_request_free(req);
}

/* Answer a request that never reached the proxy. */
static void
relay_fail(struct relay_req *rr, int code, const char *type, const char *msg)
{
	rr->status = code;
	evhttp_request_set_on_complete_cb(rr->req, relay_complete, rr);
	relay_error(rr->req, code, type, msg);
}

/* Headers the relay never passes on (hop by hop, or the local auth). */
static int
relay_skip_header(const char *name)
{
	static const char *const skip[] = {
		"host", "content-length", "connection", "expect",
		"transfer-encoding", "te", "upgrade", "keep-alive",
		"proxy-connection", "trailer", "authorization", "x-api-key",
		"x-amz-date", "x-amz-security-token", "x-amz-content-sha256",
		"cookie", "proxy-authorization",
	};
	size_t			    i;

	for (i = 0; i < nitems(skip); i++)
		if (strcasecmp(name, skip[i]) == 0)
			return (1);
	return (0);
}

static void
relay_drained(struct evhttp_connection *evcon, void *arg)
{
	struct relay_req	*rr = arg;

	if (rr->paused && rr->up != NULL) {
		rr->paused = 0;
		hc_resume(rr->up);
	}
}

/* Bytes queued to the local client, not yet written. */
static size_t
relay_pending(struct relay_req *rr)
{
	struct bufferevent	*bev;

	if (rr->evcon == NULL ||
	    (bev = evhttp_connection_get_bufferevent(rr->evcon)) == NULL)
		return (0);
	return (evbuffer_get_length(bufferevent_get_output(bev)));
}

static void
relay_up_head(struct hc_req *up, int status, const struct evkeyvalq *h,
    void *arg)
{
	struct relay_req	*rr = arg;
	struct relay		*rl = rr->rl;
	struct evkeyval		*kv;
	struct evkeyvalq	*out;

	if (status == 401 && !rr->retried) {
		/* Refused: refresh once (the file may be newer), resend. */
		rr->retried = 1;
		hc_cancel(up);
		rr->up = NULL;
		TAILQ_REMOVE(&rl->live, rr, entry);
		TAILQ_INSERT_TAIL(&rl->waiting, rr, entry);
		rr->waiting = 1;
		relay_refresh(rl, 1);
		return;
	}
	rr->status = status;
	out = evhttp_request_get_output_headers(rr->req);
	TAILQ_FOREACH(kv, h, next) {
		if (strcasecmp(kv->key, "connection") == 0 ||
		    strcasecmp(kv->key, "transfer-encoding") == 0 ||
		    strcasecmp(kv->key, "keep-alive") == 0 ||
		    strcasecmp(kv->key, "trailer") == 0)
			continue;
		evhttp_add_header(out, kv->key, kv->value);
	}
	rr->started = 1;
	evhttp_send_reply_start(rr->req, status, status < 400 ? "OK" : "Error");
}

static void
relay_up_data(struct hc_req *up, struct evbuffer *data, void *arg)
{
	struct relay_req	*rr = arg;

	rr->bytes += evbuffer_get_length(data);
	evhttp_send_reply_chunk_with_cb(rr->req, data, relay_drained, rr);
	if (!rr->paused && relay_pending(rr) > RELAY_HIGH_WATER) {
		rr->paused = 1;
		hc_pause(up);
	}
}

static void
relay_up_done(struct hc_req *up, const struct hc_result *res, void *arg)
{
	struct relay_req	*rr = arg;
	char			*msg;

	rr->up = NULL;
	if (!rr->started) {
		xasprintf(&msg, "%s relay: cannot reach the proxy at %s: %s",
		    BSP_NAME, rr->rl->s.proxy, res->message[0] != '\0' ?
		    res->message : hc_error_name(res->error));
		log_warnx("%s", msg);
		relay_fail(rr, res->error == HC_ERR_TIMEOUT_FIRST_BYTE ||
		    res->error == HC_ERR_TIMEOUT_CONNECT ? 504 : 502,
		    "ServiceUnavailableException", msg);
		free(msg);
		return;
	}
	if (res->error != HC_OK) {
		/*
		 * Broken off upstream: break it off here too, so that the
		 * local client sees a cut answer (no final chunk, or fewer
		 * bytes than its Content-Length), not a complete one.
		 */
		log_warnx("the proxy's answer to a relayed request broke off: "
		    "%s", res->message[0] != '\0' ? res->message :
		    hc_error_name(res->error));
		rr->status = 502;
		evhttp_connection_free(rr->evcon);	/* relay_closed frees rr */
		return;
	}
	if (res->body != NULL && evbuffer_get_length(res->body) > 0) {
		rr->bytes += evbuffer_get_length(res->body);
		evhttp_send_reply_chunk(rr->req, res->body);
	}
	evhttp_request_set_on_complete_cb(rr->req, relay_complete, rr);
	evhttp_send_reply_end(rr->req);
}

/* Send one request on to the proxy with the current token. */
static void
relay_send(struct relay_req *rr)
{
	struct relay		*rl = rr->rl;
	struct hc_request	 hr;
	struct hc_header	*h;
	struct evkeyval		*kv;
	struct evbuffer		*in = evhttp_request_get_input_buffer(rr->req);
	const char		*base = hc_target_path(rl->t), *method;
	struct hc_timeouts	 to = { 10000, 300000, 600000, HC_TIMEOUT_NONE };
	size_t			 n = 0, max = 0, blen = strlen(base);
	char			*path, *auth, *cause = NULL;

	switch (evhttp_request_get_command(rr->req)) {
	case EVHTTP_REQ_GET:
		method = "GET";
		break;
	case EVHTTP_REQ_POST:
		method = "POST";
		break;
	case EVHTTP_REQ_PUT:
		method = "PUT";
		break;
	case EVHTTP_REQ_DELETE:
		method = "DELETE";
		break;
	case EVHTTP_REQ_HEAD:
		method = "HEAD";
		break;
	default:
		relay_fail(rr, 405, "ValidationException", "method not "
		    "relayed");
		return;
	}
	TAILQ_FOREACH(kv, evhttp_request_get_input_headers(rr->req), next)
		max++;
	h = xcalloc(max + 1, sizeof *h);
	TAILQ_FOREACH(kv, evhttp_request_get_input_headers(rr->req), next) {
		if (relay_skip_header(kv->key))
			continue;
		h[n].name = kv->key;
		h[n++].value = kv->value;
	}
	xasprintf(&auth, "Bearer %s", rl->s.access_token);
	h[n].name = "Authorization";
	h[n++].value = auth;
	while (blen > 0 && base[blen - 1] == '/')
		blen--;
	xasprintf(&path, "%.*s%s", (int)blen, base, rr->path);
	hc_request_init(&hr, method, path, h, n, evbuffer_get_length(in) > 0 ?
	    evbuffer_pullup(in, -1) : NULL, evbuffer_get_length(in), 0, &to,
	    relay_up_done, rr);
	hr.flags = HC_STREAM;
	hr.on_head = relay_up_head;
	hr.on_data = relay_up_data;
	rr->up = hc_start(rl->t, &hr, &cause);
	freezero_str(auth);
	free(path);
	free(h);
	if (rr->up == NULL) {
		relay_fail(rr, 400, "ValidationException", cause);
		free(cause);
	}
}

/* The refresh is over: send, or answer, what waited for it. */
static void
relay_refreshed(int rc, const char *why, void *arg)
{
	struct relay		*rl = arg;
	struct relay_req	*rr;
	char			*msg = NULL;
	int			 usable;

	rl->refresh = NULL;
	usable = rc == CLIENT_EXIT_OK || (rc == CLIENT_EXIT_PROXY &&
	    rl->s.access_token != NULL && rl->s.expires_at > now_wall());
	if (rc == CLIENT_EXIT_SIGNIN) {
		client_signin_hint(&rl->s, why);
		xasprintf(&msg, "%s relay: %s; sign in again: %s login %s",
		    BSP_NAME, why, BSP_NAME, rl->s.proxy);
	} else if (!usable) {
		log_warnx("refresh failed: %s", why);
		xasprintf(&msg, "%s relay: %s", BSP_NAME, why);
	} else if (rc != CLIENT_EXIT_OK)
		log_warnx("refresh failed (the current token is used until it "
		    "expires): %s", why);
	while ((rr = TAILQ_FIRST(&rl->waiting)) != NULL) {
		TAILQ_REMOVE(&rl->waiting, rr, entry);
		TAILQ_INSERT_TAIL(&rl->live, rr, entry);
		rr->waiting = 0;
		if (usable)
			relay_send(rr);
		else
			relay_fail(rr, rc == CLIENT_EXIT_SIGNIN ? 401 : 502,
			    rc == CLIENT_EXIT_SIGNIN ?
			    "UnrecognizedClientException" :
			    "ServiceUnavailableException", msg);
	}
	free(msg);
}

static void
relay_refresh(struct relay *rl, int force)
{
	if (rl->refresh != NULL)
		return;
	rl->refresh = client_refresh_start(&rl->s, force, relay_refreshed, rl);
}

/* Every local request. */
static void
relay_cb(struct evhttp_request *req, void *arg)
{
	struct relay		*rl = arg;
	struct relay_req	*rr;
	struct evkeyvalq	*in = evhttp_request_get_input_headers(req);
	struct evkeyval		*kv;
	struct client_session	 cur;
	const char		*rest;
	char			*cause = NULL, *msg;
	int			 route;

	rr = xcalloc(1, sizeof *rr);
	rr->rl = rl;
	rr->req = req;
	rr->t0 = now_mono();
	rr->evcon = evhttp_request_get_connection(req);
	TAILQ_INSERT_TAIL(&rl->live, rr, entry);
	rl->nreqs++;
	evhttp_connection_set_closecb(rr->evcon, relay_closed, rr);

	route = client_relay_route(evhttp_request_get_uri(req), rl->secret,
	    &rest);
	if (route != 0)
		rr->path = xstrndup(rest, strcspn(rest, "?"));
	if (route == 0) {
		relay_fail(rr, 403, "AccessDeniedException", BSP_NAME " relay: "
		    "this relay's URL starts with a secret path, which this "
		    "request lacks; \"" BSP_NAME " relay --url\" prints it");
		return;
	}

	if (!client_host_loopback(evhttp_find_header(in, "Host"))) {
		relay_fail(rr, 403, "AccessDeniedException", BSP_NAME " relay: "
		    "the Host of this request is not this machine (127.0.0.1, "
		    "::1, localhost); refused");
		return;
	}
	TAILQ_FOREACH(kv, in, next) {
		if (strcasecmp(kv->key, "Origin") == 0 ||
		    strncasecmp(kv->key, "Sec-Fetch-", 10) == 0) {
			relay_fail(rr, 403, "AccessDeniedException", BSP_NAME
			    " relay: requests from web pages are refused");
			return;
		}
	}
	if (route == -1 || evhttp_request_get_command(req) !=
	    EVHTTP_REQ_POST) {
		relay_fail(rr, 404, "UnknownOperationException", BSP_NAME
		    " relay: only the Bedrock runtime operations are relayed "
		    "(POST /model/ID/invoke, invoke-with-response-stream, "
		    "converse, converse-stream, count-tokens; POST "
		    "/guardrail/ID/version/V/apply)");
		return;
	}
	if (rl->nreqs > RELAY_MAX_REQUESTS) {
		relay_fail(rr, 503, "ThrottlingException", BSP_NAME " relay: "
		    "too many requests in progress");
		return;
	}
	/* Another process may have refreshed, or signed in again. */
	if (client_session_changed(&rl->s)) {
		memset(&cur, 0, sizeof cur);
		cur.profile = xstrdup(rl->s.profile);
		cur.path = xstrdup(rl->s.path);
		cur.lock_path = xstrdup(rl->s.lock_path);
		if (client_session_read(&cur, &cause) == 0) {
			if (!client_session_same_proxy(&cur, &rl->s)) {
				/* rl->t is the old proxy: never its token. */
				xasprintf(&msg, "%s relay: profile %s is now "
				    "signed in to %s, not %s: restart the "
				    "relay", BSP_NAME, rl->s.profile,
				    cur.proxy, rl->s.proxy);
				log_warnx("%s", msg);
				relay_fail(rr, 502,
				    "ServiceUnavailableException", msg);
				free(msg);
				client_session_clear(&cur);
				return;
			}
			client_session_take(&rl->s, &cur);
		} else if (cause != NULL) {
			log_warnx("%s", cause);
			free(cause);
		}
		client_session_clear(&cur);
	}
	if (client_token_fresh(&rl->s, now_wall())) {
		relay_send(rr);
		return;
	}
	TAILQ_REMOVE(&rl->live, rr, entry);
	TAILQ_INSERT_TAIL(&rl->waiting, rr, entry);
	rr->waiting = 1;
	relay_refresh(rl, 0);
}

static void
relay_stop(int sig, short ev, void *arg)
{
	log_info("received %s; stopping", sig == SIGINT ? "SIGINT" : "SIGTERM");
	event_base_loopexit(bsp_base, NULL);
}

static int
relay_usage(void)
{
	fprintf(stderr, "usage: %s relay [--profile NAME] [--listen "
	    "ADDRESS:PORT] [--url]\n", BSP_NAME);
	return (CLIENT_EXIT_USAGE);
}

/* The relay's URL for tools: http://HOST:PORT/SECRET (free it). */
char *
client_relay_url(const char *host, int port, const char *secret)
{
	char	*u;

	xasprintf(&u, "http://%s%s%s:%d/%s", strchr(host, ':') != NULL ?
	    "[" : "", host, strchr(host, ':') != NULL ? "]" : "", port,
	    secret);
	return (u);
}

/* relay [--profile P] [--listen ADDRESS:PORT] [--url] */
int
client_cmd_relay(int argc, char **argv)
{
	static const struct option	 opts[] = {
		{ "profile", required_argument, NULL, 1 },
		{ "listen", required_argument, NULL, 2 },
		{ "url", no_argument, NULL, 3 },
		{ NULL, 0, NULL, 0 },
	};
	struct relay			 rl;
	struct relay_req		*rr;
	const char			*listen = NULL;
	char				*host = NULL, *port = NULL, *cause = NULL;
	char				*u, *end;
	long				 pn;
	int				 ch, rc, bound, url = 0;

	memset(&rl, 0, sizeof rl);
	rl.o.profile = CLIENT_PROFILE_DEFAULT;
	TAILQ_INIT(&rl.waiting);
	TAILQ_INIT(&rl.live);
	optind = 0;
	while ((ch = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
		if (ch == 1)
			rl.o.profile = optarg;
		else if (ch == 2)
			listen = optarg;
		else if (ch == 3)
			url = 1;
		else
			return (relay_usage());
	}
	if (argc != optind)
		return (relay_usage());
	if (listen == NULL) {
		host = xstrdup(RELAY_DEFAULT_HOST);
		port = xstrdup(RELAY_DEFAULT_PORT);
	} else if (strspn(listen, "0123456789") == strlen(listen)) {
		host = xstrdup(RELAY_DEFAULT_HOST);
		port = xstrdup(listen);
	} else if (hostport_split(listen, &host, &port) == -1) {
		fprintf(stderr, "%s: --listen %s: want ADDRESS:PORT, e.g. "
		    "127.0.0.1:%s\n", BSP_NAME, listen, RELAY_DEFAULT_PORT);
		return (CLIENT_EXIT_USAGE);
	}
	pn = strtol(port, &end, 10);
	if (*port == '\0' || *end != '\0' || pn < 0 || pn > 65535 ||
	    !url_is_loopback_host(host) || strcasecmp(host, "localhost") == 0) {
		fprintf(stderr, "%s: --listen %s: a loopback address (127.0.0.1 "
		    "or ::1) and a port: the relay is for this machine only\n",
		    BSP_NAME, listen != NULL ? listen : "");
		rc = CLIENT_EXIT_USAGE;
		goto out;
	}
	if (url) {
		/* The URL to give tools; the secret is made if need be. */
		if (pn == 0) {
			fprintf(stderr, "%s: --url wants the port the relay "
			    "listens on, not 0\n", BSP_NAME);
			rc = CLIENT_EXIT_USAGE;
			goto out;
		}
		if (client_relay_secret(&rl.secret, 1, &cause) != 0) {
			rc = CLIENT_EXIT_LOCAL;
			goto out;
		}
		u = client_relay_url(host, (int)pn, rl.secret);
		printf("%s\n", u);
		freezero_str(u);
		rc = fflush(stdout) == EOF || ferror(stdout) ?
		    CLIENT_EXIT_LOCAL : CLIENT_EXIT_OK;
		goto out;
	}
	if ((rc = client_session_load(&rl.o, &rl.s)) != CLIENT_EXIT_OK)
		goto out;
	if (client_relay_secret(&rl.secret, 1, &cause) != 0) {
		rc = CLIENT_EXIT_LOCAL;
		goto out;
	}
	/* The relay's own lines: one per request, at info. */
	log_configure(log_get_level() + 2, LOG_FMT_TEXT, 0);
	if (client_loop_init(&rl.s, &cause) == -1 ||
	    (rl.t = client_target(&rl.s, &cause)) == NULL) {
		rc = CLIENT_EXIT_LOCAL;
		goto out;
	}
	if ((rl.http = client_listen(host, port, &bound, &cause)) == NULL) {
		rc = CLIENT_EXIT_LOCAL;	/* the port is taken, most likely */
		goto out;
	}
	evhttp_set_gencb(rl.http, relay_cb, &rl);
	evhttp_set_allowed_methods(rl.http, EVHTTP_REQ_GET | EVHTTP_REQ_POST |
	    EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE | EVHTTP_REQ_HEAD);
	evhttp_set_max_body_size(rl.http, RELAY_MAX_BODY);
	evhttp_set_max_headers_size(rl.http, 64 * 1024);
	evhttp_set_timeout(rl.http, 600);
	evsignal_assign(&rl.ev_term, bsp_base, SIGTERM, relay_stop, &rl);
	evsignal_assign(&rl.ev_int, bsp_base, SIGINT, relay_stop, &rl);
	evsignal_add(&rl.ev_term, NULL);
	evsignal_add(&rl.ev_int, NULL);
	fprintf(stderr, "%s relay: listening on http://%s%s%s:%d for %s "
	    "(profile %s)\n", BSP_NAME, strchr(host, ':') != NULL ? "[" : "",
	    host, strchr(host, ':') != NULL ? "]" : "", bound, rl.s.proxy,
	    rl.s.profile);
	fprintf(stderr, "Point your tools at its URL, which starts with "
	    "your relay secret: AWS_ENDPOINT_URL_BEDROCK_RUNTIME=$(%s relay "
	    "--url%s%s) (any AWS keys will do)\n", BSP_NAME,
	    listen != NULL ? " --listen " : "", listen != NULL ? listen : "");
	event_base_dispatch(bsp_base);
	evsignal_del(&rl.ev_term);
	evsignal_del(&rl.ev_int);
	rc = CLIENT_EXIT_OK;
out:
	if (cause != NULL) {
		fprintf(stderr, "%s: %s\n", BSP_NAME, cause);
		free(cause);
	}
	if (rl.refresh != NULL)
		client_refresh_cancel(rl.refresh);
	while ((rr = TAILQ_FIRST(&rl.waiting)) != NULL)
		relay_req_free(rr);
	if (rl.http != NULL)
		evhttp_free(rl.http);	/* closes: relay_closed for the rest */
	while ((rr = TAILQ_FIRST(&rl.live)) != NULL)
		relay_req_free(rr);
	if (rl.t != NULL)
		hc_target_free(rl.t);
	client_loop_free();
	client_session_clear(&rl.s);
	freezero_str(rl.secret);
	free(host);
	free(port);
	return (rc);
}
