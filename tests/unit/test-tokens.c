/*
 * test-tokens.c: sessions (token families), refresh tokens and signing
 * keys against a temporary database: SQLite, or the PostgreSQL database of
 * $BSP_TEST_STORE_URL (tests/unit/test-tokens-pg.sh).
 *
 * The rotation rules: a refresh token rotates once; a retry within
 * jwt.refresh_reuse_grace gets the same successor back; a used token
 * presented after the grace window, or after its successor was used,
 * revokes the whole family. Revocation: a revoked family is held against
 * its tokens until the family's expiry plus the leeway (60 s), in memory
 * and in the database, and then forgotten. Time is moved by giving
 * tokens_purge() its "now" and by ageing rows in the database, never by
 * waiting. Two refreshes of one token at once (two connections with
 * PostgreSQL) end with one successor; of two key loads at once on an
 * empty database, one makes the signing key and the other uses it.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bsp.h"
#include "crypto.h"
#include "tap.h"
#include "tmpdb.h"
#include "tokens.h"

#define LEEWAY	60	/* TOKEN_LEEWAY */
#define S(s)	((s) != NULL ? (s) : "-")	/* a reason not yet set */

struct session {
	char	*access;
	char	*refresh;
	char	*sid;
};

static struct user	ann;

static void
session_clear(struct session *s)
{
	free(s->access);
	free(s->refresh);
	free(s->sid);
	memset(s, 0, sizeof *s);
}

/* The tokens of a token response; 0 if both are there. */
static int
session_take(json_t *resp, struct session *s)
{
	const char	*a, *r;

	a = json_string_value(json_object_get(resp, "access_token"));
	r = json_string_value(json_object_get(resp, "refresh_token"));
	if (a == NULL || r == NULL)
		return (-1);
	free(s->access);
	free(s->refresh);
	s->access = xstrdup(a);
	s->refresh = xstrdup(r);
	return (0);
}

/* The session (family) an access token of ours belongs to, or NULL. */
static char *
token_sid(const char *access)
{
	struct principal	*p;
	const char		*why;
	char			*sid = NULL;

	if (access == NULL)
		return (NULL);
	if (tokens_verify_jwt(access, strlen(access), &p, &why) == -1) {
		diag("verify: %s", why);
		return (NULL);
	}
	if (p->sid != NULL)
		sid = xstrdup(p->sid);
	principal_unref(p);
	return (sid);
}

static int
session_start(struct session *s)
{
	json_t	*resp;
	int	 rc;

	memset(s, 0, sizeof *s);
	if (t_session(&ann, "192.0.2.1", &resp) == -1)
		return (-1);
	rc = session_take(resp, s);
	json_decref(resp);
	if (rc == 0 && (s->sid = token_sid(s->access)) == NULL)
		rc = -1;
	return (rc);
}

/* Refresh; on success the new tokens replace those in *s. */
static int
refresh(const char *token, struct session *s, const char **why)
{
	json_t	*resp = NULL;
	int	 rc;

	*why = NULL;
	if (token == NULL)
		return (-4);	/* an earlier step failed */
	rc = t_refresh(token, "192.0.2.1", &resp, why);
	if (rc == 0 && session_take(resp, s) == -1)
		rc = -3;
	json_decref(resp);
	return (rc);
}

/* The stored form of a token: its hash, as an SQL literal. */
static const char *
token_hex(const char *token)
{
	uint8_t	h[CRYPTO_HASH_LEN];

	crypto_hash_token(token, h);
	return (tmpdb_blob(h, sizeof h));
}

/* tokens_sync(), waited for: the revoked families and the keys. */
static void
tokens_sync_wait(void)
{
	struct tmpdb_wait	w;

	memset(&w, 0, sizeof w);
	tokens_revoked_load(tw_rc, &w);
	tw_wait(&w);
	tokens_keys_load(tw_rc, &w);
	tw_wait(&w);
}

/* tokens_maint(now), waited for. */
static void
tokens_maint_wait(time_t now)
{
	struct tmpdb_wait	w;

	memset(&w, 0, sizeof w);
	tokens_purge(now, tw_rc, &w);
	tw_wait(&w);
}

