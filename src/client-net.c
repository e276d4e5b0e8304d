/*
 * client-net.c: the laptop client on the network: its own event loop and
 * resolver, the outbound HTTP client (http-client.c) toward the proxy,
 * calls to the proxy's JSON API (waited for by the commands, or with a
 * callback for the relay), and the refresh of an access token: take the
 * profile's lock, read the session again, rotate the refresh token
 * unless another process just did, save, let go.
 */

#include <sys/types.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include <netinet/in.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "bsp.h"
#include "client.h"
#include "crypto.h"

#define CLIENT_LOCK_RETRY_MS	50

/*
 * Start the loop, the resolver and the HTTP client, trusting what the
 * session says for its proxy: its CA file (checked first: nobody else may
 * change it) and its key pin, checked on every handshake.
 */
int
client_loop_init(const struct client_session *s, char **cause)
{
	struct hc_timeouts	to = { 10000, 60000, 60000, 120000 };
	uint8_t			pin[32];
	const char		*ca_file = s->ca_file;

	if (ca_file != NULL && client_ca_file_check(ca_file, cause) == -1)
		return (-1);
	if (s->pin != NULL && client_pin_parse(s->pin, pin) == -1) {
		xasprintf(cause, "%s: the pin is not sha256//BASE64", s->path);
		return (-1);
	}

	signal(SIGPIPE, SIG_IGN);
	if ((bsp_base = event_base_new()) == NULL)
		fatalx("cannot create the event loop");
	if ((bsp_dns = evdns_base_new(bsp_base,
	    EVDNS_BASE_INITIALIZE_NAMESERVERS)) == NULL &&
	    (bsp_dns = evdns_base_new(bsp_base, 0)) == NULL)
		fatalx("evdns_base_new");
	if (hc_init(ca_file, cause) == -1) {
		client_loop_free();
		return (-1);
	}
	hc_set_spki_pin(s->pin != NULL ? pin : NULL);
	hc_set_timeouts(&to);
	return (0);
}

void
client_loop_free(void)
{
	if (bsp_base == NULL)
		return;
	hc_shutdown();
	/* Let the client free what it queued for a later pass. */
	event_base_loop(bsp_base, EVLOOP_NONBLOCK);
	if (bsp_dns != NULL)
		evdns_base_free(bsp_dns, 0);
	event_base_free(bsp_base);
	bsp_dns = NULL;
	bsp_base = NULL;
}

/* The proxy of a session as an HTTP target; NULL with *cause. */
struct hc_target *
client_target(const struct client_session *s, char **cause)
{
	return (hc_target_new(s->proxy, cause));
}

void
client_answer_clear(struct client_answer *a)
{
	json_decref(a->json);
	if (a->body != NULL)
		freezero(a->body, a->len + 1);
	free(a->www_auth);
	memset(a, 0, sizeof *a);
}

/* Text from the network, made safe for a terminal (free it). */
char *
client_escape(const char *s)
{
	size_t	 len = strlen(s);
	char	*out = xmalloc(4 * len + 1);

	log_escape(s, len, out, 4 * len + 1);
	return (out);
}

/* One call in flight. */
struct client_call {
	void		(*cb)(struct client_answer *, void *);
	void		*arg;
};

static void
client_call_done(struct hc_req *req, const struct hc_result *res, void *arg)
{
	struct client_call	*c = arg;
	struct client_answer	 a;
	const char		*h;
	size_t			 len;

	memset(&a, 0, sizeof a);
	a.error = res->error;
	bsp_strlcpy(a.message, res->message != NULL ? res->message : "",
	    sizeof a.message);
	a.status = res->status;
	if (res->error == HC_OK && res->body != NULL) {
		len = evbuffer_get_length(res->body);
		a.body = xmalloc(len + 1);
		evbuffer_remove(res->body, a.body, len);
		a.body[len] = '\0';
		a.len = len;
		a.json = json_loadb(a.body, len, JSON_REJECT_DUPLICATES, NULL);
	}
	if (res->headers != NULL && (h = evhttp_find_header(res->headers,
	    "WWW-Authenticate")) != NULL)
		a.www_auth = xstrdup(h);
	c->cb(&a, c->arg);
	client_answer_clear(&a);
	free(c);
}

/*
 * Start a call to the proxy: path is below the proxy's base URL; bearer,
 * content type and body may be NULL. The callback gets the answer (valid
 * during the call only). NULL if the request is invalid (never happens
 * with our own paths; the reason is printed).
 */
