/*
 * route-device.c: the device authorization grant (RFC 8628) over HTTP:
 * POST /oauth/device_authorization, where a client (Claude Code's /login,
 * device.clients) starts one; the verification page GET and POST /device,
 * where its user enters or confirms the user code and signs in; and POST
 * /oauth/token, the token endpoint the metadata names: the device_code
 * grant, refresh_token as Claude Code's gateway sign-in expects it (a
 * session that is over is 401 invalid_grant, which sends the user back to
 * /login), and the API flow's authorization code as /auth/token takes it.
 * What is stored is device.c's; the sign-in is oauth.c's.
 *
 * The page never approves anything by itself: GET shows a form, with a
 * pre-filled code if the link carried one, and only a press of one of its
 * buttons posts it. A post must come from a page of this origin: its
 * Sec-Fetch-Site, if the browser sends one, must be same-origin, its
 * Origin or Referer (the page keeps same-origin referrers for that) must
 * be this proxy's (server.public_url), and its token must open to the
 * hash of the browser's form cookie, an HttpOnly SameSite=Strict cookie
 * the page set; anything else is refused with a page and nothing else.
 * Each client address has device.page_limit requests of the page per
 * device.limit_window, and device.user_code_failures wrong codes: every
 * wrong code is audited, and so is the first attempt refused once they
 * are spent. A code that is right starts a browser sign-in with the
 * chosen provider whose sealed state carries the authorization's key; its
 * callback (route-login.c) approves it.
 */

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>

#include "bsp.h"
#include "crypto.h"
#include "web.h"

#define FORM_COOKIE		"bsp_device"
#define FORM_COOKIE_SECURE	"__Host-bsp_device"
#define FORM_PURPOSE		"bsp-device-form-v1"
#define FORM_TTL		3600	/* seconds a form may be posted */
#define FORM_SECRET		32	/* random bytes of the cookie */
#define FORM_COOKIE_TEXT	64	/* its base64url, with room */
#define FORM_TOKEN_MAX		256
#define HTML_TYPE		"text/html; charset=utf-8"
#define DEVICE_CODE_MAX		64
#define TOKEN_FIELD_MAX		16384
#define DEVICE_GRANT		"urn:ietf:params:oauth:grant-type:device_code"

static void	device_page_form(struct request *, int, const char *,
		    const char *);

/* Retry-After: seconds, at least one. */
static void
device_retry_after(struct request *r, long s)
{
	char	buf[32];

	snprintf(buf, sizeof buf, "%ld", s > 0 ? s : 1);
	server_set_header(r, "Retry-After", buf);
}

/* Reply with a page; the buffer is freed. */
static void
device_page_reply(struct request *r, int code, struct evbuffer *b)
{
	server_reply(r, code, HTML_TYPE, b);
	evbuffer_free(b);
}

static void
device_page_error(struct request *r, int code, const char *title,
    const char *what, const char *todo)
{
	struct evbuffer	*b = evbuffer_new();

	if (b == NULL)
		fatalx("%s: evbuffer_new", __func__);
	web_render_error(b, code, title, what, todo);
	device_page_reply(r, code, b);
}

/* The name of the form's cookie here. */
static const char *
device_cookie_name(const struct request *r)
{
	return (r->cfg->public_https ? FORM_COOKIE_SECURE : FORM_COOKIE);
}

/* The browser's form cookie, if it sent a well-formed one. */
static int
device_cookie(struct request *r, char buf[FORM_COOKIE_TEXT])
{
	uint8_t	bin[FORM_SECRET];
	size_t	len;

	if (cookie_find(server_header(r, "Cookie"), device_cookie_name(r), buf,
	    FORM_COOKIE_TEXT) == -1)
		return (-1);
	if (crypto_b64url_decode(buf, strlen(buf), bin, sizeof bin, &len) ==
	    -1 || len != sizeof bin) {
		memzero(bin, sizeof bin);
		return (-1);
	}
	memzero(bin, sizeof bin);
	return (0);
}

/*
 * The form's token for the cookie's value: sealed under a key only this
 * proxy holds, the cookie's hash and an expiry; NULL if it cannot be.
 */
