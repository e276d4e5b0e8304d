/*
 * test-login.c: what a sign-in writes and reads in the database (oauth.c's
 * login_db_step), through the API flow against an identity provider of
 * the test's own (evhttp on loopback: a token endpoint and userinfo): the
 * state's row, the user and the session in one unit; the state refused
 * once redeemed; a refusal's row and audit row; a disabled user refused.
 * The device flow's browser sign-in (RFC 8628): its state carries the
 * device authorization's key, and its callback approves that
 * authorization in the same unit instead of starting a session, once; an
 * expired authorization fails the sign-in, and a user the policy refuses
 * denies it. Against SQLite, or the PostgreSQL database of
 * $BSP_TEST_STORE_URL (test-login-pg.sh).
 */

#include <sys/types.h>
#include <sys/socket.h>
#include <netinet/in.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/http.h>

#include "bsp.h"
#include "http-client.h"
#include "tap.h"
#include "tmpdb.h"

static int		 idp_port;
static struct evhttp	*idp_http;

/* The identity provider: a code "good" is exchanged, others refused. */
static void
idp_cb(struct evhttp_request *req, void *arg)
{
	struct evbuffer	*in = evhttp_request_get_input_buffer(req);
	struct evbuffer	*out = evbuffer_new();
	const char	*uri = evhttp_request_get_uri(req);
	size_t		 len = evbuffer_get_length(in);
	char		*body = xmalloc(len + 1);
	int		 code = 200;

	evbuffer_remove(in, body, len);
	body[len] = '\0';
	evhttp_add_header(evhttp_request_get_output_headers(req),
	    "Content-Type", "application/json");
	if (strncmp(uri, "/token", 6) == 0) {
		if (strstr(body, "code=good") != NULL)
			evbuffer_add_printf(out, "{\"access_token\":\"at-1\","
			    "\"token_type\":\"Bearer\"}");
		else {
			code = 400;
			evbuffer_add_printf(out, "{\"error\":\"invalid_grant\","
			    "\"error_description\":\"bad code\"}");
		}
	} else
		evbuffer_add_printf(out, "{\"sub\":\"42\",\"email\":"
		    "\"ann@example.com\",\"email_verified\":true,\"name\":"
		    "\"Ann\"}");
	evhttp_send_reply(req, code, code == 200 ? "OK" : "Bad Request", out);
	evbuffer_free(out);
	free(body);
}

static void
idp_start(void)
{
	struct evhttp_bound_socket	*bs;
	struct sockaddr_in		 sin;
	socklen_t			 slen = sizeof sin;

	if ((idp_http = evhttp_new(bsp_base)) == NULL ||
	    (bs = evhttp_bind_socket_with_handle(idp_http, "127.0.0.1", 0)) ==
	    NULL)
		fatalx("cannot start the identity provider");
	evhttp_set_gencb(idp_http, idp_cb, NULL);
	if (getsockname(evhttp_bound_socket_get_fd(bs),
	    (struct sockaddr *)&sin, &slen) == -1)
		fatal("getsockname");
	idp_port = ntohs(sin.sin_port);
}

/* A sign-in's verdict. */
struct verdict {
	volatile int	 done;
	int		 code;
	int		 device;
	char		*error;
	char		*detail;
	char		*user;
	char		*refresh;
};

static void
verdict_clear(struct verdict *v)
{
	free(v->error);
	free(v->detail);
	free(v->user);
	free(v->refresh);
	memset(v, 0, sizeof *v);
}

static void
signed_in(const struct login_result *res, void *arg)
{
	struct verdict	*v = arg;
	const char	*r;

	v->code = res->code;
	v->device = res->device;
	if (res->error != NULL)
		v->error = xstrdup(res->error);
	if (res->detail != NULL)
		v->detail = xstrdup(res->detail);
	if (res->user != NULL)
		v->user = xstrdup(res->user->id);
	if (res->session != NULL && (r = json_string_value(json_object_get(
	    res->session, "refresh_token"))) != NULL)
		v->refresh = xstrdup(r);
	v->done = 1;
}

