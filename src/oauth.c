/*
 * oauth.c: logging in: the OAuth 2.0 authorization code flow with PKCE and,
 * for OIDC providers, a verified ID token. The HTTP side (reading the
 * request, cookies, pages and JSON answers) is route-login.c's: a sign-in
 * reports its verdict through the callback it was made with
 * (oauth_login_new), and nothing here answers a request.
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
 * Device flow (RFC 8628): the verification page (route-device.c) starts a
 * browser sign-in whose sealed state also carries the key of the device
 * authorization it is for. Its callback is the browser flow's, but what
 * it saves is different: instead of a session, the authorization is
 * approved for the user (device.c) in the same unit as the state's row
 * and the user, and the page says so; the client's next poll gets the
 * session. A refusal by the access policy denies the authorization too.
 *
 * Each login is a state machine (login_enter() traces it):
 * NEW -> TOKEN -> [KEYS] -> [USERINFO] -> [EMAILS] -> [ORGS] -> DONE.
 * What it writes and reads in the database runs beside it as a small
 * state machine of its own (login_db_step(): the state's row, the user,
 * the session, a refusal's audit row); while that is under way a client
 * that leaves still gets its verdict, which nobody reads.
 * Provider error text reaches pages escaped and never with secrets.
 */

#include <netinet/in.h>
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <uthash.h>

#include "bsp.h"
#include "crypto.h"
#include "http-client.h"
#include "jose.h"
#include "oauth-state.h"
#include "oidc.h"
#include "store.h"

#define LOGIN_DOC_MAX		(256 * 1024)
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
	const struct config		*cfg;	/* the request's, outlives us */
	char				 client[64];	/* its address */
	char				 reqid[65];	/* for traces */
	void				(*done)(const struct login_result *,
					    void *);
	void				*arg;
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
	/* the device flow: the authorization it approves */
	int				 device;
	int				 approved;
	uint8_t				 device_key[DEVICE_KEY_LEN];
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
	/* the database's part (login_db_step) */
	int				 db;		/* LDB_* under way */
	int				 cancelled;	/* the client left */
	int				 dup;		/* redeemed elsewhere */
	struct user			 user;		/* being saved */
	json_t				*session;
	char				*uid;
	/* a refusal, told once its audit row is written */
	int				 fail_code;
	char				*fail_error;
	char				*fail_title;
	char				*fail_detail;
	/* the IdP's redirect, kept across the claim */
	int				 iss_ok;
	char				*idp_said;
};

/* What a login is doing in the database. */
enum login_db {
	LDB_NONE,
	LDB_CLAIM,		/* is the state spent? */
	LDB_ADMIT,		/* is the user disabled? */
	LDB_SAVE_BEGIN,		/* the state's row, the user, the session */
	LDB_SAVE_SPEND,
	LDB_SAVE_USER,
	LDB_SAVE_SESSION,
	LDB_SAVE_DEVICE,	/* device flow: the approval, not a session */
	LDB_SAVE_APPROVED,	/* and its audit row */
	LDB_SAVE_COMMIT,
	LDB_REFUSE_BEGIN,	/* the state's row and a refusal's audit row */
	LDB_REFUSE_SPEND,
	LDB_REFUSE_AUDIT,
	LDB_REFUSE_DEVICE,	/* device flow: the authorization denied */
	LDB_REFUSE_COMMIT,
};
static const char *const login_db_names[] = {
	"NONE", "CLAIM", "ADMIT", "SAVE_BEGIN", "SAVE_SPEND", "SAVE_USER",
	"SAVE_SESSION", "SAVE_DEVICE", "SAVE_APPROVED", "SAVE_COMMIT",
	"REFUSE_BEGIN", "REFUSE_SPEND", "REFUSE_AUDIT", "REFUSE_DEVICE",
	"REFUSE_COMMIT"
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
static struct store_stmt st_spent = STORE_STMT("SELECT 1 FROM oauth_states "
    "WHERE hash = $1");
static struct store_stmt st_user_disabled = STORE_STMT("SELECT disabled "
    "FROM users WHERE id = $1");
static struct store_stmt st_spend = STORE_STMT("INSERT INTO oauth_states "
    "(hash, provider, flow, redirect_uri, client_addr, created, expires) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7)");

static void	login_release(struct login *);
static void	login_db_enter(struct login *, enum login_db);
static void	login_db_row(const struct store_row *, void *);
static void	login_db_ran(int, void *);
static void	login_db_step(struct store_txn *, int, void *);
static void	login_claimed(struct login *, int);
static void	login_verdict(struct login *);
static void	login_finish_admitted(struct login *);
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
	log_trace(TRACE_OAUTH, "login %s (%s): %s -> %s", l->reqid,
	    l->pc->name, login_state_names[l->state], login_state_names[s]);
	l->state = s;
}