static char *
device_token(const char *cookie)
{
	uint8_t	 pt[CRYPTO_HASH_LEN + 8], *sealed = NULL;
	uint64_t e = (uint64_t)now_wall() + FORM_TTL;
	size_t	 slen = 0;
	char	*text = NULL;
	int	 i;

	crypto_sha256(cookie, strlen(cookie), pt);
	for (i = 0; i < 8; i++)
		pt[CRYPTO_HASH_LEN + i] = (uint8_t)(e >> ((7 - i) * 8));
	if (crypto_seal_for(FORM_PURPOSE, pt, sizeof pt, &sealed, &slen) == 0)
		text = crypto_b64url_encode_alloc(sealed, slen);
	free(sealed);
	return (text);
}

/* Does the token open, in time, to this cookie's hash? */
static int
device_token_ok(const char *token, const char *cookie)
{
	uint8_t		 bin[FORM_TOKEN_MAX], h[CRYPTO_HASH_LEN], *pt = NULL;
	uint64_t	 e = 0;
	size_t		 blen, plen = 0;
	int		 i, ok = 0;

	if (strlen(token) > FORM_TOKEN_MAX || crypto_b64url_decode(token,
	    strlen(token), bin, sizeof bin, &blen) == -1 ||
	    crypto_unseal_for(FORM_PURPOSE, bin, blen, &pt, &plen) == -1)
		return (0);
	if (plen == CRYPTO_HASH_LEN + 8) {
		crypto_sha256(cookie, strlen(cookie), h);
		for (i = 0; i < 8; i++)
			e = e << 8 | pt[CRYPTO_HASH_LEN + i];
		ok = crypto_memeq(h, pt, sizeof h) &&
		    e > (uint64_t)now_wall() &&
		    e <= (uint64_t)now_wall() + FORM_TTL + 60;
	}
	freezero(pt, plen);
	return (ok);
}

/*
 * This proxy's origin (scheme://host[:port], no default port, lower
 * case), as a browser names it in Origin, from server.public_url.
 */
static void
device_origin(const struct config *c, char *buf, size_t len)
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
 * Referer, whichever the browser sent; at least one of the last two.
 */
