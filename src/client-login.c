/*
 * client-login.c: "login" and "logout" on the laptop.
 *
 * login URL signs in to the proxy at URL in one of two ways:
 *   browser  the proxy's API flow with a loopback redirect (RFC 8252):
 *            a listener on 127.0.0.1, PKCE S256 (RFC 7636), the
 *            authorization URL opened in the browser (or printed), the
 *            code caught on the listener and exchanged at /auth/token;
 *   device   the device authorization grant (RFC 8628): a user code to
 *            enter on the proxy's /device page from any browser, and the
 *            token endpoint polled until the sign-in is approved,
 *            refused or expired. Chosen with --device, or when no
 *            browser can be opened here (no display, no $BROWSER).
 * Either way the session is saved to the profile's file.
 *
 * logout ends the session on the proxy (POST /auth/logout with the
 * refresh token) and removes the file.
 */

#include <sys/types.h>
#include <sys/stat.h>

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "bsp.h"
#include "client.h"
#include "crypto.h"
#include "web.h"

#define LOGIN_BROWSER_WAIT	300	/* seconds for the browser step */
#define LOGIN_CALLBACK_PATH	"/callback"
#define LOGIN_DEVICE_GRANT	"urn:ietf:params:oauth:grant-type:device_code"
#define LOGIN_POLL_DEFAULT	5
#define LOGIN_POLL_MAX		60

enum login_state {
	LS_START,
	LS_BROWSER_WAIT,	/* the listener waits for the redirect */
	LS_EXCHANGE,		/* the code at /auth/token */
	LS_DEVICE_POLL,		/* polling the token endpoint */
	LS_DONE,
};

static const char *const login_states[] = {
	"start", "browser-wait", "exchange", "device-poll", "done",
};

struct login {
	enum login_state	 state;
	struct client_session	 s;
	struct hc_target	*t;
	const char		*provider_opt;
	const char		*client_id;
	int			 device;	/* --device */
	int			 no_browser;	/* --no-browser */
	const char		*port;

	/* The browser flow. */
	struct evhttp		*http;
	int			 bound;
	char			*redirect_uri;
	char			*provider;
	char			 verifier[64];
	char			*state_param;
	char			*code;
	struct evhttp_request	*pending;	/* the browser, answered last */
	char			*error;		/* from the IdP or proxy */
	int			 done;
	struct event		 timeout;

	/* The device flow. */
	struct hc_target	*origin;
	char			*token_path;
	char			*device_code;
	long			 interval;
	double			 deadline;
	struct event		 poll;
	int			 rc;
	char			*why;
	json_t			*grant;
};

static void
login_enter(struct login *l, enum login_state st)
{
	log_debug("login: %s -> %s", login_states[l->state], login_states[st]);
	l->state = st;
}

/* Is a URL one we may hand to a browser: https, or http on loopback? */
static int
login_url_openable(const char *u)
{
	char	*norm = NULL;
	int	 ok;

	if (strncmp(u, "https://", 8) != 0 && strncmp(u, "http://", 7) != 0)
		return (0);
	if (!str_is_printable(u, strlen(u)) || strpbrk(u, " \"<>\\") != NULL)
		return (0);
	if (strncmp(u, "https://", 8) == 0)
		return (1);
	/* Plain http only to this machine. */
	{
		char	*cut = xstrdup(u), *q;

		if ((q = strpbrk(cut + 7, "?#")) != NULL)
			*q = '\0';
		ok = client_url_normalize(cut, &norm, NULL) == 0;
		free(cut);
		free(norm);
	}
	return (ok);
}

/* A percent-encoded copy for a query string. */
static char *
login_enc(const char *s)
{
	char	*e = evhttp_encode_uri(s);

	if (e == NULL)
		fatalx("evhttp_encode_uri");
	return (e);
}

/* A small page for the browser at the end of the loopback flow. */
static void
login_page(struct evhttp_request *req, int code, const char *title,
    const char *text)
{
	struct evbuffer	*b = evbuffer_new();
	char		*et = web_escape(title), *ex = web_escape(text);

	if (b == NULL)
		fatalx("evbuffer_new");
	evbuffer_add_printf(b, "<!DOCTYPE html>\n<html lang=\"en\"><head>"
	    "<meta charset=\"utf-8\"><title>%s</title></head><body><h1>%s"
	    "</h1><p>%s</p></body></html>\n", et, et, ex);
	evhttp_add_header(evhttp_request_get_output_headers(req),
	    "Content-Type", "text/html; charset=utf-8");
	evhttp_add_header(evhttp_request_get_output_headers(req),
	    "Content-Security-Policy", "default-src 'none'");
	evhttp_add_header(evhttp_request_get_output_headers(req),
	    "Cache-Control", "no-store");
	evhttp_add_header(evhttp_request_get_output_headers(req),
	    "Referrer-Policy", "no-referrer");
	evhttp_send_reply(req, code, code == 200 ? "OK" : "Error", b);
	evbuffer_free(b);
	free(et);
	free(ex);
}

static void
login_sent(struct evhttp_request *req, void *arg)
{
	int	*sent = arg;

	*sent = 1;
}

static void
login_sent_timeout(int fd, short ev, void *arg)
{
	int	*sent = arg;

	*sent = 1;
}

/*
 * The last page of the loopback flow: sent, and waited for (at most two
 * seconds) so that it leaves before the listener closes.
 */
