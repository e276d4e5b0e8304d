/*
 * test-apikeys.c: API keys against a temporary database (SQLite, or the
 * PostgreSQL database of $BSP_TEST_STORE_URL: test-apikeys-pg.sh): making
 * one (and what is refused), checking one, its model patterns, its expiry,
 * revoking it, and its end with the session (token family) it was made
 * in, on every path that ends a family: logout, refresh token reuse, a
 * disabled user, "user logout"; the audit rows of each.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bsp.h"
#include "tap.h"
#include "tmpdb.h"

/* A reason for a TAP line, which may not have been set. */
#define S(s)	((s) != NULL ? (s) : "-")

static struct user	ann, bob;

/* Make a key; the secret, and its id in *id (both to free), or NULL. */
static char *
key_new(const struct user *u, const char *sid, const char *name,
    long long ttl, const struct strlist *models, char **id)
{
	json_t		*info = NULL;
	const char	*why = NULL;
	char		*key = NULL;
	int		 rc;

	*id = NULL;
	rc = t_key_create(u->id, sid, name, ttl, models, u->id, "192.0.2.1",
	    &key, &info, &why);
	if (rc != 0) {
		diag("apikey_create: %d %s", rc, why != NULL ? why : "-");
		return (NULL);
	}
	*id = xstrdup(json_string_value(json_object_get(info, "id")));
	json_decref(info);
	return (key);
}

/* Does the key verify? Its principal in *pp if asked for. */
static int
key_ok(const char *key, struct principal **pp, const char **why)
{
	struct principal	*p = NULL;
	int			 rc;

	if (pp != NULL)
		*pp = NULL;
	if (key == NULL) {
		*why = "no key (an earlier step failed)";
		return (0);
	}
	rc = apikey_verify(key, &p, why) == 0;
	if (pp != NULL)
		*pp = p;
	else
		principal_unref(p);
	return (rc);
}

/* A session of u; its refresh token and family id (to free). */
static int
session_start(const struct user *u, char **refresh, char **sid)
{
	struct principal	*p = NULL;
	json_t			*resp = NULL;
	const char		*a, *why;

	*refresh = *sid = NULL;
	if (t_session(u, "192.0.2.1", &resp) == -1)
		return (-1);
	a = json_string_value(json_object_get(resp, "access_token"));
	*refresh = xstrdup(json_string_value(json_object_get(resp,
	    "refresh_token")));
	if (a != NULL && tokens_verify_jwt(a, strlen(a), &p, &why) == 0) {
		*sid = xstrdup(p->sid);
		principal_unref(p);
	}
	json_decref(resp);
	return (*sid != NULL ? 0 : -1);
}

static void
test_create(void)
{
	struct strlist	 models = { NULL, 0 };
	json_t		*info = NULL, *list, *o = NULL;
	const char	*why = NULL;
	char		*key = NULL, *id, name[80];
	long long	 created, expires;
	size_t		 i;

	strlist_add(&models, "anthropic.*");
	ok(t_key_create(ann.id, NULL, "ci", -1, &models, "cli:test", NULL,
	    &key, &info, &why) == 0, "create: a key");
	ok(key != NULL && strncmp(key, APIKEY_PREFIX, 4) == 0 &&
	    strlen(key) == 47, "create: bsk_ + 256 bits");
	ok(strncmp(json_string_value(json_object_get(info, "id")), "key_",
	    4) == 0, "create: an id");
	ok(key != NULL && strcmp(json_string_value(json_object_get(info,
	    "hint")) + 7, key + 43) == 0, "create: a hint of its last four");
	created = json_integer_value(json_object_get(info, "created_at"));
	expires = json_integer_value(json_object_get(info, "expires_at"));
	is_int(expires - created, cfg->apikeys_default_ttl, "create: "
	    "api_keys.default_ttl by default");
	ok(key != NULL && tmpdb_int("SELECT count(*) FROM api_keys WHERE "
	    "hint = 'bsk_...%s' AND length(hash) = 32", key + 43) == 1,
	    "create: the database keeps its hash and hint");
	json_decref(info);
	free(key);

	ok((key = key_new(&ann, NULL, NULL, 0, NULL, &id)) != NULL,
	    "create: no name, no expiry");
	free(key);
	list = t_key_list(ann.id);
	is_int(json_array_size(list), 2, "create: two keys listed");
	for (i = 0; i < json_array_size(list); i++) {
		o = json_array_get(list, i);
		if (strcmp(json_string_value(json_object_get(o, "id")), id) ==
		    0)
			break;
	}
	ok(i < json_array_size(list) &&
	    json_is_null(json_object_get(o, "expires_at")),
	    "create: ttl 0 never expires");
	json_decref(list);
	free(id);

	/* Refusals change nothing. */
	memset(name, 'n', sizeof name - 1);
	name[sizeof name - 1] = '\0';
	ok(t_key_create(ann.id, NULL, name, -1, NULL, "cli:test", NULL,
	    &key, &info, &why) == -1 && key == NULL, "refused: a 79-byte name "
	    "(%s)", S(why));
	ok(t_key_create(ann.id, NULL, "a\tb", -1, NULL, "cli:test", NULL,
	    &key, &info, &why) == -1, "refused: a name with a control");
	ok(t_key_create(ann.id, NULL, "x", 315360001, NULL, "cli:test", NULL,
	    &key, &info, &why) == -1, "refused: over ten years (%s)", S(why));
	strlist_add(&models, "bad\npattern");
	ok(t_key_create(ann.id, NULL, "x", -1, &models, "cli:test", NULL,
	    &key, &info, &why) == -1, "refused: a pattern with a control "
	    "(%s)", S(why));
	strlist_free(&models);
	for (i = 0; i < 33; i++)
		strlist_add(&models, "m.*");
	ok(t_key_create(ann.id, NULL, "x", -1, &models, "cli:test", NULL,
	    &key, &info, &why) == -1, "refused: 33 patterns (%s)", S(why));
	strlist_free(&models);
	ok(t_key_create(ann.id, "no-such-session", "x", -1, NULL, "cli:test",
	    NULL, &key, &info, &why) == -3, "refused: in a session that does "
	    "not exist (%s)", S(why));
	is_int(tmpdb_int("SELECT count(*) FROM api_keys WHERE user_id = '%s'",
	    ann.id), 2, "refused: no key made");
	is_int(tmpdb_int("SELECT count(*) FROM audit_log WHERE event = "
	    "'key_created' AND user_id = '%s'", ann.id), 2,
	    "create: each key made has its audit row");
}

