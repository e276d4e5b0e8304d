/*
 * route-login.c: signing in over HTTP: the start page (/), the provider
 * list (/auth/providers), the browser flow (/auth/login/NAME and its
 * callback /auth/callback/NAME), the API flow (/auth/authorize/NAME and
 * POST /auth/token), and /auth/login, the authorization endpoint the
 * metadata names.
 *
 * The handlers read what the request carries and answer it; the sign-in
 * itself (sealed states, the code exchange, the ID token, the policy, the
 * session) is oauth.c's, which reports its verdict through signin_done():
 * an HTML page for a browser, JSON for an API client. A sign-in the
 * device flow's verification page started (route-device.c) comes back
 * through the same callback; its verdict is a page saying the device is
 * signed in, without tokens. A browser's own sign-in also gets the
 * self-service page's session cookie (route-self.c), bound to the session
 * the token page shows.
 */

#include <sys/queue.h>

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "bsp.h"
#include "crypto.h"
#include "oauth-state.h"
#include "store.h"
#include "web.h"

#define LOGIN_COOKIE		"bsp_login"
#define LOGIN_COOKIE_SECURE	"__Host-bsp_login"
#define HTML_TYPE		"text/html; charset=utf-8"
#define EXAMPLE_MODEL		"us.anthropic.claude-sonnet-4-20250514-v1:0"
#define SIGNIN_NO_DATABASE	"Signing in needs the database, which this " \
				"proxy cannot reach right now."

static void	signin_page_error(struct request *, int, const char *,
		    const char *, const char *);

/* Reply with a page; the buffer is freed. */
static void
signin_page_reply(struct request *r, int code, struct evbuffer *b)
{
	server_reply(r, code, HTML_TYPE, b);
	evbuffer_free(b);
}

static void
signin_page_login(struct request *r, const struct web_provider *pv, size_t npv,
    const char *notice)
{
	struct evbuffer	*b = evbuffer_new();

	if (b == NULL)
		fatalx("%s: evbuffer_new", __func__);
	if (web_render_login(b, pv, npv, notice) == -1) {
		evbuffer_free(b);
		signin_page_error(r, 500, "This page cannot be shown",
		    "The sign-in page could not be built.", NULL);
		return;
	}
	signin_page_reply(r, 200, b);
}

static void
signin_page_success(struct request *r, const struct web_tokens *t)
{
	struct evbuffer	*b = evbuffer_new();

	if (b == NULL)
		fatalx("%s: evbuffer_new", __func__);
	if (web_render_success(b, t, now_wall()) == -1) {
		evbuffer_free(b);
		log_warnx("%s: request %s: cannot render the success page",
		    __func__, r->id);
		signin_page_error(r, 500, "Your token cannot be shown",
		    "You signed in, but the page with your token could not be "
		    "built.", "Sign in again. If it keeps happening, contact "
		    "the people who run this proxy.");
		return;
	}
	signin_page_reply(r, 200, b);
}

static void
signin_page_error(struct request *r, int code, const char *title,
    const char *what, const char *todo)
{
	struct evbuffer	*b = evbuffer_new();

	if (b == NULL)
		fatalx("%s: evbuffer_new", __func__);
	web_render_error(b, code, title, what, todo);
	signin_page_reply(r, code, b);
}

/* Retry-After: seconds, at least one. */
static void
signin_retry_after(struct request *r, long s)
{
	char	buf[32];

	snprintf(buf, sizeof buf, "%ld", s > 0 ? s : 1);
	server_set_header(r, "Retry-After", buf);
}

/* The provider the route's path names, or NULL. */
static const struct provider_config *
signin_provider(struct request *r)
{
	return (provider_find(r->cfg, r->params[0].p, r->params[0].len));
}

/* How often a query parameter occurs (server_query() wants exactly one). */
static int
signin_query_count(struct request *r, const char *name)
{
	struct evkeyvalq	 q;
	struct evkeyval		*kv;
	int			 n = 0;

	if (r->query == NULL)
		return (0);
	TAILQ_INIT(&q);
	if (evhttp_parse_query_str(r->query, &q) == -1)
		n = -1;
	TAILQ_FOREACH(kv, &q, next) {
		if (n >= 0 && strcmp(kv->key, name) == 0)
			n++;
	}
	evhttp_clear_headers(&q);
	return (n);
}