static void
login_final_page(struct login *l, int code, const char *title,
    const char *text)
{
	struct event	ev;
	struct timeval	tv = { 2, 0 };
	int		sent = 0;

	if (l->pending == NULL)
		return;
	evhttp_request_set_on_complete_cb(l->pending, login_sent, &sent);
	login_page(l->pending, code, title, text);
	l->pending = NULL;
	evtimer_assign(&ev, bsp_base, login_sent_timeout, &sent);
	evtimer_add(&ev, &tv);
	while (!sent)
		event_base_loop(bsp_base, EVLOOP_ONCE);
	event_del(&ev);
}

/* The browser comes back to the loopback listener. */
static void
login_callback(struct evhttp_request *req, void *arg)
{
	struct login		*l = arg;
	const struct evhttp_uri	*uri = evhttp_request_get_evhttp_uri(req);
	const char		*host, *path, *q, *v, *e, *d;
	struct evkeyvalq	 params;
	char			*msg;

	host = evhttp_find_header(evhttp_request_get_input_headers(req),
	    "Host");
	if (!client_host_loopback(host)) {
		login_page(req, 403, "Refused", "This listener answers only "
		    "requests for 127.0.0.1.");
		return;
	}
	path = uri != NULL ? evhttp_uri_get_path(uri) : NULL;
	if (path == NULL || strcmp(path, LOGIN_CALLBACK_PATH) != 0 ||
	    evhttp_request_get_command(req) != EVHTTP_REQ_GET ||
	    l->state != LS_BROWSER_WAIT || l->pending != NULL) {
		login_page(req, 404, "Not found", "Nothing here.");
		return;
	}
	TAILQ_INIT(&params);
	q = evhttp_uri_get_query(uri);
	if (q == NULL || evhttp_parse_query_str(q, &params) == -1) {
		evhttp_clear_headers(&params);
		login_page(req, 400, "Not a sign-in", "This address is where "
		    "the sign-in comes back; this request is not one.");
		return;
	}
	v = evhttp_find_header(&params, "state");
	if (v == NULL || !crypto_streq(v, l->state_param)) {
		evhttp_clear_headers(&params);
		login_page(req, 400, "Not this sign-in", "This is not the "
		    "sign-in that " BSP_NAME " started: go back to the "
		    "terminal.");
		return;
	}
	if ((e = evhttp_find_header(&params, "error")) != NULL) {
		d = evhttp_find_header(&params, "error_description");
		xasprintf(&msg, "the identity provider refused the sign-in: "
		    "%s%s%s", e, d != NULL ? ": " : "", d != NULL ? d : "");
		l->error = client_escape(msg);
		free(msg);
		evhttp_clear_headers(&params);
		l->pending = req;
		l->done = 1;
		return;
	}
	if ((v = evhttp_find_header(&params, "code")) == NULL ||
	    strlen(v) > 4096) {
		evhttp_clear_headers(&params);
		login_page(req, 400, "Not a sign-in", "The sign-in came back "
		    "without a code.");
		return;
	}
	l->code = xstrdup(v);
	evhttp_clear_headers(&params);
	/* Answered once the code is exchanged. */
	l->pending = req;
	l->done = 1;
}

static void
login_timeout(int fd, short ev, void *arg)
{
	struct login	*l = arg;

	if (l->state == LS_BROWSER_WAIT) {
		xasprintf(&l->error, "no sign-in came back from the browser "
		    "within %d minutes", LOGIN_BROWSER_WAIT / 60);
		l->done = 1;
	}
}

/* GET /auth/providers: pick the one to use. */
static int
login_pick_provider(struct login *l, char **cause)
{
	struct client_answer	 a;
	json_t			*list, *p;
	size_t			 i, n;
	const char		*name;
	char			 line[64], *end, *e;
	long			 k;
	int			 rc;

	if (l->provider_opt != NULL) {
		l->provider = xstrdup(l->provider_opt);
		return (0);
	}
	if (client_call(l->t, "GET", "/auth/providers", NULL, NULL, NULL, 0,
	    &a) == -1)
		return (CLIENT_EXIT_LOCAL);
	if (a.error != HC_OK || a.status != 200) {
		rc = client_answer_exit(&a, "GET /auth/providers", l->s.proxy,
		    cause);
		client_answer_clear(&a);
		return (rc == CLIENT_EXIT_SIGNIN ? CLIENT_EXIT_PROXY : rc);
	}
	list = json_object_get(a.json, "providers");
	n = json_array_size(list);
	for (i = 0; i < n; i++) {
		name = json_string_value(json_object_get(json_array_get(list,
		    i), "name"));
		if (name == NULL || strlen(name) > 32 ||
		    strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789_-") !=
		    strlen(name)) {
			xasprintf(cause, "the proxy at %s lists a provider "
			    "without a usable name", l->s.proxy);
			client_answer_clear(&a);
			return (CLIENT_EXIT_PROXY);
		}
	}
	if (n == 0) {
		xasprintf(cause, "the proxy at %s has no sign-in provider",
		    l->s.proxy);
		client_answer_clear(&a);
		return (CLIENT_EXIT_PROXY);
	}
	if (n == 1) {
		l->provider = xstrdup(json_string_value(json_object_get(
		    json_array_get(list, 0), "name")));
		client_answer_clear(&a);
		return (0);
	}
	if (!isatty(STDIN_FILENO)) {
		fprintf(stderr, "%s: the proxy has several sign-in providers; "
		    "choose one with --provider:\n", BSP_NAME);
		json_array_foreach(list, i, p) {
			e = client_escape(json_string_value(json_object_get(p,
			    "display_name")) != NULL ? json_string_value(
			    json_object_get(p, "display_name")) : "");
			fprintf(stderr, "  %s\t%s\n", json_string_value(
			    json_object_get(p, "name")), e);
			free(e);
		}
		client_answer_clear(&a);
		return (CLIENT_EXIT_USAGE);
	}
	fprintf(stderr, "Sign in with:\n");
	json_array_foreach(list, i, p) {
		e = client_escape(json_string_value(json_object_get(p,
		    "display_name")) != NULL ? json_string_value(
		    json_object_get(p, "display_name")) : json_string_value(
		    json_object_get(p, "name")));
		fprintf(stderr, "  %zu) %s\n", i + 1, e);
		free(e);
	}
	fprintf(stderr, "Number: ");
	if (fgets(line, sizeof line, stdin) == NULL ||
	    (k = strtol(line, &end, 10)) < 1 || (size_t)k > n ||
	    (*end != '\n' && *end != '\0')) {
		xasprintf(cause, "no provider chosen");
		client_answer_clear(&a);
		return (CLIENT_EXIT_USAGE);
	}
	l->provider = xstrdup(json_string_value(json_object_get(
	    json_array_get(list, (size_t)k - 1), "name")));
	client_answer_clear(&a);
	return (0);
}

