/*
 * test-device.c: the device authorization grant (RFC 8628) in the
 * database (device.c) against a temporary database: SQLite, or the
 * PostgreSQL database of $BSP_TEST_STORE_URL (tests/unit/test-device-pg.sh).
 *
 * A new authorization stores only the hashes of its codes; the page's
 * look at a user code finds a live, pending one and audits any other; a
 * sign-in approves it inside its unit, once; the client's polls are told
 * authorization_pending, slow_down (too soon), access_denied, expired_token
 * or invalid_grant (unknown, of another client, used: audited), and the
 * first poll after the approval gets a session whose access tokens, and
 * those of its refreshes, live device.access_token_ttl. A user disabled
 * between the approval and the poll gets no session. Housekeeping purges
 * rows an hour after they expired. Time is moved by ageing rows, never by
 * waiting. Also: user codes as people type them, and the per-address
 * allowances (addrlimit.c).
 */

#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bsp.h"
#include "crypto.h"
#include "loop.h"
#include "tap.h"
#include "tmpdb.h"

#define DEVICE_TTL	1800	/* device.access_token_ttl of the test */

static struct user	ann;

/* A new authorization's codes, synchronously. */
struct grant {
	volatile int	 done;
	int		 rc;
	char		*device_code;
	char		 user_code[DEVICE_USER_CODE_TEXT];
	long long	 expires_in;
	long long	 interval;
};

static void
granted(int rc, const struct device_grant *g, void *arg)
{
	struct grant	*w = arg;

	w->rc = rc;
	if (g != NULL) {
		w->device_code = xstrdup(g->device_code);
		bsp_strlcpy(w->user_code, g->user_code, sizeof w->user_code);
		w->expires_in = g->expires_in;
		w->interval = g->interval;
	}
	w->done = 1;
}

static int
t_authorize(const char *client_id, struct grant *g)
{
	memset(g, 0, sizeof *g);
	device_authorize(cfg, client_id, "192.0.2.7", granted, g);
	store_wait(&g->done);
	return (g->rc);
}

/* The page's look at a user code. */
struct look {
	volatile int	 done;
	int		 rc;
	char		*client_id;
	char		*why;
};

static void
looked(int rc, const struct device_info *info, const char *why, void *arg)
{
	struct look	*w = arg;

	w->rc = rc;
	if (info != NULL)
		w->client_id = xstrdup(info->client_id);
	if (why != NULL)
		w->why = xstrdup(why);
	w->done = 1;
}

static int
t_lookup(const char *user_code, struct look *l)
{
	uint8_t	key[DEVICE_KEY_LEN];

	memset(l, 0, sizeof *l);
	device_user_key(user_code, key);
	device_lookup(key, "192.0.2.8", looked, l);
	store_wait(&l->done);
	return (l->rc);
}

static void
look_clear(struct look *l)
{
	free(l->client_id);
	free(l->why);
	memset(l, 0, sizeof *l);
}

/* A sign-in's unit approving (or denying) a user code for a user. */
static int
t_decide(const char *user_code, const char *user_id, int deny,
    int *approved)
{
	struct tmpdb_wait	w;
	uint8_t			key[DEVICE_KEY_LEN];

	device_user_key(user_code, key);
	memset(&w, 0, sizeof w);
	store_begin(STORE_WRITE, tw_step, &w);
	tw_wait(&w);
	if (w.rc != STORE_OK)
		return (-1);
	if (deny)
		device_deny(w.t, key, user_id, tw_step, &w);
	else
		device_approve(w.t, key, user_id, approved, tw_step, &w);
	tw_wait(&w);
	if (w.rc != STORE_OK) {
		store_rollback(w.t);
		return (-1);
	}
	store_commit(w.t, tw_rc, &w);
	tw_wait(&w);
	return (w.rc == STORE_OK ? 0 : -1);
}

/* A poll. */
struct poll {
	volatile int	 done;
	int		 rc;
	json_t		*resp;
	char		*why;
};

