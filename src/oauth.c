/*
 * oauth.c: logging in: the OAuth 2.0 authorization code flow with PKCE and,
 * for OIDC providers, a verified ID token.
 *
 * Browser flow: GET /auth/login/NAME seals the sign-in (oauth-state.c:
 * provider, nonce, PKCE verifier, redirect URI, ten minutes) into an
 * HttpOnly SameSite=Lax cookie, which binds it to the browser, and
 * redirects to the IdP with the state's 256-bit id; GET /auth/callback/NAME
 * opens the cookie, matches the state, exchanges the code, verifies the ID
 * token (signature through the IdP's JWKS, iss, aud, azp, exp, iat, nonce,
 * the algorithm allow-list), reads userinfo where claims are missing,
 * applies the access policy, records the user and answers a page with the
 * tokens. API flow: GET /auth/authorize/NAME and POST /auth/token do the
 * same for clients that handle the redirect themselves (redirect_uri must
 * be the configured one or a loopback URI, RFC 8252, which must come with
 * the client's own PKCE challenge); the sealed sign-in is the state itself.
 *
 * Starting a sign-in writes nothing; each client address may start
 * oauth.max_pending_logins at once, refilled over ten minutes, whatever
 * other addresses do. A state is single use: while its callback runs, the
 * same state is refused (a set in memory), and its verdict (a session, or
 * a refusal once the state proved to be a live one of this client) is
 * recorded with a row keyed by the hash of its id in oauth_states, which
 * refuses a second redemption here or in any daemon sharing the database.
 * Junk (no state, a forged, altered, expired or spent one, one of another
 * browser, provider or client) is refused before any write.
 *
 * An authorization response naming its issuer (RFC 9207) must name the
 * provider's.
 *
 * Each login is a state machine (login_enter() traces it):
 * NEW -> TOKEN -> [KEYS] -> [USERINFO] -> [EMAILS] -> [ORGS] -> DONE.
 * Provider error text reaches pages escaped and never with secrets.
 */

#include <netinet/in.h>
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <sodium.h>
#include <sqlite3.h>
#include <uthash.h>

#include "bsp.h"
#include "crypto.h"
#include "http-client.h"
#include "jose.h"
#include "oauth-state.h"
#include "oidc.h"
#include "web.h"

#define LOGIN_DOC_MAX		(256 * 1024)
#define LOGIN_COOKIE		"bsp_login"
#define LOGIN_COOKIE_SECURE	"__Host-bsp_login"
#define LOGIN_LEEWAY		60
#define CLAIM_OURS		"_bsp_"	/* our claims, never an IdP's */

enum login_state {
	LS_NEW,
	LS_TOKEN,
	LS_KEYS,
	LS_USERINFO,
	LS_EMAILS,
	LS_ORGS,
	LS_DONE,
};
static const char *const login_state_names[] = {
	"NEW", "TOKEN", "KEYS", "USERINFO", "EMAILS", "ORGS", "DONE"
};

struct login {
	struct request			*r;
	const struct provider_config	*pc;
	struct oidc_issuer		*iss;
	int				 api;
	int				 pkce;	/* the IdP got our challenge */
	/*
	 * Its state: a live one of this client (genuine), claimed in
	 * oa.busy under skey (busy), its oauth_states row written (spent).
	 */
	int				 genuine;
	int				 busy;
	int				 spent;
	uint8_t				 skey[CRYPTO_HASH_LEN];
	int64_t				 expires;
	int				 keys_waited;	/* waited for keys */
	enum login_state		 state;
	char				*code;
	char				*redirect_uri;
	char				*nonce;
	char				*verifier;
	char				*access_token;	/* the IdP's */
	char				*id_token;
	json_t				*claims;
	char				*id_sub;	/* from the ID token */
	struct identity			 id;
	struct hc_target		*target;
	struct hc_req			*up;
};

/* A state whose callback is running in this process. */
struct login_busy {
	uint8_t			key[CRYPTO_HASH_LEN];
	UT_hash_handle		hh;
};

static struct {
	struct oidc_issuer	**held;
	size_t			  nheld;
	struct login_busy	 *busy;
} oa;

/*
 * Redeemed states, by the hash of their id; kept until well after they
 * expire (tokens.c purges them), so that no clock can make one live again.
 */
static struct db_stmt st_spent = { "SELECT 1 FROM oauth_states WHERE "
    "hash = ?", NULL, NULL };
static struct db_stmt st_spend = { "INSERT INTO oauth_states (hash, "
    "provider, flow, redirect_uri, client_addr, created, expires) VALUES "
    "(?, ?, ?, ?, ?, ?, ?)", NULL, NULL };

static int	query_count(struct request *, const char *);
static void	login_release(struct login *);
static void	login_step(struct login *);
static void	login_fail(struct login *, int, const char *, const char *,
		    const char *);
static void	login_fetch_json(struct login *, const char *, const char *,
		    const char *, const char *);

void
identity_clear(struct identity *id)
{
	free(id->subject);
	free(id->email);
	free(id->name);
	free(id->tenant);
	strlist_free(&id->groups);
	strlist_free(&id->orgs);
	memset(id, 0, sizeof *id);
}

static void
login_enter(struct login *l, enum login_state s)
{
	if (l->state == s)
		return;
	log_trace(TRACE_OAUTH, "login %s (%s): %s -> %s", l->r->id,
	    l->pc->name, login_state_names[l->state], login_state_names[s]);
	l->state = s;
}

static void
login_free(void *arg)
{
	struct login	*l = arg;

	if (l->up != NULL)
		hc_cancel(l->up);
	if (l->iss != NULL) {
		oidc_cancel_wait(l->iss, l);
		oidc_issuer_put(l->iss);
	}
	if (l->target != NULL)
		hc_target_free(l->target);
	login_release(l);
	free(l->code);
	free(l->redirect_uri);
	freezero_str(l->nonce);
	freezero_str(l->verifier);
	freezero_str(l->access_token);
	freezero_str(l->id_token);
	free(l->id_sub);
	json_decref(l->claims);
	identity_clear(&l->id);
	free(l);
}

/* How oidc.c treats a provider's issuer (OIDC_* flags). */
static int
provider_oidc_flags(const struct provider_config *pc)
{
	int	flags = 0;

	if (pc->oidc && (pc->authorization_url == NULL ||
	    pc->token_url == NULL || pc->jwks_uri == NULL))
		flags |= OIDC_DISCOVERY;
	if (pc->kind == PROVIDER_MICROSOFT)
		flags |= OIDC_TENANT_ALIAS;
	return (flags);
}

static void
oauth_held_put(void)
{
	size_t	i;

	for (i = 0; i < oa.nheld; i++)
		oidc_issuer_put(oa.held[i]);
	free(oa.held);
	oa.held = NULL;
	oa.nheld = 0;
}

/* Module: fetch every configured IdP's documents from the start. */
int
oauth_init(struct config *c, char **cause)
{
	struct oidc_issuer	**held;
	size_t			  n = 0, i;

	held = xcalloc(c->nproviders + c->nissuers + 1, sizeof *held);
	for (i = 0; i < c->nproviders; i++) {
		if (!c->providers[i].oidc)
			continue;
		held[n++] = oidc_issuer_get(c->providers[i].issuer,
		    c->providers[i].jwks_uri, &c->providers[i].algorithms,
		    provider_oidc_flags(&c->providers[i]));
	}
	for (i = 0; i < c->nissuers; i++)
		held[n++] = oidc_issuer_get(c->issuers[i].issuer,
		    c->issuers[i].jwks_uri, &c->issuers[i].algorithms,
		    c->issuers[i].jwks_uri == NULL ? OIDC_DISCOVERY : 0);
	oauth_held_put();
	oa.held = held;
	oa.nheld = n;
	return (0);
}

int
oauth_reload(struct config *c, char **cause)
{
	return (oauth_init(c, cause));
}

void
oauth_free(void)
{
	oauth_held_put();
	oauth_starts_clear();
}

/* Is every configured provider's and issuer's document in? */
int
oauth_ready(const char **detail)
{
	size_t	i;

	for (i = 0; i < oa.nheld; i++) {
		if (!oidc_ready(oa.held[i])) {
			*detail = "an identity provider's keys are not loaded";
			return (0);
		}
	}
	return (1);
}