static void
test_limit(void)
{
	const char	*why = NULL;
	json_t		*info = NULL;
	char		*key = NULL, *id;
	long long	 i, made = 0;
	int		 nkeys = 0;

	for (i = 0; i < cfg->apikeys_max_per_user; i++) {
		if ((key = key_new(&bob, NULL, "k", -1, NULL, &id)) != NULL)
			made++;
		free(key);
		free(id);
	}
	is_int(made, cfg->apikeys_max_per_user, "limit: max_per_user made");
	ok(t_key_create(bob.id, NULL, "k", -1, NULL, "cli:test", NULL, &key,
	    &info, &why) == -1, "limit: one more is refused (%s)", S(why));
	ok(t_revoke_user(bob.id, "logout", 0, "cli:test", NULL,
	    &nkeys) == 0 && nkeys == cfg->apikeys_max_per_user,
	    "limit: user logout revokes them");
	is_int(tmpdb_int("SELECT count(*) FROM api_keys WHERE user_id = '%s' "
	    "AND revoked = 0", bob.id), 0, "limit: every one");
	ok((key = key_new(&bob, NULL, "k", -1, NULL, &id)) != NULL,
	    "limit: revoked keys do not count");
	free(key);
	free(id);
}

static void
test_verify(void)
{
	struct strlist		 models = { NULL, 0 };
	struct principal	*p = NULL;
	const char		*why = NULL;
	char			*key, *id, bad[64];

	strlist_add(&models, "anthropic.*");
	strlist_add(&models, "amazon.titan-*");
	key = key_new(&ann, NULL, "patterns", 3600, &models, &id);
	ok(key != NULL && key_ok(key, &p, &why), "verify: the key is "
	    "accepted");
	ok(p != NULL && p->kind == PRINCIPAL_API_KEY &&
	    strcmp(p->sub, ann.id) == 0 && strcmp(p->key_id, id) == 0,
	    "verify: as its owner, with its id");
	ok(p != NULL && strcmp(p->email, "ann@example.com") == 0 &&
	    p->email_verified, "verify: with the owner's email");
	ok(p != NULL && p->key_models.n == 2 &&
	    strcmp(p->key_models.v[0], "anthropic.*") == 0,
	    "verify: with its model patterns");
	ok(p != NULL && principal_has_scope(p, SCOPE_INVOKE),
	    "verify: API keys may invoke");
	ok(p != NULL && p->exp > now_wall(), "verify: with its expiry");
	ok(p != NULL && principal_revoked(p) == NULL, "verify: nothing held "
	    "against it");
	ok(p != NULL && policy_model_allowed(cfg, p,
	    "anthropic.claude-3-haiku", &why), "patterns: a matching model");
	ok(p != NULL && policy_model_allowed(cfg, p, "amazon.titan-text",
	    &why), "patterns: the second pattern");
	ok(p != NULL && !policy_model_allowed(cfg, p, "meta.llama3", &why),
	    "patterns: another model is refused (%s)", S(why));
	principal_unref(p);
	p = NULL;
	free(key);
	free(id);
	strlist_free(&models);

	key = key_new(&ann, NULL, "any", -1, NULL, &id);
	ok(key != NULL && key_ok(key, &p, &why) && p->key_models.n == 0 &&
	    policy_model_allowed(cfg, p, "meta.llama3", &why),
	    "patterns: a key without patterns may use any model");
	principal_unref(p);
	p = NULL;

	ok(!key_ok("bsk_short", NULL, &why), "verify: malformed (%s)", S(why));
	snprintf(bad, sizeof bad, "%s", key);
	bad[10] = bad[10] == 'A' ? 'B' : 'A';
	ok(!key_ok(bad, NULL, &why), "verify: unknown (%s)", S(why));
	bad[10] = '*';
	ok(!key_ok(bad, NULL, &why), "verify: not base64url");
	cfg->apikeys_enabled = 0;
	ok(!key_ok(key, NULL, &why) && strcmp(why, "API keys are disabled") ==
	    0, "verify: refused while API keys are disabled");
	cfg->apikeys_enabled = 1;
	free(key);
	free(id);
}