/* A sealed state of the API flow, as /auth/authorize hands it out. */
static char *
state_new(const struct provider_config *pc, const char *uri)
{
	struct login_start	 ls;
	struct sockaddr_in	 sin;

	memset(&sin, 0, sizeof sin);
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(0x7f000001);
	memset(&ls, 0, sizeof ls);
	ls.pc = pc;
	ls.api = 1;
	ls.redirect_uri = uri;
	ls.client = (struct sockaddr *)&sin;
	if (oauth_login_begin(cfg, &ls) != 0)
		fatalx("oauth_login_begin: %s", ls.why);
	free(ls.url);
	return (ls.sealed);
}

/*
 * A browser sign-in of the device flow (the verification page's) for a
 * user code: the sealed state (the cookie), and its id in *id.
 */
static char *
device_state_new(const struct provider_config *pc, const char *uri,
    const char *user_code, char **id)
{
	struct login_start	 ls;
	struct sockaddr_in	 sin;
	uint8_t			 key[DEVICE_KEY_LEN];
	const char		*p;

	device_user_key(user_code, key);
	memset(&sin, 0, sizeof sin);
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(0x7f000001);
	memset(&ls, 0, sizeof ls);
	ls.pc = pc;
	ls.redirect_uri = uri;
	ls.client = (struct sockaddr *)&sin;
	ls.device = key;
	if (oauth_login_begin(cfg, &ls) != 0)
		fatalx("oauth_login_begin: %s", ls.why);
	if ((p = strstr(ls.url, "&state=")) == NULL)
		fatalx("no state in %s", ls.url);
	p += 7;
	*id = xstrndup(p, strcspn(p, "&"));
	free(ls.url);
	return (ls.sealed);
}

/* The IdP's redirect back to the browser flow's callback, to a verdict. */
static void
callback(const struct provider_config *pc, const char *cookie, const char *id,
    const char *code, struct verdict *v)
{
	struct login		*l;
	struct login_redirect	 in;

	verdict_clear(v);
	l = oauth_login_new(cfg, pc, 0, "127.0.0.1", "test", signed_in, v);
	memset(&in, 0, sizeof in);
	in.state = id;
	in.cookie = cookie;
	in.code = code;
	in.iss_absent = 1;
	oauth_login_redirect(l, &in);
	store_wait(&v->done);
	oauth_login_free(l);
}

/* A device authorization's user code (its device code is not needed). */
struct grant {
	volatile int	done;
	char		user_code[DEVICE_USER_CODE_TEXT];
};

static void
granted(int rc, const struct device_grant *g, void *arg)
{
	struct grant	*w = arg;

	if (rc == 0)
		bsp_strlcpy(w->user_code, g->user_code, sizeof w->user_code);
	w->done = 1;
}

static void
authorize(struct grant *g)
{
	memset(g, 0, sizeof *g);
	device_authorize(cfg, "claude-code", "127.0.0.1", granted, g);
	store_wait(&g->done);
}

/* The hash of a user code, as an SQL literal. */
static const char *
user_hex(const char *user_code)
{
	uint8_t	k[DEVICE_KEY_LEN];

	device_user_key(user_code, k);
	return (tmpdb_blob(k, sizeof k));
}