static const char *
provider_endpoint(const struct login *l, const char *conf, const char *name)
{
	if (conf != NULL)
		return (conf);
	return (l->iss != NULL ? oidc_endpoint(l->iss, name) : NULL);
}

/* Loopback redirect URIs for native clients (RFC 8252 section 7.3). */
static int
redirect_is_loopback(const char *u)
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

static char *
callback_uri(const struct request *r, const struct provider_config *pc)
{
	char	*u;

	if (pc->redirect_uri != NULL)
		return (xstrdup(pc->redirect_uri));
	xasprintf(&u, "%s/auth/callback/%s", r->cfg->server_public_url,
	    pc->name);
	return (u);
}

static void
query_add(struct evbuffer *b, const char *k, const char *v)
{
	char	*e = evhttp_uriencode(v, -1, 0);

	evbuffer_add_printf(b, "%s%s=%s", evbuffer_get_length(b) ? "&" : "",
	    k, e != NULL ? e : "");
	free(e);
}

/*
 * Start a sign-in: take one start from the client's allowance, seal the
 * state and build the authorization URL. Nothing is stored. On success
 * *url is the URL and *sealed the state to hand over: the cookie's value
 * (browser flow) or the state itself (API flow). An API client's PKCE
 * challenge (RFC 7636, S256), if it gave one, is sealed in with it:
 * /auth/token then wants its verifier. -2: the IdP's documents are not
 * in; -3: the client's allowance is spent (*retry seconds); -1 else.
 */
static int
login_begin(struct request *r, const struct provider_config *pc,
    struct oidc_issuer *iss, int api, const char *redirect_uri,
    const uint8_t *client_challenge, char **url, char **sealed,
    const char **why, long *retry)
{
	struct oauth_state	 st;
	struct evbuffer		*q;
	char			 client[INET6_ADDRSTRLEN + 4];	/* "/64" */
	char			 state[OAUTH_STATE_ID_TEXT];
	char			*nonce = NULL, *verifier = NULL;
	char			*challenge = NULL, *scope;
	uint8_t			 vh[CRYPTO_HASH_LEN];
	const char		*ep;
	int			 rc = -1;

	*url = *sealed = NULL;
	*retry = 0;
	ep = pc->authorization_url != NULL ? pc->authorization_url :
	    iss != NULL ? oidc_endpoint(iss, "authorization_endpoint") : NULL;
	if (ep == NULL) {
		*why = "the identity provider's configuration has not been "
		    "loaded yet";
		return (-2);
	}
	(void)sockaddr_group((struct sockaddr *)&r->client_sa, client,
	    sizeof client);
	if (oauth_starts_take(client, now_mono(),
	    (int)r->cfg->oauth_max_pending, retry) == -1) {
		*why = "too many sign-ins were started from your address; wait "
		    "a few minutes and try again";
		return (-3);
	}
	memset(&st, 0, sizeof st);
	st.flow = api ? OAUTH_FLOW_API : OAUTH_FLOW_BROWSER;
	st.flags = pc->pkce ? OAUTH_STATE_PKCE : 0;
	st.expires = (int64_t)now_wall() + OAUTH_STATE_TTL;
	crypto_random(st.id, sizeof st.id);
	crypto_random(st.nonce, sizeof st.nonce);
	crypto_random(st.verifier, sizeof st.verifier);
	crypto_sha256(redirect_uri, strlen(redirect_uri), st.redirect_hash);
	if (client_challenge != NULL) {
		st.flags |= OAUTH_STATE_CLIENT_PKCE;
		memcpy(st.challenge, client_challenge, sizeof st.challenge);
	}
	bsp_strlcpy(st.provider, pc->name, sizeof st.provider);
	if ((*sealed = oauth_state_seal(&st)) == NULL) {
		*why = "cannot protect the login state";
		goto out;
	}
	nonce = crypto_b64url_encode_alloc(st.nonce, sizeof st.nonce);
	verifier = crypto_b64url_encode_alloc(st.verifier, sizeof st.verifier);
	crypto_sha256(verifier, strlen(verifier), vh);
	challenge = crypto_b64url_encode_alloc(vh, sizeof vh);
	oauth_state_id_text(&st, state);

	q = evbuffer_new();
	query_add(q, "response_type", "code");
	query_add(q, "client_id", pc->client_id);
	query_add(q, "redirect_uri", redirect_uri);
	scope = strlist_join(&pc->scopes, " ");
	if (*scope != '\0')
		query_add(q, "scope", scope);
	free(scope);
	query_add(q, "state", api ? *sealed : state);
	if (pc->oidc)
		query_add(q, "nonce", nonce);
	if (pc->pkce) {
		query_add(q, "code_challenge", challenge);
		query_add(q, "code_challenge_method", "S256");
	}
	evbuffer_add(q, "", 1);
	xasprintf(url, "%s%s%s", ep, strchr(ep, '?') != NULL ? "&" : "?",
	    (const char *)evbuffer_pullup(q, -1));
	evbuffer_free(q);
	rc = 0;
out:
	sodium_memzero(&st, sizeof st);
	freezero_str(nonce);
	freezero_str(verifier);
	free(challenge);
	if (rc == -1) {
		freezero_str(*sealed);
		*sealed = NULL;
	}
	return (rc);
}

/* Retry-After: seconds, at least one. */
static void
retry_after(struct request *r, long s)
{
	char	buf[32];

	snprintf(buf, sizeof buf, "%ld", s > 0 ? s : 1);
	server_set_header(r, "Retry-After", buf);
}

/* The oidc issuer of a provider (a new reference), or NULL if not OIDC. */
static struct oidc_issuer *
provider_issuer(const struct provider_config *pc)
{
	if (!pc->oidc)
		return (NULL);
	return (oidc_issuer_get(pc->issuer, pc->jwks_uri, &pc->algorithms,
	    provider_oidc_flags(pc)));
}

