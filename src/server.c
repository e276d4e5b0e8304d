/*
 * server.c: the inbound HTTP(S) server: its listeners and TLS, accepting
 * connections, start, reload and graceful shutdown. evhttp does the HTTP
 * parsing; the files of the server family add what it lacks in libevent
 * 2.1 (server-int.h lists them).
 */

#include <sys/types.h>
#include <sys/socket.h>
#include <netinet/in.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "bsp.h"
#include "server-int.h"

#define SERVER_MAX_LISTENERS	16
/*
 * evhttp listens with a backlog of 128: a burst of clients (a team starting
 * work, a reconnect storm after a network blip) overflows it and the lost
 * handshakes are retried by the clients' kernels after 1 s, then 3 s. The
 * kernel caps this at net.core.somaxconn (4096 on current Linux).
 */
#define SERVER_BACKLOG		4096

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
} srv;

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
	int		 ok = 0;

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
		goto out;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, c->server_tls_key_file,
	    SSL_FILETYPE_PEM) != 1) {
		e = ERR_get_error();
		ERR_error_string_n(e, buf, sizeof buf);
		xasprintf(cause, "cannot load private key %s: %s",
		    c->server_tls_key_file, buf);
		goto out;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		xasprintf(cause, "%s does not match %s", c->server_tls_key_file,
		    c->server_tls_cert_file);
		goto out;
	}
	ok = 1;
out:
	ERR_clear_error();
	if (!ok) {
		SSL_CTX_free(ctx);
		ctx = NULL;
	}
	return (ctx);
}

/* evhttp accepted a socket: its bufferevent, tracked and gated. */
static struct bufferevent *
server_bevcb(struct event_base *base, void *arg)
{
	struct server_conn	*conn;
	struct bufferevent	*bev;
	SSL			*ssl;

	if (srv.tls_ctx != NULL) {
		if ((ssl = SSL_new(srv.tls_ctx)) == NULL)
			fatalx("SSL_new");
		bev = bufferevent_openssl_socket_new(base, -1, ssl,
		    BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
		if (bev != NULL)
			bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
	} else
		bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
	if (bev == NULL)
		fatalx("cannot create a bufferevent");
	conn = server_conn_new(bev, srv.tls_ctx != NULL);
	server_gate_attach(conn);
	return (bev);
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
	size_t		 i;
	char		*url;

	server_requests_init(server_conns_check_drained);
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
	evhttp_set_gencb(srv.http, server_dispatch_cb, NULL);
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
	server_conns_sweep_start();
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

/*
 * Stop accepting, let requests in flight finish (up to
 * server.shutdown_timeout), then call done.
 */
void
server_shutdown(void (*done)(void))
{
	size_t	i;

	if (server_draining)
		return;
	for (i = 0; i < srv.nlisteners; i++)
		evhttp_del_accept_socket(srv.http, srv.listeners[i].bound);
	srv.nlisteners = 0;
	server_conns_drain(done);
}

/* Free everything; in-flight requests are abandoned. */
void
server_free(void)
{
	server_conns_stop();
	server_requests_abandon();
	if (srv.http != NULL)
		evhttp_free(srv.http);	/* closes connections */
	srv.http = NULL;
	server_conns_free();
	server_gate_free();
	server_requests_free();
	SSL_CTX_free(srv.tls_ctx);
	srv.tls_ctx = NULL;
}