/* Who the new token belongs to (/auth/validate), into the session. */
static int
login_whoami(struct login *l, char **cause)
{
	struct client_answer	a;
	int			rc;

	if (client_call(l->t, "GET", "/auth/validate", l->s.access_token,
	    NULL, NULL, 0, &a) == -1)
		return (CLIENT_EXIT_LOCAL);
	if (a.error != HC_OK || a.status != 200) {
		rc = client_answer_exit(&a, "GET /auth/validate", l->s.proxy,
		    cause);
		client_answer_clear(&a);
		return (rc == CLIENT_EXIT_ABSENT ? CLIENT_EXIT_PROXY : rc);
	}
	free(l->s.sub);
	free(l->s.email);
	free(l->s.provider);
	l->s.sub = json_string_value(json_object_get(a.json, "sub")) != NULL ?
	    xstrdup(json_string_value(json_object_get(a.json, "sub"))) : NULL;
	l->s.email = json_string_value(json_object_get(a.json, "email")) !=
	    NULL ? xstrdup(json_string_value(json_object_get(a.json,
	    "email"))) : NULL;
	l->s.provider = json_string_value(json_object_get(a.json,
	    "provider")) != NULL ? xstrdup(json_string_value(json_object_get(
	    a.json, "provider"))) : NULL;
	client_answer_clear(&a);
	return (0);
}

/* Save the new session under the lock. */
static int
login_save(struct login *l, char **cause)
{
	int	fd, rc;

	if ((rc = client_lock_wait(&l->s, &fd, cause)) != 0)
		return (rc == -2 ? CLIENT_EXIT_PROXY : CLIENT_EXIT_LOCAL);
	l->s.signed_in_at = now_wall();
	if (client_session_write(&l->s, cause) == -1) {
		client_unlock(fd);
		return (CLIENT_EXIT_LOCAL);
	}
	client_unlock(fd);
	return (0);
}