/* Free a sign-in (a request's state_free). */
void
oauth_login_free(void *arg)
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
	user_clear(&l->user);
	json_decref(l->session);
	free(l->uid);
	free(l->fail_error);
	free(l->fail_title);
	free(l->fail_detail);
	free(l->idp_said);
	free(l);
}

/* How oidc.c treats a provider's issuer (OIDC_* flags). */
static int
oauth_provider_flags(const struct provider_config *pc)
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
		    oauth_provider_flags(&c->providers[i]));
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
login_endpoint(const struct login *l, const char *conf, const char *name)
{
	if (conf != NULL)
		return (conf);
	return (l->iss != NULL ? oidc_endpoint(l->iss, name) : NULL);
}

/* The redirect URI of a provider's browser flow. */
char *
oauth_callback_uri(const struct config *c, const struct provider_config *pc)
{
	char	*u;

	if (pc->redirect_uri != NULL)
		return (xstrdup(pc->redirect_uri));
	xasprintf(&u, "%s/auth/callback/%s", c->server_public_url, pc->name);
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

/* The oidc issuer of a provider (a new reference), or NULL if not OIDC. */
static struct oidc_issuer *
oauth_provider_issuer(const struct provider_config *pc)
{
	if (!pc->oidc)
		return (NULL);
	return (oidc_issuer_get(pc->issuer, pc->jwks_uri, &pc->algorithms,
	    oauth_provider_flags(pc)));
}

static void
login_count(const struct provider_config *pc, const char *result)
{
	char	labels[160];

	metric_label(labels, sizeof labels, "provider", pc != NULL ? pc->name :
	    "unknown", "result", result, NULL);
	metric_add(m_logins, labels, 1);
}

/*
 * A fresh sign-in state for a provider, flow and redirect URI (with an API
 * client's PKCE challenge, if it gave one), sealed; NULL if it cannot be.
 * st is filled in; the caller wipes it.
 */
static char *
login_seal(const struct login_start *ls, struct oauth_state *st)
{
	memset(st, 0, sizeof *st);
	st->flow = ls->api ? OAUTH_FLOW_API : ls->device != NULL ?
	    OAUTH_FLOW_DEVICE : OAUTH_FLOW_BROWSER;
	st->flags = ls->pc->pkce ? OAUTH_STATE_PKCE : 0;
	st->expires = (int64_t)now_wall() + OAUTH_STATE_TTL;
	crypto_random(st->id, sizeof st->id);
	crypto_random(st->nonce, sizeof st->nonce);
	crypto_random(st->verifier, sizeof st->verifier);
	crypto_sha256(ls->redirect_uri, strlen(ls->redirect_uri),
	    st->redirect_hash);
	if (ls->client_challenge != NULL) {
		st->flags |= OAUTH_STATE_CLIENT_PKCE;
		memcpy(st->challenge, ls->client_challenge,
		    sizeof st->challenge);
	} else if (ls->device != NULL && !ls->api)
		memcpy(st->challenge, ls->device, sizeof st->challenge);
	bsp_strlcpy(st->provider, ls->pc->name, sizeof st->provider);
	return (oauth_state_seal(st));
}

/*
 * The IdP's authorization URL (its endpoint ep) for a sealed state: the
 * API flow's state is the sealed sign-in itself, the browser's its id.
 */
static char *
login_authorize_url(const char *ep, const struct login_start *ls,
    const struct oauth_state *st)
{
	const struct provider_config	*pc = ls->pc;
	struct evbuffer			*q;
	char				 state[OAUTH_STATE_ID_TEXT];
	char				*nonce, *verifier, *challenge, *scope;
	char				*url;
	uint8_t				 vh[CRYPTO_HASH_LEN];

	nonce = crypto_b64url_encode_alloc(st->nonce, sizeof st->nonce);
	verifier = crypto_b64url_encode_alloc(st->verifier,
	    sizeof st->verifier);
	crypto_sha256(verifier, strlen(verifier), vh);
	challenge = crypto_b64url_encode_alloc(vh, sizeof vh);
	oauth_state_id_text(st, state);

	q = evbuffer_new();
	query_add(q, "response_type", "code");
	query_add(q, "client_id", pc->client_id);
	query_add(q, "redirect_uri", ls->redirect_uri);
	scope = strlist_join(&pc->scopes, " ");
	if (*scope != '\0')
		query_add(q, "scope", scope);
	free(scope);
	query_add(q, "state", ls->api ? ls->sealed : state);
	if (pc->oidc)
		query_add(q, "nonce", nonce);
	if (pc->pkce) {
		query_add(q, "code_challenge", challenge);
		query_add(q, "code_challenge_method", "S256");
	}
	evbuffer_add(q, "", 1);
	xasprintf(&url, "%s%s%s", ep, strchr(ep, '?') != NULL ? "&" : "?",
	    (const char *)evbuffer_pullup(q, -1));
	evbuffer_free(q);
	freezero_str(nonce);
	freezero_str(verifier);
	free(challenge);
	return (url);
}

/*
 * Start a sign-in: take one start from the client's allowance, seal the
 * state and build the authorization URL. Nothing is stored. 0 with
 * ls->url the URL and ls->sealed the state to hand over: the cookie's
 * value (browser flow) or the state itself (API flow). An API client's
 * PKCE challenge (RFC 7636, S256), if it gave one, is sealed in with it:
 * /auth/token then wants its verifier. -2: the IdP's documents are not in
 * (their fetch is kicked; ls->problem says what is wrong with an OIDC
 * provider's); -3: the client's allowance is spent (ls->retry seconds);
 * -1 else; ls->why says why. A browser sign-in that cannot start counts
 * as an error.
 */
int
oauth_login_begin(const struct config *c, struct login_start *ls)
{
	const struct provider_config	*pc = ls->pc;
	struct oidc_issuer		*iss;
	struct oauth_state		 st;
	char				 client[INET6_ADDRSTRLEN + 4]; /* /64 */
	const char			*ep;
	int				 rc = -1;

	ls->url = ls->sealed = NULL;
	ls->why = ls->problem = NULL;
	ls->retry = 0;
	memset(&st, 0, sizeof st);
	iss = oauth_provider_issuer(pc);
	ep = pc->authorization_url != NULL ? pc->authorization_url :
	    iss != NULL ? oidc_endpoint(iss, "authorization_endpoint") : NULL;
	if (ep == NULL) {
		ls->why = "the identity provider's configuration has not been "
		    "loaded yet";
		rc = -2;
		goto out;
	}
	(void)sockaddr_group(ls->client, client, sizeof client);
	if (oauth_starts_take(client, now_mono(), (int)c->oauth_max_pending,
	    &ls->retry) == -1) {
		ls->why = "too many sign-ins were started from your address; "
		    "wait a few minutes and try again";
		rc = -3;
		goto out;
	}
	if ((ls->sealed = login_seal(ls, &st)) == NULL) {
		ls->why = "cannot protect the login state";
		goto out;
	}
	ls->url = login_authorize_url(ep, ls, &st);
	rc = 0;
out:
	memzero(&st, sizeof st);
	if (rc == -2 && iss != NULL) {
		oidc_kick(iss);
		ls->problem = oidc_problem_text(iss);
	}
	if (rc != 0 && !ls->api)
		login_count(pc, "error");
	oidc_issuer_put(iss);
	return (rc);
}

/*
 * Claim a state for this request, which has shown that it may redeem it.
 * A read, never a write; login_claimed(l, rc) follows: -1 while another
 * request redeems it (this process), -2 once it has been redeemed (the
 * row, written by any daemon sharing the database), -3 if the database
 * cannot tell; 0 claimed.
 */
static void
login_claim(struct login *l, const uint8_t key[CRYPTO_HASH_LEN])
{
	struct login_busy	*b;
	struct store_param	 p[] = { SP_BLOB(key, CRYPTO_HASH_LEN) };

	HASH_FIND(hh, oa.busy, key, CRYPTO_HASH_LEN, b);
	if (b != NULL) {
		login_claimed(l, -1);
		return;
	}
	/* Ours while the row is looked for: a twin request waits out. */
	b = xcalloc(1, sizeof *b);
	memcpy(b->key, key, sizeof b->key);
	HASH_ADD(hh, oa.busy, key, sizeof b->key, b);
	memcpy(l->skey, b->key, sizeof l->skey);
	l->busy = 1;
	login_db_enter(l, LDB_CLAIM);
	l->dup = 0;
	store_run(0, &st_spent, p, nitems(p), login_db_row, login_db_ran, l);
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
 * Record that the claimed state is redeemed: its row, in the unit t; a
 * taken key (STORE_CONFLICT) means another daemon redeemed it meanwhile.
 */
static void
login_spend(struct login *l, struct store_txn *t)
{
	struct store_param	p[] = {
		SP_BLOB(l->skey, sizeof l->skey), SP_TEXT(l->pc->name),
		SP_TEXT(l->api ? "api" : l->device ? "device" : "browser"),
		SP_TEXT(l->redirect_uri),
		SP_TEXT(l->client), SP_INT(now_wall()),
		SP_INT(l->expires + OAUTH_STATE_TTL),
	};

	store_exec(t, &st_spend, p, nitems(p), NULL, login_db_step, l);
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

/*
 * A sign-in with a provider for a request (its config, client address and
 * id), through the browser or the API flow. Its verdict, whatever it is,
 * goes to done(result, arg) exactly once, unless it is cancelled first.
 */
struct login *
oauth_login_new(const struct config *c, const struct provider_config *pc,
    int api, const char *client, const char *reqid,
    void (*done)(const struct login_result *, void *), void *arg)
{
	struct login	*l;

	l = xcalloc(1, sizeof *l);
	l->cfg = c;
	bsp_strlcpy(l->client, client, sizeof l->client);
	bsp_strlcpy(l->reqid, reqid, sizeof l->reqid);
	l->done = done;
	l->arg = arg;
	l->pc = pc;
	l->api = api;
	l->iss = oauth_provider_issuer(pc);
	return (l);
}

/*
 * Stop a sign-in whose client went away: 1 if it was still going (its
 * verdict will never come), 0 if it had one already.
 */
int
oauth_login_cancel(struct login *l)
{
	if (l == NULL || l->state == LS_DONE)
		return (0);
	if (l->db != LDB_NONE) {
		/* The database answers first; the verdict follows it. */
		l->cancelled = 1;
		return (0);
	}
	if (l->up != NULL) {
		hc_cancel(l->up);
		l->up = NULL;
	}
	if (l->iss != NULL)
		oidc_cancel_wait(l->iss, l);
	login_enter(l, LS_DONE);
	return (1);
}

/* The verdict of a refusal kept in l (login_fail), to the caller. */
static void
login_verdict(struct login *l)
{
	struct login_result	res;

	login_enter(l, LS_DONE);
	memset(&res, 0, sizeof res);
	res.api = l->api;
	res.device = l->device;
	res.pc = l->pc;
	res.code = l->fail_code;
	res.error = l->fail_error;
	res.title = l->fail_title;
	res.detail = l->fail_detail;
	l->done(&res, l->arg);
}

/*
 * Refuse a login, with an audit row, and report it: its status, RFC 6749
 * error, a page title for a browser and what happened.
 */
static void
login_fail(struct login *l, int code, const char *error, const char *title,
    const char *detail)
{
	login_count(l->pc, strcmp(error, "access_denied") == 0 ? "denied" :
	    "error");
	l->fail_code = code;
	free(l->fail_error);
	free(l->fail_title);
	free(l->fail_detail);
	l->fail_error = xstrdup(error);
	l->fail_title = xstrdup(title);
	l->fail_detail = xstrdup(detail);
	login_enter(l, LS_DONE);
	/*
	 * Writes (the state's row and an audit row, in one unit) only for
	 * the verdict on a live state of this client, once; junk from
	 * anyone gets a log line, so it cannot make us write to the disk.
	 */
	if (!l->genuine) {
		log_info("login via %s refused before any state: %s",
		    l->pc->name, detail);
		login_verdict(l);
		return;
	}
	/* The user as the users table names them: provider:subject. */
	free(l->uid);
	l->uid = NULL;
	if (l->id.subject != NULL)
		xasprintf(&l->uid, "%s:%s", l->pc->name, l->id.subject);
	login_db_enter(l, LDB_REFUSE_BEGIN);
	store_begin(STORE_WRITE, login_db_step, l);
}

static void
login_db_enter(struct login *l, enum login_db s)
{
	if (l->db != (int)s)
		log_trace(TRACE_OAUTH, "login %s (%s): database %s -> %s",
		    l->reqid, l->pc->name, login_db_names[l->db],
		    login_db_names[s]);
	l->db = s;
}

/* A read's row: the state's (claim), or the user's (admit). */
static void
login_db_row(const struct store_row *r, void *arg)
{
	struct login	*l = arg;

	if (l->db == LDB_CLAIM)
		l->dup = 1;
	else if (l->db == LDB_ADMIT)
		l->dup = (int)store_int(r, 0);	/* disabled */
}

/* A read is over: the claim's, or the admission's. */
static void
login_db_ran(int status, void *arg)
{
	struct login	*l = arg;
	int		 db = l->db, rc;

	login_db_enter(l, LDB_NONE);
	if (db == LDB_CLAIM) {
		rc = status != STORE_OK ? -3 : l->dup ? -2 : 0;
		if (rc != 0) {
			if (rc == -3)
				log_warnx("login via %s: cannot look up its "
				    "state", l->pc->name);
			login_release(l);
		}
		l->dup = 0;
		login_claimed(l, rc);
		return;
	}
	if (status != STORE_OK) {
		login_fail(l, 503, "temporarily_unavailable", "Sign-in failed",
		    "Your sign-in could not be recorded. Try again.");
		return;
	}
	if (l->dup) {
		login_fail(l, 403, "access_denied", "Access denied", "Your "
		    "account on this proxy is disabled.");
		return;
	}
	login_finish_admitted(l);
}

/* The unit is over: the session's verdict, or the refusal's. */
static void
login_db_committed(int status, void *arg)
{
	struct login		*l = arg;
	struct login_result	 res;
	int			 db = l->db;

	login_db_enter(l, LDB_NONE);
	if (db == LDB_REFUSE_COMMIT) {
		if (status != STORE_OK)
			log_warnx("login via %s: cannot record its refusal",
			    l->pc->name);
		else
			l->spent = 1;
		login_verdict(l);
		return;
	}
	if (status != STORE_OK) {
		json_decref(l->session);
		l->session = NULL;
		login_fail(l, 503, "temporarily_unavailable", "Sign-in failed",
		    "Your sign-in could not be recorded. Try again.");
		return;
	}
	l->spent = 1;
	(void)user_state_note(&l->user);
	login_count(l->pc, "ok");
	login_enter(l, LS_DONE);
	memset(&res, 0, sizeof res);
	res.api = l->api;
	res.device = l->device;
	res.pc = l->pc;
	res.code = 200;
	res.user = &l->user;
	res.session = l->session;
	l->done(&res, l->arg);
}

/*
 * The one step function of a login's units: saving a sign-in (the
 * state's row, the user, the session) and recording a refusal (the
 * state's row, if not yet, and the audit row).
 */
static void
login_db_step(struct store_txn *t, int status, void *arg)
{
	struct login	*l = arg;

	if (t == NULL || status != STORE_OK) {
		if (t != NULL)
			store_rollback(t);
		if (status == STORE_CONFLICT && (l->db == LDB_SAVE_SPEND ||
		    l->db == LDB_REFUSE_SPEND)) {
			/* Redeemed elsewhere meanwhile. */
			if (l->db == LDB_REFUSE_SPEND) {
				login_db_enter(l, LDB_NONE);
				log_info("login via %s refused; its state was "
				    "redeemed elsewhere meanwhile: %s",
				    l->pc->name, l->fail_detail);
				login_verdict(l);
				return;
			}
			login_db_enter(l, LDB_NONE);
			/* Its verdict is recorded elsewhere. */
			l->genuine = 0;
			login_fail(l, 400, "invalid_grant", "Sign-in failed",
			    "This sign-in was already completed.");
			return;
		}
		if (l->db >= LDB_REFUSE_BEGIN) {
			login_db_enter(l, LDB_NONE);
			log_warnx("login via %s: cannot record its refusal",
			    l->pc->name);
			login_verdict(l);
			return;
		}
		login_db_enter(l, LDB_NONE);
		json_decref(l->session);
		l->session = NULL;
		login_fail(l, 503, "temporarily_unavailable", "Sign-in failed",
		    "Your sign-in could not be recorded. Try again.");
		return;
	}
	switch (l->db) {
	case LDB_SAVE_BEGIN:
		/* Redeemed: its row first, so that it is never used again. */
		login_db_enter(l, LDB_SAVE_SPEND);
		login_spend(l, t);
		return;
	case LDB_SAVE_SPEND:
		login_db_enter(l, LDB_SAVE_USER);
		user_upsert(t, &l->user, login_db_step, l);
		return;
	case LDB_SAVE_USER:
		if (l->device) {
			login_db_enter(l, LDB_SAVE_DEVICE);
			device_approve(t, l->device_key, l->user.id,
			    &l->approved, login_db_step, l);
			return;
		}
		login_db_enter(l, LDB_SAVE_SESSION);
		tokens_session_add(t, &l->user, l->client, "login", 0,
		    &l->session, login_db_step, l);
		return;
	case LDB_SAVE_DEVICE:
		if (!l->approved) {
			/* Expired, or decided, since the page looked. */
			store_rollback(t);
			login_db_enter(l, LDB_NONE);
			login_fail(l, 400, "invalid_grant", "Sign-in failed",
			    "This code has expired, or it was already used or "
			    "refused.");
			return;
		}
		login_db_enter(l, LDB_SAVE_APPROVED);
		audit_event(t, "device_approved", l->user.id, l->user.id,
		    l->client, json_pack("{s:s}", "provider", l->pc->name),
		    login_db_step, l);
		return;
	case LDB_SAVE_SESSION:
	case LDB_SAVE_APPROVED:
		login_db_enter(l, LDB_SAVE_COMMIT);
		/* Other daemons may hold something against this user. */
		if (user_state(l->user.id) != NULL || l->user.disabled ||
		    l->user.revoked_before != 0)
			store_notify(t, "users");
		store_commit(t, login_db_committed, l);
		return;
	case LDB_REFUSE_BEGIN:
		if (!l->spent) {
			login_db_enter(l, LDB_REFUSE_SPEND);
			login_spend(l, t);
			return;
		}
		/* FALLTHROUGH */
	case LDB_REFUSE_SPEND:
		login_db_enter(l, LDB_REFUSE_AUDIT);
		audit_event(t, strcmp(l->fail_error, "access_denied") == 0 ?
		    "login_refused" : "login_failed", l->uid, NULL, l->client,
		    json_pack("{s:s,s:s}", "provider", l->pc->name, "reason",
		    l->fail_detail), login_db_step, l);
		return;
	case LDB_REFUSE_AUDIT:
		/* The access policy refused its user: the client stops. */
		if (l->device && l->uid != NULL &&
		    strcmp(l->fail_error, "access_denied") == 0) {
			login_db_enter(l, LDB_REFUSE_DEVICE);
			device_deny(t, l->device_key, l->uid, login_db_step, l);
			return;
		}
		/* FALLTHROUGH */
	case LDB_REFUSE_DEVICE:
		login_db_enter(l, LDB_REFUSE_COMMIT);
		store_commit(t, login_db_committed, l);
		return;
	default:
		store_rollback(t);
		login_db_enter(l, LDB_NONE);
		login_fail(l, 503, "temporarily_unavailable", "Sign-in failed",
		    "Your sign-in could not be recorded. Try again.");
		return;
	}
}

/* The callback (browser) or POST /auth/token (API) has a code: go. */
static void
login_go(struct login *l)
{
	login_enter(l, LS_TOKEN);
	login_step(l);
}

/*
 * RFC 9207: an authorization response that names its issuer must name
 * this provider's (mix-up attacks); one whose provider says it always
 * does must. A Microsoft multi-tenant template issuer is left to the ID
 * token's iss, which is checked against the token's tenant.
 */
static int
login_iss_ok(struct login *l, const struct login_redirect *in)
{
	char	want[512];

	if (l->iss == NULL)
		return (1);
	if (in->iss == NULL)
		return (in->iss_absent && oidc_flag(l->iss,
		    "authorization_response_iss_parameter_supported") != 1);
	if (oidc_expected_issuer(l->iss, NULL, want, sizeof want) == -1)
		return (1);
	return (strcmp(in->iss, want) == 0);
}

/*
 * The browser's sealed sign-in (its cookie), opened and matched to the
 * IdP's answer: live, for this provider, of this browser (the answer's
 * state is its id) and for this callback address. 0 with key the state's
 * key, or -1 refused.
 */
static int
login_open_cookie(struct login *l, const struct login_redirect *in,
    uint8_t key[CRYPTO_HASH_LEN])
{
	const struct provider_config	*pc = l->pc;
	struct oauth_state		 st;
	char				 id[OAUTH_STATE_ID_TEXT];
	uint8_t				 rh[CRYPTO_HASH_LEN];
	int				 rc, ours, same_uri;

	if (in->state == NULL) {
		login_fail(l, 400, "invalid_request", "Sign-in failed",
		    "The identity provider's answer carried no state, so it "
		    "cannot be matched to a sign-in started here.");
		return (-1);
	}
	/* The sign-in itself is in this browser's cookie, sealed. */
	if (in->cookie == NULL) {
		login_fail(l, 400, "invalid_request", "Sign-in failed", "This "
		    "sign-in link has expired or was already used, or the "
		    "sign-in was started in another browser (or its cookie was "
		    "lost).");
		return (-1);
	}
	rc = oauth_state_open(in->cookie, strlen(in->cookie), now_wall(), &st);
	if (rc == OAUTH_STATE_EXPIRED) {
		login_fail(l, 400, "invalid_request", "Sign-in failed", "This "
		    "sign-in has expired: it must be finished within ten "
		    "minutes of starting it.");
		return (-1);
	}
	if (rc != OAUTH_STATE_OK) {
		login_fail(l, 400, "invalid_request", "Sign-in failed", "This "
		    "sign-in's cookie is not valid here: it was altered, or "
		    "made by another proxy.");
		return (-1);
	}
	login_take_state(l, &st);
	oauth_state_id_text(&st, id);
	oauth_state_key(&st, key);
	ours = (st.flow == OAUTH_FLOW_BROWSER || st.flow ==
	    OAUTH_FLOW_DEVICE) && strcmp(st.provider, pc->name) == 0;
	if (st.flow == OAUTH_FLOW_DEVICE) {
		l->device = 1;
		memcpy(l->device_key, st.challenge, sizeof l->device_key);
	}
	l->redirect_uri = oauth_callback_uri(l->cfg, pc);
	crypto_sha256(l->redirect_uri, strlen(l->redirect_uri), rh);
	same_uri = crypto_memeq(rh, st.redirect_hash, sizeof rh);
	memzero(&st, sizeof st);
	if (!ours) {
		login_fail(l, 400, "invalid_request", "Sign-in failed",
		    "The answer does not belong to a sign-in with this "
		    "provider.");
		return (-1);
	}
	if (!crypto_streq(in->state, id)) {
		login_fail(l, 400, "invalid_request", "Sign-in failed", "The "
		    "identity provider's answer does not belong to the sign-in "
		    "started in this browser.");
		return (-1);
	}
	if (!same_uri) {
		login_fail(l, 400, "invalid_request", "Sign-in failed", "This "
		    "proxy's callback address changed while you were signing "
		    "in.");
		return (-1);
	}
	return (0);
}

/*
 * Browser flow: the IdP redirected back to /auth/callback (GET
 * /auth/callback/{provider}?code=&state=) with what in holds. The sealed
 * sign-in from the browser's cookie must be live, this provider's and this
 * browser's (the state is its id); then the code is exchanged, or the
 * sign-in refused.
 */
void
oauth_login_redirect(struct login *l, const struct login_redirect *in)
{
	const char	*desc;
	uint8_t		 key[CRYPTO_HASH_LEN];

	if (login_open_cookie(l, in, key) == -1)
		return;
	/* What the answer says, judged once the state is claimed. */
	l->iss_ok = login_iss_ok(l, in);
	if (in->error != NULL) {
		desc = in->error_description != NULL ? in->error_description :
		    "";
		xasprintf(&l->idp_said, "The identity provider said: %s%s%s",
		    in->error, *desc != '\0' ? ": " : "", desc);
	}
	if (in->code != NULL)
		l->code = xstrdup(in->code);
	login_claim(l, key);
}

/* The browser's claim is settled: refuse, or exchange the code. */
static void
login_redirect_claimed(struct login *l, int rc)
{
	if (rc == -3) {
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
	if (!l->iss_ok) {
		login_fail(l, 400, "invalid_request", "Sign-in failed", "The "
		    "answer names another identity provider as its issuer "
		    "(iss), or none although this one always does.");
		return;
	}
	if (l->idp_said != NULL) {
		login_fail(l, 400, "access_denied", "Sign-in was not completed",
		    l->idp_said);
		return;
	}
	if (l->code == NULL) {
		login_fail(l, 400, "invalid_request", "Sign-in failed",
		    "The identity provider's answer carried no code.");
		return;
	}
	login_go(l);
}

/* The API client's claim is settled: refuse, or exchange the code. */
static void
login_grant_claimed(struct login *l, int rc)
{
	if (rc != 0) {
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
	login_go(l);
}

/*
 * The claim of the state is settled (login_claim). A client that left
 * meanwhile gets a verdict nobody reads, and nothing is written.
 */
static void
login_claimed(struct login *l, int rc)
{
	if (l->cancelled) {
		login_release(l);
		login_fail(l, 400, "invalid_request", "Sign-in failed",
		    "The client went away.");
		return;
	}
	if (l->api)
		login_grant_claimed(l, rc);
	else
		login_redirect_claimed(l, rc);
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
 * API flow: a client posted the code with the state /auth/authorize gave
 * it (POST /auth/token), and "code_verifier" when /auth/authorize was
 * given a code_challenge. Whatever cannot be this client's own state
 * (another provider, flow or redirect_uri, or a verifier that does not
 * fit) is refused without spending it: only the verdict on a state its
 * client redeems counts.
 */
void
oauth_login_grant(struct login *l, const struct login_grant *in)
{
	const struct provider_config	*pc = l->pc;
	struct oauth_state		 st;
	const char			*cv = in->code_verifier, *bad = NULL;
	uint8_t				 rh[CRYPTO_HASH_LEN];
	uint8_t				 ch[CRYPTO_HASH_LEN];
	uint8_t				 key[CRYPTO_HASH_LEN];
	int				 rc;

	rc = oauth_state_open(in->state, strlen(in->state), now_wall(), &st);
	if (rc != OAUTH_STATE_OK) {
		login_fail(l, 400, "invalid_grant", "",
		    rc == OAUTH_STATE_EXPIRED ? "state has expired (a sign-in "
		    "must be finished within ten minutes)" : "state is "
		    "unknown: this proxy did not issue it, or it was altered");
		return;
	}
	login_take_state(l, &st);
	oauth_state_key(&st, key);
	crypto_sha256(in->redirect_uri, strlen(in->redirect_uri), rh);
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
	memzero(&st, sizeof st);
	if (bad != NULL) {
		login_fail(l, 400, "invalid_grant", "", bad);
		return;
	}
	l->redirect_uri = xstrdup(in->redirect_uri);
	l->code = xstrdup(in->code);
	login_claim(l, key);
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
	rules.leeway = OAUTH_LEEWAY;
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
	hr.timeouts.connect_ms = l->cfg->oauth_timeout * 1000;
	hr.timeouts.first_byte_ms = l->cfg->oauth_timeout * 1000;
	hr.timeouts.total_ms = l->cfg->oauth_timeout * 1000;
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

	ep = login_endpoint(l, pc->token_url, "token_endpoint");
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
		basic = crypto_b64_encode_alloc(pair, strlen(pair));
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

/*
 * May the user the IdP named (l->uid, provider:subject) sign in here:
 * their organization, the access policy? 0, or -1 refused. Their account
 * (disabled?) is read next (LDB_ADMIT).
 */
static int
login_admit(struct login *l)
{
	const struct config	*c = l->cfg;
	const char		*why;

	/*
	 * An issuer that serves many organizations (a {tenantid} template)
	 * under a name other than the microsoft preset: its users' emails
	 * prove nothing about their organization, so the tenant must be one
	 * of access.allowed_tenants, as for the preset (access_allowed()).
	 */
	if (!l->pc->multi_tenant && l->iss != NULL &&
	    oidc_multi_tenant(l->iss) && !c->access_any_user &&
	    (l->id.tenant == NULL ||
	    !strlist_contains_nocase(&c->access_tenants, l->id.tenant))) {
		login_fail(l, 403, "access_denied", "Access denied", "Your "
		    "organization (tenant) is not allowed to use this proxy.");
		return (-1);
	}
	if (!access_allowed(c, l->pc, &l->id, &why)) {
		login_fail(l, 403, "access_denied", "Access denied", why);
		return (-1);
	}
	return (0);
}

/* The users table's row for the identity. */
static void
login_user(struct login *l, struct user *u)
{
	user_clear(u);
	u->id = xstrdup(l->uid);
	u->provider = xstrdup(l->pc->name);
	u->subject = xstrdup(l->id.subject);
	if (l->id.email != NULL)
		u->email = xstrdup(l->id.email);
	u->email_verified = l->id.email_verified;
	if (l->id.name != NULL)
		u->name = xstrdup(l->id.name);
	strlist_copy(&u->groups, &l->id.groups);
	strlist_copy(&u->orgs, &l->id.orgs);
	if (l->id.tenant != NULL)
		u->tenant = xstrdup(l->id.tenant);
}

/* The IdP has told us who it is: policy, then the user's account. */
static void
login_finish(struct login *l)
{
	struct store_param	p[1];

	identity_from_claims(l);
	if (l->id.subject == NULL) {
		login_fail(l, 502, "server_error", "Sign-in failed", "The "
		    "identity provider did not say who you are.");
		return;
	}
	free(l->uid);
	xasprintf(&l->uid, "%s:%s", l->pc->name, l->id.subject);
	if (login_admit(l) == -1)
		return;
	p[0] = (struct store_param)SP_TEXT(l->uid);
	login_db_enter(l, LDB_ADMIT);
	l->dup = 0;
	store_run(0, &st_user_disabled, p, nitems(p), login_db_row,
	    login_db_ran, l);
}

/* Admitted: the state's row, the user and the session, in one unit. */
static void
login_finish_admitted(struct login *l)
{
	if (l->cancelled) {
		l->genuine = 0;
		login_fail(l, 400, "invalid_request", "Sign-in failed",
		    "The client went away.");
		return;
	}
	login_user(l, &l->user);
	login_db_enter(l, LDB_SAVE_BEGIN);
	store_begin(STORE_WRITE, login_db_step, l);
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
		    login_endpoint(l, l->pc->user_info_url,
		    "userinfo_endpoint") != NULL)
			login_enter(l, LS_USERINFO);
		else
			login_enter(l, LS_DONE);
		login_step(l);
		return;
	case LS_USERINFO:
		ep = login_endpoint(l, l->pc->user_info_url,
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
		if (l->cfg->access_github_orgs.n == 0 ||
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