struct hc_req *
client_call_start(struct hc_target *t, const char *method, const char *path,
    const char *bearer, const char *ctype, const char *body, size_t len,
    void (*cb)(struct client_answer *, void *), void *arg)
{
	struct hc_header	 h[4];
	struct hc_req		*req;
	struct client_call	*c;
	const char		*base = hc_target_path(t);
	char			*full, *auth = NULL, *cause = NULL;
	size_t			 n = 0, blen = strlen(base);

	while (blen > 0 && base[blen - 1] == '/')
		blen--;
	xasprintf(&full, "%.*s%s", (int)blen, base, path);
	h[n].name = "Accept";
	h[n++].value = "application/json";
	h[n].name = "User-Agent";
	h[n++].value = BSP_NAME "/" PACKAGE_VERSION;
	if (bearer != NULL) {
		xasprintf(&auth, "Bearer %s", bearer);
		h[n].name = "Authorization";
		h[n++].value = auth;
	}
	if (ctype != NULL) {
		h[n].name = "Content-Type";
		h[n++].value = ctype;
	}
	c = xcalloc(1, sizeof *c);
	c->cb = cb;
	c->arg = arg;
	req = hc_fetch(t, method, full, h, n, body, body != NULL ? len : 0,
	    CLIENT_BODY_MAX, client_call_done, c, &cause);
	if (req == NULL) {
		fprintf(stderr, "%s: %s\n", BSP_NAME, cause);
		free(cause);
		free(c);
	}
	freezero_str(auth);
	free(full);
	return (req);
}

struct client_wait {
	int			 done;
	struct client_answer	*out;
};

static void
client_call_wait_cb(struct client_answer *a, void *arg)
{
	struct client_wait	*w = arg;

	*w->out = *a;
	memset(a, 0, sizeof *a);	/* moved out */
	w->done = 1;
}

/* A call, waited for on the loop. Returns 0, or -1 if it was invalid. */
int
client_call(struct hc_target *t, const char *method, const char *path,
    const char *bearer, const char *ctype, const char *body, size_t len,
    struct client_answer *out)
{
	struct client_wait	w;

	memset(out, 0, sizeof *out);
	memset(&w, 0, sizeof w);
	w.out = out;
	if (client_call_start(t, method, path, bearer, ctype, body, len,
	    client_call_wait_cb, &w) == NULL)
		return (-1);
	while (!w.done)
		event_base_loop(bsp_base, EVLOOP_ONCE);
	return (0);
}

/* The OAuth "error" of an answer, or NULL. */
const char *
client_oauth_error(const struct client_answer *a)
{
	return (json_string_value(json_object_get(a->json, "error")));
}

/*
 * What a failed call means for the command: a CLIENT_EXIT_* status and
 * *cause (what was asked, of which proxy, what came back).
 */
int
client_answer_exit(const struct client_answer *a, const char *what,
    const char *proxy, char **cause)
{
	const char	*d;
	char		*e;

	if (a->error != HC_OK) {
		xasprintf(cause, "cannot reach the proxy at %s (%s): %s", proxy,
		    what, a->message[0] != '\0' ? a->message :
		    hc_error_name(a->error));
		return (CLIENT_EXIT_PROXY);
	}
	d = json_string_value(json_object_get(a->json, "error_description"));
	if (d == NULL)
		d = json_string_value(json_object_get(a->json, "message"));
	if (d == NULL)
		d = json_string_value(json_object_get(json_object_get(a->json,
		    "error"), "message"));
	e = client_escape(d != NULL ? d : "no reason given");
	xasprintf(cause, "the proxy at %s answered %d to %s: %s", proxy,
	    a->status, what, e);
	free(e);
	if (a->status == 404)
		return (CLIENT_EXIT_ABSENT);
	if (a->status == 401)
		return (CLIENT_EXIT_SIGNIN);
	return (CLIENT_EXIT_PROXY);
}

/* The refresh, a small state machine. */
enum client_refresh_state {
	CR_LOCKING,
	CR_POSTING,
	CR_DONE,
};

static const char *const client_refresh_states[] = {
	"locking", "posting", "done",
};

struct client_refresh {
	enum client_refresh_state  state;
	struct client_session	*s;
	int			 force;
	int			 lockfd;
	char			*seen;		/* the access token we had */
	double			 deadline;
	struct event		 ev;
	struct hc_target	*t;
	struct hc_req		*req;
	void			(*cb)(int, const char *, void *);
	void			*arg;
};

