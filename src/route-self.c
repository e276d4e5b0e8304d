/*
 * route-self.c: the self-service page, /me, for a developer signed in
 * with a browser: their usage and its cost, their budgets and what is
 * left of them, their API keys (make one, see them, revoke one) and their
 * sessions (sign out one, or all).
 *
 * The usage is the usage table's, by UTC day and model, with each group's
 * cost (the calls with a price); the budgets and today's spending are
 * what GET /auth/me answers (budget_me()).
 *
 * A browser sign-in (route-login.c) ends with a cookie holding a sealed
 * browser session (web-session.c) bound to the sign-in's own session
 * (token family): HttpOnly; SameSite=Strict, so that no request another
 * site starts carries it, not even a link followed from elsewhere (that
 * shows the sign-in prompt); Secure and __Host- when server.public_url is
 * https; Path=/me otherwise; self_service.session_ttl long, and never
 * longer than its family. Every request opens it and asks what a token of
 * the family would be asked (principal_revoked(): the family revoked,
 * "user logout", the user disabled or no longer admitted), so signing out
 * anywhere ends it too.
 *
 * The page's forms post back here: a post is refused, with a page and
 * nothing done, unless it came from a page of this origin (Sec-Fetch-Site,
 * Origin, Referer: server_same_origin()), is a form, and carries the
 * browser session's token (web_session_csrf_ok(), constant time). The key
 * and session operations are those of /api/keys and /auth/logout
 * (apikeys.c, tokens-refresh.c); a new key's secret is on the answer's
 * page only, never in a URL, and the page is not cached.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "bsp.h"
#include "web.h"
#include "web-session.h"

#define SELF_COOKIE		"bsp_self"
#define SELF_COOKIE_SECURE	"__Host-bsp_self"
#define HTML_TYPE		"text/html; charset=utf-8"
#define SELF_USAGE_ROWS		1000	/* day and model rows shown */
#define SELF_SESSIONS_MAX	100
#define SELF_MODELS_MAX		2048	/* the models field */
#define SELF_FIELD_MAX		256

/* What a request of the page does. */
enum self_action {
	SA_SHOW,		/* GET /me */
	SA_KEY_NEW,		/* POST /me/keys */
	SA_KEY_REVOKE,		/* POST /me/keys/revoke */
	SA_SESSION_END,		/* POST /me/sessions/revoke */
	SA_SIGN_OUT_ALL,	/* POST /me/sessions/revoke-all */
};

/* One request of the page while the database answers. */
struct self_op {
	struct request		*r;
	enum self_action	 action;
	struct web_session	 ws;
	struct principal	*p;
	char			*arg;		/* a key's or session's id */
	char			*name;		/* a new key's */
	struct strlist		 models;
	long long		 ttl;
	char			*new_key;
	json_t			*new_key_info;
	const char		*notice;
	int			 notice_error;
	int			 code;
	json_t			*usage;
	char			 usage_cost[BUDGET_USD_LEN];
	int			 usage_priced;
	json_t			*keys;
	json_t			*sessions;
};

static void	self_gather(struct self_op *);

static void
self_op_free(void *arg)
{
	struct self_op	*op = arg;

	if (op->p != NULL)
		principal_unref(op->p);
	free(op->arg);
	free(op->name);
	strlist_free(&op->models);
	freezero_str(op->new_key);
	json_decref(op->new_key_info);
	json_decref(op->usage);
	json_decref(op->keys);
	json_decref(op->sessions);
	memzero(&op->ws, sizeof op->ws);
	free(op);
}

/* The name of the session cookie here. */
static const char *
self_cookie_name(const struct config *c)
{
	return (c->public_https ? SELF_COOKIE_SECURE : SELF_COOKIE);
}

