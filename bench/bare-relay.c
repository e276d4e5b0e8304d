/*
 * bare-relay.c: the floor of the daemon's shape, for bench/relay-cpu.sh.
 *
 * evhttp in, evhttp_connection out, nothing else: each request is sent on
 * to one upstream (method, URI, headers but the hop-by-hop ones, body) over
 * a pool of keep-alive connections, and the answer (status, headers, body)
 * comes back. No authentication, no signing, no logging, no metrics.
 * A path with "-response-stream" in it (for bench/streams.sh) is relayed
 * as the daemon relays a stream: the head as soon as it comes, then each
 * piece of the body as it is read, chunked. A stream's client is assumed
 * to stay until its end (no close callback: a benchmark's tool).
 *
 * Usage: bare-relay LISTEN_PORT UPSTREAM_PORT   (both on 127.0.0.1)
 * Prints "listening PORT" once it accepts; LISTEN_PORT 0 picks one.
 * Listens with a backlog of 4096, as the daemon does.
 */

#include <sys/queue.h>
#include <sys/socket.h>

#include <netinet/in.h>
#include <arpa/inet.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>

#define POOL_MAX	64

static struct event_base		*base;
static struct evhttp_connection		*pool[POOL_MAX];
static int				 npool;
static ev_uint16_t			 up_port;

struct call {
	struct evhttp_request		*in;
	struct evhttp_connection	*evcon;
	int				 started;	/* a stream's head sent */
};

static int
hop_by_hop(const char *k)
{
	return (strcasecmp(k, "Connection") == 0 ||
	    strcasecmp(k, "Keep-Alive") == 0 ||
	    strcasecmp(k, "Transfer-Encoding") == 0 ||
	    strcasecmp(k, "Content-Length") == 0 ||
	    strcasecmp(k, "Host") == 0);
}

static void
copy_headers(struct evkeyvalq *from, struct evkeyvalq *to)
{
	struct evkeyval	*kv;

	TAILQ_FOREACH(kv, from, next) {
		if (!hop_by_hop(kv->key))
			evhttp_add_header(to, kv->key, kv->value);
	}
}

static void
free_cb(evutil_socket_t fd, short ev, void *arg)
{
	(void)fd;
	(void)ev;
	evhttp_connection_free(arg);
}

/* A stream's head: passed on at once. */
static int
header_cb(struct evhttp_request *out, void *arg)
{
	struct call	*c = arg;

	copy_headers(evhttp_request_get_input_headers(out),
	    evhttp_request_get_output_headers(c->in));
	evhttp_send_reply_start(c->in, evhttp_request_get_response_code(out),
	    evhttp_request_get_response_code_line(out));
	c->started = 1;
	return (0);
}

/* A stream's body, as it is read. */
static void
chunk_cb(struct evhttp_request *out, void *arg)
{
	struct call	*c = arg;

	evhttp_send_reply_chunk(c->in, evhttp_request_get_input_buffer(out));
}

static void
done_cb(struct evhttp_request *out, void *arg)
{
	struct call	*c = arg;

	if (c->started)
		evhttp_send_reply_end(c->in);
	else if (out == NULL || evhttp_request_get_response_code(out) == 0)
		evhttp_send_error(c->in, 502, NULL);
	else {
		copy_headers(evhttp_request_get_input_headers(out),
		    evhttp_request_get_output_headers(c->in));
		evhttp_send_reply(c->in, evhttp_request_get_response_code(out),
		    evhttp_request_get_response_code_line(out),
		    evhttp_request_get_input_buffer(out));
	}
	/*
	 * Back to the pool, or closed when the pool is full (after this
	 * callback: evhttp still uses the connection when it returns, and
	 * evhttp_connection_free_on_completion set now would not be seen).
	 */
	if (out != NULL && npool < POOL_MAX)
		pool[npool++] = c->evcon;
	else
		event_base_once(base, -1, EV_TIMEOUT, free_cb, c->evcon, NULL);
	free(c);
}

static void
request_cb(struct evhttp_request *in, void *arg)
{
	struct evhttp_request	*out;
	struct call		*c;

	(void)arg;
	if ((c = calloc(1, sizeof *c)) == NULL) {
		evhttp_send_error(in, 503, NULL);
		return;
	}
	c->in = in;
	if (npool > 0)
		c->evcon = pool[--npool];
	else if ((c->evcon = evhttp_connection_base_new(base, NULL,
	    "127.0.0.1", up_port)) == NULL) {
		free(c);
		evhttp_send_error(in, 503, NULL);
		return;
	}
	out = evhttp_request_new(done_cb, c);
	if (strstr(evhttp_request_get_uri(in), "-response-stream") != NULL) {
		evhttp_request_set_header_cb(out, header_cb);
		evhttp_request_set_chunked_cb(out, chunk_cb);
	}
	copy_headers(evhttp_request_get_input_headers(in),
	    evhttp_request_get_output_headers(out));
	evhttp_add_header(evhttp_request_get_output_headers(out), "Host",
	    "127.0.0.1");
	evbuffer_add_buffer(evhttp_request_get_output_buffer(out),
	    evhttp_request_get_input_buffer(in));
	if (evhttp_make_request(c->evcon, out,
	    evhttp_request_get_command(in), evhttp_request_get_uri(in)) == -1) {
		evhttp_connection_free(c->evcon);
		free(c);
		evhttp_send_error(in, 502, NULL);
	}
}

static void
stop_cb(evutil_socket_t sig, short ev, void *arg)
{
	(void)sig;
	(void)ev;
	event_base_loopbreak(arg);
}

int
main(int argc, char *argv[])
{
	struct evhttp			*http;
	struct evhttp_bound_socket	*bs;
	struct evconnlistener		*lev;
	struct sockaddr_in		 sin;
	struct event			*sig;
	struct event_config		*ec;
	struct sockaddr_storage		 ss;
	ev_socklen_t			 sl = sizeof ss;
	int				 i;

	if (argc != 3) {
		fprintf(stderr, "usage: bare-relay listen-port upstream-port\n");
		return (2);
	}
	up_port = (ev_uint16_t)strtol(argv[2], NULL, 10);
	signal(SIGPIPE, SIG_IGN);
	/* As the daemon: epoll's changelist merges enable/disable pairs. */
	if ((ec = event_config_new()) == NULL)
		return (1);
	event_config_set_flag(ec, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
	if ((base = event_base_new_with_config(ec)) == NULL)
		return (1);
	event_config_free(ec);
	http = evhttp_new(base);
	evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_POST);
	evhttp_set_gencb(http, request_cb, NULL);
	memset(&sin, 0, sizeof sin);
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sin.sin_port = htons((ev_uint16_t)strtol(argv[1], NULL, 10));
	if ((lev = evconnlistener_new_bind(base, NULL, NULL,
	    LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC,
	    4096, (struct sockaddr *)&sin, sizeof sin)) == NULL ||
	    (bs = evhttp_bind_listener(http, lev)) == NULL) {
		fprintf(stderr, "bare-relay: cannot listen\n");
		return (1);
	}
	if (getsockname(evhttp_bound_socket_get_fd(bs),
	    (struct sockaddr *)&ss, &sl) == -1)
		return (1);
	printf("listening %d\n",
	    ntohs(((struct sockaddr_in *)&ss)->sin_port));
	fflush(stdout);
	sig = evsignal_new(base, SIGTERM, stop_cb, base);
	event_add(sig, NULL);
	event_base_dispatch(base);
	event_free(sig);
	for (i = 0; i < npool; i++)
		evhttp_connection_free(pool[i]);
	evhttp_free(http);
	event_base_free(base);
	return (0);
}