static void
test_session(void)
{
	struct session		 s;
	struct principal	*p = NULL;
	json_t			*resp = NULL;
	const char		*why, *rt;

	ok(t_session(&ann, "192.0.2.1", &resp) == 0, "session: started");
	is_str(json_string_value(json_object_get(resp, "token_type")),
	    "Bearer", "session: bearer token");
	rt = json_string_value(json_object_get(resp, "refresh_token"));
	ok(rt != NULL && strncmp(rt, "bsr_", 4) == 0 && strlen(rt) == 47,
	    "session: refresh token bsr_ + 256 bits");
	ok(json_integer_value(json_object_get(resp, "expires_in")) > 0,
	    "session: expires_in");
	memset(&s, 0, sizeof s);
	ok(session_take(resp, &s) == 0, "session: both tokens");
	json_decref(resp);

	ok(tokens_verify_jwt(s.access, strlen(s.access), &p, &why) == 0,
	    "session: the access token verifies");
	ok(p != NULL && p->kind == PRINCIPAL_JWT && p->sid != NULL &&
	    strcmp(p->sub, ann.id) == 0, "session: for the user, in a family");
	ok(p != NULL && principal_has_scope(p, SCOPE_INVOKE) &&
	    !principal_has_scope(p, "admin"), "session: scope bedrock:invoke");
	ok(p != NULL && principal_revoked(p) == NULL,
	    "session: nothing held against it");
	is_int(tmpdb_int("SELECT count(*) FROM refresh_tokens WHERE hash = "
	    "%s", token_hex(s.refresh)), 1, "session: the refresh token's "
	    "hash is stored");
	is_int(tmpdb_int("SELECT count(*) FROM refresh_tokens WHERE "
	    "family_id = '%s'", p != NULL ? p->sid : ""), 1,
	    "session: one refresh token in the family");
	principal_unref(p);
	session_clear(&s);
}

static void
test_rotation(void)
{
	struct session		 s, r2, r3, again;
	struct principal	*p = NULL;
	const char		*why;
	char			*rt1, *sid;

	memset(&r2, 0, sizeof r2);
	memset(&r3, 0, sizeof r3);
	memset(&again, 0, sizeof again);
	ok(session_start(&s) == 0, "rotation: session");
	rt1 = s.refresh;
	is_int(refresh(rt1, &r2, &why), 0, "rotation: the refresh token "
	    "rotates");
	ok(r2.refresh != NULL && strcmp(r2.refresh, rt1) != 0 &&
	    strcmp(r2.access, s.access) != 0, "rotation: new tokens");
	sid = token_sid(r2.access);
	is_str(sid, s.sid, "rotation: in the same family");
	free(sid);
	is_int(tmpdb_int("SELECT used_at IS NOT NULL FROM refresh_tokens "
	    "WHERE hash = %s", token_hex(rt1)), 1, "rotation: the old "
	    "token is marked used");

	/* A retry (the answer was lost) within the grace window. */
	is_int(refresh(rt1, &again, &why), 0, "rotation: a retry within the "
	    "grace window succeeds");
	is_str(again.refresh, r2.refresh, "rotation: with the same refresh "
	    "successor");
	is_str(again.access, r2.access, "rotation: and the same access token");
	is_int(tmpdb_int("SELECT count(*) FROM refresh_tokens WHERE "
	    "family_id = '%s'", s.sid), 2, "rotation: no third token made");

	/* The successor rotates once too. */
	is_int(refresh(r2.refresh, &r3, &why), 0, "rotation: the successor "
	    "rotates");
	ok(r3.refresh != NULL && strcmp(r3.refresh, r2.refresh) != 0,
	    "rotation: to a third token");

	/* Its successor was used: rt1 again is reuse, within grace or not. */
	is_int(refresh(rt1, &again, &why), -1, "rotation: the first token "
	    "after its successor was used is refused");
	ok(why != NULL && strstr(why, "already used") != NULL,
	    "rotation: as reuse (%s)", S(why));
	ok(tokens_family_revoked(s.sid), "rotation: the family is revoked");
	is_int(tmpdb_int("SELECT revoked FROM token_families WHERE id = '%s' "
	    "AND revoked_reason = 'refresh token reuse'", s.sid), 1,
	    "rotation: in the database, for reuse");
	is_int(refresh(r3.refresh, &again, &why), -1, "rotation: the newest "
	    "token of the family is refused too");
	is_str(why, "session has been revoked", "rotation: as revoked");
	ok(r3.access != NULL && tokens_verify_jwt(r3.access,
	    strlen(r3.access), &p, &why) == 0 && p != NULL,
	    "rotation: its access token still has a good signature");
	is_str(p != NULL ? principal_revoked(p) : NULL,
	    "session has been revoked", "rotation: but is held revoked");
	principal_unref(p);
	session_clear(&s);
	session_clear(&r2);
	session_clear(&r3);
	session_clear(&again);
}