static void
test_expiry(void)
{
	json_t		*list, *o;
	const char	*why = NULL;
	char		*key, *id;
	time_t		 now = now_wall();
	size_t		 i;
	int		 listed = 0;

	key = key_new(&ann, NULL, "expiring", 3600, NULL, &id);
	ok(key != NULL && key_ok(key, NULL, &why), "expiry: accepted before");
	tmpdb_exec("UPDATE api_keys SET expires = %lld WHERE id = '%s'",
	    (long long)now - 1, id);
	t_keys_load();
	ok(!key_ok(key, NULL, &why), "expiry: refused once expired (%s)",
	    S(why));
	t_keys_purge(now);
	is_int(tmpdb_int("SELECT count(*) FROM api_keys WHERE id = '%s'", id),
	    0, "expiry: purged later");
	list = t_key_list(ann.id);
	json_array_foreach(list, i, o) {
		if (strcmp(json_string_value(json_object_get(o, "id")), id) ==
		    0)
			listed = 1;
	}
	ok(!listed, "expiry: and no longer listed");
	json_decref(list);
	free(key);
	free(id);
}

static void
test_revoke(void)
{
	struct principal	*p = NULL;
	json_t			*list, *o;
	const char		*why = NULL;
	char			*key, *id;
	size_t			 i;
	int			 found = 0;

	key = key_new(&ann, NULL, "to revoke", -1, NULL, &id);
	ok(key != NULL && key_ok(key, &p, &why), "revoke: accepted");
	is_int(t_key_revoke(id, bob.id, "revoke", bob.id, NULL), -1,
	    "revoke: not by someone else");
	ok(key_ok(key, NULL, &why), "revoke: still accepted");
	is_int(t_key_revoke(id, ann.id, "revoke", ann.id, NULL), 0,
	    "revoke: by its owner");
	ok(!key_ok(key, NULL, &why), "revoke: refused at once (%s)", S(why));
	is_int(t_key_revoke(id, ann.id, "revoke", ann.id, NULL), -1,
	    "revoke: not twice");
	t_keys_load();
	ok(!key_ok(key, NULL, &why), "revoke: and after a reload");
	list = t_key_list(ann.id);
	json_array_foreach(list, i, o) {
		if (strcmp(json_string_value(json_object_get(o, "id")), id) ==
		    0 && json_is_true(json_object_get(o, "revoked")))
			found = 1;
	}
	ok(found, "revoke: listed as revoked");
	json_decref(list);
	principal_unref(p);
	free(key);
	free(id);

	key = key_new(&ann, NULL, "by secret", -1, NULL, &id);
	is_int(t_key_revoke_secret(key, ann.id, NULL), 0,
	    "revoke: by its secret (RFC 7009)");
	ok(!key_ok(key, NULL, &why), "revoke: refused");
	is_int(t_key_revoke_secret(key, ann.id, NULL), -1,
	    "revoke: by its secret, not twice");
	free(key);
	free(id);
}

