/*
 * server-request.c: the lifetime of a request, its id and client address,
 * and reading what it carries (headers, body, form, query).
 *
 * struct request is made when evhttp hands us a complete request and
 * holds one reference for evhttp. That reference is dropped when the reply
 * has been written or the client went away; handlers waiting on callbacks
 * hold references of their own. The struct is freed on a later loop pass
 * once the count reaches zero.
 */

#include <sys/types.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <netinet/in.h>

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "bsp.h"
#include "server-int.h"

static struct {
	TAILQ_HEAD(, request)	 live;
	size_t			 nlive;
	TAILQ_HEAD(, request)	 dead;
	struct event		 reap_ev;
	void			(*reaped)(void);
} reqs = {
	.live = TAILQ_HEAD_INITIALIZER(reqs.live),
	.dead = TAILQ_HEAD_INITIALIZER(reqs.dead),
};

static void
request_drop_http(struct request *r)
{
	/* A request evhttp disowned when its client left: ours to free. */
	if (r->http != NULL && r->http_owned)
		evhttp_request_free(r->http);
	r->http = NULL;
}

static void
request_reap_cb(int fd, short ev, void *arg)
{
	struct request	*r;

	while ((r = TAILQ_FIRST(&reqs.dead)) != NULL) {
		TAILQ_REMOVE(&reqs.dead, r, entry);
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
	if (reqs.reaped != NULL)
		reqs.reaped();
}

/* Start; reaped() runs each time dead requests have been freed. */
void
server_requests_init(void (*reaped)(void))
{
	reqs.reaped = reaped;
	evtimer_assign(&reqs.reap_ev, bsp_base, request_reap_cb, NULL);
}

/*
 * Before evhttp is freed: it frees the requests still on its connections,
 * so forget ours (those it had already disowned stay ours to free).
 */
void
server_requests_abandon(void)
{
	struct request	*r;

	TAILQ_FOREACH(r, &reqs.live, entry) {
		r->on_drained = NULL;
		if (!r->http_owned)
			r->http = NULL;
	}
}

/* Free every request, in flight or not. */
void
server_requests_free(void)
{
	struct request	*r;

	while ((r = TAILQ_FIRST(&reqs.live)) != NULL) {
		r->refcnt = 1;
		request_unref(r);
	}
	request_reap_cb(-1, 0, NULL);
	if (event_initialized(&reqs.reap_ev))
		event_del(&reqs.reap_ev);
}

size_t
server_inflight(void)
{
	return (reqs.nlive);
}

const char *
server_method_name(int m)
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

/* A request evhttp has read, with the one reference that is evhttp's. */
struct request *
server_request_new(struct evhttp_request *req, int method)
{
	struct request	*r;

	r = xcalloc(1, sizeof *r);
	r->refcnt = 1;
	r->http = req;
	r->cfg = config_ref(cfg);
	r->t_start = now_mono();
	r->method = server_method_name(method);
	TAILQ_INSERT_TAIL(&reqs.live, r, entry);
	reqs.nlive++;
	return (r);
}

/*
 * Request ids: a random per-process prefix and a counter. Unique and
 * cheap; they are not secrets, so they need no system call each.
 */
static void
request_id_new(char *buf, size_t len)
{
	static const char	 hex[] = "0123456789abcdef";
	static char		 prefix[17];
	static uint64_t		 counter;
	uint64_t		 c = ++counter;
	size_t			 n;
	int			 i;

	if (prefix[0] == '\0')
		random_id(prefix, sizeof prefix);
	/* The prefix and the counter in 16 hex digits, without printf. */
	if ((n = bsp_strlcpy(buf, prefix, len)) + 17 > len) {
		snprintf(buf, len, "%s%016llx", prefix, (unsigned long long)c);
		return;
	}
	for (i = 15; i >= 0; i--, c >>= 4)
		buf[n + (size_t)i] = hex[c & 15];
	buf[n + 16] = '\0';
}

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
request_client(struct request *r, int tls, const struct sockaddr *peer)
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
	r->https = tls;
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
		memcpy(&r->client_sa, &ss, ss.ss_family == AF_INET6 ?
		    sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in));
		if (!cidrlist_match(&r->cfg->trusted_proxies,
		    (struct sockaddr *)&ss) || comma == NULL)
			break;
		pos = (size_t)(comma - list);
	}
	free(list);
}

/*
 * Who is asking: the request's id (the client's X-Request-Id if it is a
 * good one) and the client's address, over TLS or not, from its peer.
 */