/* A used token after the grace window revokes the family. */
static void
test_reuse_after_grace(void)
{
	struct session	 s, r2, again;
	const char	*why;

	memset(&r2, 0, sizeof r2);
	memset(&again, 0, sizeof again);
	ok(session_start(&s) == 0, "grace: session");
	is_int(refresh(s.refresh, &r2, &why), 0, "grace: rotated");
	/* The use is aged to just inside the window: still a retry. */
	is_int(tmpdb_exec("UPDATE refresh_tokens SET used_at = used_at - 20 "
	    "WHERE hash = %s", token_hex(s.refresh)), 0,
	    "grace: the use aged by 20 s");
	is_int(refresh(s.refresh, &again, &why), 0, "grace: a retry 20 s "
	    "later (grace 30 s) gets the successor");
	is_str(again.refresh, r2.refresh, "grace: the same one");
	is_int(tmpdb_exec("UPDATE refresh_tokens SET used_at = used_at - 3600 "
	    "WHERE hash = %s", token_hex(s.refresh)), 0,
	    "grace: the use aged by an hour");
	is_int(refresh(s.refresh, &again, &why), -1, "grace: an hour later "
	    "the used token is refused");
	ok(why != NULL && strstr(why, "already used") != NULL,
	    "grace: as reuse");
	ok(tokens_family_revoked(s.sid), "grace: the family is revoked");
	is_int(refresh(r2.refresh, &again, &why), -1, "grace: so is the "
	    "successor the thief may hold");
	session_clear(&s);
	session_clear(&r2);
	session_clear(&again);
}

/*
 * A revoked family is held until exp + leeway (a token of it is accepted
 * until then), by the housekeeping and by the loader.
 */
static void
test_revocation_expiry(void)
{
	struct session	 s, t;
	long long	 e;
	time_t		 now;

	ok(session_start(&s) == 0, "expiry: session");
	is_int(t_revoke_family(s.sid, "logout", "logout", NULL, "192.0.2.1"),
	    0, "expiry: revoked");
	ok(tokens_family_revoked(s.sid), "expiry: held revoked");
	e = tmpdb_int("SELECT expires FROM token_families WHERE id = '%s'",
	    s.sid);
	ok(e > 0, "expiry: the family expires");

	tokens_maint_wait((time_t)e + LEEWAY);
	ok(tokens_family_revoked(s.sid), "expiry: held at exp + leeway");
	is_int(tmpdb_int("SELECT count(*) FROM token_families WHERE id = '%s'",
	    s.sid), 1, "expiry: the row is kept at exp + leeway");
	tokens_maint_wait((time_t)e + LEEWAY + 1);
	ok(!tokens_family_revoked(s.sid), "expiry: forgotten a second later");
	is_int(tmpdb_int("SELECT count(*) FROM token_families WHERE id = '%s'",
	    s.sid), 0, "expiry: and the row purged");

	/* The loader keeps what may still be accepted, and no more. */
	ok(session_start(&t) == 0, "expiry: another session");
	is_int(t_revoke_family(t.sid, "logout", "logout", NULL, NULL), 0,
	    "expiry: revoked");
	now = now_wall();
	tmpdb_exec("UPDATE token_families SET expires = %lld WHERE id = '%s'",
	    (long long)now - LEEWAY / 2, t.sid);
	tokens_sync_wait();
	ok(tokens_family_revoked(t.sid), "expiry: expired within the leeway, "
	    "the loader keeps it");
	tmpdb_exec("UPDATE token_families SET expires = %lld WHERE id = '%s'",
	    (long long)now - 2 * LEEWAY, t.sid);
	tokens_sync_wait();
	ok(!tokens_family_revoked(t.sid), "expiry: beyond it, the loader "
	    "forgets it");
	session_clear(&s);
	session_clear(&t);
}