/* Set the session cookie, or (value NULL) clear it. */
static void
self_cookie_set(struct request *r, const char *value, long long max_age)
{
	char	*sc;

	xasprintf(&sc, "%s=%s; Path=%s; Max-Age=%lld; HttpOnly; "
	    "SameSite=Strict%s", self_cookie_name(r->cfg), value != NULL ?
	    value : "", r->cfg->public_https ? "/" : "/me", value != NULL ?
	    max_age : 0, r->cfg->public_https ? "; Secure" : "");
	server_set_header(r, "Set-Cookie", sc);
	freezero_str(sc);
}

/* Reply with a page; the buffer is freed. */
static void
self_reply(struct request *r, int code, struct evbuffer *b)
{
	server_reply(r, code, HTML_TYPE, b);
	evbuffer_free(b);
}

static void
self_error(struct request *r, int code, const char *title, const char *what,
    const char *todo)
{
	struct evbuffer	*b = evbuffer_new();

	if (b == NULL)
		fatalx("%s: evbuffer_new", __func__);
	web_render_error(b, code, title, what, todo);
	self_reply(r, code, b);
}

/* No session: the prompt to sign in (and a cookie that fails, cleared). */
static void
self_out(struct request *r, int code, const char *title, const char *what,
    int clear)
{
	struct evbuffer	*b = evbuffer_new();

	if (b == NULL)
		fatalx("%s: evbuffer_new", __func__);
	if (clear)
		self_cookie_set(r, NULL, 0);
	web_render_self_out(b, title, what);
	self_reply(r, code, b);
}

/*
 * A browser sign-in is over and its session holds this access token: give
 * the browser its session cookie for the self-service page. 1 if it was
 * given, 0 if not (the page is off, or the token has no session).
 */
int
route_self_signed_in(struct request *r, const char *access_token,
    json_t **me)
{
	struct web_session	 ws;
	struct principal	*p;
	const char		*why;
	char			*text;
	time_t			 now = now_wall(), exp;
	int			 rc = 0;

	if (me != NULL)
		*me = NULL;
	if (access_token == NULL || tokens_verify_jwt(access_token,
	    strlen(access_token), &p, &why) == -1)
		return (0);
	/* What GET /auth/me would answer, for the page after sign-in. */
	if (me != NULL)
		*me = budget_me(p, now);
	if (!r->cfg->self_enabled) {
		principal_unref(p);
		return (0);
	}
	/* As long as configured, and never past the session's own end. */
	exp = now + (time_t)r->cfg->self_session_ttl;
	if (p->iat != 0 && p->iat + (time_t)r->cfg->jwt_refresh_ttl < exp)
		exp = p->iat + (time_t)r->cfg->jwt_refresh_ttl;
	if (p->kind == PRINCIPAL_JWT && p->sid != NULL &&
	    web_session_new(&ws, p->sub, p->sid, now, exp) == 0 &&
	    (text = web_session_seal(&ws)) != NULL) {
		self_cookie_set(r, text, (long long)(exp - now));
		freezero_str(text);
		rc = 1;
	} else
		log_warnx("%s: request %s: no self-service session for this "
		    "sign-in", __func__, r->id);
	memzero(&ws, sizeof ws);
	principal_unref(p);
	return (rc);
}

/* The page itself, from what was gathered. */
static void
self_render(struct self_op *op)
{
	struct request		*r = op->r;
	struct web_self		 s;
	struct evbuffer		*b;
	char			 csrf[WEB_SESSION_CSRF_TEXT];

	web_session_csrf(&op->ws, csrf);
	memset(&s, 0, sizeof s);
	s.user = op->p->email != NULL ? op->p->email : op->p->sub;
	s.name = op->p->name;
	s.csrf = csrf;
	s.notice = op->notice;
	s.notice_error = op->notice_error;
	s.new_key = op->new_key;
	s.new_key_info = op->new_key_info;
	s.usage = op->usage;
	s.usage_cost = op->usage_priced ? op->usage_cost : NULL;
	s.usage_days = r->cfg->self_usage_days;
	s.me = budget_me(op->p, now_wall());
	s.keys = r->cfg->apikeys_enabled ? op->keys : NULL;
	s.key_default_ttl = r->cfg->apikeys_default_ttl;
	s.key_max_ttl = r->cfg->apikeys_max_ttl;
	s.sessions = op->sessions;
	s.sid = op->ws.sid;
	s.expires = (time_t)op->ws.exp;
	s.now = now_wall();
	if ((b = evbuffer_new()) == NULL)
		fatalx("%s: evbuffer_new", __func__);
	if (web_render_self(b, &s) == -1) {
		evbuffer_free(b);
		self_error(r, 500, "This page cannot be shown", "Your "
		    "account's page could not be built.", NULL);
	} else
		self_reply(r, op->code, b);
	json_decref(s.me);
	memzero(csrf, sizeof csrf);
}