/* Loopback redirect URIs for native clients (RFC 8252 section 7.3). */
static int
signin_loopback(const char *u)
{
	const char	*h, *p;
	size_t		 hl;
	char		 host[64];

	if (strncmp(u, "http://", 7) != 0)
		return (0);
	h = u + 7;
	hl = strcspn(h, "/?#");
	if (hl == 0 || hl >= sizeof host || strchr(u, '#') != NULL ||
	    strchr(u, '@') != NULL || !str_is_printable(u, strlen(u)) ||
	    strpbrk(u, " \"<>\\") != NULL)
		return (0);
	memcpy(host, h, hl);
	host[hl] = '\0';
	/* Strip the port, which must be numeric. */
	if (host[0] == '[') {
		if ((p = strchr(host, ']')) == NULL)
			return (0);
		if (p[1] == ':') {
			const char *d;

			for (d = p + 2; *d != '\0'; d++)
				if (!isdigit((unsigned char)*d))
					return (0);
		} else if (p[1] != '\0')
			return (0);
		host[p - host + 1] = '\0';
	} else if ((p = strchr(host, ':')) != NULL) {
		const char *d;

		for (d = p + 1; *d != '\0'; d++)
			if (!isdigit((unsigned char)*d))
				return (0);
		host[p - host] = '\0';
	}
	return (strcmp(host, "127.0.0.1") == 0 || strcmp(host, "[::1]") == 0);
}

/* A device sign-in's verdict: the device is signed in. */
static void
signin_page_device(struct request *r, const struct login_result *res)
{
	const struct user	*u = res->user;
	struct evbuffer		*b = evbuffer_new();

	if (b == NULL)
		fatalx("%s: evbuffer_new", __func__);
	web_render_device_done(b, u->email != NULL ? u->email : u->id, u->name,
	    res->pc->display_name != NULL ? res->pc->display_name :
	    res->pc->name);
	signin_page_reply(r, 200, b);
}

/* A sign-in's verdict: a session, or a refusal; answer it. */
static void
signin_done(const struct login_result *res, void *arg)
{
	struct request		*r = arg;
	const struct user	*u = res->user;
	struct web_tokens	 t;
	json_t			*s = res->session;

	if (res->code != 200) {
		if (res->api)
			server_error_oauth(r, res->code, res->error,
			    res->detail);
		else
			signin_page_error(r, res->code, res->title, res->detail,
			    strcmp(res->error, "access_denied") == 0 ? "If you "
			    "think you should have access, ask the "
			    "administrator of this proxy." : res->device ?
			    "Start the sign-in again in the program that asked "
			    "for it." : "Start again from the sign-in page.");
		request_unref(r);
		return;
	}
	request_set_user(r, u->email != NULL ? u->email : u->id);
	if (res->device) {
		signin_page_device(r, res);
		request_unref(r);
		return;
	}
	if (res->api)
		server_reply_json(r, 200, json_incref(s));
	else {
		memset(&t, 0, sizeof t);
		t.access_token = json_string_value(json_object_get(s,
		    "access_token"));
		t.refresh_token = json_string_value(json_object_get(s,
		    "refresh_token"));
		t.expires_in = json_integer_value(json_object_get(s,
		    "expires_in"));
		t.expires_at = now_wall() + (time_t)t.expires_in;
		t.session_expires_at = now_wall() +
		    (time_t)r->cfg->jwt_refresh_ttl;
		t.user = u->email != NULL ? u->email : u->id;
		t.name = u->name;
		t.provider = res->pc->display_name;
		t.public_url = r->cfg->server_public_url;
		t.region = r->cfg->aws_region;
		t.example_model = EXAMPLE_MODEL;
		/* This browser's session for the self-service page. */
		t.self_service = route_self_signed_in(r, t.access_token,
		    &t.me);
		signin_page_success(r, &t);
		json_decref(t.me);
	}
	request_unref(r);
}

/* The client left before the verdict: stop the sign-in. */
static void
signin_gone(struct request *r)
{
	if (oauth_login_cancel(r->state))
		request_unref(r);
}

/*
 * A sign-in for this request: freed with it, and holding it until
 * signin_done() has answered.
 */