static void	client_refresh_lock_cb(int, short, void *);

static void
client_refresh_enter(struct client_refresh *r, enum client_refresh_state st)
{
	log_debug("refresh of profile %s: %s -> %s", r->s->profile,
	    client_refresh_states[r->state], client_refresh_states[st]);
	r->state = st;
}

static void
client_refresh_free(struct client_refresh *r)
{
	event_del(&r->ev);
	client_unlock(r->lockfd);
	freezero_str(r->seen);
	if (r->t != NULL)
		hc_target_free(r->t);
	free(r);
}

/* The end: tell the caller, free. */
static void
client_refresh_finish(struct client_refresh *r, int rc, const char *why)
{
	void	(*cb)(int, const char *, void *) = r->cb;
	void	*arg = r->arg;

	client_refresh_enter(r, CR_DONE);
	client_unlock(r->lockfd);
	r->lockfd = -1;
	r->req = NULL;
	client_refresh_free(r);
	cb(rc, why, arg);
}

/*
 * The proxy has rotated the pair but the file could not be written: it
 * holds a spent refresh token, which would end the session (reuse) if
 * anyone used it. It goes; the new access token is used (printed) until
 * it expires, and the user is told, whatever the log level.
 */
static void
client_refresh_unsaved(struct client_session *s, const char *cause)
{
	(void)unlink(s->path);
	fprintf(stderr, "%s: the refreshed session could not be saved (%s); "
	    "its access token is used until it expires, and %s was removed "
	    "(its refresh token is spent): make room, then sign in again: %s "
	    "login %s\n", BSP_NAME, cause, s->path, BSP_NAME, s->proxy);
}

static void
client_refresh_answer(struct client_answer *a, void *arg)
{
	struct client_refresh	*r = arg;
	const char		*err = client_oauth_error(a);
	char			*cause = NULL;
	int			 rc;

	r->req = NULL;
	if (a->error == HC_OK && a->status == 200 && a->json != NULL) {
		if (client_session_from_grant(r->s, a->json, &cause) == -1) {
			client_refresh_finish(r, CLIENT_EXIT_PROXY, cause);
			free(cause);
			return;
		}
		if (client_session_write(r->s, &cause) == -1) {
			free(cause);	/* once more, then give up on it */
			cause = NULL;
			if (client_session_write(r->s, &cause) == -1)
				client_refresh_unsaved(r->s, cause);
			free(cause);
		}
		log_debug("profile %s: access token refreshed", r->s->profile);
		client_refresh_finish(r, CLIENT_EXIT_OK, NULL);
		return;
	}
	if (a->error == HC_OK && (a->status == 400 || a->status == 401) &&
	    err != NULL && strcmp(err, "invalid_grant") == 0) {
		client_refresh_finish(r, CLIENT_EXIT_SIGNIN, "the proxy has "
		    "ended this session (signed out, revoked, expired, or the "
		    "account was disabled)");
		return;
	}
	rc = client_answer_exit(a, "the refresh", r->s->proxy, &cause);
	client_refresh_finish(r, rc == CLIENT_EXIT_SIGNIN ? CLIENT_EXIT_PROXY :
	    rc == CLIENT_EXIT_ABSENT ? CLIENT_EXIT_PROXY : rc, cause);
	free(cause);
}