/* The browser flow, from the listener to the saved session. */
static int
login_browser(struct login *l, char **cause)
{
	struct client_answer	 a;
	struct timeval		 tv = { LOGIN_BROWSER_WAIT, 0 };
	uint8_t			 raw[32], hash[CRYPTO_HASH_LEN];
	char			 challenge[64], portbuf[16];
	char			*path, *ru, *url, *body, *msg;
	const char		*au, *st;
	int			 rc, opened = 0;

	if ((rc = login_pick_provider(l, cause)) != 0)
		return (rc);
	if ((l->http = client_listen("127.0.0.1", l->port != NULL ? l->port :
	    "0", &l->bound, cause)) == NULL)
		return (CLIENT_EXIT_LOCAL);
	evhttp_set_gencb(l->http, login_callback, l);
	evhttp_set_allowed_methods(l->http, EVHTTP_REQ_GET);
	evhttp_set_max_headers_size(l->http, 16384);
	evhttp_set_max_body_size(l->http, 0);
	evhttp_set_timeout(l->http, 30);
	snprintf(portbuf, sizeof portbuf, "%d", l->bound);
	xasprintf(&l->redirect_uri, "http://127.0.0.1:%s%s", portbuf,
	    LOGIN_CALLBACK_PATH);

	/* PKCE (RFC 7636): a verifier only we know, its S256 challenge. */
	crypto_random(raw, sizeof raw);
	crypto_b64url_encode(raw, sizeof raw, l->verifier, sizeof l->verifier);
	memzero(raw, sizeof raw);
	crypto_sha256(l->verifier, strlen(l->verifier), hash);
	crypto_b64url_encode(hash, sizeof hash, challenge, sizeof challenge);

	ru = login_enc(l->redirect_uri);
	xasprintf(&path, "/auth/authorize/%s?redirect_uri=%s&code_challenge="
	    "%s&code_challenge_method=S256", l->provider, ru, challenge);
	free(ru);
	rc = client_call(l->t, "GET", path, NULL, NULL, NULL, 0, &a);
	free(path);
	if (rc == -1)
		return (CLIENT_EXIT_LOCAL);
	if (a.error != HC_OK || a.status != 200) {
		rc = client_answer_exit(&a, "GET /auth/authorize", l->s.proxy,
		    cause);
		client_answer_clear(&a);
		return (rc == CLIENT_EXIT_ABSENT || rc == CLIENT_EXIT_SIGNIN ?
		    CLIENT_EXIT_PROXY : rc);
	}
	au = json_string_value(json_object_get(a.json, "authorization_url"));
	st = json_string_value(json_object_get(a.json, "state"));
	if (au == NULL || st == NULL || !login_url_openable(au)) {
		xasprintf(cause, "the proxy at %s gave no usable authorization "
		    "URL (https, or http on this machine)", l->s.proxy);
		client_answer_clear(&a);
		return (CLIENT_EXIT_PROXY);
	}
	url = xstrdup(au);
	l->state_param = xstrdup(st);
	client_answer_clear(&a);

	login_enter(l, LS_BROWSER_WAIT);
	if (!l->no_browser && client_browser_available() &&
	    client_browser_open(url) == 0)
		opened = 1;
	if (opened)
		fprintf(stderr, "Opened the sign-in page in your browser. If it "
		    "did not open, visit:\n\n    %s\n\n", url);
	else
		fprintf(stderr, "Open this page in a browser on this machine "
		    "to sign in:\n\n    %s\n\n(From another machine, forward "
		    "the port first: ssh -L %d:127.0.0.1:%d ...)\n", url,
		    l->bound, l->bound);
	fprintf(stderr, "Waiting for the sign-in to come back to %s ...\n",
	    l->redirect_uri);
	free(url);
	evtimer_assign(&l->timeout, bsp_base, login_timeout, l);
	evtimer_add(&l->timeout, &tv);
	while (!l->done)
		event_base_loop(bsp_base, EVLOOP_ONCE);
	event_del(&l->timeout);
	if (l->code == NULL) {
		login_final_page(l, 403, "Sign-in refused", "The identity "
		    "provider refused the sign-in. The terminal says why.");
		*cause = l->error;
		l->error = NULL;
		return (CLIENT_EXIT_SIGNIN);
	}

	login_enter(l, LS_EXCHANGE);
	body = client_json_text(json_pack("{s:s,s:s,s:s,s:s,s:s}", "provider",
	    l->provider, "authorization_code", l->code, "redirect_uri",
	    l->redirect_uri, "state", l->state_param, "code_verifier",
	    l->verifier));
	rc = client_call(l->t, "POST", "/auth/token", NULL, "application/json",
	    body, strlen(body), &a);
	freezero_str(body);
	if (rc == -1)
		return (CLIENT_EXIT_LOCAL);
	if (a.error != HC_OK || a.status != 200 || client_session_from_grant(
	    &l->s, a.json, cause) == -1) {
		if (*cause == NULL) {
			rc = client_answer_exit(&a, "the sign-in (POST "
			    "/auth/token)", l->s.proxy, cause);
			if (a.error == HC_OK && a.status < 500)
				rc = CLIENT_EXIT_SIGNIN;
		} else
			rc = CLIENT_EXIT_PROXY;
		client_answer_clear(&a);
		login_final_page(l, 403, "Sign-in failed", "The proxy did "
		    "not accept the sign-in. The terminal says why.");
		return (rc);
	}
	client_answer_clear(&a);
	if ((rc = login_whoami(l, cause)) != 0 ||
	    (rc = login_save(l, cause)) != 0) {
		login_final_page(l, 500, "Sign-in not saved", "You signed "
		    "in, but the session could not be saved. The terminal says "
		    "why.");
		return (rc);
	}
	xasprintf(&msg, "You are signed in to %s%s%s. You can close this tab "
	    "and go back to the terminal.", l->s.proxy, l->s.email != NULL ?
	    " as " : "", l->s.email != NULL ? l->s.email : "");
	login_final_page(l, 200, "Signed in", msg);
	free(msg);
	return (0);
}

/* The device flow's endpoints must be on the proxy itself. */
static int
login_same_origin(const char *base, const char *u, char **path)
{
	const char	*h = strstr(base, "://");
	size_t		 olen;

	*path = NULL;
	if (u == NULL || h == NULL)
		return (-1);
	h += 3;
	olen = (size_t)(h - base) + strcspn(h, "/");
	if (strncmp(u, base, olen) != 0 || u[olen] != '/' ||
	    !str_is_printable(u, strlen(u)) || strpbrk(u, " #") != NULL)
		return (-1);
	*path = xstrdup(u + olen);
	return (0);
}

static void	login_poll_send(struct login *);

static void
login_poll_finish(struct login *l, int rc, const char *why)
{
	l->rc = rc;
	l->why = why != NULL ? xstrdup(why) : NULL;
	l->done = 1;
}