/* A key made in a session ends with it, however the session ends. */
static void
test_session_keys(void)
{
	json_t		*resp = NULL;
	const char	*why = NULL;
	char		*rt, *sid, *key, *admin, *id, *aid;
	int		 nkeys = -1;

	/* Logout (RFC 7009 with the refresh token). */
	ok(session_start(&ann, &rt, &sid) == 0, "session: started");
	key = key_new(&ann, sid, "in session", -1, NULL, &id);
	ok(key != NULL && key_ok(key, NULL, &why), "session: a key made in it");
	is_int(t_revoke_refresh(rt, "logout", NULL), 0, "session: logout");
	ok(!key_ok(key, NULL, &why), "session: its key is refused (%s)",
	    S(why));
	is_int(tmpdb_int("SELECT count(*) FROM api_keys WHERE id = '%s' AND "
	    "revoked = 1 AND revoked_reason = 'logout'", id), 1,
	    "session: revoked with the session's reason");
	is_int(tmpdb_int("SELECT count(*) FROM audit_log WHERE event = "
	    "'key_revoked' AND user_id = '%s' AND detail = '{\"key\":\"%s\","
	    "\"reason\":\"logout\",\"session\":\"%s\"}'", ann.id, id, sid),
	    1, "session: its audit row names the key, reason and session");
	is_int(tmpdb_int("SELECT count(*) FROM audit_log WHERE event = "
	    "'logout' AND detail = '{\"keys\":1,\"session\":\"%s\"}'", sid),
	    1, "session: the logout's audit row counts the key");
	ok(key_new(&ann, sid, "late", -1, NULL, &aid) == NULL,
	    "session: no key is made in it any more");
	free(rt);
	free(sid);
	free(key);
	free(id);

	/* Refresh token reuse. */
	ok(session_start(&ann, &rt, &sid) == 0, "reuse: session");
	key = key_new(&ann, sid, "in session", -1, NULL, &id);
	ok(t_refresh(rt, NULL, &resp, &why) == 0, "reuse: rotated");
	json_decref(resp);
	resp = NULL;
	tmpdb_exec("UPDATE refresh_tokens SET used_at = used_at - 3600 "
	    "WHERE family_id = '%s'", sid);
	ok(t_refresh(rt, NULL, &resp, &why) == -1, "reuse: detected");
	ok(!key_ok(key, NULL, &why), "reuse: the session's key is refused");
	free(rt);
	free(sid);
	free(key);
	free(id);

	/* A disabled user at refresh. */
	ok(session_start(&ann, &rt, &sid) == 0, "disabled: session");
	key = key_new(&ann, sid, "in session", -1, NULL, &id);
	t_user_set(ann.id, 1, 0);
	t_users_load();
	ok(t_refresh(rt, NULL, &resp, &why) == -1, "disabled: refresh "
	    "refused");
	ok(!key_ok(key, NULL, &why), "disabled: the session's key is refused");
	t_user_set(ann.id, 0, 0);
	t_users_load();
	free(rt);
	free(sid);
	free(key);
	free(id);

	/*
	 * "user logout": every key of the user, the administrator's too;
	 * with --keep-keys every one is kept, even those made in the
	 * sessions it ends (bedrock-sso-proxy(8)).
	 */
	ok(session_start(&ann, &rt, &sid) == 0, "user logout: session");
	key = key_new(&ann, sid, "in session", -1, NULL, &id);
	admin = key_new(&ann, NULL, "admin's", -1, NULL, &aid);
	ok(t_revoke_user(ann.id, "logout", 1, "cli:test", NULL,
	    &nkeys) >= 1 && nkeys == 0 && tokens_family_revoked(sid),
	    "user logout --keep-keys: the sessions end");
	ok(key_ok(key, NULL, &why) && key_ok(admin, NULL, &why),
	    "user logout --keep-keys: the keys stay, the session's too");
	ok(t_revoke_user(ann.id, "logout", 0, "cli:test", NULL,
	    &nkeys) == 0 && nkeys >= 2, "user logout: keys revoked (%d)",
	    nkeys);
	ok(!key_ok(key, NULL, &why) && !key_ok(admin, NULL, &why),
	    "user logout: every one, the administrator's too");
	free(rt);
	free(sid);
	free(key);
	free(id);
	free(admin);
	free(aid);
}

int
main(void)
{
	tmpdb_open("api_keys:\n  max_per_user: 10\n");
	if (t_user_local("ann@example.com", &ann) != 0 ||
	    t_user_local("bob", &bob) != 0) {
		printf("Bail out! cannot make users\n");
		return (1);
	}
	test_create();
	test_limit();
	test_verify();
	test_expiry();
	test_revoke();
	test_session_keys();
	user_clear(&ann);
	user_clear(&bob);
	tmpdb_close();
	return (tap_done());
}