static struct login *
signin_new(struct request *r, const struct provider_config *pc, int api)
{
	struct login	*l;

	l = oauth_login_new(r->cfg, pc, api, r->client, r->id, signin_done,
	    r);
	r->state = l;
	r->state_free = oauth_login_free;
	r->on_abort = signin_gone;
	request_ref(r);
	return (l);
}

/* GET / */
void
route_login_page(struct request *r)
{
	struct web_provider	*wp;
	size_t			 i;

	wp = xcalloc(r->cfg->nproviders + 1, sizeof *wp);
	for (i = 0; i < r->cfg->nproviders; i++) {
		wp[i].name = r->cfg->providers[i].name;
		wp[i].display_name = r->cfg->providers[i].display_name;
	}
	signin_page_login(r, wp, r->cfg->nproviders, NULL);
	free(wp);
}

/* GET /auth/providers */
void
route_auth_providers(struct request *r)
{
	json_t		*a = json_array(), *sc;
	size_t		 i, j;
	const struct provider_config *pc;

	for (i = 0; i < r->cfg->nproviders; i++) {
		pc = &r->cfg->providers[i];
		sc = json_array();
		for (j = 0; j < pc->scopes.n; j++)
			json_array_append_new(sc, json_string(pc->scopes.v[j]));
		json_array_append_new(a, json_pack("{s:s,s:s,s:o}", "name",
		    pc->name, "display_name", pc->display_name, "scopes", sc));
	}
	server_reply_json(r, 200, json_pack("{s:o}", "providers", a));
}

/*
 * The browser's sealed sign-in, as the cookie its callback reads (the
 * browser flow's, and the device flow's verification page's).
 */
void
route_login_cookie(struct request *r, const char *sealed)
{
	char	*cookie;

	xasprintf(&cookie, "%s=%s; Path=%s; Max-Age=%d; HttpOnly; "
	    "SameSite=Lax%s", r->cfg->public_https ? LOGIN_COOKIE_SECURE :
	    LOGIN_COOKIE, sealed, r->cfg->public_https ? "/" :
	    "/auth/callback", OAUTH_STATE_TTL, r->cfg->public_https ?
	    "; Secure" : "");
	server_set_header(r, "Set-Cookie", cookie);
	freezero_str(cookie);
}

/* GET /auth/login/{provider}: browser flow, state cookie, 302. */
void
route_auth_login(struct request *r)
{
	const struct provider_config	*pc = signin_provider(r);
	struct login_start		 ls;
	const char			*detail;
	char				*uri;
	int				 rc;

	if (pc == NULL) {
		signin_page_error(r, 404, "Unknown sign-in provider", "This "
		    "proxy has no identity provider by that name.", "Go back "
		    "to the start page and pick one of the providers listed "
		    "there.");
		return;
	}
	if (!store_ready(&detail)) {
		/* Not at the IdP first, only to fail at the callback. */
		signin_page_error(r, 503, "Cannot start signing in",
		    SIGNIN_NO_DATABASE, "Try again in a minute. If it keeps "
		    "failing, tell the administrator of this proxy.");
		return;
	}
	uri = oauth_callback_uri(r->cfg, pc);
	memset(&ls, 0, sizeof ls);
	ls.pc = pc;
	ls.redirect_uri = uri;
	ls.client = (struct sockaddr *)&r->client_sa;
	rc = oauth_login_begin(r->cfg, &ls);
	free(uri);
	if (rc != 0) {
		if (rc == -3)
			signin_retry_after(r, ls.retry);
		signin_page_error(r, rc == -3 ? 429 : 503, "Cannot start "
		    "signing in", ls.why, ls.problem != NULL ? ls.problem :
		    rc == -3 ? "Sign-ins from other addresses are not "
		    "affected." : "Try again in a minute. If it keeps failing, "
		    "tell the administrator of this proxy.");
		return;
	}
	route_login_cookie(r, ls.sealed);
	server_set_header(r, "Location", ls.url);
	log_trace(TRACE_OAUTH, "login via %s started", pc->name);
	server_reply_text(r, 302, "text/plain; charset=utf-8",
	    "Redirecting to the identity provider.\n");
	freezero_str(ls.sealed);
	free(ls.url);
}