static void
test_device(const struct provider_config *pc, const char *uri)
{
	struct verdict	 v;
	struct grant	 g;
	char		*state, *id, *state2, *id2;
	long long	 sessions;

	memset(&v, 0, sizeof v);
	sessions = tmpdb_int("SELECT count(*) FROM token_families");
	authorize(&g);
	state = device_state_new(pc, uri, g.user_code, &id);
	callback(pc, state, id, "good", &v);
	is_int(v.code, 200, "device: signed in (%s)", v.detail != NULL ?
	    v.detail : "-");
	is_int(v.device, 1, "device: the verdict is the device's");
	ok(v.refresh == NULL, "device: no tokens in it");
	is_int(tmpdb_int("SELECT count(*) FROM token_families"), sessions,
	    "device: no session is started by the sign-in");
	is_int(tmpdb_int("SELECT count(*) FROM device_codes WHERE user_hash = "
	    "%s AND status = 'approved' AND user_id = 'corp:42'",
	    user_hex(g.user_code)), 1, "device: the authorization is "
	    "approved for the user");
	is_int(tmpdb_int("SELECT count(*) FROM oauth_states WHERE flow = "
	    "'device'"), 1, "device: the state's row is written");
	is_int(tmpdb_int("SELECT count(*) FROM audit_log WHERE event = "
	    "'device_approved' AND user_id = 'corp:42'"), 1,
	    "device: the approval is audited");
	callback(pc, state, id, "good", &v);
	is_int(v.code, 400, "device: the state again is refused");
	free(state);
	free(id);

	/* An ordinary browser state is not a device's, nor the reverse. */
	authorize(&g);
	state = device_state_new(pc, uri, g.user_code, &id);
	state2 = device_state_new(pc, uri, g.user_code, &id2);
	callback(pc, state, id2, "good", &v);
	is_int(v.code, 400, "device: a state with another's id is refused");
	is_int(tmpdb_int("SELECT count(*) FROM device_codes WHERE user_hash = "
	    "%s AND status = 'pending'", user_hex(g.user_code)), 1,
	    "device: and approves nothing");

	/* Expired meanwhile: the sign-in fails, recorded. */
	tmpdb_exec("UPDATE device_codes SET expires = created - 1 WHERE "
	    "user_hash = %s", user_hex(g.user_code));
	callback(pc, state, id, "good", &v);
	is_int(v.code, 400, "device: an expired authorization fails the "
	    "sign-in");
	is_str(v.error, "invalid_grant", "device: invalid_grant");
	is_int(v.device, 1, "device: told as the device's");
	is_int(tmpdb_int("SELECT count(*) FROM device_codes WHERE user_hash = "
	    "%s AND status = 'pending'", user_hex(g.user_code)), 1,
	    "device: nothing approved");
	is_int(tmpdb_int("SELECT count(*) FROM audit_log WHERE event = "
	    "'login_failed' AND detail LIKE '%%expired%%'"), 1,
	    "device: the failure is audited");
	callback(pc, state, id, "good", &v);
	is_int(v.code, 400, "device: its state is spent");
	free(state);
	free(id);
	free(state2);
	free(id2);

	/* A user the policy refuses: the authorization is denied. */
	authorize(&g);
	state = device_state_new(pc, uri, g.user_code, &id);
	is_int(t_user_set("corp:42", 1, 0), 1, "device: the user is disabled");
	callback(pc, state, id, "good", &v);
	is_int(v.code, 403, "device: a disabled user is refused");
	is_int(tmpdb_int("SELECT count(*) FROM device_codes WHERE user_hash = "
	    "%s AND status = 'denied' AND user_id = 'corp:42'",
	    user_hex(g.user_code)), 1, "device: the authorization is denied");
	is_int(t_user_set("corp:42", 0, 0), 1, "device: enabled again");
	free(state);
	free(id);
	verdict_clear(&v);
}

/* POST /auth/token with this state and code, to its verdict. */
static void
redeem(const struct provider_config *pc, const char *uri, const char *state,
    const char *code, struct verdict *v)
{
	struct login		*l;
	struct login_grant	 g;

	verdict_clear(v);
	l = oauth_login_new(cfg, pc, 1, "127.0.0.1", "test", signed_in, v);
	memset(&g, 0, sizeof g);
	g.state = state;
	g.code = code;
	g.redirect_uri = uri;
	oauth_login_grant(l, &g);
	store_wait(&v->done);
	oauth_login_free(l);
}