/* A step of gathering failed: the database. */
static void
self_unavailable(struct request *r)
{
	self_error(r, 503, "This page cannot be shown", "Your account's data "
	    "cannot be read right now.", "Try again in a minute. If it keeps "
	    "failing, tell the administrator of this proxy.");
}

static void
self_got_sessions(int rc, json_t *list, void *arg)
{
	struct request	*r = arg;
	struct self_op	*op = r->state;

	if (rc != 0)
		self_unavailable(r);
	else {
		op->sessions = list;
		self_render(op);
	}
	request_unref(r);
}

static void
self_got_keys(int rc, json_t *list, void *arg)
{
	struct request	*r = arg;
	struct self_op	*op = r->state;

	if (rc != 0) {
		self_unavailable(r);
		request_unref(r);
		return;
	}
	op->keys = list;
	tokens_sessions_list(op->p->sub, SELF_SESSIONS_MAX, self_got_sessions,
	    r);
}

static void
self_got_usage(int rc, json_t *rows, void *arg)
{
	struct request	*r = arg;
	struct self_op	*op = r->state;
	json_t		*row, *v;
	size_t		 i;
	long long	 total = 0;
	char		 usd[BUDGET_USD_LEN];

	if (rc != 0) {
		self_unavailable(r);
		request_unref(r);
		return;
	}
	/* Costs as dollars, and their total. */
	json_array_foreach(rows, i, row) {
		v = json_object_get(row, "cost_micros");
		if (!json_is_integer(v))
			continue;
		budget_usd((long long)json_integer_value(v), usd, sizeof usd);
		json_object_set_new(row, "cost_usd", json_string(usd));
		total += (long long)json_integer_value(v);
		op->usage_priced = 1;
	}
	budget_usd(total, op->usage_cost, sizeof op->usage_cost);
	op->usage = rows;
	if (r->cfg->apikeys_enabled)
		apikey_list(op->p->sub, self_got_keys, r);
	else
		self_got_keys(0, NULL, r);
}

/* Read what the page shows; the request is held until it is answered. */
static void
self_gather(struct self_op *op)
{
	struct request	*r = op->r;
	time_t		 since;

	since = now_wall() - (time_t)(r->cfg->self_usage_days * 86400);
	since -= since % 86400;
	usage_by_day(op->p->sub, since, SELF_USAGE_ROWS, self_got_usage, r);
}

/* After a change: back to the page (303), saying what was done. */
static void
self_see_page(struct request *r, const char *done)
{
	char	*loc;

	xasprintf(&loc, "/me?done=%s", done);
	server_set_header(r, "Location", loc);
	free(loc);
	server_reply_text(r, 303, "text/plain; charset=utf-8",
	    "Back to your account's page.\n");
}