/* GET /auth/authorize/{provider}?redirect_uri=&state=: API flow start. */
void
route_auth_authorize(struct request *r)
{
	const struct provider_config	*pc = signin_provider(r);
	struct login_start		 ls;
	char				 ru[2048], *uri;
	const char			*detail;
	char				 ccs[64], ccm[16];
	uint8_t				 cc[CRYPTO_HASH_LEN];
	size_t				 cclen;
	int				 rc, hascc = 0, native;

	if (pc == NULL) {
		server_error_oauth(r, 404, "invalid_request",
		    "unknown provider");
		return;
	}
	if (!store_ready(&detail)) {
		server_error_oauth(r, 503, "temporarily_unavailable",
		    SIGNIN_NO_DATABASE);
		return;
	}
	if (server_query(r, "redirect_uri", ru, sizeof ru) == NULL) {
		server_error_oauth(r, 400, "invalid_request",
		    "redirect_uri is missing, repeated or too long");
		return;
	}
	uri = oauth_callback_uri(r->cfg, pc);
	native = strcmp(ru, uri) != 0;	/* a native client's loopback */
	free(uri);
	if (native && !signin_loopback(ru)) {
		server_error_oauth(r, 400, "invalid_request", "redirect_uri "
		    "must be the provider's configured redirect URI or a "
		    "loopback URI (http://127.0.0.1:PORT/...)");
		return;
	}
	/*
	 * The state carries the sign-in itself (sealed), so this proxy
	 * makes it: a client's own would never come back from the IdP.
	 */
	if (signin_query_count(r, "state") != 0) {
		server_error_oauth(r, 400, "invalid_request", "state is made "
		    "by this proxy (it carries the sign-in): leave it out, and "
		    "expect the state of this answer back from the identity "
		    "provider");
		return;
	}
	/* RFC 7636: a client may bind the code to a verifier only it has. */
	if (server_query(r, "code_challenge", ccs, sizeof ccs) != NULL) {
		if (crypto_b64url_decode(ccs, strlen(ccs), cc, sizeof cc,
		    &cclen) == -1 || cclen != sizeof cc || strlen(ccs) != 43) {
			server_error_oauth(r, 400, "invalid_request",
			    "code_challenge must be the base64url SHA-256 of "
			    "the code verifier (43 characters)");
			return;
		}
		if (server_query(r, "code_challenge_method", ccm,
		    sizeof ccm) != NULL && strcmp(ccm, "S256") != 0) {
			server_error_oauth(r, 400, "invalid_request",
			    "code_challenge_method must be S256");
			return;
		}
		hascc = 1;
	} else if (signin_query_count(r, "code_challenge") != 0 ||
	    signin_query_count(r, "code_challenge_method") != 0) {
		server_error_oauth(r, 400, "invalid_request", "code_challenge "
		    "is repeated or too long, or its method came without it");
		return;
	}
	/*
	 * RFC 8252 section 8.1: a native client's loopback redirect must
	 * come with PKCE, or any program that can listen on that port could
	 * take the code; /auth/token then wants the verifier.
	 */
	if (native && !hascc) {
		server_error_oauth(r, 400, "invalid_request", "a loopback "
		    "redirect_uri needs PKCE (RFC 8252): send code_challenge, "
		    "the base64url SHA-256 of your code_verifier, with "
		    "code_challenge_method=S256, and the code_verifier to "
		    "/auth/token");
		return;
	}
	memset(&ls, 0, sizeof ls);
	ls.pc = pc;
	ls.api = 1;
	ls.redirect_uri = ru;
	ls.client_challenge = hascc ? cc : NULL;
	ls.client = (struct sockaddr *)&r->client_sa;
	if ((rc = oauth_login_begin(r->cfg, &ls)) != 0) {
		if (rc == -3)
			signin_retry_after(r, ls.retry);
		server_error_oauth(r, rc == -3 ? 429 : 503,
		    "temporarily_unavailable", ls.why);
		return;
	}
	server_reply_json(r, 200, json_pack("{s:s,s:s,s:s}",
	    "authorization_url", ls.url, "state", ls.sealed, "provider",
	    pc->name));
	free(ls.sealed);
	free(ls.url);
}