/* One answer of the token endpoint (RFC 8628 section 3.5). */
static void
login_poll_answer(struct client_answer *a, void *arg)
{
	struct login	*l = arg;
	struct timeval	 tv;
	const char	*err = client_oauth_error(a);
	char		*cause = NULL;
	int		 rc;

	if (a->error == HC_OK && a->status == 200 && a->json != NULL) {
		l->grant = json_incref(a->json);
		login_poll_finish(l, 0, NULL);
		return;
	}
	if (a->error == HC_OK && err != NULL && (a->status == 400 ||
	    a->status == 401 || a->status == 429)) {
		if (strcmp(err, "slow_down") == 0)
			l->interval += 5;
		if (strcmp(err, "authorization_pending") == 0 ||
		    strcmp(err, "slow_down") == 0) {
			if (l->interval > LOGIN_POLL_MAX)
				l->interval = LOGIN_POLL_MAX;
			if (now_mono() + (double)l->interval > l->deadline) {
				login_poll_finish(l, CLIENT_EXIT_SIGNIN, "the "
				    "code expired before the sign-in was "
				    "approved; run login again");
				return;
			}
			tv.tv_sec = l->interval;
			tv.tv_usec = 0;
			evtimer_add(&l->poll, &tv);
			return;
		}
		if (strcmp(err, "access_denied") == 0) {
			login_poll_finish(l, CLIENT_EXIT_SIGNIN, "the sign-in "
			    "was refused in the browser");
			return;
		}
		if (strcmp(err, "expired_token") == 0) {
			login_poll_finish(l, CLIENT_EXIT_SIGNIN, "the code "
			    "expired before the sign-in was approved; run login "
			    "again");
			return;
		}
	}
	rc = client_answer_exit(a, "the device sign-in (token endpoint)",
	    l->s.proxy, &cause);
	if (a->error != HC_OK || a->status >= 500 || a->status == 429) {
		/*
		 * RFC 8628 section 3.5: a connection that fails (or a proxy
		 * that is busy) is not an answer: wait twice as long, and
		 * keep polling until the code expires.
		 */
		l->interval = l->interval > LOGIN_POLL_MAX / 2 ?
		    LOGIN_POLL_MAX : l->interval * 2;
		if (now_mono() + (double)l->interval <= l->deadline) {
			fprintf(stderr, "%s: %s; trying again in %ld s\n",
			    BSP_NAME, cause, l->interval);
			free(cause);
			tv.tv_sec = l->interval;
			tv.tv_usec = 0;
			evtimer_add(&l->poll, &tv);
			return;
		}
		rc = CLIENT_EXIT_PROXY;
	}
	login_poll_finish(l, rc == CLIENT_EXIT_ABSENT ? CLIENT_EXIT_PROXY : rc,
	    cause);
	free(cause);
}

static void
login_poll_send(struct login *l)
{
	char	*body, *dc, *ci;

	dc = login_enc(l->device_code);
	ci = login_enc(l->client_id);
	xasprintf(&body, "grant_type=%s&device_code=%s&client_id=%s",
	    "urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Adevice_code", dc, ci);
	freezero_str(dc);
	free(ci);
	if (client_call_start(l->origin, "POST", l->token_path, NULL,
	    "application/x-www-form-urlencoded", body, strlen(body),
	    login_poll_answer, l) == NULL)
		login_poll_finish(l, CLIENT_EXIT_LOCAL, "cannot build the "
		    "token request");
	freezero_str(body);
}

static void
login_poll_cb(int fd, short ev, void *arg)
{
	login_poll_send(arg);
}

/*
 * The proxy's RFC 8414 metadata: the device and token endpoints (paths
 * on the proxy's own origin). CLIENT_EXIT_ABSENT if it has no device flow.
 */
static int
login_device_endpoints(struct login *l, char **dpath, char **cause)
{
	struct client_answer	 a;
	const char		*de, *te;
	char			*origin;
	const char		*h;
	int			 rc;

	*dpath = NULL;
	if (client_call(l->t, "GET", "/.well-known/oauth-authorization-server",
	    NULL, NULL, NULL, 0, &a) == -1)
		return (CLIENT_EXIT_LOCAL);
	if (a.error != HC_OK || a.status != 200) {
		rc = client_answer_exit(&a, "GET /.well-known/oauth-"
		    "authorization-server", l->s.proxy, cause);
		client_answer_clear(&a);
		return (rc == CLIENT_EXIT_SIGNIN ? CLIENT_EXIT_PROXY : rc);
	}
	de = json_string_value(json_object_get(a.json,
	    "device_authorization_endpoint"));
	te = json_string_value(json_object_get(a.json, "token_endpoint"));
	if (de == NULL) {
		xasprintf(cause, "the proxy at %s does not offer the device "
		    "sign-in (no device_authorization_endpoint in its "
		    "metadata); sign in with a browser instead (login without "
		    "--device)", l->s.proxy);
		client_answer_clear(&a);
		return (CLIENT_EXIT_ABSENT);
	}
	if (login_same_origin(l->s.proxy, de, dpath) == -1 || te == NULL ||
	    login_same_origin(l->s.proxy, te, &l->token_path) == -1) {
		free(*dpath);
		*dpath = NULL;
		xasprintf(cause, "the proxy at %s names device sign-in "
		    "endpoints that are not its own; refused", l->s.proxy);
		client_answer_clear(&a);
		return (CLIENT_EXIT_PROXY);
	}
	client_answer_clear(&a);
	h = strstr(l->s.proxy, "://") + 3;
	xasprintf(&origin, "%.*s", (int)(h - l->s.proxy + (long)strcspn(h,
	    "/")), l->s.proxy);
	l->origin = hc_target_new(origin, cause);
	free(origin);
	return (l->origin == NULL ? CLIENT_EXIT_LOCAL : 0);
}