static void
polled(int rc, json_t *resp, const char *why, void *arg)
{
	struct poll	*w = arg;

	w->rc = rc;
	w->resp = resp;
	if (why != NULL)
		w->why = xstrdup(why);
	w->done = 1;
}

static int
t_poll(const char *device_code, const char *client_id, struct poll *p)
{
	json_decref(p->resp);
	free(p->why);
	memset(p, 0, sizeof *p);
	device_poll(cfg, device_code, client_id, "192.0.2.7", polled, p);
	store_wait(&p->done);
	return (p->rc);
}

static void
poll_clear(struct poll *p)
{
	json_decref(p->resp);
	free(p->why);
	memset(p, 0, sizeof *p);
}

/* The stored form of a code: its hash, as an SQL literal. */
static const char *
code_hex(const char *code)
{
	uint8_t	h[CRYPTO_HASH_LEN];

	crypto_hash_token(code, h);
	return (tmpdb_blob(h, sizeof h));
}

/* Does any text column of device_codes hold s? */
static long long
tt_text_count(const char *s)
{
	return (tmpdb_int("SELECT count(*) FROM device_codes WHERE client_id = "
	    "'%s' OR client_addr = '%s' OR status = '%s' OR user_id = '%s'",
	    s, s, s, s));
}

/* As if the last poll was long ago. */
static void
age_poll(const char *device_code)
{
	tmpdb_exec("UPDATE device_codes SET polled = polled - 60 WHERE "
	    "device_hash = %s", code_hex(device_code));
}

/* The lifetime of an access token: exp - iat. */
static long long
token_ttl(json_t *resp)
{
	struct principal	*p;
	const char		*a, *why;
	long long		 ttl;

	a = json_string_value(json_object_get(resp, "access_token"));
	if (a == NULL || tokens_verify_jwt(a, strlen(a), &p, &why) == -1)
		return (-1);
	ttl = (long long)(p->exp - p->iat);
	principal_unref(p);
	return (ttl);
}

static void
test_user_codes(void)
{
	char	out[DEVICE_USER_CODE_TEXT];

	ok(device_user_code_norm("WDJB-MJHT", out) == 0 &&
	    strcmp(out, "WDJB-MJHT") == 0, "user code: as shown");
	ok(device_user_code_norm(" wdjbmjht ", out) == 0 &&
	    strcmp(out, "WDJB-MJHT") == 0, "user code: lower case, no dash, "
	    "spaces");
	ok(device_user_code_norm("wd-jb-mj-ht", out) == 0 &&
	    strcmp(out, "WDJB-MJHT") == 0, "user code: dashes anywhere");
	ok(device_user_code_norm("WDJB-MJH", out) == -1,
	    "user code: seven letters refused");
	ok(device_user_code_norm("WDJB-MJHTB", out) == -1,
	    "user code: nine letters refused");
	ok(device_user_code_norm("WAJB-MJHT", out) == -1,
	    "user code: a vowel is not in the alphabet");
	ok(device_user_code_norm("WDJB-MJH1", out) == -1,
	    "user code: a digit is not in the alphabet");
	ok(device_user_code_norm("WDJB%00MJHT", out) == -1,
	    "user code: other characters refused");
	ok(device_user_code_norm("", out) == -1, "user code: empty refused");
}