void
server_request_start(struct request *r, int tls, const struct sockaddr *peer)
{
	const char	*xid;

	xid = server_header(r, "X-Request-Id");
	if (xid != NULL && request_id_ok(xid))
		bsp_strlcpy(r->id, xid, sizeof r->id);
	else
		request_id_new(r->id, sizeof r->id);
	request_client(r, tls, peer);
}

/* Access log line and metrics, once per request. */
void
server_request_finish(struct request *r)
{
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
	metrics_request(rname, status, dur);
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
	TAILQ_REMOVE(&reqs.live, r, entry);
	reqs.nlive--;
	TAILQ_INSERT_TAIL(&reqs.dead, r, entry);
	event_active(&reqs.reap_ev, EV_TIMEOUT, 1);
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
	struct evkeyvalq	*h;
	struct evkeyval		*kv;

	if (r->http == NULL)
		return;
	h = evhttp_request_get_output_headers(r->http);
	/* Looked for first: libevent compares a byte at a time, by call. */
	TAILQ_FOREACH(kv, h, next) {
		if (strcasecmp(kv->key, name) == 0) {
			evhttp_remove_header(h, name);
			break;
		}
	}
	evhttp_add_header(h, name, value);
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

void
server_body_release(struct request *r)
{
	struct evbuffer	*in;

	if (r->http == NULL)
		return;
	in = evhttp_request_get_input_buffer(r->http);
	evbuffer_drain(in, evbuffer_get_length(in));
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
request_urlencoded_one(const char *str, const char *name, char *buf,
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
	found = request_urlencoded_one(copy, name, buf, len);
	freezero(copy, blen);
	return (found);
}

/*
 * How often a field occurs in an application/x-www-form-urlencoded body
 * (server_form() wants exactly one); -1 if the body cannot be read as one.
 */
int
server_form_count(struct request *r, const char *name)
{
	struct evkeyvalq	 q;
	struct evkeyval		*kv;
	const uint8_t		*p;
	size_t			 blen;
	char			*copy;
	int			 n = 0;

	if (server_body(r, &p, &blen) == -1 || blen > SERVER_JSON_MAX)
		return (-1);
	if (blen == 0)
		return (0);
	copy = xmemdup0(p, blen);
	TAILQ_INIT(&q);
	if (evhttp_parse_query_str(copy, &q) == -1)
		n = -1;
	TAILQ_FOREACH(kv, &q, next) {
		if (n >= 0 && strcmp(kv->key, name) == 0)
			n++;
	}
	evhttp_clear_headers(&q);
	freezero(copy, blen);
	return (n);
}

/*
 * This proxy's origin (scheme://host[:port], no default port, lower
 * case), as a browser names it in Origin, from server.public_url.
 */
static void
request_origin(const struct config *c, char *buf, size_t len)
{
	const char	*u = c->server_public_url, *h;
	size_t		 n, i;

	h = strstr(u, "://");
	h = h != NULL ? h + 3 : u;
	n = (size_t)(h - u) + strcspn(h, "/");
	if (n >= len)
		n = len - 1;
	for (i = 0; i < n; i++)
		buf[i] = (char)tolower((unsigned char)u[i]);
	buf[n] = '\0';
	if (n > 4 && strcmp(buf + n - 4, ":443") == 0 &&
	    strncmp(buf, "https://", 8) == 0)
		buf[n - 4] = '\0';
	else if (n > 3 && strcmp(buf + n - 3, ":80") == 0 &&
	    strncmp(buf, "http://", 7) == 0)
		buf[n - 3] = '\0';
}

/*
 * Did the post come from a page of this origin? Sec-Fetch-Site, Origin and
 * Referer, whichever the browser sent; at least one of the last two. The
 * pages whose forms post back (RF_SAME_ORIGIN) keep same-origin referrers
 * for this.
 */
int
server_same_origin(struct request *r)
{
	const char	*sfs = server_header(r, "Sec-Fetch-Site");
	const char	*origin = server_header(r, "Origin");
	const char	*referer = server_header(r, "Referer");
	char		 ours[512];
	size_t		 n;

	request_origin(r->cfg, ours, sizeof ours);
	n = strlen(ours);
	if (sfs != NULL && strcmp(sfs, "same-origin") != 0)
		return (0);
	if (origin == NULL && referer == NULL)
		return (0);
	if (origin != NULL && strcasecmp(origin, ours) != 0)
		return (0);
	if (referer != NULL && (strncasecmp(referer, ours, n) != 0 ||
	    referer[n] != '/'))
		return (0);
	return (1);
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
	return (request_urlencoded_one(r->query, name, buf, len));
}