/* The device flow (RFC 8628), from the user code to the saved session. */
static int
login_device(struct login *l, char **cause)
{
	struct client_answer	 a;
	struct timeval		 tv;
	const char		*dc, *uc, *vu, *vc;
	char			*dpath = NULL, *body, *ci, *euc, *evu;
	json_int_t		 exp, iv;
	int			 rc;

	if ((rc = login_device_endpoints(l, &dpath, cause)) != 0)
		return (rc);
	ci = login_enc(l->client_id);
	xasprintf(&body, "client_id=%s", ci);
	free(ci);
	rc = client_call(l->origin, "POST", dpath, NULL,
	    "application/x-www-form-urlencoded", body, strlen(body), &a);
	free(body);
	free(dpath);
	if (rc == -1)
		return (CLIENT_EXIT_LOCAL);
	if (a.error != HC_OK || a.status != 200) {
		rc = client_answer_exit(&a, "the device authorization",
		    l->s.proxy, cause);
		client_answer_clear(&a);
		return (rc == CLIENT_EXIT_SIGNIN ? CLIENT_EXIT_PROXY : rc);
	}
	dc = json_string_value(json_object_get(a.json, "device_code"));
	uc = json_string_value(json_object_get(a.json, "user_code"));
	vu = json_string_value(json_object_get(a.json, "verification_uri"));
	vc = json_string_value(json_object_get(a.json,
	    "verification_uri_complete"));
	exp = json_integer_value(json_object_get(a.json, "expires_in"));
	iv = json_integer_value(json_object_get(a.json, "interval"));
	if (dc == NULL || uc == NULL || vu == NULL || strlen(dc) > 1024 ||
	    strlen(uc) > 64 || !login_url_openable(vu) ||
	    (vc != NULL && !login_url_openable(vc)) || exp <= 0) {
		xasprintf(cause, "the proxy at %s gave an unusable device "
		    "authorization answer", l->s.proxy);
		client_answer_clear(&a);
		return (CLIENT_EXIT_PROXY);
	}
	l->device_code = xstrdup(dc);
	l->interval = iv > 0 ? (long)iv : LOGIN_POLL_DEFAULT;
	if (l->interval > LOGIN_POLL_MAX)
		l->interval = LOGIN_POLL_MAX;
	l->deadline = now_mono() + (double)exp;
	euc = client_escape(uc);
	evu = client_escape(vu);
	fprintf(stderr, "To sign in, open %s in a browser (on any device) and "
	    "enter the code\n\n    %s\n\n", evu, euc);
	if (vc != NULL)
		fprintf(stderr, "or open %s\n\n", vc);
	if (!l->no_browser && client_browser_available() &&
	    client_browser_open(vc != NULL ? vc : vu) == 0)
		fprintf(stderr, "(opened in your browser)\n");
	fprintf(stderr, "Waiting for the sign-in to be approved ...\n");
	free(euc);
	free(evu);
	client_answer_clear(&a);

	login_enter(l, LS_DEVICE_POLL);
	evtimer_assign(&l->poll, bsp_base, login_poll_cb, l);
	tv.tv_sec = l->interval;
	tv.tv_usec = 0;
	evtimer_add(&l->poll, &tv);
	while (!l->done)
		event_base_loop(bsp_base, EVLOOP_ONCE);
	event_del(&l->poll);
	if (l->rc != 0) {
		*cause = l->why;
		l->why = NULL;
		return (l->rc);
	}
	rc = client_session_from_grant(&l->s, l->grant, cause);
	json_decref(l->grant);
	l->grant = NULL;
	if (rc == -1)
		return (CLIENT_EXIT_PROXY);
	if ((rc = login_whoami(l, cause)) != 0)
		return (rc);
	return (login_save(l, cause));
}

enum {
	LOPT_PROFILE = 1,
	LOPT_DEVICE,
	LOPT_PROVIDER,
	LOPT_PORT,
	LOPT_CA_FILE,
	LOPT_NO_BROWSER,
	LOPT_CLIENT_ID,
	LOPT_PIN,
};

static const struct option login_options[] = {
	{ "profile", required_argument, NULL, LOPT_PROFILE },
	{ "device", no_argument, NULL, LOPT_DEVICE },
	{ "provider", required_argument, NULL, LOPT_PROVIDER },
	{ "port", required_argument, NULL, LOPT_PORT },
	{ "ca-file", required_argument, NULL, LOPT_CA_FILE },
	{ "no-browser", no_argument, NULL, LOPT_NO_BROWSER },
	{ "client-id", required_argument, NULL, LOPT_CLIENT_ID },
	{ "pin", required_argument, NULL, LOPT_PIN },
	{ NULL, 0, NULL, 0 },
};

static int
login_usage(void)
{
	fprintf(stderr, "usage: %s login [--profile NAME] [--device] "
	    "[--provider NAME] [--port PORT] [--ca-file FILE] [--pin "
	    "sha256//BASE64] [--no-browser] URL\n", BSP_NAME);
	return (CLIENT_EXIT_USAGE);
}

static void
login_free(struct login *l)
{
	login_final_page(l, 500, "Sign-in failed", "The terminal says why.");
	if (l->http != NULL)
		evhttp_free(l->http);
	if (l->t != NULL)
		hc_target_free(l->t);
	if (l->origin != NULL)
		hc_target_free(l->origin);
	client_session_clear(&l->s);
	free(l->redirect_uri);
	free(l->provider);
	free(l->state_param);
	freezero_str(l->code);
	memzero(l->verifier, sizeof l->verifier);
	free(l->error);
	free(l->token_path);
	freezero_str(l->device_code);
	free(l->why);
	json_decref(l->grant);
}