static void
self_key_made(int rc, char *key, json_t *info, const char *why, void *arg)
{
	struct request	*r = arg;
	struct self_op	*op = r->state;

	if (rc == -3) {
		freezero_str(key);
		json_decref(info);
		self_out(r, 403, "Your session has ended", "The session this "
		    "page belongs to was signed out.", 1);
		request_unref(r);
		return;
	}
	if (rc == 0) {
		op->new_key = key;
		op->new_key_info = info;
		op->code = 201;
		op->notice = "The key is made.";
		log_info("self-service: %s made an API key (%s)", op->p->sub,
		    json_string_value(json_object_get(info, "id")));
	} else if (rc == -1) {
		op->code = 400;
		op->notice = why;
		op->notice_error = 1;
	} else {
		op->code = 503;
		op->notice = "The key could not be made right now; try again "
		    "in a minute.";
		op->notice_error = 1;
	}
	self_gather(op);
}

static void
self_key_revoked(int rc, void *arg)
{
	struct request	*r = arg;
	struct self_op	*op = r->state;

	if (rc == 0) {
		log_info("self-service: %s revoked API key %s", op->p->sub,
		    op->arg);
		self_see_page(r, "key-revoked");
	} else if (rc == -1) {
		op->code = 404;
		op->notice = "There is no such key of yours.";
		op->notice_error = 1;
		self_gather(op);
		return;
	} else
		self_unavailable(r);
	request_unref(r);
}

static void
self_session_ended(int rc, void *arg)
{
	struct request	*r = arg;
	struct self_op	*op = r->state;

	if (rc == 0 && strcmp(op->arg, op->ws.sid) == 0) {
		self_out(r, 200, "You are signed out", "This browser's session "
		    "has ended, with its tokens and the API keys made in it.",
		    1);
	} else if (rc == 0)
		self_see_page(r, "session-ended");
	else if (rc == -1) {
		op->code = 404;
		op->notice = "There is no such session of yours.";
		op->notice_error = 1;
		self_gather(op);
		return;
	} else
		self_unavailable(r);
	request_unref(r);
}

static void
self_signed_out_all(int n, int nkeys, void *arg)
{
	struct request	*r = arg;

	if (n < 0)
		self_unavailable(r);
	else {
		log_info("self-service: %s signed out everywhere (%d sessions, "
		    "%d keys)", ((struct self_op *)r->state)->p->sub, n, nkeys);
		self_out(r, 200, "You are signed out everywhere", "Every "
		    "session of yours has ended, this browser's too, and every "
		    "API key of yours is revoked.", 1);
	}
	request_unref(r);
}

/* The user's record is in: do what was asked. */
static void
self_got_user(int rc, const struct user *u, void *arg)
{
	struct request	*r = arg;
	struct self_op	*op = r->state;
	struct principal *p = op->p;

	if (rc != 0 || u == NULL) {
		if (rc == -1)
			self_out(r, 403, "Your session has ended", "Your "
			    "account is not known here any more.", 1);
		else
			self_unavailable(r);
		request_unref(r);
		return;
	}
	p->provider = u->provider != NULL ? xstrdup(u->provider) : NULL;
	p->email = u->email != NULL ? xstrdup(u->email) : NULL;
	p->email_verified = u->email_verified;
	p->name = u->name != NULL ? xstrdup(u->name) : NULL;
	p->tenant = u->tenant != NULL ? xstrdup(u->tenant) : NULL;
	strlist_copy(&p->groups, &u->groups);
	request_set_user(r, p->email != NULL ? p->email : p->sub);
	switch (op->action) {
	case SA_SHOW:
		self_gather(op);
		return;
	case SA_KEY_NEW:
		apikey_create(p->sub, p->sid, op->name, op->ttl, &op->models,
		    p->sub, r->client, self_key_made, r);
		return;
	case SA_KEY_REVOKE:
		apikey_revoke(op->arg, p->sub, "deleted", p->sub, r->client,
		    self_key_revoked, r);
		return;
	case SA_SESSION_END:
		tokens_revoke_own_family(op->arg, p->sub, "logout", "logout",
		    r->client, self_session_ended, r);
		return;
	case SA_SIGN_OUT_ALL:
		tokens_revoke_user(p->sub, "self_service", 0, p->sub, r->client,
		    self_signed_out_all, r);
		return;
	}
}