static void
test_authorize(void)
{
	struct grant	g, h;
	size_t		i;
	int		alphabet = 1;

	is_int(t_authorize("claude-code", &g), 0, "authorize: recorded");
	ok(g.device_code != NULL && strncmp(g.device_code, "bsd_", 4) == 0 &&
	    strlen(g.device_code) == 47, "authorize: device code bsd_ + 256 "
	    "bits");
	ok(strlen(g.user_code) == 9 && g.user_code[4] == '-',
	    "authorize: user code XXXX-XXXX");
	for (i = 0; i < 9; i++)
		if (i != 4 && strchr("BCDFGHJKLMNPQRSTVWXZ",
		    g.user_code[i]) == NULL)
			alphabet = 0;
	ok(alphabet, "authorize: user code of the 20-letter alphabet");
	is_int(g.expires_in, 600, "authorize: expires_in 600");
	is_int(g.interval, 5, "authorize: interval 5");
	is_int(tmpdb_int("SELECT count(*) FROM device_codes WHERE device_hash "
	    "= %s", code_hex(g.device_code)), 1,
	    "authorize: the device code's hash is stored");
	is_int(tmpdb_int("SELECT count(*) FROM device_codes WHERE user_hash = "
	    "%s AND status = 'pending' AND client_id = 'claude-code' AND "
	    "client_addr = '192.0.2.7' AND expires - created = 600 AND "
	    "poll_interval = 5 AND polled IS NULL", code_hex(g.user_code)), 1,
	    "authorize: the user code's hash, pending, its client and times");
	is_int(tt_text_count(g.device_code) + tt_text_count(g.user_code), 0,
	    "authorize: neither code is stored in the clear");
	is_int(t_authorize("claude-code", &h), 0, "authorize: another");
	ok(strcmp(g.device_code, h.device_code) != 0 &&
	    strcmp(g.user_code, h.user_code) != 0, "authorize: other codes");
	free(g.device_code);
	free(h.device_code);
}

static void
test_lookup(void)
{
	struct grant	g;
	struct look	l;
	long long	before;

	t_authorize("claude-code", &g);
	is_int(t_lookup(g.user_code, &l), 0, "lookup: a pending code is found");
	is_str(l.client_id, "claude-code", "lookup: with its client");
	look_clear(&l);
	before = tmpdb_int("SELECT count(*) FROM audit_log WHERE event = "
	    "'device_code_refused'");
	is_int(t_lookup("BBBB-BBBB", &l), -1, "lookup: an unknown code is not");
	is_str(l.why, "no such code", "lookup: no such code");
	look_clear(&l);
	is_int(tmpdb_int("SELECT count(*) FROM audit_log WHERE event = "
	    "'device_code_refused' AND client_addr = '192.0.2.8'"),
	    before + 1, "lookup: a wrong code is audited");
	tmpdb_exec("UPDATE device_codes SET expires = created - 1 WHERE "
	    "user_hash = %s", code_hex(g.user_code));
	is_int(t_lookup(g.user_code, &l), -1, "lookup: an expired code is not "
	    "found");
	is_str(l.why, "the code has expired", "lookup: expired");
	look_clear(&l);
	free(g.device_code);
}