/* login [--profile P] [--device] [...] URL */
int
client_cmd_login(int argc, char **argv)
{
	struct login	 l;
	const char	*profile = CLIENT_PROFILE_DEFAULT, *ca = NULL;
	const char	*pin = NULL;
	uint8_t		 pinbuf[32];
	char		*cause = NULL, *base = NULL, *probe;
	int		 ch, rc, device;

	memset(&l, 0, sizeof l);
	l.client_id = CLIENT_DEVICE_ID;
	optind = 0;
	while ((ch = getopt_long(argc, argv, "+", login_options, NULL)) !=
	    -1) {
		switch (ch) {
		case LOPT_PROFILE:
			profile = optarg;
			break;
		case LOPT_DEVICE:
			l.device = 1;
			break;
		case LOPT_PROVIDER:
			l.provider_opt = optarg;
			break;
		case LOPT_PORT:
			l.port = optarg;
			break;
		case LOPT_CA_FILE:
			ca = optarg;
			break;
		case LOPT_NO_BROWSER:
			l.no_browser = 1;
			break;
		case LOPT_CLIENT_ID:
			l.client_id = optarg;
			break;
		case LOPT_PIN:
			pin = optarg;
			break;
		default:
			return (login_usage());
		}
	}
	if (argc - optind != 1)
		return (login_usage());
	if (!client_profile_ok(profile)) {
		fprintf(stderr, "%s: --profile: letters, digits, _ and -, at "
		    "most %d\n", BSP_NAME, CLIENT_PROFILE_MAX);
		return (CLIENT_EXIT_USAGE);
	}
	if (l.provider_opt != NULL && (strlen(l.provider_opt) > 32 ||
	    strspn(l.provider_opt, "abcdefghijklmnopqrstuvwxyz0123456789_-") !=
	    strlen(l.provider_opt) || *l.provider_opt == '\0')) {
		fprintf(stderr, "%s: --provider: a provider name as the proxy "
		    "lists it ([a-z0-9_-])\n", BSP_NAME);
		return (CLIENT_EXIT_USAGE);
	}
	if (client_url_normalize(argv[optind], &base, &cause) == -1) {
		fprintf(stderr, "%s: %s\n", BSP_NAME, cause);
		free(cause);
		return (CLIENT_EXIT_USAGE);
	}
	if (pin != NULL && client_pin_parse(pin, pinbuf) == -1) {
		fprintf(stderr, "%s: --pin %s: want sha256// and the base64 of "
		    "the SHA-256 of the proxy's public key (DER "
		    "SubjectPublicKeyInfo), as curl's --pinnedpubkey\n",
		    BSP_NAME, pin);
		free(base);
		return (CLIENT_EXIT_USAGE);
	}
	if (pin != NULL && strncmp(base, "https://", 8) != 0) {
		fprintf(stderr, "%s: --pin is for an https:// proxy\n",
		    BSP_NAME);
		free(base);
		return (CLIENT_EXIT_USAGE);
	}
	if (ca != NULL && access(ca, R_OK) == -1) {
		fprintf(stderr, "%s: --ca-file %s: %s\n", BSP_NAME, ca,
		    strerror(errno));
		free(base);
		return (CLIENT_EXIT_USAGE);
	}
	/* The directory first: refuse a bad one before anyone signs in. */
	if (client_session_paths(&l.s, profile, 1, &cause) != 0) {
		fprintf(stderr, "%s: %s\n", BSP_NAME, cause);
		free(cause);
		free(base);
		client_session_clear(&l.s);
		return (CLIENT_EXIT_LOCAL);
	}
	l.s.proxy = base;
	if (ca != NULL) {
		char	*real = realpath(ca, NULL);

		l.s.ca_file = real != NULL ? real : xstrdup(ca);
	}
	if (pin != NULL)
		l.s.pin = xstrdup(pin);
	if (client_loop_init(&l.s, &cause) == -1) {
		fprintf(stderr, "%s: %s\n", BSP_NAME, cause);
		free(cause);
		login_free(&l);
		return (CLIENT_EXIT_LOCAL);
	}
	if ((l.t = client_target(&l.s, &cause)) == NULL) {
		fprintf(stderr, "%s: %s\n", BSP_NAME, cause);
		free(cause);
		login_free(&l);
		client_loop_free();
		return (CLIENT_EXIT_USAGE);
	}
	device = l.device;
	if (!device && !l.no_browser && !client_browser_available()) {
		/* No browser here: the device flow, if the proxy has it. */
		rc = login_device_endpoints(&l, &probe, &cause);
		free(probe);
		free(l.token_path);
		l.token_path = NULL;
		if (l.origin != NULL) {
			hc_target_free(l.origin);
			l.origin = NULL;
		}
		if (rc == 0) {
			fprintf(stderr, "No browser here (no display): signing "
			    "in with a code instead.\n");
			device = 1;
		} else if (rc != CLIENT_EXIT_ABSENT) {
			fprintf(stderr, "%s: %s\n", BSP_NAME, cause);
			free(cause);
			login_free(&l);
			client_loop_free();
			return (rc);
		}
		free(cause);
		cause = NULL;
	}
	l.s.flow = xstrdup(device ? "device" : "browser");
	rc = device ? login_device(&l, &cause) : login_browser(&l, &cause);
	if (rc != 0) {
		fprintf(stderr, "%s: %s\n", BSP_NAME, cause != NULL ? cause :
		    "sign-in failed");
		free(cause);
	} else
		fprintf(stderr, "Signed in to %s as %s (profile %s).\n",
		    l.s.proxy, l.s.email != NULL ? l.s.email : l.s.sub != NULL ?
		    l.s.sub : "?", l.s.profile);
	login_enter(&l, LS_DONE);
	/* Let the browser's page go out before the loop ends. */
	login_free(&l);
	event_base_loop(bsp_base, EVLOOP_NONBLOCK);
	client_loop_free();
	return (rc);
}