static const struct provider_config *
route_provider(struct request *r)
{
	return (provider_find(r->cfg, r->params[0].p, r->params[0].len));
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
	web_login_page(r, wp, r->cfg->nproviders, NULL);
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

static void
login_count(const struct provider_config *pc, const char *result)
{
	char	labels[160];

	metric_label(labels, sizeof labels, "provider", pc != NULL ? pc->name :
	    "unknown", "result", result, NULL);
	metric_add(m_logins, labels, 1);
}

/* GET /auth/login/{provider}: browser flow, state cookie, 302. */
void
route_auth_login(struct request *r)
{
	const struct provider_config	*pc = route_provider(r);
	struct oidc_issuer		*iss;
	char				*uri, *url, *sealed, *cookie;
	const char			*why = NULL;
	long				 retry;
	int				 rc;

	if (pc == NULL) {
		web_error_page(r, 404, "Unknown sign-in provider", "This proxy "
		    "has no identity provider by that name.", "Go back to the "
		    "start page and pick one of the providers listed there.");
		return;
	}
	iss = provider_issuer(pc);
	uri = callback_uri(r, pc);
	rc = login_begin(r, pc, iss, 0, uri, NULL, &url, &sealed, &why,
	    &retry);
	free(uri);
	if (rc == -2 && iss != NULL)
		oidc_kick(iss);
	if (rc != 0) {
		login_count(pc, "error");
		if (rc == -3)
			retry_after(r, retry);
		web_error_page(r, rc == -3 ? 429 : 503, "Cannot start signing "
		    "in", why, rc == -2 && iss != NULL ?
		    oidc_problem_text(iss) : rc == -3 ? "Sign-ins from other "
		    "addresses are not affected." : "Try again in a minute. If "
		    "it keeps failing, tell the administrator of this proxy.");
		oidc_issuer_put(iss);
		return;
	}
	oidc_issuer_put(iss);
	xasprintf(&cookie, "%s=%s; Path=%s; Max-Age=%d; HttpOnly; "
	    "SameSite=Lax%s", r->cfg->public_https ? LOGIN_COOKIE_SECURE :
	    LOGIN_COOKIE, sealed, r->cfg->public_https ? "/" : "/auth/callback",
	    OAUTH_STATE_TTL, r->cfg->public_https ? "; Secure" : "");
	server_set_header(r, "Set-Cookie", cookie);
	server_set_header(r, "Location", url);
	log_trace(TRACE_OAUTH, "login via %s started", pc->name);
	server_reply_text(r, 302, "text/plain; charset=utf-8",
	    "Redirecting to the identity provider.\n");
	freezero_str(cookie);
	freezero_str(sealed);
	free(url);
}

/* GET /auth/authorize/{provider}?redirect_uri=&state=: API flow start. */
void
route_auth_authorize(struct request *r)
{
	const struct provider_config	*pc = route_provider(r);
	struct oidc_issuer		*iss;
	char				 ru[2048], *uri, *url, *state;
	char				 ccs[64], ccm[16];
	uint8_t				 cc[CRYPTO_HASH_LEN];
	const char			*why = NULL;
	size_t				 cclen;
	long				 retry;
	int				 rc, hascc = 0, native;

	if (pc == NULL) {
		server_error_oauth(r, 404, "invalid_request",
		    "unknown provider");
		return;
	}
	if (server_query(r, "redirect_uri", ru, sizeof ru) == NULL) {
		server_error_oauth(r, 400, "invalid_request",
		    "redirect_uri is missing, repeated or too long");
		return;
	}
	uri = callback_uri(r, pc);
	native = strcmp(ru, uri) != 0;	/* a native client's loopback */
	free(uri);
	if (native && !redirect_is_loopback(ru)) {
		server_error_oauth(r, 400, "invalid_request", "redirect_uri "
		    "must be the provider's configured redirect URI or a "
		    "loopback URI (http://127.0.0.1:PORT/...)");
		return;
	}
	/*
	 * The state carries the sign-in itself (sealed), so this proxy
	 * makes it: a client's own would never come back from the IdP.
	 */
	if (query_count(r, "state") != 0) {
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
	} else if (query_count(r, "code_challenge") != 0 ||
	    query_count(r, "code_challenge_method") != 0) {
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
	iss = provider_issuer(pc);
	rc = login_begin(r, pc, iss, 1, ru, hascc ? cc : NULL, &url, &state,
	    &why, &retry);
	if (rc == -2 && iss != NULL)
		oidc_kick(iss);
	oidc_issuer_put(iss);
	if (rc != 0) {
		if (rc == -3)
			retry_after(r, retry);
		server_error_oauth(r, rc == -3 ? 429 : 503,
		    "temporarily_unavailable", why);
		return;
	}
	server_reply_json(r, 200, json_pack("{s:s,s:s,s:s}",
	    "authorization_url", url, "state", state, "provider", pc->name));
	free(state);
	free(url);
}

/*
 * Claim a state for this request, which has shown that it may redeem it.
 * A read, never a write: -1 while another request redeems it (this
 * process), -2 once it has been redeemed (the row, written by any daemon
 * sharing the database), -3 if the database cannot tell; 0 claimed.
 */
static int
login_claim(struct login *l, const uint8_t key[CRYPTO_HASH_LEN])
{
	struct login_busy	*b;
	sqlite3_stmt		*q;
	int			 rc;

	HASH_FIND(hh, oa.busy, key, CRYPTO_HASH_LEN, b);
	if (b != NULL)
		return (-1);
	q = db_prepare(&st_spent);
	sqlite3_bind_blob(q, 1, key, CRYPTO_HASH_LEN, SQLITE_STATIC);
	rc = sqlite3_step(q);
	sqlite3_reset(q);
	if (rc == SQLITE_ROW)
		return (-2);
	if (rc != SQLITE_DONE) {
		log_warnx("login via %s: cannot look up its state: %s",
		    l->pc->name, db_errmsg());
		return (-3);
	}
	b = xcalloc(1, sizeof *b);
	memcpy(b->key, key, sizeof b->key);
	HASH_ADD(hh, oa.busy, key, sizeof b->key, b);
	memcpy(l->skey, b->key, sizeof l->skey);
	l->busy = 1;
	return (0);
}

/* The request is done with its state (redeemed or not). */
static void
login_release(struct login *l)
{
	struct login_busy	*b;

	if (!l->busy)
		return;
	HASH_FIND(hh, oa.busy, l->skey, sizeof l->skey, b);
	if (b != NULL) {
		HASH_DEL(oa.busy, b);
		free(b);
	}
	l->busy = 0;
}

/*
 * Record that the claimed state is redeemed: its row, in the caller's
 * transaction if there is one. -1 if it cannot be written, with *dup set
 * when the row is there already (another daemon redeemed it meanwhile).
 */
static int
login_spend(struct login *l, int *dup)
{
	sqlite3_stmt	*st = db_prepare(&st_spend);
	time_t		 now = now_wall();

	*dup = 0;
	sqlite3_bind_blob(st, 1, l->skey, sizeof l->skey, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, l->pc->name, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, l->api ? "api" : "browser", -1,
	    SQLITE_STATIC);
	sqlite3_bind_text(st, 4, l->redirect_uri, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 5, l->r->client, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 6, (sqlite3_int64)now);
	sqlite3_bind_int64(st, 7, (sqlite3_int64)(l->expires +
	    OAUTH_STATE_TTL));
	if (sqlite3_step(st) != SQLITE_DONE) {
		*dup = sqlite3_extended_errcode(bsp_db) ==
		    SQLITE_CONSTRAINT_PRIMARYKEY;
		if (!*dup)
			log_warnx("login via %s: cannot record its state: %s",
			    l->pc->name, db_errmsg());
		sqlite3_reset(st);
		return (-1);
	}
	sqlite3_reset(st);
	l->spent = 1;
	return (0);
}

/*
 * What a state holds that the rest of the sign-in needs; the state itself
 * is wiped by the caller.
 */
static void
login_take_state(struct login *l, const struct oauth_state *st)
{
	l->expires = st->expires;
	l->pkce = (st->flags & OAUTH_STATE_PKCE) != 0;
	l->nonce = crypto_b64url_encode_alloc(st->nonce, sizeof st->nonce);
	l->verifier = crypto_b64url_encode_alloc(st->verifier,
	    sizeof st->verifier);
}

static struct login *
login_new(struct request *r, const struct provider_config *pc, int api)
{
	struct login	*l;

	l = xcalloc(1, sizeof *l);
	l->r = r;
	l->pc = pc;
	l->api = api;
	l->iss = provider_issuer(pc);
	r->state = l;
	r->state_free = login_free;
	return (l);
}

static void
login_abort(struct request *r)
{
	struct login	*l = r->state;

	if (l == NULL || l->state == LS_DONE)
		return;
	if (l->up != NULL) {
		hc_cancel(l->up);
		l->up = NULL;
	}
	if (l->iss != NULL)
		oidc_cancel_wait(l->iss, l);
	login_enter(l, LS_DONE);
	request_unref(r);
}

/* The state is spent by this refusal, which the audit log records. */
static void
login_record_refusal(struct login *l, const char *error, const char *uid,
    const char *detail)
{
	int	dup;

	if (db_begin() == -1) {
		log_warnx("login via %s: cannot record its refusal: %s",
		    l->pc->name, db_errmsg());
		return;
	}
	if (!l->spent && login_spend(l, &dup) == -1) {
		db_rollback();
		if (dup)
			log_info("login via %s refused; its state was redeemed "
			    "elsewhere meanwhile: %s", l->pc->name, detail);
		return;
	}
	audit_event(strcmp(error, "access_denied") == 0 ? "login_refused" :
	    "login_failed", uid, NULL, l->r->client, json_pack("{s:s,s:s}",
	    "provider", l->pc->name, "reason", detail));
	if (db_commit() == -1)
		log_warnx("login via %s: cannot record its refusal: %s",
		    l->pc->name, db_errmsg());
}

/* Refuse a login: an HTML page or an RFC 6749 error, and an audit row. */
static void
login_fail(struct login *l, int code, const char *error, const char *title,
    const char *detail)
{
	struct request	*r = l->r;
	char		*uid = NULL;

	login_count(l->pc, strcmp(error, "access_denied") == 0 ? "denied" :
	    "error");
	/* The user as the users table names them: provider:subject. */
	if (l->id.subject != NULL)
		xasprintf(&uid, "%s:%s", l->pc->name, l->id.subject);
	/*
	 * Writes (the state's row and an audit row, in one transaction) only
	 * for the verdict on a live state of this client, once; junk from
	 * anyone gets a log line, so it cannot make us write to the disk.
	 */
	if (l->genuine)
		login_record_refusal(l, error, uid, detail);
	else
		log_info("login via %s refused before any state: %s",
		    l->pc->name, detail);
	free(uid);
	if (l->api)
		server_error_oauth(r, code, error, detail);
	else
		web_error_page(r, code, title, detail, strcmp(error,
		    "access_denied") == 0 ? "If you think you should have "
		    "access, ask the administrator of this proxy." :
		    "Start again from the sign-in page.");
	if (l->state != LS_NEW) {
		login_enter(l, LS_DONE);
		request_unref(r);
	} else
		login_enter(l, LS_DONE);
}

/* The callback (browser) or POST /auth/token (API) has a code: go. */
static void
login_go(struct login *l)
{
	struct request	*r = l->r;

	request_ref(r);
	r->on_abort = login_abort;
	login_enter(l, LS_TOKEN);
	login_step(l);
}

/* How often a query parameter occurs (server_query() wants exactly one). */
static int
query_count(struct request *r, const char *name)
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

/*
 * RFC 9207: an authorization response that names its issuer must name
 * this provider's (mix-up attacks); one whose provider says it always
 * does must. A Microsoft multi-tenant template issuer is left to the ID
 * token's iss, which is checked against the token's tenant.
 */
static int
callback_iss_ok(struct login *l)
{
	char	got[512], want[512];

	if (l->iss == NULL)
		return (1);
	if (server_query(l->r, "iss", got, sizeof got) == NULL)
		return (query_count(l->r, "iss") == 0 &&
		    oidc_flag(l->iss,
		    "authorization_response_iss_parameter_supported") != 1);
	if (oidc_expected_issuer(l->iss, NULL, want, sizeof want) == -1)
		return (1);
	return (strcmp(got, want) == 0);
}

/* GET /auth/callback/{provider}?code=&state= */
void
route_auth_callback(struct request *r)
{
	const struct provider_config	*pc = route_provider(r);
	struct login			*l;
	struct oauth_state		 st;
	char				 code[2048], state[300], err[128];
	char				 desc[1024], cookie[1024], *msg;
	char				 id[OAUTH_STATE_ID_TEXT];
	uint8_t				 rh[CRYPTO_HASH_LEN];
	uint8_t				 key[CRYPTO_HASH_LEN];
	const char			*cname;
	int				 rc, ours, same_uri;

	if (pc == NULL) {
		web_error_page(r, 404, "Unknown sign-in provider", "This proxy "
		    "has no identity provider by that name.",
		    "Start again from the sign-in page.");
		return;
	}
	l = login_new(r, pc, 0);
	cname = r->cfg->public_https ? LOGIN_COOKIE_SECURE : LOGIN_COOKIE;
	xasprintf(&msg, "%s=; Path=%s; Max-Age=0; HttpOnly; SameSite=Lax%s",
	    cname, r->cfg->public_https ? "/" : "/auth/callback",
	    r->cfg->public_https ? "; Secure" : "");
	server_set_header(r, "Set-Cookie", msg);
	free(msg);

	if (server_query(r, "state", state, sizeof state) == NULL) {
		login_fail(l, 400, "invalid_request", "Sign-in failed",
		    "The identity provider's answer carried no state, so it "
		    "cannot be matched to a sign-in started here.");
		return;
	}
	/* The sign-in itself is in this browser's cookie, sealed. */
	if (cookie_find(server_header(r, "Cookie"), cname, cookie,
	    sizeof cookie) == -1) {
		login_fail(l, 400, "invalid_request", "Sign-in failed", "This "
		    "sign-in link has expired or was already used, or the "
		    "sign-in was started in another browser (or its cookie was "
		    "lost).");
		return;
	}
	rc = oauth_state_open(cookie, strlen(cookie), now_wall(), &st);
	if (rc == OAUTH_STATE_EXPIRED) {
		login_fail(l, 400, "invalid_request", "Sign-in failed", "This "
		    "sign-in has expired: it must be finished within ten "
		    "minutes of starting it.");
		return;
	}
	if (rc != OAUTH_STATE_OK) {
		login_fail(l, 400, "invalid_request", "Sign-in failed", "This "
		    "sign-in's cookie is not valid here: it was altered, or "
		    "made by another proxy.");
		return;
	}
	login_take_state(l, &st);
	oauth_state_id_text(&st, id);
	oauth_state_key(&st, key);
	ours = st.flow == OAUTH_FLOW_BROWSER && strcmp(st.provider,
	    pc->name) == 0;
	l->redirect_uri = callback_uri(r, pc);
	crypto_sha256(l->redirect_uri, strlen(l->redirect_uri), rh);
	same_uri = crypto_memeq(rh, st.redirect_hash, sizeof rh);
	sodium_memzero(&st, sizeof st);
	if (!ours) {
		login_fail(l, 400, "invalid_request", "Sign-in failed",
		    "The answer does not belong to a sign-in with this "
		    "provider.");
		return;
	}
	if (!crypto_streq(state, id)) {
		login_fail(l, 400, "invalid_request", "Sign-in failed", "The "
		    "identity provider's answer does not belong to the sign-in "
		    "started in this browser.");
		return;
	}
	if (!same_uri) {
		login_fail(l, 400, "invalid_request", "Sign-in failed", "This "
		    "proxy's callback address changed while you were signing "
		    "in.");
		return;
	}
	if ((rc = login_claim(l, key)) == -3) {
		login_fail(l, 503, "temporarily_unavailable", "Sign-in failed",
		    "This sign-in cannot be checked right now. Try again.");
		return;
	}
	if (rc != 0) {
		login_fail(l, 400, "invalid_request", "Sign-in failed",
		    rc == -1 ? "This sign-in is being completed already (in "
		    "another tab, or by a repeated request)." : "This sign-in "
		    "link has expired or was already used.");
		return;
	}
	l->genuine = 1;
	if (!callback_iss_ok(l)) {
		login_fail(l, 400, "invalid_request", "Sign-in failed", "The "
		    "answer names another identity provider as its issuer "
		    "(iss), or none although this one always does.");
		return;
	}
	if (server_query(r, "error", err, sizeof err) != NULL) {
		if (server_query(r, "error_description", desc, sizeof desc) ==
		    NULL)
			bsp_strlcpy(desc, "", sizeof desc);
		xasprintf(&msg, "The identity provider said: %s%s%s", err,
		    *desc != '\0' ? ": " : "", desc);
		login_fail(l, 400, "access_denied", "Sign-in was not completed",
		    msg);
		free(msg);
		return;
	}
	if (server_query(r, "code", code, sizeof code) == NULL) {
		login_fail(l, 400, "invalid_request", "Sign-in failed",
		    "The identity provider's answer carried no code.");
		return;
	}
	l->code = xstrdup(code);
	login_go(l);
}

/* RFC 7636 section 4.1: 43 to 128 unreserved characters. */
static int
pkce_verifier_ok(const char *v)
{
	size_t	i;

	for (i = 0; v[i] != '\0'; i++) {
		if (!isalnum((unsigned char)v[i]) && v[i] != '-' &&
		    v[i] != '.' && v[i] != '_' && v[i] != '~')
			return (0);
	}
	return (i >= 43 && i <= 128);
}

/*
 * POST /auth/token {"provider","authorization_code","redirect_uri","state"}
 * and "code_verifier" when /auth/authorize was given a code_challenge.
 * Whatever cannot be this client's own state (another provider, flow or
 * redirect_uri, or a verifier that does not fit) is refused without
 * spending it: only the verdict on a state its client redeems counts.
 */
void
route_auth_token(struct request *r)
{
	const struct provider_config	*pc;
	struct login			*l;
	struct oauth_state		 st;
	json_t				*j;
	const char			*why, *prov, *code, *ruri, *state;
	const char			*cv = NULL, *bad = NULL;
	uint8_t				 rh[CRYPTO_HASH_LEN];
	uint8_t				 ch[CRYPTO_HASH_LEN];
	uint8_t				 key[CRYPTO_HASH_LEN];
	int				 rc;

	if ((j = server_body_json(r, &why)) == NULL) {
		server_error_oauth(r, 400, "invalid_request", why);
		return;
	}
	if (json_unpack(j, "{s:s,s:s,s:s,s:s,s?s}", "provider", &prov,
	    "authorization_code", &code, "redirect_uri", &ruri, "state",
	    &state, "code_verifier", &cv) != 0 ||
	    strlen(state) > OAUTH_STATE_TEXT_MAX || strlen(code) > 2048 ||
	    strlen(ruri) > 2048) {
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
	l = login_new(r, pc, 1);
	rc = oauth_state_open(state, strlen(state), now_wall(), &st);
	if (rc != OAUTH_STATE_OK) {
		json_decref(j);
		login_fail(l, 400, "invalid_grant", "",
		    rc == OAUTH_STATE_EXPIRED ? "state has expired (a sign-in "
		    "must be finished within ten minutes)" : "state is "
		    "unknown: this proxy did not issue it, or it was altered");
		return;
	}
	login_take_state(l, &st);
	oauth_state_key(&st, key);
	crypto_sha256(ruri, strlen(ruri), rh);
	if (st.flow != OAUTH_FLOW_API || strcmp(st.provider, pc->name) != 0 ||
	    !crypto_memeq(rh, st.redirect_hash, sizeof rh))
		bad = "state does not match this provider, flow or "
		    "redirect_uri";
	else if ((st.flags & OAUTH_STATE_CLIENT_PKCE) && (cv == NULL ||
	    !pkce_verifier_ok(cv)))
		bad = "code_verifier is missing or malformed (43 to 128 "
		    "characters of [A-Za-z0-9-._~])";
	else if (!(st.flags & OAUTH_STATE_CLIENT_PKCE) && cv != NULL)
		bad = "code_verifier given, but /auth/authorize had no "
		    "code_challenge";
	else if (cv != NULL) {
		crypto_sha256(cv, strlen(cv), ch);
		if (!crypto_memeq(ch, st.challenge, sizeof ch))
			bad = "code_verifier does not match the code_challenge";
	}
	sodium_memzero(&st, sizeof st);
	if (bad != NULL) {
		json_decref(j);
		login_fail(l, 400, "invalid_grant", "", bad);
		return;
	}
	l->redirect_uri = xstrdup(ruri);
	if ((rc = login_claim(l, key)) != 0) {
		json_decref(j);
		if (rc == -3)
			login_fail(l, 503, "temporarily_unavailable", "",
			    "the state cannot be checked right now; try again");
		else
			login_fail(l, 400, "invalid_grant", "", rc == -1 ?
			    "state is being redeemed by another request" :
			    "state is unknown, expired or already used");
		return;
	}
	l->genuine = 1;
	l->code = xstrdup(code);
	json_decref(j);
	login_go(l);
}

/* Identity from the merged claims, by the provider's field names. */
static void
identity_from_claims(struct login *l)
{
	const struct provider_config	*pc = l->pc;
	json_t				*c = l->claims, *v, *e;
	size_t				 i;

	identity_clear(&l->id);
	v = json_object_get(c, pc->user_id_field);
	if (json_is_string(v) && json_string_length(v) > 0 &&
	    json_string_length(v) <= 255)
		l->id.subject = xstrdup(json_string_value(v));
	else if (json_is_integer(v))
		xasprintf(&l->id.subject, "%" JSON_INTEGER_FORMAT,
		    json_integer_value(v));
	v = json_object_get(c, pc->email_field);
	if (json_is_string(v) && strchr(json_string_value(v), '@') != NULL &&
	    json_string_length(v) <= 320)
		l->id.email = xstrdup(json_string_value(v));
	v = json_object_get(c, pc->email_verified_field);
	l->id.email_verified = json_is_true(v) || (json_is_string(v) &&
	    strcmp(json_string_value(v), "true") == 0) ||
	    (pc->trust_email && l->id.email != NULL);
	if (json_is_true(json_object_get(c, "_bsp_email_verified")))
		l->id.email_verified = 1;
	v = json_object_get(c, pc->name_field);
	if (!json_is_string(v))
		v = json_object_get(c, "login");
	if (!json_is_string(v))
		v = json_object_get(c, "preferred_username");
	if (json_is_string(v) && json_string_length(v) <= 256)
		l->id.name = xstrdup(json_string_value(v));
	v = json_object_get(c, pc->groups_field);
	if (json_is_string(v))
		strlist_add(&l->id.groups, json_string_value(v));
	else if (json_is_array(v)) {
		json_array_foreach(v, i, e) {
			if (json_is_string(e) && l->id.groups.n < 256)
				strlist_add(&l->id.groups, json_string_value(e));
		}
	}
	v = json_object_get(c, "tid");
	if (json_is_string(v))
		l->id.tenant = xstrdup(json_string_value(v));
	v = json_object_get(c, "_bsp_orgs");
	json_array_foreach(v, i, e) {
		if (json_is_string(e))
			strlist_add(&l->id.orgs, json_string_value(e));
	}
}

/*
 * Merge src into the claims without replacing what is there. Names with
 * our own prefix ("_bsp_", the GitHub results) never come from an IdP.
 */
static void
claims_merge(struct login *l, json_t *src)
{
	const char	*k;
	json_t		*v;

	if (l->claims == NULL)
		l->claims = json_object();
	json_object_foreach(src, k, v) {
		if (strncmp(k, CLAIM_OURS, sizeof CLAIM_OURS - 1) != 0 &&
		    json_object_get(l->claims, k) == NULL)
			json_object_set(l->claims, k, v);
	}
}

static json_t *
result_json(const struct hc_result *res, int array)
{
	struct crypto_err	 err;
	json_t			*j;
	const char		*p;
	size_t			 len;

	len = evbuffer_get_length(res->body);
	p = (const char *)evbuffer_pullup(res->body, -1);
	if (!array)
		return (jose_json_load(p != NULL ? p : "", len, LOGIN_DOC_MAX,
		    "response", &err));
	if (len > LOGIN_DOC_MAX)
		return (NULL);
	j = json_loadb(p != NULL ? p : "", len, JSON_REJECT_DUPLICATES, NULL);
	if (j != NULL && !json_is_array(j)) {
		json_decref(j);
		return (NULL);
	}
	return (j);
}

/* The token endpoint answered. */
static void
login_token_done(struct login *l, const struct hc_result *res)
{
	json_t		*j;
	const char	*at, *it, *e, *d;
	char		*msg;

	if ((j = result_json(res, 0)) == NULL) {
		login_fail(l, 502, "server_error", "Sign-in failed", "The "
		    "identity provider's token endpoint gave an unreadable "
		    "answer.");
		return;
	}
	if ((e = json_string_value(json_object_get(j, "error"))) != NULL ||
	    res->status != 200) {
		d = json_string_value(json_object_get(j, "error_description"));
		xasprintf(&msg, "The identity provider refused the code: %s%s%s",
		    e != NULL ? e : "error", d != NULL ? ": " : "",
		    d != NULL ? d : "");
		json_decref(j);
		login_fail(l, 400, "invalid_grant", "Sign-in failed", msg);
		free(msg);
		return;
	}
	at = json_string_value(json_object_get(j, "access_token"));
	it = json_string_value(json_object_get(j, "id_token"));
	if (at != NULL)
		l->access_token = xstrdup(at);
	if (it != NULL)
		l->id_token = xstrdup(it);
	json_decref(j);
	if (l->pc->oidc && l->id_token == NULL) {
		login_fail(l, 502, "server_error", "Sign-in failed", "The "
		    "identity provider sent no ID token.");
		return;
	}
	if (!l->pc->oidc && l->access_token == NULL) {
		login_fail(l, 502, "server_error", "Sign-in failed", "The "
		    "identity provider sent no access token.");
		return;
	}
	login_enter(l, l->pc->oidc ? LS_KEYS : LS_USERINFO);
	login_step(l);
}

static void
login_keys_ready(void *arg)
{
	struct login	*l = arg;

	if (l->state == LS_KEYS)
		login_step(l);
}

/*
 * Verify the ID token. 0 done (claims set), 1 waiting for keys, -1 failed
 * (already answered).
 */
static int
login_verify_id_token(struct login *l)
{
	struct crypto_err		 err;
	struct jose_jws			*jws;
	struct jose_claims_rules	 rules;
	const struct crypto_key		*key;
	const char			*auds[2] = { l->pc->client_id, NULL };
	static const char *const	 req[] = { "sub", NULL };
	char				 iss[512], *msg;
	const char			*tid, *nonce, *azp;
	json_t				*aud;
	int				 rc;

	if ((jws = jose_parse(l->id_token, strlen(l->id_token), &err)) ==
	    NULL) {
		xasprintf(&msg, "The ID token is malformed: %s", err.msg);
		login_fail(l, 502, "server_error", "Sign-in failed", msg);
		free(msg);
		return (-1);
	}
	/* After one wait for the keys, the answer is final. */
	rc = oidc_find_key(l->iss, jws->kid, jws->alg, &key, l->keys_waited ?
	    NULL : login_keys_ready, l);
	if (rc == -1) {
		l->keys_waited = 1;
		jose_jws_free(jws);
		return (1);
	}
	if (rc == 0) {
		jose_jws_free(jws);
		if (!oidc_has_keys(l->iss) || oidc_failing(l->iss)) {
			xasprintf(&msg, "The identity provider's signing keys "
			    "could not be loaded (%s). Try again later.",
			    oidc_problem_text(l->iss));
			login_fail(l, 502, "temporarily_unavailable",
			    "Sign-in failed", msg);
			free(msg);
			return (-1);
		}
		login_fail(l, 502, "server_error", "Sign-in failed", "The ID "
		    "token is signed with a key the identity provider does not "
		    "publish (or with an algorithm not allowed here).");
		return (-1);
	}
	if (jose_verify(jws, key, &err) == -1) {
		jose_jws_free(jws);
		xasprintf(&msg, "The ID token's signature is not valid: %s",
		    err.msg);
		login_fail(l, 502, "server_error", "Sign-in failed", msg);
		free(msg);
		return (-1);
	}
	tid = json_string_value(json_object_get(jws->claims, "tid"));
	if (oidc_expected_issuer(l->iss, tid, iss, sizeof iss) == -1) {
		jose_jws_free(jws);
		login_fail(l, 502, "server_error", "Sign-in failed", "The ID "
		    "token names no tenant.");
		return (-1);
	}
	memset(&rules, 0, sizeof rules);
	rules.issuer = iss;
	rules.audiences = auds;
	rules.now = now_wall();
	rules.leeway = LOGIN_LEEWAY;
	rules.require_exp = 1;
	rules.require_iat = 1;
	rules.max_age = 3600;
	rules.required = req;
	if (jose_claims_check(jws->claims, &rules, &err) == -1) {
		jose_jws_free(jws);
		xasprintf(&msg, "The ID token is not valid here: %s", err.msg);
		login_fail(l, 400, "invalid_grant", "Sign-in failed", msg);
		free(msg);
		return (-1);
	}
	aud = json_object_get(jws->claims, "aud");
	azp = json_string_value(json_object_get(jws->claims, "azp"));
	if ((json_is_array(aud) && json_array_size(aud) > 1 && (azp == NULL ||
	    strcmp(azp, l->pc->client_id) != 0)) ||
	    (azp != NULL && strcmp(azp, l->pc->client_id) != 0)) {
		jose_jws_free(jws);
		login_fail(l, 400, "invalid_grant", "Sign-in failed", "The ID "
		    "token was issued to another client (azp).");
		return (-1);
	}
	nonce = json_string_value(json_object_get(jws->claims, "nonce"));
	if (nonce == NULL || l->nonce == NULL || !crypto_streq(nonce,
	    l->nonce)) {
		jose_jws_free(jws);
		login_fail(l, 400, "invalid_grant", "Sign-in failed", "The ID "
		    "token does not belong to this sign-in (nonce).");
		return (-1);
	}
	json_decref(l->claims);
	l->claims = NULL;
	claims_merge(l, jws->claims);
	l->id_sub = xstrdup(json_string_value(json_object_get(jws->claims,
	    "sub")) != NULL ? json_string_value(json_object_get(jws->claims,
	    "sub")) : "");
	jose_jws_free(jws);
	return (0);
}

static void
login_fetch_done(struct hc_req *req, const struct hc_result *res, void *arg)
{
	struct login	*l = arg;
	json_t		*j, *e;
	const char	*s;
	char		*msg;
	size_t		 i;

	l->up = NULL;
	if (l->target != NULL) {
		hc_target_free(l->target);
		l->target = NULL;
	}
	if (l->state == LS_DONE)
		return;
	if (res->error != HC_OK) {
		xasprintf(&msg, "The identity provider could not be reached "
		    "(%s). Try again later.", res->message);
		login_fail(l, res->error == HC_ERR_TIMEOUT_CONNECT ||
		    res->error == HC_ERR_TIMEOUT_FIRST_BYTE ||
		    res->error == HC_ERR_TIMEOUT_TOTAL ? 504 : 502,
		    "temporarily_unavailable", "Sign-in failed", msg);
		free(msg);
		return;
	}
	switch (l->state) {
	case LS_TOKEN:
		login_token_done(l, res);
		return;
	case LS_USERINFO:
		if (res->status != 200 || (j = result_json(res, 0)) == NULL) {
			login_fail(l, 502, "server_error", "Sign-in failed",
			    "The identity provider's user information could "
			    "not be read.");
			return;
		}
		/* OIDC: userinfo must describe the ID token's subject. */
		if (l->id_sub != NULL && ((s = json_string_value(
		    json_object_get(j, "sub"))) == NULL ||
		    strcmp(s, l->id_sub) != 0)) {
			json_decref(j);
			login_fail(l, 502, "server_error", "Sign-in failed",
			    "The user information is about someone else.");
			return;
		}
		claims_merge(l, j);
		json_decref(j);
		login_enter(l, l->pc->kind == PROVIDER_GITHUB &&
		    l->pc->emails_url != NULL ? LS_EMAILS :
		    l->pc->kind == PROVIDER_GITHUB ? LS_ORGS : LS_DONE);
		login_step(l);
		return;
	case LS_EMAILS:
		/* GitHub: the primary verified address. */
		json_object_del(l->claims, "email");
		if (res->status == 200 && (j = result_json(res, 1)) != NULL) {
			json_array_foreach(j, i, e) {
				if (json_is_true(json_object_get(e, "primary"))
				    && json_is_true(json_object_get(e,
				    "verified")) && json_is_string(
				    json_object_get(e, "email"))) {
					json_object_set(l->claims, "email",
					    json_object_get(e, "email"));
					json_object_set_new(l->claims,
					    "_bsp_email_verified", json_true());
				}
			}
			json_decref(j);
		}
		login_enter(l, LS_ORGS);
		login_step(l);
		return;
	case LS_ORGS:
		if (res->status == 200 && (j = result_json(res, 1)) != NULL) {
			json_t *orgs = json_array();

			json_array_foreach(j, i, e) {
				if (json_is_string(json_object_get(e, "login")))
					json_array_append(orgs,
					    json_object_get(e, "login"));
			}
			json_object_set_new(l->claims, "_bsp_orgs", orgs);
			json_decref(j);
		}
		login_enter(l, LS_DONE);
		login_step(l);
		return;
	default:
		return;
	}
}

/* GET (with the IdP's access token) or POST a form; the answer to step. */
static void
login_fetch_json(struct login *l, const char *method, const char *url,
    const char *form, const char *basic)
{
	struct hc_header	 h[4];
	struct hc_request	 hr;
	size_t			 n = 0;
	char			*auth = NULL, *cause = NULL, *path;

	if (url_check_outbound(url, &cause) == -1 ||
	    (l->target = hc_target_new(url, &cause)) == NULL) {
		login_fail(l, 502, "server_error", "Sign-in failed", "The "
		    "identity provider's endpoint is not usable.");
		log_warnx("login via %s: %s", l->pc->name, cause);
		free(cause);
		return;
	}
	h[n++] = (struct hc_header){ "Accept", l->pc->kind == PROVIDER_GITHUB &&
	    form == NULL ? "application/vnd.github+json" : "application/json" };
	h[n++] = (struct hc_header){ "User-Agent", BSP_NAME "/" PACKAGE_VERSION };
	if (form != NULL) {
		h[n++] = (struct hc_header){ "Content-Type",
		    "application/x-www-form-urlencoded" };
		if (basic != NULL) {
			xasprintf(&auth, "Basic %s", basic);
			h[n++] = (struct hc_header){ "Authorization", auth };
		}
	} else if (l->access_token != NULL) {
		xasprintf(&auth, "Bearer %s", l->access_token);
		h[n++] = (struct hc_header){ "Authorization", auth };
	}
	path = xstrdup(hc_target_path(l->target));
	memset(&hr, 0, sizeof hr);
	hr.method = method;
	hr.path = path;
	hr.headers = h;
	hr.nheaders = n;
	hr.body = form;
	hr.body_len = form != NULL ? strlen(form) : 0;
	hr.max_body = LOGIN_DOC_MAX;
	hr.timeouts.connect_ms = l->r->cfg->oauth_timeout * 1000;
	hr.timeouts.first_byte_ms = l->r->cfg->oauth_timeout * 1000;
	hr.timeouts.total_ms = l->r->cfg->oauth_timeout * 1000;
	hr.on_done = login_fetch_done;
	hr.arg = l;
	l->up = hc_start(l->target, &hr, &cause);
	freezero_str(auth);
	free(path);
	if (l->up == NULL) {
		log_warnx("login via %s: %s", l->pc->name, cause);
		free(cause);
		hc_target_free(l->target);
		l->target = NULL;
		login_fail(l, 502, "server_error", "Sign-in failed", "Cannot "
		    "contact the identity provider.");
	}
}

/* The code exchange request: form body and client authentication. */
static void
login_exchange(struct login *l)
{
	const struct provider_config	*pc = l->pc;
	struct evbuffer			*f = evbuffer_new();
	const char			*ep;
	char				*form, *basic = NULL, *cid, *csec, *pair;
	int				 use_basic;

	ep = provider_endpoint(l, pc->token_url, "token_endpoint");
	if (ep == NULL) {
		evbuffer_free(f);
		login_fail(l, 503, "temporarily_unavailable", "Sign-in failed",
		    "The identity provider's configuration has not been "
		    "loaded.");
		return;
	}
	query_add(f, "grant_type", "authorization_code");
	query_add(f, "code", l->code);
	query_add(f, "redirect_uri", l->redirect_uri);
	if (l->pkce)
		query_add(f, "code_verifier", l->verifier);
	use_basic = pc->token_auth == 1 || (pc->token_auth == 0 &&
	    pc->client_secret != NULL && pc->oidc && (l->iss == NULL ||
	    oidc_supports(l->iss, "token_endpoint_auth_methods_supported",
	    "client_secret_basic") != 0));
	if (use_basic && pc->client_secret != NULL) {
		cid = evhttp_uriencode(pc->client_id, -1, 1);
		csec = evhttp_uriencode(pc->client_secret, -1, 1);
		xasprintf(&pair, "%s:%s", cid, csec);
		basic = xmalloc(sodium_base64_ENCODED_LEN(strlen(pair),
		    sodium_base64_VARIANT_ORIGINAL));
		sodium_bin2base64(basic, sodium_base64_ENCODED_LEN(strlen(pair),
		    sodium_base64_VARIANT_ORIGINAL), (const uint8_t *)pair,
		    strlen(pair), sodium_base64_VARIANT_ORIGINAL);
		free(cid);
		freezero_str(csec);
		freezero_str(pair);
	} else {
		query_add(f, "client_id", pc->client_id);
		if (pc->client_secret != NULL)
			query_add(f, "client_secret", pc->client_secret);
	}
	evbuffer_add(f, "", 1);
	form = xstrdup((const char *)evbuffer_pullup(f, -1));
	evbuffer_free(f);
	login_fetch_json(l, "POST", ep, form, basic);
	freezero_str(form);
	freezero_str(basic);
}

/* The IdP has told us who it is: policy, user record, session, answer. */
static void
login_finish(struct login *l)
{
	struct request	*r = l->r;
	struct user	 u, cur;
	json_t		*resp;
	const char	*why;
	struct web_tokens t;
	char		*id;
	int		 dup;

	identity_from_claims(l);
	if (l->id.subject == NULL) {
		login_fail(l, 502, "server_error", "Sign-in failed", "The "
		    "identity provider did not say who you are.");
		return;
	}
	/*
	 * An issuer that serves many organizations (a {tenantid} template)
	 * under a name other than the microsoft preset: its users' emails
	 * prove nothing about their organization, so the tenant must be one
	 * of access.allowed_tenants, as for the preset (access_allowed()).
	 */
	if (!l->pc->multi_tenant && l->iss != NULL &&
	    oidc_multi_tenant(l->iss) && !r->cfg->access_any_user &&
	    (l->id.tenant == NULL ||
	    !strlist_contains_nocase(&r->cfg->access_tenants, l->id.tenant))) {
		login_fail(l, 403, "access_denied", "Access denied", "Your "
		    "organization (tenant) is not allowed to use this proxy.");
		return;
	}
	if (!access_allowed(r->cfg, l->pc, &l->id, &why)) {
		login_fail(l, 403, "access_denied", "Access denied", why);
		return;
	}
	xasprintf(&id, "%s:%s", l->pc->name, l->id.subject);
	memset(&u, 0, sizeof u);
	memset(&cur, 0, sizeof cur);
	if (user_get(id, &cur) == 0 && cur.disabled) {
		user_clear(&cur);
		free(id);
		login_fail(l, 403, "access_denied", "Access denied", "Your "
		    "account on this proxy is disabled.");
		return;
	}
	user_clear(&cur);
	/* Redeemed: the state's row first, so it can never be used again. */
	if (login_spend(l, &dup) == -1) {
		free(id);
		if (dup)
			l->genuine = 0;	/* its verdict is recorded elsewhere */
		login_fail(l, dup ? 400 : 503, dup ? "invalid_grant" :
		    "temporarily_unavailable", "Sign-in failed", dup ? "This "
		    "sign-in was already completed." : "Your sign-in could not "
		    "be recorded. Try again.");
		return;
	}
	u.id = id;
	u.provider = xstrdup(l->pc->name);
	u.subject = xstrdup(l->id.subject);
	if (l->id.email != NULL)
		u.email = xstrdup(l->id.email);
	u.email_verified = l->id.email_verified;
	if (l->id.name != NULL)
		u.name = xstrdup(l->id.name);
	strlist_copy(&u.groups, &l->id.groups);
	strlist_copy(&u.orgs, &l->id.orgs);
	if (l->id.tenant != NULL)
		u.tenant = xstrdup(l->id.tenant);
	if (user_upsert(&u) == -1 ||
	    tokens_session_new(&u, r->client, "login", &resp) == -1) {
		user_clear(&u);
		login_fail(l, 503, "temporarily_unavailable", "Sign-in failed",
		    "Your sign-in could not be recorded. Try again.");
		return;
	}
	request_set_user(r, u.email != NULL ? u.email : u.id);
	login_count(l->pc, "ok");
	if (l->api)
		server_reply_json(r, 200, resp);
	else {
		memset(&t, 0, sizeof t);
		t.access_token = json_string_value(json_object_get(resp,
		    "access_token"));
		t.refresh_token = json_string_value(json_object_get(resp,
		    "refresh_token"));
		t.expires_in = json_integer_value(json_object_get(resp,
		    "expires_in"));
		t.expires_at = now_wall() + (time_t)t.expires_in;
		t.session_expires_at = now_wall() +
		    (time_t)r->cfg->jwt_refresh_ttl;
		t.user = u.email != NULL ? u.email : u.id;
		t.name = u.name;
		t.provider = l->pc->display_name;
		t.public_url = r->cfg->server_public_url;
		t.region = r->cfg->aws_region;
		t.example_model = "us.anthropic.claude-sonnet-4-20250514-v1:0";
		web_success_page(r, &t);
		json_decref(resp);
	}
	user_clear(&u);
	login_enter(l, LS_DONE);
	request_unref(r);
}

/* Run the state machine one step. */
static void
login_step(struct login *l)
{
	const char	*ep;
	int		 rc;

	switch (l->state) {
	case LS_TOKEN:
		login_exchange(l);
		return;
	case LS_KEYS:
		if ((rc = login_verify_id_token(l)) != 0)
			return;
		/* Userinfo only when the ID token lacks what we need. */
		if (json_object_get(l->claims, l->pc->email_field) == NULL &&
		    l->access_token != NULL &&
		    provider_endpoint(l, l->pc->user_info_url,
		    "userinfo_endpoint") != NULL)
			login_enter(l, LS_USERINFO);
		else
			login_enter(l, LS_DONE);
		login_step(l);
		return;
	case LS_USERINFO:
		ep = provider_endpoint(l, l->pc->user_info_url,
		    "userinfo_endpoint");
		if (ep == NULL) {
			login_fail(l, 502, "server_error", "Sign-in failed",
			    "The identity provider has no user information "
			    "endpoint.");
			return;
		}
		login_fetch_json(l, "GET", ep, NULL, NULL);
		return;
	case LS_EMAILS:
		login_fetch_json(l, "GET", l->pc->emails_url, NULL, NULL);
		return;
	case LS_ORGS:
		if (l->r->cfg->access_github_orgs.n == 0 ||
		    l->pc->orgs_url == NULL) {
			login_enter(l, LS_DONE);
			login_step(l);
			return;
		}
		login_fetch_json(l, "GET", l->pc->orgs_url, NULL, NULL);
		return;
	case LS_DONE:
		login_finish(l);
		return;
	default:
		return;
	}
}

/* The trusted issuer a token names in its (not yet verified) iss, or -1. */
int
oauth_issuer_index(const struct config *c, const char *iss)
{
	size_t	i;

	if (iss == NULL)
		return (-1);
	for (i = 0; i < c->nissuers; i++) {
		if (c->issuers[i].issuer != NULL &&
		    strcmp(c->issuers[i].issuer, iss) == 0)
			return ((int)i);
	}
	return (-1);
}

/* The shared issuer object of a trusted issuer (a new reference). */
struct oidc_issuer *
oauth_issuer_ref(const struct issuer_config *ic)
{
	return (oidc_issuer_get(ic->issuer, ic->jwks_uri, &ic->algorithms,
	    ic->jwks_uri == NULL ? OIDC_DISCOVERY : 0));
}

/*
 * Verify a bearer JWT from a trusted issuer, with that issuer's keys and
 * the same claim rules as every token; then the access policy on its
 * claims. 0 with *out set; -1 refused (*why, *code 401 or 403); 1 while
 * the issuer's keys are fetched again (cb(arg) runs when done; call again
 * with cb NULL for a final answer). With cb NULL it never returns 1.
 */
int
oauth_verify_external(const struct config *c, const struct issuer_config *ic,
    struct oidc_issuer *iss, const char *token, size_t len,
    struct principal **out, const char **why, int *code, void (*cb)(void *),
    void *arg)
{
	static const char *const	 typs[] = { "JWT", "at+jwt", NULL };
	static char			 buf[200];
	struct crypto_err		 err;
	struct jose_jws			*jws;
	struct jose_claims_rules	 rules;
	const struct crypto_key		*key;
	const char			*auds[65], *s;
	struct principal		*p;
	struct identity			 id;
	json_t				*v, *e;
	size_t				 i;
	int				 rc;

	*out = NULL;
	*code = 401;
	if ((jws = jose_parse(token, len, &err)) == NULL) {
		snprintf(buf, sizeof buf, "malformed token: %s", err.msg);
		*why = buf;
		return (-1);
	}
	rc = oidc_find_key(iss, jws->kid, jws->alg, &key, cb, arg);
	if (rc != 1) {
		jose_jws_free(jws);
		if (rc == -1)
			return (1);
		*why = "token signed by a key its issuer does not publish";
		return (-1);
	}
	if (jose_verify(jws, key, &err) == -1 ||
	    jose_check_typ(jws, typs, 0, &err) == -1) {
		snprintf(buf, sizeof buf, "%s", err.msg);
		*why = buf;
		jose_jws_free(jws);
		return (-1);
	}
	memset(&rules, 0, sizeof rules);
	rules.issuer = ic->issuer;
	for (i = 0; i < ic->audience.n && i < 64; i++)
		auds[i] = ic->audience.v[i];
	auds[i] = NULL;
	rules.audiences = auds;
	rules.now = now_wall();
	rules.leeway = LOGIN_LEEWAY;
	rules.require_exp = 1;
	/* Cognito access tokens carry client_id instead of aud. */
	if (json_object_get(jws->claims, "aud") == NULL) {
		s = json_string_value(json_object_get(jws->claims,
		    "client_id"));
		if (s == NULL || !strlist_contains(&ic->audience, s)) {
			jose_jws_free(jws);
			*why = "wrong audience";
			return (-1);
		}
		rules.any_audience = 1;
	}
	if (jose_claims_check(jws->claims, &rules, &err) == -1) {
		snprintf(buf, sizeof buf, "%s", err.msg);
		*why = buf;
		jose_jws_free(jws);
		return (-1);
	}
	if (ic->token_use != NULL && ((s = json_string_value(json_object_get(
	    jws->claims, "token_use"))) == NULL || strcmp(s, ic->token_use) !=
	    0)) {
		jose_jws_free(jws);
		*why = "wrong token_use";
		return (-1);
	}
	v = json_object_get(jws->claims, ic->subject_claim);
	memset(&id, 0, sizeof id);
	if (json_is_string(v) && json_string_length(v) > 0 &&
	    json_string_length(v) <= 255)
		id.subject = xstrdup(json_string_value(v));
	else if (json_is_integer(v))
		xasprintf(&id.subject, "%" JSON_INTEGER_FORMAT,
		    json_integer_value(v));
	if (id.subject == NULL) {
		jose_jws_free(jws);
		*why = "token names no subject";
		return (-1);
	}
	v = json_object_get(jws->claims, ic->email_claim);
	if (json_is_string(v) && strchr(json_string_value(v), '@') != NULL)
		id.email = xstrdup(json_string_value(v));
	id.email_verified = json_is_true(json_object_get(jws->claims,
	    "email_verified"));
	v = json_object_get(jws->claims, ic->groups_claim);
	if (json_is_string(v))
		strlist_add(&id.groups, json_string_value(v));
	else json_array_foreach(v, i, e) {
		if (json_is_string(e) && id.groups.n < 256)
			strlist_add(&id.groups, json_string_value(e));
	}
	if ((s = json_string_value(json_object_get(jws->claims, "tid"))) !=
	    NULL)
		id.tenant = xstrdup(s);
	if (!access_allowed(c, NULL, &id, why)) {
		identity_clear(&id);
		jose_jws_free(jws);
		*code = 403;
		return (-1);
	}
	p = principal_new(PRINCIPAL_EXTERNAL);
	xasprintf(&p->sub, "%s:%s", ic->provider_name, id.subject);
	p->provider = xstrdup(ic->provider_name);
	if (id.email != NULL)
		p->email = xstrdup(id.email);
	p->email_verified = id.email_verified;
	strlist_copy(&p->groups, &id.groups);
	if (id.tenant != NULL)
		p->tenant = xstrdup(id.tenant);
	v = json_object_get(jws->claims, "exp");
	p->exp = (time_t)json_number_value(v);
	v = json_object_get(jws->claims, "iat");
	p->iat = json_is_number(v) ? (time_t)json_number_value(v) : 0;
	identity_clear(&id);
	jose_jws_free(jws);
	*out = p;
	return (0);
}