/* A form's field, trimmed of nothing: NULL if repeated or too long. */
static char *
self_field(struct request *r, const char *name, size_t max)
{
	char	*buf = xmalloc(max + 1);

	if (server_form(r, name, buf, max + 1) == NULL) {
		free(buf);
		return (NULL);
	}
	return (buf);
}

/*
 * A new key's fields: name (optional), models (patterns separated by
 * commas or white space) and ttl (a duration, "0" none, empty the
 * default). 0, or -1 with *why.
 */
static int
self_key_fields(struct request *r, struct self_op *op, const char **why)
{
	char		*m, *ttl, *p, *tok;
	long long	 t = -1;
	int		 n;

	if ((n = server_form_count(r, "name")) > 1 ||
	    (n == 1 && (op->name = self_field(r, "name", 128)) == NULL)) {
		*why = "The name is too long.";
		return (-1);
	}
	if (op->name != NULL && *op->name == '\0') {
		free(op->name);
		op->name = NULL;
	}
	if ((n = server_form_count(r, "models")) > 1 || (n == 1 &&
	    (m = self_field(r, "models", SELF_MODELS_MAX)) == NULL)) {
		*why = "The list of models is too long.";
		return (-1);
	}
	if (n == 1) {
		for (p = m; (tok = strsep(&p, ", \t\r\n")) != NULL;)
			if (*tok != '\0')
				strlist_add(&op->models, tok);
		free(m);
	}
	if ((n = server_form_count(r, "ttl")) > 1 || (n == 1 &&
	    (ttl = self_field(r, "ttl", 32)) == NULL)) {
		*why = "The expiry is not one this page offers.";
		return (-1);
	}
	if (n == 1) {
		if (*ttl != '\0' && parse_duration(ttl, &t) == -1) {
			free(ttl);
			*why = "The expiry is not one this page offers.";
			return (-1);
		}
		free(ttl);
	}
	if (apikey_user_ttl(r->cfg, t, &op->ttl, why) == -1)
		return (-1);
	return (0);
}

/*
 * The browser session this request carries, checked as a token of its
 * family would be: 0, or -1 with the answer given.
 */
static int
self_session(struct request *r, struct self_op *op)
{
	char		 text[WEB_SESSION_TEXT_MAX + 1];
	const char	*h = server_header(r, "Cookie"), *why;
	int		 rc, had;

	had = h != NULL && strstr(h, self_cookie_name(r->cfg)) != NULL;
	if (cookie_find(h, self_cookie_name(r->cfg), text, sizeof text) == -1) {
		self_out(r, 403, "Sign in to see your account", had ? "This "
		    "browser's session cannot be read." : "This browser is "
		    "not signed in.", had);
		return (-1);
	}
	rc = web_session_open(text, strlen(text), now_wall(),
	    r->cfg->self_session_ttl, &op->ws);
	memzero(text, sizeof text);
	if (rc != WEB_SESSION_OK) {
		if (rc == WEB_SESSION_INVALID)
			log_info("self-service: a session cookie that is not "
			    "ours was refused (from %s)", r->client);
		self_out(r, 403, rc == WEB_SESSION_EXPIRED ? "Your session "
		    "has timed out" : "Sign in to see your account",
		    rc == WEB_SESSION_EXPIRED ? "This page signs you out by "
		    "itself after a while." : "This browser's session cannot "
		    "be read.", 1);
		return (-1);
	}
	op->p = principal_new(PRINCIPAL_JWT);
	op->p->sub = xstrdup(op->ws.user);
	op->p->sid = xstrdup(op->ws.sid);
	op->p->iat = (time_t)op->ws.iat;
	op->p->exp = (time_t)op->ws.exp;
	if ((why = principal_revoked(op->p)) != NULL) {
		log_info("self-service: a session of %s was refused: %s",
		    op->p->sub, why);
		self_out(r, 403, "Your session has ended", "This browser's "
		    "session was signed out.", 1);
		return (-1);
	}
	return (0);
}