static void
test_polls(void)
{
	struct grant	g;
	struct poll	p;
	int		approved = -1;
	char		*refresh;
	json_t		*resp;
	const char	*why;

	memset(&p, 0, sizeof p);
	t_authorize("claude-code", &g);
	is_int(t_poll(g.device_code, NULL, &p), DEVICE_PENDING,
	    "poll: pending before the sign-in");
	is_int(tmpdb_int("SELECT count(*) FROM device_codes WHERE device_hash "
	    "= %s AND polled IS NOT NULL", code_hex(g.device_code)), 1,
	    "poll: its time is recorded");
	is_int(t_poll(g.device_code, "claude-code", &p), DEVICE_SLOW_DOWN,
	    "poll: at once again: slow_down");
	age_poll(g.device_code);
	is_int(t_poll(g.device_code, "bedrock-sso-proxy-cli", &p),
	    DEVICE_INVALID, "poll: another client's client_id: invalid_grant");
	is_int(t_poll("bsd_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", NULL,
	    &p), DEVICE_INVALID, "poll: an unknown device code: invalid_grant");
	is_int(t_poll("not-a-code", NULL, &p), DEVICE_INVALID,
	    "poll: junk: invalid_grant");

	is_int(t_decide(g.user_code, ann.id, 0, &approved), 0,
	    "approve: in a unit");
	is_int(approved, 1, "approve: the pending code is approved");
	is_int(t_decide(g.user_code, ann.id, 0, &approved), 0,
	    "approve: again");
	is_int(approved, 0, "approve: an approved code is not approved again");
	is_int(t_poll(g.device_code, NULL, &p), DEVICE_ISSUED,
	    "poll: approved: a session, even right after a poll");
	ok(json_string_value(json_object_get(p.resp, "access_token")) != NULL &&
	    json_string_value(json_object_get(p.resp, "refresh_token")) !=
	    NULL, "poll: access and refresh tokens");
	is_str(json_string_value(json_object_get(p.resp, "email")),
	    "ann@example.com", "poll: the user's email, to confirm");
	is_int(json_integer_value(json_object_get(p.resp, "expires_in")),
	    DEVICE_TTL, "poll: expires_in is device.access_token_ttl");
	is_int(token_ttl(p.resp), DEVICE_TTL, "poll: so is the token's");
	is_int(tmpdb_int("SELECT count(*) FROM token_families WHERE user_id = "
	    "'%s' AND access_ttl = %d", ann.id, DEVICE_TTL), 1,
	    "poll: the session keeps its access token lifetime");
	is_int(tmpdb_int("SELECT count(*) FROM device_codes WHERE device_hash "
	    "= %s AND status = 'used' AND user_id = '%s' AND used_at IS NOT "
	    "NULL", code_hex(g.device_code), ann.id), 1,
	    "poll: the code is used, by the user");
	is_int(tmpdb_int("SELECT count(*) FROM audit_log WHERE event = "
	    "'device_login' AND user_id = '%s'", ann.id), 1,
	    "poll: the session is audited");

	refresh = xstrdup(json_string_value(json_object_get(p.resp,
	    "refresh_token")));
	resp = NULL;
	is_int(t_refresh(refresh, "192.0.2.7", &resp, &why), 0,
	    "refresh: the device session's refresh token rotates");
	is_int(json_integer_value(json_object_get(resp, "expires_in")),
	    DEVICE_TTL, "refresh: expires_in is still the device's");
	is_int(token_ttl(resp), DEVICE_TTL, "refresh: so is the new token's");
	json_decref(resp);
	free(refresh);

	age_poll(g.device_code);
	is_int(t_poll(g.device_code, NULL, &p), DEVICE_INVALID,
	    "replay: the used code again: invalid_grant");
	is_str(p.why, "device_code was already used", "replay: says so");
	is_int(tmpdb_int("SELECT count(*) FROM audit_log WHERE event = "
	    "'device_code_replayed' AND client_addr = '192.0.2.7'"), 1,
	    "replay: audited");
	is_int(tmpdb_int("SELECT count(*) FROM token_families WHERE user_id = "
	    "'%s'", ann.id), 1, "replay: no second session");
	poll_clear(&p);
	free(g.device_code);
}

static void
test_refusals(void)
{
	struct grant	g;
	struct poll	p;
	struct look	l;
	int		approved;

	memset(&p, 0, sizeof p);
	t_authorize("claude-code", &g);
	is_int(t_decide(g.user_code, ann.id, 1, NULL), 0, "deny: in a unit");
	is_int(t_poll(g.device_code, NULL, &p), DEVICE_DENIED,
	    "deny: the poll is told access_denied");
	is_int(t_lookup(g.user_code, &l), -1, "deny: the page no longer "
	    "finds it");
	look_clear(&l);
	is_int(t_decide(g.user_code, ann.id, 0, &approved), 0,
	    "deny: an approval after it");
	is_int(approved, 0, "deny: approves nothing");
	free(g.device_code);

	t_authorize("claude-code", &g);
	tmpdb_exec("UPDATE device_codes SET expires = created - 1 WHERE "
	    "device_hash = %s", code_hex(g.device_code));
	is_int(t_poll(g.device_code, NULL, &p), DEVICE_EXPIRED,
	    "expired: expired_token");
	is_int(t_decide(g.user_code, ann.id, 0, &approved), 0,
	    "expired: an approval after it");
	is_int(approved, 0, "expired: approves nothing");
	free(g.device_code);

	/* Approved, then the user is disabled before the poll. */
	t_authorize("claude-code", &g);
	t_decide(g.user_code, ann.id, 0, &approved);
	is_int(approved, 1, "disabled: approved");
	is_int(t_user_set(ann.id, 1, 0), 1, "disabled: the user is disabled");
	t_users_load();
	is_int(t_poll(g.device_code, NULL, &p), DEVICE_DENIED,
	    "disabled: the poll is told access_denied");
	is_int(tmpdb_int("SELECT count(*) FROM device_codes WHERE device_hash "
	    "= %s AND status = 'denied'", code_hex(g.device_code)), 1,
	    "disabled: the code is denied");
	is_int(tmpdb_int("SELECT count(*) FROM token_families WHERE user_id = "
	    "'%s'", ann.id), 1, "disabled: no session");
	t_user_set(ann.id, 0, 0);
	t_users_load();
	poll_clear(&p);
	free(g.device_code);
}