/* Locked: read the file again, then rotate unless someone else did. */
static void
client_refresh_locked(struct client_refresh *r)
{
	struct client_session	 cur;
	json_t			*j;
	char			*cause = NULL, *body;
	int			 rc;

	memset(&cur, 0, sizeof cur);
	cur.profile = xstrdup(r->s->profile);
	cur.path = xstrdup(r->s->path);
	cur.lock_path = xstrdup(r->s->lock_path);
	if ((rc = client_session_read(&cur, &cause)) != 0) {
		client_session_clear(&cur);
		if (rc == -2)
			client_refresh_finish(r, CLIENT_EXIT_SIGNIN,
			    "signed out (the session file is gone)");
		else
			client_refresh_finish(r, CLIENT_EXIT_LOCAL, cause);
		free(cause);
		return;
	}
	if (!client_session_same_proxy(&cur, r->s)) {
		/*
		 * Signed in again to another proxy meanwhile: its tokens
		 * must not go to the proxy this caller talks to (the
		 * relay's target is fixed), nor be adopted silently.
		 */
		xasprintf(&cause, "profile %s is now signed in to %s, not %s: "
		    "run this again (a relay: restart it)", r->s->profile,
		    cur.proxy, r->s->proxy);
		client_session_clear(&cur);
		client_refresh_finish(r, CLIENT_EXIT_LOCAL, cause);
		free(cause);
		return;
	}
	if (!crypto_streq(cur.access_token, r->seen)) {
		/* Another process refreshed (or signed in) a moment ago. */
		client_session_take(r->s, &cur);
		if (r->s->expires_at > now_wall()) {
			log_debug("profile %s: refreshed by another process",
			    r->s->profile);
			client_refresh_finish(r, CLIENT_EXIT_OK, NULL);
			return;
		}
	} else
		client_session_take(r->s, &cur);
	if (r->s->refresh_token == NULL) {
		client_refresh_finish(r, CLIENT_EXIT_SIGNIN, "the access token "
		    "has expired and the proxy gave this session no refresh "
		    "token");
		return;
	}
	if ((r->t = client_target(r->s, &cause)) == NULL) {
		client_refresh_finish(r, CLIENT_EXIT_LOCAL, cause);
		free(cause);
		return;
	}
	j = json_pack("{s:s}", "refresh_token", r->s->refresh_token);
	body = json_dumps(j, JSON_COMPACT);
	json_decref(j);
	client_refresh_enter(r, CR_POSTING);
	r->req = client_call_start(r->t, "POST", "/auth/refresh", NULL,
	    "application/json", body, strlen(body), client_refresh_answer, r);
	freezero_str(body);
	if (r->req == NULL)
		client_refresh_finish(r, CLIENT_EXIT_LOCAL,
		    "cannot build the refresh request");
}

static void
client_refresh_lock_cb(int fd, short ev, void *arg)
{
	struct client_refresh	*r = arg;
	struct timeval		 tv = { 0, CLIENT_LOCK_RETRY_MS * 1000 };
	char			*cause = NULL, *why;
	int			 rc;

	if ((rc = client_lock_try(r->s, &r->lockfd, &cause)) == 1) {
		client_refresh_locked(r);
		return;
	}
	if (rc == -1) {
		client_refresh_finish(r, CLIENT_EXIT_LOCAL, cause);
		free(cause);
		return;
	}
	if (now_mono() > r->deadline) {
		/*
		 * Longer than a refresh may take: the holder is stuck, most
		 * likely on a proxy that hangs. Like a proxy failure, then:
		 * a token that has not expired may still be used.
		 */
		xasprintf(&why, "another %s has held %s for %d seconds, longer "
		    "than a refresh may take; is the proxy at %s hanging?",
		    BSP_NAME, r->s->lock_path, client_lock_wait_secs(),
		    r->s->proxy);
		client_refresh_finish(r, CLIENT_EXIT_PROXY, why);
		free(why);
		return;
	}
	evtimer_add(&r->ev, &tv);
}

/*
 * Refresh s's access token: under the lock, after reading the file
 * again, unless another process has refreshed it meanwhile. force: the
 * proxy refused the token we hold (it is refreshed even if it looks
 * fresh here). The callback runs on a later loop pass with a
 * CLIENT_EXIT_* status and, on failure, why; s is updated in place.
 */
struct client_refresh *
client_refresh_start(struct client_session *s, int force,
    void (*cb)(int, const char *, void *), void *arg)
{
	struct client_refresh	*r;
	struct timeval		 tv = { 0, 0 };

	r = xcalloc(1, sizeof *r);
	r->s = s;
	r->force = force;
	r->lockfd = -1;
	r->seen = s->access_token != NULL ? xstrdup(s->access_token) : NULL;
	r->deadline = now_mono() + client_lock_wait_secs();
	r->cb = cb;
	r->arg = arg;
	r->state = CR_LOCKING;
	evtimer_assign(&r->ev, bsp_base, client_refresh_lock_cb, r);
	evtimer_add(&r->ev, &tv);
	return (r);
}

/* Stop a refresh without its callback (the relay stopping). */
void
client_refresh_cancel(struct client_refresh *r)
{
	if (r->req != NULL)
		hc_cancel(r->req);
	client_refresh_free(r);
}

struct client_refresh_waiter {
	int	 done;
	int	 rc;
	char	*why;
};