static int
device_same_origin(struct request *r)
{
	const char	*sfs = server_header(r, "Sec-Fetch-Site");
	const char	*origin = server_header(r, "Origin");
	const char	*referer = server_header(r, "Referer");
	char		 ours[512];
	size_t		 n;

	device_origin(r->cfg, ours, sizeof ours);
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

/*
 * The form (again), with its token for the browser's cookie, a new
 * cookie if it had none, the code pre-filled and what went wrong.
 */
static void
device_page_form(struct request *r, int code, const char *user_code,
    const char *notice)
{
	struct web_device	 d;
	struct web_provider	*wp;
	struct evbuffer		*b;
	uint8_t			 secret[FORM_SECRET];
	char			 cookie[FORM_COOKIE_TEXT], *token, *sc;
	size_t			 i;

	if (device_cookie(r, cookie) == -1) {
		crypto_random(secret, sizeof secret);
		crypto_b64url_encode(secret, sizeof secret, cookie,
		    sizeof cookie);
		memzero(secret, sizeof secret);
		xasprintf(&sc, "%s=%s; Path=%s; Max-Age=%d; HttpOnly; "
		    "SameSite=Strict%s", device_cookie_name(r), cookie,
		    r->cfg->public_https ? "/" : "/device", FORM_TTL,
		    r->cfg->public_https ? "; Secure" : "");
		server_set_header(r, "Set-Cookie", sc);
		freezero_str(sc);
	}
	if ((token = device_token(cookie)) == NULL) {
		memzero(cookie, sizeof cookie);
		device_page_error(r, 500, "This page cannot be shown", "The "
		    "sign-in form could not be protected.", NULL);
		return;
	}
	memzero(cookie, sizeof cookie);
	wp = xcalloc(r->cfg->nproviders + 1, sizeof *wp);
	for (i = 0; i < r->cfg->nproviders; i++) {
		wp[i].name = r->cfg->providers[i].name;
		wp[i].display_name = r->cfg->providers[i].display_name;
	}
	memset(&d, 0, sizeof d);
	d.user_code = user_code;
	d.csrf = token;
	d.pv = wp;
	d.npv = r->cfg->nproviders;
	d.notice = notice;
	if ((b = evbuffer_new()) == NULL)
		fatalx("%s: evbuffer_new", __func__);
	if (web_render_device(b, &d) == -1) {
		evbuffer_free(b);
		device_page_error(r, 500, "This page cannot be shown", "The "
		    "sign-in form could not be built.", NULL);
	} else
		device_page_reply(r, code, b);
	free(wp);
	free(token);
}

/* The device flow is off: the page and the endpoints say so. */
static int
device_off(struct request *r, int page)
{
	if (r->cfg->device_enabled)
		return (0);
	if (page)
		device_page_error(r, 404, "Not available", "This proxy does "
		    "not offer signing in from a device.", NULL);
	else
		server_error_oauth(r, 404, "invalid_request", "the device "
		    "authorization grant is not enabled here");
	return (1);
}

/* The verification page's allowance of this client: taken, or 429. */
static int
device_page_allowed(struct request *r)
{
	long	retry;

	if (device_limit_take(r->cfg, DEVICE_LIMIT_PAGE,
	    (struct sockaddr *)&r->client_sa, &retry) == 0)
		return (1);
	device_retry_after(r, retry);
	device_page_error(r, 429, "Too many requests", "Too many requests of "
	    "this page came from your address.", "Wait a few minutes and try "
	    "again.");
	return (0);
}

/* GET /device[?user_code=]: the form, the code pre-filled if given. */
static void
device_page_get(struct request *r)
{
	char	 raw[64], code[DEVICE_USER_CODE_TEXT];
	int	 given;

	given = server_query(r, "user_code", raw, sizeof raw) != NULL &&
	    device_user_code_norm(raw, code) == 0;
	device_page_form(r, 200, given ? code : NULL, NULL);
}

/* What a post to /device is doing while the database answers. */
struct device_post {
	struct request			*r;
	const struct provider_config	*pc;
	char				 code[DEVICE_USER_CODE_TEXT];
	uint8_t				 key[DEVICE_KEY_LEN];
};

static void
device_post_free(void *arg)
{
	struct device_post	*dp = arg;

	memzero(dp, sizeof *dp);
	free(dp);
}

/* The code is live and pending: start the sign-in that approves it. */
static void
device_post_signin(struct request *r, struct device_post *dp)
{
	struct login_start	 ls;
	struct evbuffer		*b;
	char			*uri;
	int			 rc;

	uri = oauth_callback_uri(r->cfg, dp->pc);
	memset(&ls, 0, sizeof ls);
	ls.pc = dp->pc;
	ls.redirect_uri = uri;
	ls.client = (struct sockaddr *)&r->client_sa;
	ls.device = dp->key;
	rc = oauth_login_begin(r->cfg, &ls);
	free(uri);
	if (rc != 0) {
		if (rc == -3)
			device_retry_after(r, ls.retry);
		device_page_error(r, rc == -3 ? 429 : 503, "Cannot start "
		    "signing in", ls.why, ls.problem != NULL ? ls.problem :
		    "Try again in a minute. If it keeps failing, tell the "
		    "administrator of this proxy.");
		return;
	}
	route_login_cookie(r, ls.sealed);
	log_trace(TRACE_OAUTH, "device sign-in via %s started", dp->pc->name);
	if ((b = evbuffer_new()) == NULL)
		fatalx("%s: evbuffer_new", __func__);
	if (web_render_device_continue(b, ls.url, dp->pc->display_name !=
	    NULL ? dp->pc->display_name : dp->pc->name) == -1) {
		evbuffer_free(b);
		device_page_error(r, 502, "Cannot start signing in", "The "
		    "identity provider's address cannot be used.", NULL);
	} else
		device_page_reply(r, 200, b);
	freezero_str(ls.sealed);
	free(ls.url);
}

/* The database's answer about the code. */
static void
device_post_looked(int rc, const struct device_info *info, const char *why,
    void *arg)
{
	struct request		*r = arg;
	struct device_post	*dp = r->state;
	long			 retry;

	if (rc == 0)
		device_post_signin(r, dp);
	else if (rc == -1) {
		/* A wrong code: one of this address's allowance. */
		(void)device_limit_take(r->cfg, DEVICE_LIMIT_FAILURES,
		    (struct sockaddr *)&r->client_sa, &retry);
		log_info("device verification: code refused from %s: %s",
		    r->client, why);
		device_page_form(r, 400, dp->code, "That code is not valid: it "
		    "may have expired or been used already. Check the code "
		    "your program shows, or start its sign-in again.");
	} else
		device_page_error(r, 503, "Cannot check the code", "The "
		    "code could not be checked right now.", "Try again in a "
		    "minute.");
	request_unref(r);
}

/* The lockout's audit row is written: refuse. */
static void
device_post_limited(void *arg)
{
	struct request	*r = arg;
	long		 retry = (long)r->cfg->device_limit_window;
	int		 first;

	(void)device_limit_spent(r->cfg, DEVICE_LIMIT_FAILURES,
	    (struct sockaddr *)&r->client_sa, &retry, &first);
	device_retry_after(r, retry);
	device_page_error(r, 429, "Too many wrong codes", "Too many wrong "
	    "codes were entered from your address.", "Wait a few minutes, "
	    "then enter the code your program shows.");
	request_unref(r);
}

/* POST /device: the code and the chosen provider, from our own form. */
static void
device_page_post(struct request *r)
{
	struct device_post		*dp;
	const struct provider_config	*pc = NULL;
	char				 cookie[FORM_COOKIE_TEXT];
	char				 token[FORM_TOKEN_MAX + 1], raw[64];
	char				 prov[64], code[DEVICE_USER_CODE_TEXT];
	long				 retry;
	int				 first, ok;

	if (!device_same_origin(r) || !server_content_type_is(r,
	    "application/x-www-form-urlencoded")) {
		log_info("device verification: a post from another site was "
		    "refused (from %s)", r->client);
		device_page_error(r, 403, "Request blocked", "This request "
		    "came from another site and was blocked.", "Open the "
		    "sign-in link your program shows, and enter its code "
		    "there.");
		return;
	}
	ok = device_cookie(r, cookie) == 0 && server_form(r, "csrf", token,
	    sizeof token) != NULL && device_token_ok(token, cookie);
	memzero(cookie, sizeof cookie);
	if (!ok) {
		log_info("device verification: a post without a valid form "
		    "token was refused (from %s)", r->client);
		device_page_error(r, 403, "Request blocked", "This request "
		    "came from another site or an old page, and was blocked.",
		    "Open the sign-in link your program shows again, and "
		    "enter its code there.");
		return;
	}
	if (server_form(r, "user_code", raw, sizeof raw) == NULL ||
	    device_user_code_norm(raw, code) == -1) {
		device_page_form(r, 400, NULL, "That is not a code: a code has "
		    "eight letters, like WDJB-MJHT.");
		return;
	}
	if (server_form(r, "provider", prov, sizeof prov) != NULL)
		pc = provider_find(r->cfg, prov, strlen(prov));
	else if (server_form_count(r, "provider") == 0 &&
	    r->cfg->nproviders == 1)
		pc = &r->cfg->providers[0];
	if (pc == NULL) {
		device_page_form(r, 400, code, "Choose one of the identity "
		    "providers below to sign in with.");
		return;
	}
	dp = xcalloc(1, sizeof *dp);
	dp->r = r;
	dp->pc = pc;
	bsp_strlcpy(dp->code, code, sizeof dp->code);
	device_user_key(code, dp->key);
	r->state = dp;
	r->state_free = device_post_free;
	request_ref(r);
	if (device_limit_spent(r->cfg, DEVICE_LIMIT_FAILURES,
	    (struct sockaddr *)&r->client_sa, &retry, &first) == -1) {
		if (first) {
			/* Once per lockout: its audit row, then the answer. */
			device_note_limited(r->client, retry,
			    device_post_limited, r);
			return;
		}
		device_post_limited(r);
		return;
	}
	device_lookup(dp->key, r->client, device_post_looked, r);
}

/* GET and POST /device: the verification page. */
void
route_device_page(struct request *r)
{
	if (device_off(r, 1) || !device_page_allowed(r))
		return;
	if (strcmp(r->method, "POST") == 0)
		device_page_post(r);
	else
		device_page_get(r);
}

/* A new device authorization is recorded: its codes, once. */
static void
device_authorized(int rc, const struct device_grant *g, void *arg)
{
	struct request	*r = arg;
	json_t		*j;
	char		*uri, *complete;

	if (rc != 0) {
		server_error_oauth(r, 503, "temporarily_unavailable",
		    "cannot start a device authorization right now; try again");
		request_unref(r);
		return;
	}
	xasprintf(&uri, "%s/device", r->cfg->server_public_url);
	xasprintf(&complete, "%s?user_code=%s", uri, g->user_code);
	j = json_pack("{s:s,s:s,s:s,s:s,s:I,s:I}", "device_code",
	    g->device_code, "user_code", g->user_code, "verification_uri", uri,
	    "verification_uri_complete", complete, "expires_in",
	    (json_int_t)g->expires_in, "interval", (json_int_t)g->interval);
	server_reply_json(r, 200, j);
	free(uri);
	free(complete);
	request_unref(r);
}

/*
 * POST /oauth/device_authorization (RFC 8628 section 3.1): client_id one
 * of device.clients, or none for device.default_client; scope and
 * Claude Code's surface are not needed.
 */
void
route_device_authorization(struct request *r)
{
	const uint8_t	*body;
	size_t		 blen;
	char		 cid[80];
	long		 retry;
	int		 n;

	if (device_off(r, 0))
		return;
	if (server_body(r, &body, &blen) == -1 ||
	    (n = server_form_count(r, "client_id")) == -1 || (blen > 0 &&
	    !server_content_type_is(r, "application/x-www-form-urlencoded"))) {
		server_error_oauth(r, 400, "invalid_request", "the request "
		    "must be a form (application/x-www-form-urlencoded)");
		return;
	}
	if (n > 1 || (n == 1 && server_form(r, "client_id", cid,
	    sizeof cid) == NULL)) {
		server_error_oauth(r, 400, "invalid_request",
		    "client_id is repeated or too long");
		return;
	}
	if (n == 0) {
		if (r->cfg->device_default_client == NULL ||
		    *r->cfg->device_default_client == '\0') {
			server_error_oauth(r, 400, "invalid_request",
			    "client_id is missing");
			return;
		}
		bsp_strlcpy(cid, r->cfg->device_default_client, sizeof cid);
	}
	if (!strlist_contains(&r->cfg->device_clients, cid)) {
		server_error_oauth(r, 400, "invalid_client",
		    "unknown client_id");
		return;
	}
	if (device_limit_take(r->cfg, DEVICE_LIMIT_AUTHORIZE,
	    (struct sockaddr *)&r->client_sa, &retry) == -1) {
		device_retry_after(r, retry);
		server_error_oauth(r, 429, "slow_down", "too many device "
		    "authorizations from this address; wait and try again");
		return;
	}
	request_ref(r);
	device_authorize(r->cfg, cid, r->client, device_authorized, r);
}

/* A poll's verdict, as RFC 8628 section 3.5 words it. */
static void
device_polled(int rc, json_t *resp, const char *why, void *arg)
{
	struct request	*r = arg;

	switch (rc) {
	case DEVICE_ISSUED:
		server_reply_json(r, 200, resp);
		break;
	case DEVICE_PENDING:
		server_error_oauth(r, 400, "authorization_pending", why);
		break;
	case DEVICE_SLOW_DOWN:
		server_error_oauth(r, 400, "slow_down", why);
		break;
	case DEVICE_DENIED:
		server_error_oauth(r, 400, "access_denied", why);
		break;
	case DEVICE_EXPIRED:
		server_error_oauth(r, 400, "expired_token", why);
		break;
	case DEVICE_INVALID:
		server_error_oauth(r, 400, "invalid_grant", why);
		break;
	default:
		server_error_oauth(r, 503, "temporarily_unavailable", why);
		break;
	}
	request_unref(r);
}

/* grant_type=urn:ietf:params:oauth:grant-type:device_code */
static void
token_device_code(struct request *r)
{
	char	 dc[DEVICE_CODE_MAX + 1], cid[80];
	int	 n;

	if (device_off(r, 0))
		return;
	if (server_form(r, "device_code", dc, sizeof dc) == NULL) {
		server_error_oauth(r, 400, "invalid_request",
		    "device_code is missing, repeated or too long");
		return;
	}
	if ((n = server_form_count(r, "client_id")) > 1 || (n == 1 &&
	    server_form(r, "client_id", cid, sizeof cid) == NULL)) {
		server_error_oauth(r, 400, "invalid_request",
		    "client_id is repeated or too long");
		return;
	}
	if (n == 1 && !strlist_contains(&r->cfg->device_clients, cid)) {
		server_error_oauth(r, 400, "invalid_client",
		    "unknown client_id");
		return;
	}
	request_ref(r);
	device_poll(r->cfg, dc, n == 1 ? cid : NULL, r->client, device_polled,
	    r);
	memzero(dc, sizeof dc);
}

/* A refresh at the gateway's token endpoint is over: answer it. */
static void
token_refreshed(int rc, json_t *resp, const char *why, void *arg)
{
	struct request	*r = arg;

	if (rc == -2)
		server_error_oauth(r, 503, "temporarily_unavailable",
		    "cannot refresh right now; try again");
	else if (rc == -1) {
		/* The session is over: Claude Code signs in again. */
		metric_add(m_refreshes, "result=\"invalid\"", 1);
		server_set_header(r, "WWW-Authenticate", "Bearer realm=\""
		    BSP_NAME "\", error=\"invalid_grant\"");
		server_error_oauth(r, 401, "invalid_grant", why);
	} else {
		metric_add(m_refreshes, "result=\"ok\"", 1);
		server_reply_json(r, 200, resp);
	}
	request_unref(r);
}

/* grant_type=refresh_token, as a form or JSON. */
static void
token_refresh(struct request *r, const char *token)
{
	request_ref(r);
	tokens_refresh(token, r->client, token_refreshed, r);
}

/*
 * POST /oauth/token: the device_code grant, refresh_token (401
 * invalid_grant when the session is over), and the API flow's code
 * exchange (as POST /auth/token).
 */
void
route_oauth_token(struct request *r)
{
	char		 gt[64], *buf;
	json_t		*j;
	const char	*why, *t;

	if (server_content_type_is(r, "application/x-www-form-urlencoded")) {
		if (server_form(r, "grant_type", gt, sizeof gt) == NULL) {
			server_error_oauth(r, 400, "invalid_request",
			    "grant_type is missing, repeated or too long");
			return;
		}
		if (strcmp(gt, DEVICE_GRANT) == 0) {
			token_device_code(r);
			return;
		}
		if (strcmp(gt, "refresh_token") == 0) {
			buf = xmalloc(TOKEN_FIELD_MAX);
			if (server_form(r, "refresh_token", buf,
			    TOKEN_FIELD_MAX) == NULL)
				server_error_oauth(r, 400, "invalid_request",
				    "refresh_token is missing, repeated or too "
				    "long");
			else
				token_refresh(r, buf);
			freezero(buf, TOKEN_FIELD_MAX);
			return;
		}
		server_error_oauth(r, 400, "unsupported_grant_type",
		    "grant_type must be urn:ietf:params:oauth:grant-type:"
		    "device_code or refresh_token here (the authorization "
		    "code's exchange takes JSON)");
		return;
	}
	if ((j = server_body_json(r, &why)) == NULL) {
		server_error_oauth(r, 400, "invalid_request", why);
		return;
	}
	t = json_string_value(json_object_get(j, "grant_type"));
	if (t != NULL && strcmp(t, "refresh_token") == 0) {
		t = json_string_value(json_object_get(j, "refresh_token"));
		if (t == NULL || *t == '\0' || strlen(t) >= TOKEN_FIELD_MAX)
			server_error_oauth(r, 400, "invalid_request",
			    "refresh_token is missing or too long");
		else
			token_refresh(r, t);
		json_decref(j);
		return;
	}
	if (t != NULL && strcmp(t, "authorization_code") != 0) {
		json_decref(j);
		server_error_oauth(r, 400, "unsupported_grant_type",
		    "grant_type must be authorization_code or refresh_token "
		    "in JSON");
		return;
	}
	json_decref(j);
	route_auth_token(r);
}