static void
test_purge(void)
{
	struct grant	g;
	int		i;

	t_authorize("claude-code", &g);
	tmpdb_exec("UPDATE device_codes SET expires = expires - 600 - 3601 "
	    "WHERE device_hash = %s", code_hex(g.device_code));
	device_maint(now_wall());
	/* The purge is one statement of its own: let the loop run it. */
	for (i = 0; i < 100 && tmpdb_int("SELECT count(*) FROM device_codes "
	    "WHERE device_hash = %s", code_hex(g.device_code)) != 0; i++)
		run_for(0.05);
	is_int(tmpdb_int("SELECT count(*) FROM device_codes WHERE device_hash "
	    "= %s", code_hex(g.device_code)), 0,
	    "purge: a row an hour past its expiry is deleted");
	ok(tmpdb_int("SELECT count(*) FROM device_codes") > 0,
	    "purge: younger rows stay");
	free(g.device_code);
}

static void
test_limits(void)
{
	struct addr_limit	*t = addr_limit_new(2);
	long			 retry;
	int			 first, i, n = 0;

	for (i = 0; i < 5; i++)
		n += addr_limit_take(t, "192.0.2.1", 100.0, 3, 600.0,
		    &retry) == 0;
	is_int(n, 3, "limit: a burst of 3 is taken at once");
	ok(retry >= 199 && retry <= 201, "limit: then wait for a refill "
	    "(%ld s)", retry);
	is_int(addr_limit_take(t, "192.0.2.2", 100.0, 3, 600.0, &retry), 0,
	    "limit: another address has its own");
	is_int(addr_limit_take(t, "192.0.2.1", 301.0, 3, 600.0, &retry), 0,
	    "limit: refilled at burst per window");
	is_int(addr_limit_spent(t, "192.0.2.1", 301.0, 3, 600.0, &retry,
	    &first), -1, "limit: spent again");
	is_int(first, 1, "limit: the first refusal is told apart");
	is_int(addr_limit_spent(t, "192.0.2.1", 302.0, 3, 600.0, &retry,
	    &first), -1, "limit: still spent");
	is_int(first, 0, "limit: later ones are not");
	is_int(addr_limit_spent(t, "192.0.2.3", 302.0, 3, 600.0, &retry,
	    &first), 0, "limit: spent() takes nothing");
	is_int(addr_limit_count(t), 2, "limit: at most 2 buckets kept");
	is_int(addr_limit_take(t, "192.0.2.1", 2000.0, 3, 600.0, &retry), 0,
	    "limit: a bucket untouched for a window is full again");
	addr_limit_free(t);
}

int
main(void)
{
	tmpdb_open("device:\n  access_token_ttl: 1800\n");
	if (t_user_local("ann@example.com", &ann) != 0) {
		printf("Bail out! cannot make a user\n");
		return (1);
	}
	test_user_codes();
	test_authorize();
	test_lookup();
	test_polls();
	test_refusals();
	test_purge();
	test_limits();
	user_clear(&ann);
	device_free();
	tmpdb_close();
	return (tap_done());
}