/* logout [--profile P] */
int
client_cmd_logout(int argc, char **argv)
{
	static const struct option	 opts[] = {
		{ "profile", required_argument, NULL, LOPT_PROFILE },
		{ NULL, 0, NULL, 0 },
	};
	struct client_opts		 o = { CLIENT_PROFILE_DEFAULT };
	struct client_session		 s;
	struct client_answer		 a;
	struct hc_target		*t;
	struct stat			 st;
	char				*cause = NULL, *body;
	int				 ch, rc, fd, leaked = 0, leaked2;

	optind = 0;
	while ((ch = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
		if (ch != LOPT_PROFILE) {
			fprintf(stderr, "usage: %s logout [--profile NAME]\n",
			    BSP_NAME);
			return (CLIENT_EXIT_USAGE);
		}
		o.profile = optarg;
	}
	if (argc != optind) {
		fprintf(stderr, "usage: %s logout [--profile NAME]\n",
		    BSP_NAME);
		return (CLIENT_EXIT_USAGE);
	}
	if (!client_profile_ok(o.profile)) {
		fprintf(stderr, "%s: --profile: letters, digits, _ and -, at "
		    "most %d\n", BSP_NAME, CLIENT_PROFILE_MAX);
		return (CLIENT_EXIT_USAGE);
	}
	/*
	 * A file of ours that others could read is read all the same: its
	 * tokens may have leaked, so the session must end on the proxy,
	 * not only here.
	 */
	rc = client_session_paths(&s, o.profile, 0, &cause);
	if (rc == 0)
		rc = client_session_read_any_mode(&s, &leaked, &cause);
	if (rc == -2) {
		free(cause);
		client_session_clear(&s);
		return (CLIENT_EXIT_OK);	/* nothing to end */
	}
	if (rc == -1) {
		fprintf(stderr, "%s: %s\n", BSP_NAME, cause);
		free(cause);
		cause = NULL;
		rc = CLIENT_EXIT_LOCAL;
	} else
		rc = CLIENT_EXIT_OK;
	if (rc == CLIENT_EXIT_LOCAL && s.path != NULL &&
	    lstat(s.path, &st) == 0 && st.st_uid == getuid()) {
		/* Our own file (or link), damaged: it goes. */
		if (client_session_remove(&s, &cause) == -1) {
			fprintf(stderr, "%s: %s\n", BSP_NAME, cause);
			free(cause);
			client_session_clear(&s);
			return (CLIENT_EXIT_LOCAL);
		}
		fprintf(stderr, "%s: removed %s; the session on the proxy, if "
		    "any, was not ended there\n", BSP_NAME, s.path);
		client_session_clear(&s);
		return (CLIENT_EXIT_OK);
	}
	if (rc != CLIENT_EXIT_OK) {
		client_session_clear(&s);
		return (rc);
	}
	if (client_loop_init(&s, &cause) == -1 ||
	    (t = client_target(&s, &cause)) == NULL) {
		fprintf(stderr, "%s: %s\n", BSP_NAME, cause);
		free(cause);
		client_loop_free();
		client_session_clear(&s);
		return (CLIENT_EXIT_LOCAL);
	}
	if ((rc = client_lock_wait(&s, &fd, &cause)) != 0) {
		fprintf(stderr, "%s: %s\n", BSP_NAME, cause);
		free(cause);
		hc_target_free(t);
		client_loop_free();
		client_session_clear(&s);
		return (rc == -2 ? CLIENT_EXIT_PROXY : CLIENT_EXIT_LOCAL);
	}
	/* The refresh token as it is now (another process may have rotated). */
	if (client_session_read_any_mode(&s, &leaked2, &cause) == -1) {
		fprintf(stderr, "%s: %s\n", BSP_NAME, cause);
		free(cause);
		cause = NULL;
	}
	rc = CLIENT_EXIT_OK;
	if (s.refresh_token != NULL)
		body = client_json_text(json_pack("{s:s}", "refresh_token",
		    s.refresh_token));
	else
		body = NULL;
	if (client_call(t, "POST", "/auth/logout", body == NULL ?
	    s.access_token : NULL, body != NULL ? "application/json" : NULL,
	    body, body != NULL ? strlen(body) : 0, &a) == 0) {
		if (a.error == HC_OK && (a.status == 200 || (a.status < 500 &&
		    client_oauth_error(&a) != NULL && (strcmp(
		    client_oauth_error(&a), "invalid_grant") == 0 ||
		    strcmp(client_oauth_error(&a), "invalid_token") == 0))))
			;	/* ended now, or had ended before */
		else {
			(void)client_answer_exit(&a, "POST /auth/logout",
			    s.proxy, &cause);
			rc = CLIENT_EXIT_PROXY;
			fprintf(stderr, "%s: %s; the session may still be "
			    "open on the proxy until it expires\n", BSP_NAME,
			    cause);
			free(cause);
			cause = NULL;
		}
		client_answer_clear(&a);
	}
	freezero_str(body);
	if (client_session_remove(&s, &cause) == -1) {
		fprintf(stderr, "%s: %s\n", BSP_NAME, cause);
		free(cause);
		rc = CLIENT_EXIT_LOCAL;
	} else
		fprintf(stderr, "Signed out of %s (profile %s).\n", s.proxy,
		    s.profile);
	if (leaked && rc == CLIENT_EXIT_OK)
		fprintf(stderr, "%s: the session file was open to other users; "
		    "the session has been ended on the proxy, so what they may "
		    "have read is of no use now\n", BSP_NAME);
	client_unlock(fd);
	hc_target_free(t);
	client_loop_free();
	client_session_clear(&s);
	return (rc);
}
