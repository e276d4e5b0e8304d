/*
 * test-users.c: the users table and the state held against users in
 * memory: upsert and lookup by id and by email (ambiguous emails refused),
 * local accounts, disabling, "logged out before", the access policy
 * (a user it no longer admits is denied), and a reload after another
 * process wrote. Against SQLite, or the PostgreSQL database of
 * $BSP_TEST_STORE_URL (test-users-pg.sh).
 */

#include <sys/stat.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bsp.h"
#include "tap.h"
#include "tmpdb.h"

#define PROVIDERS	"oauth:\n  providers:\n    google:\n" \
			"      client_id: x\n      client_secret: y\n" \
			"    github:\n      client_id: x\n" \
			"      client_secret: y\n"

/* A configuration from YAML text, with the modules' checks. */
static struct config *
load(const char *yaml)
{
	struct config_source	 src;
	struct config_errors	 errs;
	struct config		*c;
	char			*path;
	FILE			*f;

	/* A policy to judge by; its database is never opened. */
	xasprintf(&path, "%s/c.yaml", tmpdb_dir);
	if ((f = fopen(path, "w")) == NULL)
		fatal("%s", path);
	fprintf(f, "database:\n  url: sqlite://%s/unused.db\n%s", tmpdb_dir,
	    yaml);
	fclose(f);
	chmod(path, 0600);	/* it holds client secrets */
	memset(&src, 0, sizeof src);
	src.path = path;
	src.path_explicit = 1;
	src.check = modules_config_check;
	if ((c = config_load(&src, &errs)) == NULL) {
		config_errors_print(&errs, stderr);
		fatalx("configuration refused");
	}
	unlink(path);
	free(path);
	return (c);
}

static void
user_fill(struct user *u, const char *provider, const char *subject,
    const char *email)
{
	memset(u, 0, sizeof *u);
	xasprintf(&u->id, "%s:%s", provider, subject);
	u->provider = xstrdup(provider);
	u->subject = xstrdup(subject);
	u->email = email != NULL ? xstrdup(email) : NULL;
	u->email_verified = 1;
	strlist_add(&u->groups, "dev");
	u->first_login = u->last_login = 1700000000;
}

static void
test_table(void)
{
	struct user	 u, v;

	user_fill(&u, "google", "1001", "ann@example.com");
	ok(t_user_upsert(&u) == 0, "upsert a new user");
	ok(t_user_get("google:1001", &v) == 0 && v.email != NULL &&
	    strcmp(v.email, "ann@example.com") == 0 && v.groups.n == 1 &&
	    strcmp(v.groups.v[0], "dev") == 0 && v.email_verified,
	    "read it back by id, groups and all");
	user_clear(&v);
	ok(t_user_find("ANN@example.com", &v) == 0 && strcmp(v.id,
	    "google:1001") == 0, "find it by email");
	user_clear(&v);
	free(u.email);
	u.email = xstrdup("ann@new.example.com");
	u.last_login = 1700000100;
	ok(t_user_upsert(&u) == 0 && t_user_get("google:1001", &v) == 0 &&
	    strcmp(v.email, "ann@new.example.com") == 0 && v.first_login > 0 &&
	    v.first_login <= v.last_login,
	    "an upsert refreshes the email; first login <= last login");
	user_clear(&v);
	user_clear(&u);

	user_fill(&u, "github", "77", "bob@example.com");
	ok(t_user_upsert(&u) == 0, "a second user");
	user_clear(&u);
	user_fill(&u, "gitlab", "88", "bob@example.com");
	ok(t_user_upsert(&u) == 0, "a third, with the same email elsewhere");
	user_clear(&u);
	ok(t_user_find("bob@example.com", &v) == -2,
	    "an email two users share is ambiguous");
	ok(t_user_find("nobody@example.com", &v) == -1, "no such user");
	ok(t_user_get("google:9999", &v) == -1, "no such id");

	ok(t_user_local("ci", &v) == 0 && strcmp(v.id, "local:ci") ==
	    0 && strcmp(v.provider, "local") == 0, "a local account");
	user_clear(&v);
	ok(t_user_local("ci", &v) == 0 && strcmp(v.id, "local:ci") == 0,
	    "made once, found again");
	user_clear(&v);
	ok(t_user_local("", &v) == -1, "a local account needs a name");
	user_clear(&v);
}

static void
test_state(void)
{
	const struct user_state	*s;

	ok(t_users_load() == 0 && users_loaded(), "load the state");
	ok(user_state("google:1001") == NULL && user_state("local:ci") ==
	    NULL, "nothing held against admitted, active users");
	is_int(t_user_set("google:1001", 1, 0), 1, "disable");
	is_int(t_user_set("nobody:1", 1, 0), 0, "no such user to disable");
	is_int(t_user_set("github:77", 0, 1700000500), 1,
	    "log out everywhere");
	ok(t_users_load() == 0 && (s = user_state("google:1001")) !=
	    NULL && s->disabled && !s->denied, "the disabled user is held");
	ok((s = user_state("github:77")) != NULL && !s->disabled &&
	    s->revoked_before == 1700000500,
	    "tokens of the logged-out user before then are held");
	ok(t_user_set("google:1001", 0, 0) == 1 && t_users_load() == 0 &&
	    user_state("google:1001") == NULL, "enable again");

	/* Another process writes; a sync picks it up. */
	ok(tmpdb_exec("UPDATE users SET disabled = 1 WHERE id = "
	    "'gitlab:88'") == 0, "a write behind our back");
	users_sync();
	t_users_load();
	ok((s = user_state("gitlab:88")) != NULL && s->disabled,
	    "users_sync reads it");
}

/* The access policy changes: who is no longer admitted is denied. */
static void
test_policy(void)
{
	const struct user_state	*s;
	struct config		*old = cfg;

	cfg = load(PROVIDERS "access:\n  allowed_email_domains: "
	    "[new.example.com]\n");
	ok(t_users_load() == 0, "load under a narrower policy");
	ok(user_state("google:1001") == NULL, "ann@new.example.com is still "
	    "admitted");
	ok((s = user_state("github:77")) != NULL && s->denied,
	    "bob@example.com is no longer admitted: denied");
	ok((s = user_state("gitlab:88")) != NULL && s->denied,
	    "a user of a provider no longer configured: denied");
	ok(user_state("local:ci") == NULL, "local accounts are always "
	    "admitted");
	config_unref(cfg);
	cfg = old;
}

int
main(void)
{
	log_init("test-users");
	tmpdb_setup(PROVIDERS "    gitlab:\n      client_id: x\n"
	    "      client_secret: y\naccess:\n  allow_any_user: true\n");
	test_table();
	test_state();
	test_policy();
	tmpdb_close();
	return (tap_done());
}