static void
test_revoke_refresh(void)
{
	struct session	 s, again;
	const char	*why;

	memset(&again, 0, sizeof again);
	ok(session_start(&s) == 0, "logout: session");
	is_int(t_revoke_refresh(s.refresh, "logout", "192.0.2.1"), 0,
	    "logout: by its refresh token");
	ok(tokens_family_revoked(s.sid), "logout: the family is revoked");
	is_int(refresh(s.refresh, &again, &why), -1, "logout: the refresh "
	    "token no longer works");
	is_str(why, "session has been revoked", "logout: as revoked");
	is_int(t_revoke_refresh("bsr_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	    "AAAAAAA", "logout", NULL), -1, "logout: an unknown token");
	is_int(t_revoke_family("no-such-family", "logout", "logout", NULL,
	    NULL), -1, "logout: an unknown family");
	session_clear(&s);
}

static void
test_revoke_user(void)
{
	struct session		 a, b, again;
	const struct user_state	*us;
	const char		*why;
	int			 nkeys = -1;

	memset(&again, 0, sizeof again);
	ok(session_start(&a) == 0 && session_start(&b) == 0,
	    "user logout: two sessions");
	is_int(t_revoke_user(ann.id, "logout", 0, "cli:test", NULL, &nkeys),
	    2, "user logout: both sessions ended");
	is_int(nkeys, 0, "user logout: no keys to revoke");
	ok(tokens_family_revoked(a.sid) && tokens_family_revoked(b.sid),
	    "user logout: both families revoked");
	us = user_state(ann.id);
	ok(us != NULL && us->revoked_before > 0, "user logout: tokens issued "
	    "so far are cut off");
	is_int(refresh(b.refresh, &again, &why), -1, "user logout: refresh "
	    "refused");
	is_int(t_revoke_user(ann.id, "logout", 0, "cli:test", NULL, &nkeys),
	    0, "user logout: again, nothing left to end");
	session_clear(&a);
	session_clear(&b);
}

/* tokens_sessions_list(), waited for. */
static json_t *
sessions(const char *user, int max)
{
	struct tmpdb_wait	w;

	memset(&w, 0, sizeof w);
	tokens_sessions_list(user, max, tw_json, &w);
	tw_wait(&w);
	return (w.rc == 0 ? w.j : NULL);
}

static const char *
sess_field(json_t *a, size_t i, const char *k)
{
	return (json_string_value(json_object_get(json_array_get(a, i), k)));
}

/* tokens_revoke_own_family(), waited for. */
static int
revoke_own(const char *sid, const char *owner)
{
	struct tmpdb_wait	w;

	memset(&w, 0, sizeof w);
	tokens_revoke_own_family(sid, owner, "logout", "logout", "192.0.2.1",
	    tw_rc, &w);
	tw_wait(&w);
	return (w.rc);
}

/* The self-service page's sessions: a user's live ones, and sign out one. */
static void
test_own_sessions(void)
{
	struct user	 zed;
	struct session	 a, b, again;
	json_t		*l, *resp = NULL;
	const char	*why;
	char		*dump;

	memset(&zed, 0, sizeof zed);
	memset(&a, 0, sizeof a);
	memset(&b, 0, sizeof b);
	memset(&again, 0, sizeof again);
	if (t_user_local("zed@example.com", &zed) != 0 ||
	    t_session(&zed, "192.0.2.1", &resp) != 0 ||
	    session_take(resp, &a) != 0 ||
	    (a.sid = token_sid(a.access)) == NULL) {
		ok(0, "own sessions: set-up");
		goto out;
	}
	json_decref(resp);
	resp = NULL;
	if (t_session(&zed, "192.0.2.1", &resp) != 0 ||
	    session_take(resp, &b) != 0 ||
	    (b.sid = token_sid(b.access)) == NULL) {
		ok(0, "own sessions: set-up");
		goto out;
	}
	/* a: older, refreshed since, a device's; b: new. */
	tmpdb_exec("UPDATE token_families SET created = created - 100, "
	    "access_ttl = 3600 WHERE id = '%s'", a.sid);
	tmpdb_exec("UPDATE refresh_tokens SET created = created - 100 WHERE "
	    "family_id = '%s'", a.sid);
	ok(refresh(a.refresh, &a, &why) == 0, "own sessions: one refreshed");
	l = sessions(zed.id, 100);
	ok(l != NULL && json_array_size(l) == 2, "own sessions: both listed");
	ok(l != NULL && sess_field(l, 0, "id") != NULL &&
	    strcmp(sess_field(l, 0, "id"), b.sid) == 0 &&
	    strcmp(sess_field(l, 1, "id"), a.sid) == 0, "own sessions: the "
	    "newest first");
	ok(l != NULL && json_is_null(json_object_get(json_array_get(l, 0),
	    "refreshed_at")) && json_is_integer(json_object_get(
	    json_array_get(l, 1), "refreshed_at")), "own sessions: when it "
	    "was refreshed, if it was");
	ok(l != NULL && json_is_false(json_object_get(json_array_get(l, 0),
	    "device")) && json_is_true(json_object_get(json_array_get(l, 1),
	    "device")), "own sessions: a device's told apart");
	json_decref(l);
	l = sessions(zed.id, 1);
	ok(l != NULL && json_array_size(l) == 1, "own sessions: at most the "
	    "number asked");
	json_decref(l);
	l = sessions(ann.id, 100);
	dump = l != NULL ? json_dumps(l, 0) : NULL;
	ok(dump != NULL && strstr(dump, a.sid) == NULL,
	    "own sessions: not in another user's list");
	free(dump);
	json_decref(l);

	is_int(revoke_own(a.sid, ann.id), -1, "sign out one: another user's "
	    "session is not found");
	ok(!tokens_family_revoked(a.sid) && refresh(a.refresh, &again,
	    &why) == 0, "sign out one: and goes on");
	is_int(revoke_own(a.sid, zed.id), 0, "sign out one: the user's own");
	ok(tokens_family_revoked(a.sid), "sign out one: revoked");
	is_int(tmpdb_int("SELECT count(*) FROM audit_log WHERE event = "
	    "'logout' AND actor = '%s' AND detail LIKE '%%%s%%'", zed.id,
	    a.sid), 1, "sign out one: audited, the user the actor");
	is_int(revoke_own("no-such-family", zed.id), -1, "sign out one: an "
	    "unknown session");
	l = sessions(zed.id, 100);
	ok(l != NULL && json_array_size(l) == 1 &&
	    strcmp(sess_field(l, 0, "id"), b.sid) == 0, "own sessions: a "
	    "revoked one is no longer listed");
	json_decref(l);
	tmpdb_exec("UPDATE token_families SET expires = %lld WHERE id = '%s'",
	    (long long)now_wall() - 1, b.sid);
	l = sessions(zed.id, 100);
	ok(l != NULL && json_array_size(l) == 0, "own sessions: nor an "
	    "expired one");
	json_decref(l);
out:
	json_decref(resp);
	session_clear(&a);
	session_clear(&b);
	session_clear(&again);
	user_clear(&zed);
}

static void
test_disabled_user(void)
{
	struct session	 s, again;
	const char	*why;

	memset(&again, 0, sizeof again);
	ok(session_start(&s) == 0, "disabled: session");
	ok(t_user_set(ann.id, 1, 0) == 1 && t_users_load() == 0,
	    "disabled: the user is disabled");
	is_int(refresh(s.refresh, &again, &why), -1, "disabled: refresh "
	    "refused");
	is_str(why, "user is disabled", "disabled: with the reason");
	ok(tokens_family_revoked(s.sid), "disabled: the family is revoked");
	is_int(tmpdb_int("SELECT count(*) FROM token_families WHERE id = '%s' "
	    "AND revoked_reason = 'user disabled'", s.sid), 1,
	    "disabled: for that reason");
	ok(t_user_set(ann.id, 0, 0) == 1 && t_users_load() == 0,
	    "disabled: enabled again");
	session_clear(&s);
}

static void
test_mint_session(void)
{
	struct principal	*p = NULL;
	struct strlist		 scopes = { NULL, 0 };
	const char		*why;
	char			*t = NULL;

	strlist_add(&scopes, "bedrock:invoke");
	strlist_add(&scopes, "keys:manage");
	ok(t_mint(&ann, &scopes, 3600, "cli:test", &t) == 0 && t != NULL,
	    "mint: a token in a session of its own");
	ok(t != NULL && tokens_verify_jwt(t, strlen(t), &p, &why) == 0,
	    "mint: it verifies");
	ok(p != NULL && principal_has_scope(p, "keys:manage"),
	    "mint: with the scopes asked for");
	ok(p != NULL && p->exp - p->iat >= 3599 && p->exp - p->iat <= 3600,
	    "mint: for the ttl");
	is_int(tmpdb_int("SELECT count(*) FROM refresh_tokens WHERE "
	    "family_id = '%s'", p != NULL ? p->sid : ""), 0,
	    "mint: no refresh token");
	ok(p != NULL && t_revoke_family(p->sid, "revoke", "revoke",
	    "cli:test", NULL) == 0, "mint: its session can be revoked");
	is_str(p != NULL ? principal_revoked(p) : NULL,
	    "session has been revoked", "mint: and the token with it");
	principal_unref(p);
	free(t);
	strlist_free(&scopes);
}

static void
test_refused(void)
{
	struct session		 s, again;
	struct principal	*p = NULL;
	const char		*why;
	char			*bad;
	size_t			 n;

	memset(&again, 0, sizeof again);
	is_int(refresh("bsr_short", &again, &why), -1, "refused: malformed");
	is_int(refresh("bsr_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
	    &again, &why), -1, "refused: unknown");
	is_str(why, "refresh token is not valid", "refused: not valid");
	ok(session_start(&s) == 0, "refused: session");
	bad = xstrdup(s.access);
	n = strlen(bad);
	bad[n - 2] = bad[n - 2] == 'A' ? 'B' : 'A';
	ok(tokens_verify_jwt(bad, n, &p, &why) == -1 && p == NULL,
	    "refused: a tampered access token (%s)", S(why));
	free(bad);
	session_clear(&s);
}

/* Two refreshes of one token at once: one successor, for both. */
struct twin {
	volatile int	 done;
	int		 rc;
	json_t		*resp;
	const char	*why;
};

static void
twin_done(int rc, json_t *resp, const char *why, void *arg)
{
	struct twin	*t = arg;

	t->rc = rc;
	t->resp = resp;
	t->why = why;
	t->done = 1;
}

static void
test_twins(void)
{
	struct session	 s, a, b;
	struct twin	 t1, t2;
	int		 i, waiting = 0;

	memset(&a, 0, sizeof a);
	memset(&b, 0, sizeof b);
	memset(&t1, 0, sizeof t1);
	memset(&t2, 0, sizeof t2);
	ok(session_start(&s) == 0, "twins: session");
	/*
	 * Both asked for before either is answered. With PostgreSQL the
	 * test's own connection holds the token's row until both have read
	 * it (unused) and wait to claim it: one claims it, the other's claim
	 * finds it used, and that unit reads it again, as a retry.
	 */
	if (tmpdb_pg())
		tmpdb_exec("BEGIN; SELECT 1 FROM refresh_tokens WHERE "
		    "hash = %s FOR UPDATE", token_hex(s.refresh));
	tokens_refresh(s.refresh, "192.0.2.1", twin_done, &t1);
	tokens_refresh(s.refresh, "192.0.2.2", twin_done, &t2);
	if (tmpdb_pg()) {
		for (i = 0; i < 3000 && waiting < 2; i++) {
			event_base_loop(bsp_base, EVLOOP_ONCE |
			    EVLOOP_NONBLOCK);
			waiting = (int)tmpdb_int("SELECT count(*) FROM "
			    "pg_stat_activity WHERE wait_event_type = 'Lock' "
			    "AND datname = current_database()");
			if (waiting < 2)
				usleep(1000);
		}
		is_int(waiting, 2, "twins: both read it and wait to claim it");
		tmpdb_exec("COMMIT");
	}
	store_wait(&t1.done);
	store_wait(&t2.done);
	is_int(t1.rc, 0, "twins: the first is answered");
	is_int(t2.rc, 0, "twins: so is the second, as a retry");
	ok(t1.resp != NULL && t2.resp != NULL && session_take(t1.resp, &a) ==
	    0 && session_take(t2.resp, &b) == 0 && strcmp(a.refresh,
	    b.refresh) == 0, "twins: with one and the same successor");
	is_int(tmpdb_int("SELECT count(*) FROM refresh_tokens WHERE "
	    "family_id = '%s'", s.sid), 2, "twins: one successor in the "
	    "database");
	is_int(tmpdb_int("SELECT count(*) FROM audit_log WHERE event = "
	    "'refresh_retry' AND detail = '{\"session\":\"%s\"}'", s.sid), 1,
	    "twins: the second audited as a retry");
	ok(!tokens_family_revoked(s.sid), "twins: not taken for reuse");
	json_decref(t1.resp);
	json_decref(t2.resp);
	session_clear(&s);
	session_clear(&a);
	session_clear(&b);
}

/* The signing keys: made once, one active per algorithm, rotated. */
static void
rotated(int rc, const char *cause, void *arg)
{
	struct tmpdb_wait	*w = arg;

	w->rc = rc;
	if (cause != NULL)
		diag("rotate: %s", cause);
	w->done = 1;
}

static void
test_keys(void)
{
	struct tmpdb_wait	 w;
	struct principal	*p = NULL;
	const struct crypto_key	*k;
	const char		*why, *detail;
	char			*before = NULL, *t = NULL, *after;
	json_t			*jwks;

	ok(tokens_ready(&detail), "keys: a signing key is loaded");
	is_int(tmpdb_int("SELECT count(*) FROM signing_keys WHERE retired IS "
	    "NULL"), 1, "keys: one active key");
	is_int(tmpdb_int("SELECT count(*) FROM kek_check"), 1,
	    "keys: the key-encryption key's check value is stored");
	ok(tmpdb_exec("INSERT INTO signing_keys (kid, alg, created) VALUES "
	    "('second', 'EdDSA', 1)") == -1, "keys: a second active key of "
	    "the algorithm is refused by the database");
	if ((k = tokens_keys_signer()) != NULL)
		before = xstrdup(crypto_key_kid(k));
	ok(t_mint(&ann, NULL, 600, "cli:test", &t) == 0, "keys: a token "
	    "signed with it");

	memset(&w, 0, sizeof w);
	tokens_signing_rotate(cfg, rotated, &w);
	tw_wait(&w);
	is_int(w.rc, 0, "keys: rotated");
	is_int(tmpdb_int("SELECT count(*) FROM signing_keys WHERE retired IS "
	    "NULL"), 1, "keys: still one active key");
	is_int(tmpdb_int("SELECT count(*) FROM signing_keys WHERE retired IS "
	    "NOT NULL AND verify_until > %lld", (long long)now_wall()), 1,
	    "keys: the old one retired, verifying until its tokens expire");
	is_int(tmpdb_int("SELECT count(*) FROM audit_log WHERE event = "
	    "'signing_key_rotated'"), 1, "keys: the rotation audited");
	tokens_sync_wait();
	after = (k = tokens_keys_signer()) != NULL ?
	    xstrdup(crypto_key_kid(k)) : NULL;
	ok(before != NULL && after != NULL && strcmp(before, after) != 0,
	    "keys: a sync loads the new active key");
	jwks = tokens_jwks();
	is_int(json_array_size(json_object_get(jwks, "keys")), 2,
	    "keys: the JWKS has both");
	json_decref(jwks);
	ok(t != NULL && tokens_verify_jwt(t, strlen(t), &p, &why) == 0,
	    "keys: a token of the old key still verifies");
	principal_unref(p);
	free(before);
	free(after);
	free(t);
}

/*
 * Two key loads at once on an empty database (as two daemons starting
 * together): one key between them. With PostgreSQL they run on two
 * connections; the test's own connection holds the table until both have
 * looked for an active key (and found none) and wait on their inserts:
 * one insert goes in, the other conflicts, and its unit starts again and
 * uses the first one's key.
 */
static void
test_keys_race(void)
{
	struct tmpdb_wait	 w;
	char			*cause = NULL;
	const char		*detail;
	const struct crypto_key	*k;
	int			 i, waiting = 0, restarts;

	tokens_free();
	tmpdb_exec("DELETE FROM signing_keys");
	if (tmpdb_pg())
		tmpdb_exec("BEGIN; LOCK TABLE signing_keys IN EXCLUSIVE MODE");
	restarts = tokens_keys_restarts();
	memset(&w, 0, sizeof w);
	tokens_keys_load(tw_rc, &w);
	if (tokens_reload_prepare(cfg, &cause) == -1)
		diag("prepare: %s", cause);
	tokens_reload_commit(cfg);
	if (tmpdb_pg()) {
		for (i = 0; i < 3000 && waiting < 2; i++) {
			event_base_loop(bsp_base, EVLOOP_ONCE |
			    EVLOOP_NONBLOCK);
			/* (At the insert's parse: its text is not shown.) */
			waiting = (int)tmpdb_int("SELECT count(*) FROM "
			    "pg_stat_activity WHERE wait_event_type = 'Lock' "
			    "AND datname = current_database()");
			if (waiting < 2)
				usleep(1000);
		}
		is_int(waiting, 2, "race: both looked, found none, and insert "
		    "a key");
		tmpdb_exec("COMMIT");
	}
	tw_wait(&w);
	is_int(w.rc, STORE_OK, "race: the load has its key");
	/* The prepare's unit, if still under way (PostgreSQL). */
	while (tokens_reload_pending())
		event_base_loop(bsp_base, EVLOOP_ONCE);
	is_int(tmpdb_int("SELECT count(*) FROM signing_keys"), 1,
	    "race: one key was made between the two");
	if (tmpdb_pg())
		is_int(tokens_keys_restarts() - restarts, 1, "race: the loser's "
		    "unit conflicted and started again");
	ok(tokens_ready(&detail) && (k = tokens_keys_signer()) != NULL &&
	    tmpdb_int("SELECT count(*) FROM signing_keys WHERE kid = '%s' AND "
	    "retired IS NULL", crypto_key_kid(k)) == 1,
	    "race: and it is the active one here");
	free(cause);
}

/*
 * A daemon given another key-encryption key than the database was made
 * with refuses to start (the check value differs), naming jwt.kek_file,
 * and makes no key of its own.
 */
static void
test_wrong_kek(void)
{
	uint8_t	 other[CRYPTO_HASH_LEN];
	char	*cause = NULL;
	int	 rc;

	memset(other, 7, sizeof other);
	tokens_free();
	ok(tmpdb_exec("UPDATE kek_check SET mac = %s", tmpdb_blob(other,
	    sizeof other)) == 0 && tmpdb_exec("DELETE FROM signing_keys") ==
	    0, "kek: the database's check value is another key's, and it has "
	    "no signing key");
	rc = tokens_init(cfg, &cause);
	if (rc == 0 && tmpdb_pg())
		rc = tokens_wait(&cause);
	ok(rc == -1 && cause != NULL && strstr(cause, "wrong KEK") != NULL &&
	    strstr(cause, "jwt.kek_file") != NULL, "kek: refused, naming "
	    "jwt.kek_file (%s)", cause != NULL ? cause : "-");
	is_int(tmpdb_int("SELECT count(*) FROM signing_keys"), 0,
	    "kek: and no key of its own was made");
	free(cause);
}

int
main(void)
{
	tmpdb_open(NULL);
	if (t_user_local("ann@example.com", &ann) != 0) {
		printf("Bail out! cannot make a user\n");
		return (1);
	}
	test_session();
	test_rotation();
	test_reuse_after_grace();
	test_revocation_expiry();
	test_revoke_refresh();
	test_revoke_user();
	test_disabled_user();
	test_own_sessions();
	test_mint_session();
	test_refused();
	test_twins();
	test_keys();
	test_keys_race();
	test_wrong_kek();
	user_clear(&ann);
	tmpdb_close();
	return (tap_done());
}