int
main(void)
{
	const struct provider_config	*pc;
	struct verdict			 v;
	json_t				*resp = NULL;
	char				*yaml, *uri, *state, *state2;
	char				*cause = NULL;
	const char			*why;

	log_init("test-login");
	if ((bsp_base = event_base_new()) == NULL)
		fatalx("event_base_new");
	idp_start();
	xasprintf(&yaml, "server:\n  public_url: http://127.0.0.1:9\n"
	    "oauth:\n  providers:\n    corp:\n      client_id: cid\n"
	    "      client_secret: csec\n"
	    "      authorization_url: http://127.0.0.1:%d/authorize\n"
	    "      token_url: http://127.0.0.1:%d/token\n"
	    "      user_info_url: http://127.0.0.1:%d/userinfo\n"
	    "access:\n  allow_any_user: true\n", idp_port, idp_port, idp_port);
	tmpdb_open(yaml);
	free(yaml);
	if (hc_init(NULL, &cause) == -1 || oauth_init(cfg, &cause) == -1)
		fatalx("%s", cause);
	metrics_init();
	if ((pc = provider_find(cfg, "corp", 4)) == NULL)
		fatalx("no provider");
	uri = oauth_callback_uri(cfg, pc);
	memset(&v, 0, sizeof v);

	/* A sign-in: the state's row, the user and a session. */
	state = state_new(pc, uri);
	redeem(pc, uri, state, "good", &v);
	is_int(v.code, 200, "signed in (%s)", v.detail != NULL ? v.detail :
	    "-");
	is_str(v.user, "corp:42", "as the IdP's subject");
	is_int(tmpdb_int("SELECT count(*) FROM oauth_states WHERE provider = "
	    "'corp' AND flow = 'api'"), 1, "the state's row is written");
	is_int(tmpdb_int("SELECT count(*) FROM users WHERE id = 'corp:42' AND "
	    "email = 'ann@example.com' AND email_verified = 1 AND name = "
	    "'Ann'"), 1, "the user is recorded");
	is_int(tmpdb_int("SELECT count(*) FROM token_families WHERE user_id = "
	    "'corp:42'"), 1, "a session is started");
	is_int(tmpdb_int("SELECT count(*) FROM audit_log WHERE event = 'login' "
	    "AND user_id = 'corp:42'"), 1, "and audited");
	ok(v.refresh != NULL && t_refresh(v.refresh, "127.0.0.1", &resp,
	    &why) == 0, "its refresh token works");
	json_decref(resp);

	/* The same state again: spent, whichever daemon redeemed it. */
	redeem(pc, uri, state, "good", &v);
	is_int(v.code, 400, "a redeemed state is refused");
	ok(v.detail != NULL && strstr(v.detail, "already used") != NULL,
	    "as used (%s)", v.detail != NULL ? v.detail : "-");
	is_int(tmpdb_int("SELECT count(*) FROM token_families WHERE user_id = "
	    "'corp:42'"), 1, "no second session");
	is_int(tmpdb_int("SELECT count(*) FROM audit_log WHERE event IN "
	    "('login_failed', 'login_refused')"), 0, "and nothing audited: "
	    "the state was no longer live");
	free(state);

	/* A refusal of a live state: its row and its audit row. */
	state = state_new(pc, uri);
	redeem(pc, uri, state, "bad", &v);
	is_int(v.code, 400, "a code the IdP refuses is refused");
	is_int(tmpdb_int("SELECT count(*) FROM oauth_states"), 2,
	    "the refused state is spent too");
	is_int(tmpdb_int("SELECT count(*) FROM audit_log WHERE event = "
	    "'login_failed' AND client_addr = '127.0.0.1'"), 1,
	    "the refusal is audited");
	redeem(pc, uri, state, "good", &v);
	is_int(v.code, 400, "and that state cannot be used again");
	free(state);

	/* A disabled user: refused, audited, no session. */
	is_int(t_user_set("corp:42", 1, 0), 1, "the user is disabled");
	state = state_new(pc, uri);
	state2 = state_new(pc, uri);
	redeem(pc, uri, state, "good", &v);
	is_int(v.code, 403, "a disabled user is refused");
	is_str(v.error, "access_denied", "access_denied");
	is_int(tmpdb_int("SELECT count(*) FROM audit_log WHERE event = "
	    "'login_refused' AND user_id = 'corp:42'"), 1, "audited with the "
	    "user");
	is_int(tmpdb_int("SELECT count(*) FROM token_families WHERE user_id = "
	    "'corp:42'"), 1, "no session was started");
	is_int(t_user_set("corp:42", 0, 0), 1, "enabled again");
	redeem(pc, uri, state2, "good", &v);
	is_int(v.code, 200, "then signs in");
	free(state);
	free(state2);

	test_device(pc, uri);

	verdict_clear(&v);
	free(uri);
	device_free();
	oauth_free();
	hc_shutdown();
	evhttp_free(idp_http);
	tmpdb_close();
	return (tap_done());
}