/*
 * A post: from a page of this origin, a form, with this browser
 * session's token. 0, or -1 with the refusal given.
 */
static int
self_post_ok(struct request *r, struct self_op *op)
{
	char	token[WEB_SESSION_CSRF_TEXT + 1];
	int	ok;

	if (!server_same_origin(r) || !server_content_type_is(r,
	    "application/x-www-form-urlencoded")) {
		log_info("self-service: a post from another site was refused "
		    "(from %s)", r->client);
		self_error(r, 403, "Request blocked", "This request came from "
		    "another site and was blocked.", "Open your account's page "
		    "and use its buttons.");
		return (-1);
	}
	ok = server_form(r, "csrf", token, sizeof token) != NULL &&
	    web_session_csrf_ok(&op->ws, token);
	memzero(token, sizeof token);
	if (!ok) {
		log_info("self-service: a post without a valid form token was "
		    "refused (from %s)", r->client);
		self_error(r, 403, "Request blocked", "This request came from "
		    "another site or an old page, and was blocked.", "Open "
		    "your account's page again and use its buttons.");
		return (-1);
	}
	return (0);
}

/* Every route of the page: the session, the post's checks, the fields. */
static void
self_start(struct request *r, enum self_action action)
{
	struct self_op	*op;
	const char	*why = NULL;
	char		 done[32];

	if (!r->cfg->self_enabled) {
		self_error(r, 404, "Not available", "This proxy has no "
		    "self-service page.", NULL);
		return;
	}
	op = xcalloc(1, sizeof *op);
	op->r = r;
	op->action = action;
	op->code = 200;
	r->state = op;
	r->state_free = self_op_free;
	if (self_session(r, op) == -1)
		return;
	if (action != SA_SHOW && self_post_ok(r, op) == -1)
		return;
	switch (action) {
	case SA_SHOW:
		if (server_query(r, "done", done, sizeof done) != NULL) {
			if (strcmp(done, "key-revoked") == 0)
				op->notice = "The key is revoked.";
			else if (strcmp(done, "session-ended") == 0)
				op->notice = "The session is signed out.";
		}
		break;
	case SA_KEY_NEW:
		if (!r->cfg->apikeys_enabled) {
			self_error(r, 404, "Not available", "API keys are "
			    "turned off on this proxy.", NULL);
			return;
		}
		if (self_key_fields(r, op, &why) == -1) {
			op->code = 400;
			op->notice = why;
			op->notice_error = 1;
			/* Shown with the page, once the user is in. */
			op->action = SA_SHOW;
		}
		break;
	case SA_KEY_REVOKE:
	case SA_SESSION_END:
		if ((op->arg = self_field(r, action == SA_KEY_REVOKE ? "id" :
		    "session", SELF_FIELD_MAX)) == NULL || *op->arg == '\0') {
			self_error(r, 400, "Bad request", "The form did not "
			    "say which one.", "Open your account's page again "
			    "and use its buttons.");
			return;
		}
		break;
	case SA_SIGN_OUT_ALL:
		break;
	}
	request_ref(r);
	user_get(op->p->sub, self_got_user, r);
}

/* GET /me */
void
route_self_page(struct request *r)
{
	self_start(r, SA_SHOW);
}

/* POST /me/keys: name, models, ttl. */
void
route_self_key_new(struct request *r)
{
	self_start(r, SA_KEY_NEW);
}

/* POST /me/keys/revoke: id. */
void
route_self_key_revoke(struct request *r)
{
	self_start(r, SA_KEY_REVOKE);
}

/* POST /me/sessions/revoke: session. */
void
route_self_session_end(struct request *r)
{
	self_start(r, SA_SESSION_END);
}

/* POST /me/sessions/revoke-all */
void
route_self_sign_out_all(struct request *r)
{
	self_start(r, SA_SIGN_OUT_ALL);
}