/* GET /auth/callback/{provider}?code=&state= */
void
route_auth_callback(struct request *r)
{
	const struct provider_config	*pc = signin_provider(r);
	struct login			*l;
	struct login_redirect		 in;
	char				 code[2048], state[300], err[128];
	char				 desc[1024], cookie[1024], iss[512];
	char				*msg;
	const char			*cname;

	if (pc == NULL) {
		signin_page_error(r, 404, "Unknown sign-in provider", "This "
		    "proxy has no identity provider by that name.",
		    "Start again from the sign-in page.");
		return;
	}
	l = signin_new(r, pc, 0);
	cname = r->cfg->public_https ? LOGIN_COOKIE_SECURE : LOGIN_COOKIE;
	xasprintf(&msg, "%s=; Path=%s; Max-Age=0; HttpOnly; SameSite=Lax%s",
	    cname, r->cfg->public_https ? "/" : "/auth/callback",
	    r->cfg->public_https ? "; Secure" : "");
	server_set_header(r, "Set-Cookie", msg);
	free(msg);

	memset(&in, 0, sizeof in);
	in.state = server_query(r, "state", state, sizeof state);
	/* The sign-in itself is in this browser's cookie, sealed. */
	if (cookie_find(server_header(r, "Cookie"), cname, cookie,
	    sizeof cookie) == 0)
		in.cookie = cookie;
	in.iss = server_query(r, "iss", iss, sizeof iss);
	in.iss_absent = signin_query_count(r, "iss") == 0;
	in.error = server_query(r, "error", err, sizeof err);
	in.error_description = server_query(r, "error_description", desc,
	    sizeof desc);
	in.code = server_query(r, "code", code, sizeof code);
	oauth_login_redirect(l, &in);
}

/*
 * POST /auth/token {"provider","authorization_code","redirect_uri","state"}
 * and "code_verifier" when /auth/authorize was given a code_challenge.
 */
void
route_auth_token(struct request *r)
{
	const struct provider_config	*pc;
	struct login			*l;
	struct login_grant		 in;
	json_t				*j;
	const char			*why, *prov;

	if ((j = server_body_json(r, &why)) == NULL) {
		server_error_oauth(r, 400, "invalid_request", why);
		return;
	}
	memset(&in, 0, sizeof in);
	if (json_unpack(j, "{s:s,s:s,s:s,s:s,s?s}", "provider", &prov,
	    "authorization_code", &in.code, "redirect_uri", &in.redirect_uri,
	    "state", &in.state, "code_verifier", &in.code_verifier) != 0 ||
	    strlen(in.state) > OAUTH_STATE_TEXT_MAX ||
	    strlen(in.code) > 2048 || strlen(in.redirect_uri) > 2048) {
		json_decref(j);
		server_error_oauth(r, 400, "invalid_request", "provider, "
		    "authorization_code, redirect_uri and state are required");
		return;
	}
	if ((pc = provider_find(r->cfg, prov, strlen(prov))) == NULL) {
		json_decref(j);
		server_error_oauth(r, 400, "invalid_request",
		    "unknown provider");
		return;
	}
	l = signin_new(r, pc, 1);
	oauth_login_grant(l, &in);
	json_decref(j);
}

/*
 * GET /auth/login: the authorization endpoint RFC 8414 metadata names. With
 * one provider, start its sign-in; with several, show the choice.
 */
void
route_auth_login_any(struct request *r)
{
	char	*loc;

	if (r->cfg->nproviders == 1)
		xasprintf(&loc, "/auth/login/%s", r->cfg->providers[0].name);
	else
		loc = xstrdup("/");
	server_set_header(r, "Location", loc);
	free(loc);
	server_reply_text(r, 302, "text/plain; charset=utf-8",
	    "Choose how to sign in.\n");
}

/*
 * POST /auth/token: the authorization code exchange of the API flow, and,
 * for OAuth clients that refresh at the token endpoint, grant_type
 * refresh_token (as /auth/refresh).
 */
void
route_auth_token_any(struct request *r)
{
	char		 gt[32];
	json_t		*j;
	const char	*why, *g = NULL;

	if (server_content_type_is(r, "application/x-www-form-urlencoded"))
		g = server_form(r, "grant_type", gt, sizeof gt);
	else if ((j = server_body_json(r, &why)) != NULL) {
		if ((g = json_string_value(json_object_get(j, "grant_type"))) !=
		    NULL) {
			bsp_strlcpy(gt, g, sizeof gt);
			g = gt;
		}
		json_decref(j);
	}
	if (g != NULL && strcmp(g, "refresh_token") == 0) {
		route_auth_refresh(r);
		return;
	}
	route_auth_token(r);
}