static void
client_refresh_wait_cb(int rc, const char *why, void *arg)
{
	struct client_refresh_waiter	*w = arg;

	w->rc = rc;
	w->why = why != NULL ? xstrdup(why) : NULL;
	w->done = 1;
}

/* A refresh, waited for; *why is allocated on failure. */
int
client_refresh_wait(struct client_session *s, int force, char **why)
{
	struct client_refresh_waiter	w;

	memset(&w, 0, sizeof w);
	client_refresh_start(s, force, client_refresh_wait_cb, &w);
	while (!w.done)
		event_base_loop(bsp_base, EVLOOP_ONCE);
	*why = w.why;
	return (w.rc);
}

/*
 * An evhttp listener on a loopback address only (host "127.0.0.1" or
 * "::1", port "0" for any); *bound is the port it got. NULL with *cause.
 */
struct evhttp *
client_listen(const char *host, const char *port, int *bound, char **cause)
{
	struct evhttp			*http;
	struct evhttp_bound_socket	*b;
	struct sockaddr_storage		 ss;
	socklen_t			 sl = sizeof ss;
	char				*end;
	long				 p;

	p = strtol(port, &end, 10);
	if (*port == '\0' || *end != '\0' || p < 0 || p > 65535) {
		xasprintf(cause, "%s is not a port number", port);
		return (NULL);
	}
	if (!url_is_loopback_host(host) || strcasecmp(host, "localhost") ==
	    0) {
		xasprintf(cause, "%s is not a loopback address (127.0.0.1 or "
		    "::1): this listener is for this machine only", host);
		return (NULL);
	}
	if ((http = evhttp_new(bsp_base)) == NULL)
		fatalx("evhttp_new");
	if ((b = evhttp_bind_socket_with_handle(http, host,
	    (ev_uint16_t)p)) == NULL) {
		xasprintf(cause, "cannot listen on %s port %ld: %s", host, p,
		    strerror(errno));
		evhttp_free(http);
		return (NULL);
	}
	if (getsockname(evhttp_bound_socket_get_fd(b),
	    (struct sockaddr *)&ss, &sl) == -1)
		fatal("getsockname");
	*bound = ntohs(ss.ss_family == AF_INET ?
	    ((struct sockaddr_in *)&ss)->sin_port :
	    ((struct sockaddr_in6 *)&ss)->sin6_port);
	return (http);
}

struct client_lock_waiter {
	const struct client_session	*s;
	int				 rc;
	int				*fd;
	char				*cause;
	double				 deadline;
	int				 done;
	struct event			 ev;
};

static void
client_lock_wait_cb(int fd, short ev, void *arg)
{
	struct client_lock_waiter	*w = arg;
	struct timeval			 tv = { 0, CLIENT_LOCK_RETRY_MS * 1000 };

	if ((w->rc = client_lock_try(w->s, w->fd, &w->cause)) != 0) {
		w->done = 1;
		return;
	}
	if (now_mono() > w->deadline) {
		xasprintf(&w->cause, "another %s has held %s for %d seconds, "
		    "longer than a refresh may take; is the proxy at %s "
		    "hanging?", BSP_NAME, w->s->lock_path,
		    client_lock_wait_secs(), w->s->proxy);
		w->rc = -2;
		w->done = 1;
		return;
	}
	evtimer_add(&w->ev, &tv);
}

/*
 * Take the profile's lock, waiting on the loop: 0, -1 with *cause, or -2
 * with *cause when another process held it too long (a hung proxy).
 */
int
client_lock_wait(const struct client_session *s, int *fd, char **cause)
{
	struct client_lock_waiter	w;
	struct timeval			tv = { 0, 0 };

	memset(&w, 0, sizeof w);
	w.s = s;
	w.fd = fd;
	w.deadline = now_mono() + client_lock_wait_secs();
	evtimer_assign(&w.ev, bsp_base, client_lock_wait_cb, &w);
	evtimer_add(&w.ev, &tv);
	while (!w.done)
		event_base_loop(bsp_base, EVLOOP_ONCE);
	event_del(&w.ev);
	if (w.rc == 1)
		return (0);
	*cause = w.cause;
	return (w.rc == -2 ? -2 : -1);
}

/* A JSON body (compact), for the proxy's JSON API; the value is freed. */
char *
client_json_text(json_t *j)
{
	char	*s;

	if (j == NULL || (s = json_dumps(j, JSON_COMPACT)) == NULL)
		fatalx("%s: json", __func__);
	json_decref(j);
	return (s);
}
