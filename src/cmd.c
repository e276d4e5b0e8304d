/*
 * cmd.c: the administrative commands (bedrock-sso-proxy COMMAND ...). They
 * work on the configured database and may run while the daemon does: the
 * daemon notices their writes within a second (SQLite's change counter,
 * PostgreSQL's notifications). They run the daemon's asynchronous calls
 * and wait for each (cmd-store.c). Text that came from identity providers
 * is escaped before it reaches the terminal.
 */

#include <sys/types.h>

#include <getopt.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bsp.h"
#include "store.h"

static int	cmd_token_mint(int, char **);
static int	cmd_key_create(int, char **);
static int	cmd_key_list(int, char **);
static int	cmd_key_revoke(int, char **);
static int	cmd_user_list(int, char **);
static int	cmd_user_disable(int, char **);
static int	cmd_user_enable(int, char **);
static int	cmd_user_logout(int, char **);
static int	cmd_signing_rotate(int, char **);

const struct command commands[] = {
	{ "token", "mint", "--user EMAIL|SUB [--ttl SECONDS] [--scope S]",
	  cmd_token_mint, "print an access token" },
	{ "key", "create", "--user USER [--name N] [--ttl D] "
	  "[--models PATTERN,...]", cmd_key_create, "make an API key" },
	{ "key", "list", "[--user USER]", cmd_key_list, "list API keys" },
	{ "key", "revoke", "ID", cmd_key_revoke, "revoke an API key" },
	{ "user", "list", "", cmd_user_list, "list users" },
	{ "user", "disable", "USER", cmd_user_disable,
	  "disable a user, end their sessions and revoke their API keys" },
	{ "user", "enable", "USER", cmd_user_enable, "enable a user again" },
	{ "user", "logout", "[--keep-keys] USER", cmd_user_logout,
	  "end every session of a user and revoke their API keys" },
	{ "usage", NULL, "[--since DATE] [--user USER] [--by user|model|day]",
	  cmd_usage, "usage totals" },
	{ "signing-key", "rotate", "", cmd_signing_rotate,
	  "make a new active signing key" },
	{ "db", "copy", "--from URL --to URL", cmd_db_copy,
	  "copy every table into an empty database, checked row by row" },
};
const size_t ncommands = nitems(commands);

static char	cmd_actor[96];

static void
command_usage(FILE *f)
{
	size_t	i;

	fprintf(f, "commands:\n");
	for (i = 0; i < ncommands; i++)
		fprintf(f, "  %s%s%s %s\n", commands[i].name,
		    commands[i].sub != NULL ? " " : "",
		    commands[i].sub != NULL ? commands[i].sub : "",
		    commands[i].args != NULL ? commands[i].args : "");
}

/* One asynchronous call's answer, waited for. */
struct cmd_wait {
	volatile int	 done;
	int		 rc;
	int		 n;
	struct user	 u;
	json_t		*j;
	char		*s;
	const char	*why;
	char		*cause;
	struct store_txn *t;
};

static void
cmd_wait_init(struct cmd_wait *w)
{
	memset(w, 0, sizeof *w);
}

static void
cmd_wait_clear(struct cmd_wait *w)
{
	user_clear(&w->u);
	json_decref(w->j);
	freezero_str(w->s);
	free(w->cause);
	memset(w, 0, sizeof *w);
}

static void
cmd_rc_cb(int rc, void *arg)
{
	struct cmd_wait	*w = arg;

	w->rc = rc;
	w->done = 1;
}

static void
cmd_user_cb(int rc, const struct user *u, void *arg)
{
	struct cmd_wait	*w = arg;

	w->rc = rc;
	user_clear(&w->u);
	if (u != NULL)
		user_copy(&w->u, u);
	w->done = 1;
}

static void
cmd_step_cb(struct store_txn *t, int status, void *arg)
{
	struct cmd_wait	*w = arg;

	w->rc = status;
	w->n = status == STORE_OK ? (int)store_changes(t) : 0;
	w->done = 1;
}

static void
cmd_end_cb(int status, void *arg)
{
	struct cmd_wait	*w = arg;

	w->rc = status;
	w->done = 1;
}

static void
cmd_str_cb(int rc, char *s, void *arg)
{
	struct cmd_wait	*w = arg;

	w->rc = rc;
	w->s = s;
	w->done = 1;
}

static void
cmd_json_cb(int rc, json_t *j, void *arg)
{
	struct cmd_wait	*w = arg;

	w->rc = rc;
	w->j = j;
	w->done = 1;
}

static void
cmd_key_cb(int rc, char *key, json_t *info, const char *why, void *arg)
{
	struct cmd_wait	*w = arg;

	w->rc = rc;
	w->s = key;
	w->j = info;
	w->why = why;
	w->done = 1;
}

static void
cmd_logout_cb(int n, int nkeys, void *arg)
{
	struct cmd_wait	*w = arg;

	w->rc = n;
	w->n = nkeys;
	w->done = 1;
}

static void
cmd_cause_cb(int rc, const char *cause, void *arg)
{
	struct cmd_wait	*w = arg;

	w->rc = rc;
	w->cause = cause != NULL ? xstrdup(cause) : NULL;
	w->done = 1;
}

static void
cmd_begin_cb(struct store_txn *t, int status, void *arg)
{
	struct cmd_wait	*w = arg;

	w->rc = t != NULL ? status : STORE_UNAVAILABLE;
	w->t = t;
	w->done = 1;
}

/* Wait for the call that was just made. */
static int
cmd_wait(struct cmd_wait *w)
{
	store_wait(&w->done);
	w->done = 0;
	return (w->rc);
}

/* Open the database and the token state the commands work on. */
static int
cmd_open(void)
{
	char		*cause = NULL;
	struct passwd	*pw;

	pw = getpwuid(getuid());
	snprintf(cmd_actor, sizeof cmd_actor, "cli:%s",
	    pw != NULL ? pw->pw_name : "unknown");
	if (cmd_store_open(&cause) == -1) {
		fprintf(stderr, "%s: %s\n", BSP_NAME, cause);
		free(cause);
		return (-1);
	}
	if (tokens_init(cfg, &cause) == -1 || (store_kind() == STORE_PG &&
	    tokens_wait(&cause) == -1)) {
		fprintf(stderr, "%s: %s\n", BSP_NAME, cause);
		free(cause);
		tokens_free();
		cmd_store_close();
		return (-1);
	}
	return (0);
}

static void
cmd_close(void)
{
	tokens_free();
	cmd_store_close();
}

/* A string member of a JSON object, or NULL. */
static const char *
cmd_json_str(const json_t *o, const char *key)
{
	return (json_string_value(json_object_get(o, key)));
}

static void
cmd_time(time_t t, char *buf, size_t len)
{
	if (t == 0)
		bsp_strlcpy(buf, "-", len);
	else
		time_iso8601(t, buf, len);
}

/*
 * Find a user by id or email, or with create, make a local service
 * account. Prints the problem and returns -1 if there is none.
 */
static int
cmd_user(const char *key, int create, struct user *u)
{
	struct cmd_wait	w;
	int		rc;

	memset(u, 0, sizeof *u);
	cmd_wait_init(&w);
	user_find(key, cmd_user_cb, &w);
	rc = cmd_wait(&w);
	if (rc == -2) {
		fprintf(stderr, "%s: more than one user has the email %s; "
		    "name the user by id (see \"user list\")\n", BSP_NAME, key);
		cmd_wait_clear(&w);
		return (-1);
	}
	if (rc == 0) {
		*u = w.u;
		memset(&w.u, 0, sizeof w.u);
		cmd_wait_clear(&w);
		return (0);
	}
	if (rc == -1 && create) {
		user_ensure_local(key, cmd_user_cb, &w);
		if (cmd_wait(&w) == 0) {
			*u = w.u;
			memset(&w.u, 0, sizeof w.u);
			cmd_wait_clear(&w);
			fprintf(stderr, "created local account %s\n", u->id);
			return (0);
		}
	}
	cmd_wait_clear(&w);
	if (rc == -3)
		fprintf(stderr, "%s: database error looking up %s\n", BSP_NAME,
		    key);
	else
		fprintf(stderr, "%s: no such user: %s\n", BSP_NAME, key);
	return (-1);
}

enum {
	OPT_USER = 1,
	OPT_TTL,
	OPT_SCOPE,
	OPT_NAME,
	OPT_MODELS,
	OPT_KEEP_KEYS,
};
static const struct option cmd_options[] = {
	{ "user", required_argument, NULL, OPT_USER },
	{ "ttl", required_argument, NULL, OPT_TTL },
	{ "scope", required_argument, NULL, OPT_SCOPE },
	{ "name", required_argument, NULL, OPT_NAME },
	{ "models", required_argument, NULL, OPT_MODELS },
	{ "keep-keys", no_argument, NULL, OPT_KEEP_KEYS },
	{ NULL, 0, NULL, 0 },
};
struct cmd_opts {
	const char	*user;
	const char	*ttl;
	const char	*scope;
	const char	*name;
	const char	*models;
	int		 keep_keys;
};

/* Parse --options; allowed is a string of OPT_* values that may appear. */
static int
cmd_parse(int argc, char **argv, const char *allowed, struct cmd_opts *o,
    int nargs)
{
	int	ch;

	memset(o, 0, sizeof *o);
	optind = 0;
	opterr = 1;
	while ((ch = getopt_long(argc, argv, "+", cmd_options, NULL)) != -1) {
		if (ch == '?' || strchr(allowed, ch) == NULL) {
			if (ch != '?')
				fprintf(stderr, "%s %s: option not allowed "
				    "here\n", BSP_NAME, argv[0]);
			return (-1);
		}
		switch (ch) {
		case OPT_USER:
			o->user = optarg;
			break;
		case OPT_TTL:
			o->ttl = optarg;
			break;
		case OPT_SCOPE:
			o->scope = optarg;
			break;
		case OPT_NAME:
			o->name = optarg;
			break;
		case OPT_MODELS:
			o->models = optarg;
			break;
		case OPT_KEEP_KEYS:
			o->keep_keys = 1;
			break;
		}
	}
	if (argc - optind != nargs) {
		fprintf(stderr, "%s %s: wrong number of arguments\n", BSP_NAME,
		    argv[0]);
		return (-1);
	}
	return (0);
}

/* token mint --user U [--ttl S] [--scope S]: a token in its own session. */
static int
cmd_token_mint(int argc, char **argv)
{
	static const char	 allowed[] = { OPT_USER, OPT_TTL, OPT_SCOPE, 0 };
	struct cmd_opts		 o;
	struct user		 u;
	struct strlist		 scopes = { NULL, 0 };
	struct cmd_wait		 w;
	long long		 ttl;
	char			*copy, *p, *s;
	int			 rc = 2;

	if (cmd_parse(argc, argv, allowed, &o, 0) == -1 || o.user == NULL) {
		fprintf(stderr, "usage: %s token mint --user EMAIL|SUB "
		    "[--ttl SECONDS] [--scope S]\n", BSP_NAME);
		return (1);
	}
	ttl = cfg->jwt_access_ttl;
	if (o.ttl != NULL && (parse_duration(o.ttl, &ttl) == -1 || ttl < 60 ||
	    ttl > 31536000)) {
		fprintf(stderr, "%s: --ttl must be 60 seconds to a year\n",
		    BSP_NAME);
		return (1);
	}
	if (o.scope != NULL) {
		copy = p = xstrdup(o.scope);
		while ((s = strsep(&p, ", ")) != NULL) {
			if (*s != '\0')
				strlist_add(&scopes, s);
		}
		free(copy);
	}
	if (cfg->jwt_issuer == NULL && config_where(cfg,
	    "server.public_url") == NULL && cfg->nlisten > 0 &&
	    strcmp(cfg->listen[0].port, "0") == 0) {
		/* The daemon's issuer would be its public URL with a port
		 * picked at start; ours would say :0, and not match. */
		fprintf(stderr, "%s: server.port is 0, so the token issuer "
		    "depends on the port the daemon picks; set "
		    "server.public_url or jwt.issuer\n", BSP_NAME);
		strlist_free(&scopes);
		return (1);
	}
	if (cmd_open() == -1) {
		strlist_free(&scopes);
		return (2);
	}
	cmd_wait_init(&w);
	if (cmd_user(o.user, 1, &u) == -1) {
		rc = 1;
		goto out;
	}
	if (u.disabled) {
		fprintf(stderr, "%s: user %s is disabled\n", BSP_NAME, u.id);
		rc = 1;
		goto out;
	}
	cmd_wait_init(&w);
	tokens_mint_session(&u, &scopes, ttl, cmd_actor, cmd_str_cb, &w);
	if (cmd_wait(&w) == -1) {
		fprintf(stderr, "%s: cannot mint a token: database error\n",
		    BSP_NAME);
		goto out;
	}
	printf("%s\n", w.s);
	rc = 0;
out:
	cmd_wait_clear(&w);
	user_clear(&u);
	strlist_free(&scopes);
	cmd_close();
	return (rc);
}

/* key create --user U [--name N] [--ttl D] [--models P,...] */
static int
cmd_key_create(int argc, char **argv)
{
	static const char	 allowed[] = { OPT_USER, OPT_TTL, OPT_NAME,
				    OPT_MODELS, 0 };
	struct cmd_opts		 o;
	struct user		 u;
	struct strlist		 models = { NULL, 0 };
	struct cmd_wait		 w;
	long long		 ttl = -1;
	char			*copy, *p, *s, *js;
	int			 rc = 2, r;

	if (cmd_parse(argc, argv, allowed, &o, 0) == -1 || o.user == NULL) {
		fprintf(stderr, "usage: %s key create --user USER [--name N] "
		    "[--ttl D] [--models PATTERN,...]\n", BSP_NAME);
		return (1);
	}
	if (o.ttl != NULL && parse_duration(o.ttl, &ttl) == -1) {
		fprintf(stderr, "%s: --ttl must be a duration like 90d (0: no "
		    "expiry)\n", BSP_NAME);
		return (1);
	}
	if (o.models != NULL) {
		copy = p = xstrdup(o.models);
		while ((s = strsep(&p, ",")) != NULL) {
			if (*s != '\0')
				strlist_add(&models, s);
		}
		free(copy);
	}
	if (cmd_open() == -1) {
		strlist_free(&models);
		return (2);
	}
	cmd_wait_init(&w);
	if (cmd_user(o.user, 1, &u) == -1) {
		rc = 1;
		goto out;
	}
	/* No session: "key revoke", "user logout" or "user disable" end it. */
	apikey_create(u.id, NULL, o.name, ttl, &models, cmd_actor, NULL,
	    cmd_key_cb, &w);
	r = cmd_wait(&w);
	if (r == -1) {
		fprintf(stderr, "%s: %s\n", BSP_NAME, w.why);
		rc = 1;
		goto out;
	}
	if (r != 0) {
		fprintf(stderr, "%s: cannot create the key: database error\n",
		    BSP_NAME);
		goto out;
	}
	printf("%s\n", w.s);
	js = json_dumps(w.j, JSON_COMPACT);
	fprintf(stderr, "%s (shown once; store it now)\n", js);
	free(js);
	rc = 0;
out:
	cmd_wait_clear(&w);
	user_clear(&u);
	strlist_free(&models);
	cmd_close();
	return (rc);
}

/* key list [--user U] */
static int
cmd_key_list(int argc, char **argv)
{
	static const char	 allowed[] = { OPT_USER, 0 };
	struct cmd_opts		 o;
	struct user		 u;
	struct cmd_wait		 w;
	json_t			*a, *k, *m;
	size_t			 i, j;
	char			 c[32], e[32], l[32], *ms, *st;
	const char		*why;
	int			 rc = 0;

	memset(&u, 0, sizeof u);
	if (cmd_parse(argc, argv, allowed, &o, 0) == -1) {
		fprintf(stderr, "usage: %s key list [--user USER]\n", BSP_NAME);
		return (1);
	}
	if (cmd_open() == -1)
		return (2);
	if (o.user != NULL && cmd_user(o.user, 0, &u) == -1) {
		cmd_close();
		return (1);
	}
	cmd_wait_init(&w);
	apikey_list(o.user != NULL ? u.id : NULL, cmd_json_cb, &w);
	if (cmd_wait(&w) != 0) {
		fprintf(stderr, "%s: cannot list the keys: database error\n",
		    BSP_NAME);
		user_clear(&u);
		cmd_close();
		return (2);
	}
	a = w.j;
	w.j = NULL;
	/* SESSION: the one the key ends with; "-" for the administrator's. */
	printf("%-22s  %-30s  %-16s  %-14s  %-20s  %-20s  %-20s  %-20s  %-22s  "
	    "%s\n", "ID", "USER", "NAME", "HINT", "MODELS", "CREATED",
	    "EXPIRES", "LAST_USED", "SESSION", "STATUS");
	json_array_foreach(a, i, k) {
		m = json_object_get(k, "models");
		ms = NULL;
		if (json_array_size(m) == 0)
			ms = xstrdup("*");
		else {
			struct strlist sl = { NULL, 0 };

			for (j = 0; j < json_array_size(m); j++)
				strlist_add(&sl, json_string_value(
				    json_array_get(m, j)));
			ms = strlist_join(&sl, ",");
			strlist_free(&sl);
		}
		cmd_time((time_t)json_integer_value(json_object_get(k,
		    "created_at")), c, sizeof c);
		cmd_time((time_t)json_integer_value(json_object_get(k,
		    "expires_at")), e, sizeof e);
		cmd_time((time_t)json_integer_value(json_object_get(k,
		    "last_used_at")), l, sizeof l);
		cmd_cell(cmd_json_str(k, "id"), 22, "  ");
		cmd_cell(cmd_json_str(k, "user"), 30, "  ");
		cmd_cell(cmd_json_str(k, "name"), 16, "  ");
		cmd_cell(cmd_json_str(k, "hint"), 14, "  ");
		cmd_cell(ms, 20, "  ");
		printf("%-20s  %-20s  %-20s  ", c, e, l);
		cmd_cell(cmd_json_str(k, "session"), 22, "  ");
		why = json_string_value(json_object_get(k, "revoked_reason"));
		if (json_is_true(json_object_get(k, "revoked")))
			xasprintf(&st, "revoked (%s)", why != NULL ? why : "-");
		else
			st = xstrdup((json_integer_value(json_object_get(k,
			    "expires_at")) != 0 && json_integer_value(
			    json_object_get(k, "expires_at")) <= now_wall()) ?
			    "expired" : "active");
		cmd_cell(st, 0, "\n");
		free(st);
		free(ms);
	}
	json_decref(a);
	user_clear(&u);
	cmd_close();
	return (rc);
}

/* key revoke ID */
static int
cmd_key_revoke(int argc, char **argv)
{
	struct cmd_opts	o;
	struct cmd_wait	w;
	int		rc;

	if (cmd_parse(argc, argv, "", &o, 1) == -1) {
		fprintf(stderr, "usage: %s key revoke ID\n", BSP_NAME);
		return (1);
	}
	if (cmd_open() == -1)
		return (2);
	cmd_wait_init(&w);
	apikey_revoke(argv[optind], NULL, "key revoke", cmd_actor, NULL,
	    cmd_rc_cb, &w);
	rc = cmd_wait(&w);
	cmd_close();
	if (rc == -1) {
		fprintf(stderr, "%s: no active key %s\n", BSP_NAME, argv[optind]);
		return (1);
	}
	if (rc != 0) {
		fprintf(stderr, "%s: cannot revoke: database error\n",
		    BSP_NAME);
		return (2);
	}
	printf("revoked %s\n", argv[optind]);
	return (0);
}

static struct store_stmt st_user_list = STORE_STMT("SELECT id, email, name, "
    "groups, disabled, last_login FROM users ORDER BY id");

static void
cmd_user_list_row(const struct store_row *r, void *arg)
{
	char	l[32];

	cmd_cell(store_text(r, 0), 40, "  ");
	cmd_cell(store_text(r, 1), 32, "  ");
	cmd_cell(store_text(r, 2), 24, "  ");
	cmd_cell(store_text(r, 3), 30, "  ");
	cmd_time((time_t)store_int(r, 5), l, sizeof l);
	printf("%-8s  %s\n", store_int(r, 4) ? "disabled" : "active", l);
}

/* user list */
static int
cmd_user_list(int argc, char **argv)
{
	struct cmd_opts	 o;
	struct cmd_wait	 w;
	int		 rc;

	if (cmd_parse(argc, argv, "", &o, 0) == -1) {
		fprintf(stderr, "usage: %s user list\n", BSP_NAME);
		return (1);
	}
	if (cmd_open() == -1)
		return (2);
	printf("%-40s  %-32s  %-24s  %-30s  %-8s  %s\n", "ID", "EMAIL", "NAME",
	    "GROUPS", "STATUS", "LAST_LOGIN");
	cmd_wait_init(&w);
	store_run(0, &st_user_list, NULL, 0, cmd_user_list_row, cmd_end_cb,
	    &w);
	rc = cmd_wait(&w);
	cmd_close();
	if (rc != STORE_OK) {
		fprintf(stderr, "%s: cannot list the users: database error\n",
		    BSP_NAME);
		return (2);
	}
	return (0);
}

/*
 * "user disable" and "user enable": the flag and its audit row, in one
 * unit; 0, or -1 (the database failed, or there is no such user).
 */
static int
cmd_user_flag(const struct user *u, int disabled)
{
	struct cmd_wait	w;
	int		changed;

	cmd_wait_init(&w);
	store_begin(STORE_WRITE, cmd_begin_cb, &w);
	if (cmd_wait(&w) != STORE_OK)
		return (-1);
	user_set_disabled(w.t, u->id, disabled, cmd_step_cb, &w);
	if (cmd_wait(&w) != STORE_OK)
		return (-1);
	changed = w.n;
	if (changed != 1) {
		store_rollback(w.t);
		return (-1);
	}
	audit_event(w.t, disabled ? "user_disabled" : "user_enabled", u->id,
	    cmd_actor, NULL, NULL, cmd_step_cb, &w);
	if (cmd_wait(&w) != STORE_OK)
		return (-1);
	store_notify(w.t, "users");
	store_commit(w.t, cmd_end_cb, &w);
	return (cmd_wait(&w) == STORE_OK ? 0 : -1);
}

static int
cmd_user_change(int argc, char **argv, const char *usage, int what)
{
	static const char	 logout_allowed[] = { OPT_KEEP_KEYS, 0 };
	struct cmd_opts		 o;
	struct user		 u;
	struct cmd_wait		 w;
	int			 rc = 0, n;

	if (cmd_parse(argc, argv, what == 'l' ? logout_allowed : "", &o,
	    1) == -1) {
		fprintf(stderr, "usage: %s user %s%s USER\n", BSP_NAME, usage,
		    what == 'l' ? " [--keep-keys]" : "");
		return (1);
	}
	if (cmd_open() == -1)
		return (2);
	if (cmd_user(argv[optind], 0, &u) == -1) {
		cmd_close();
		return (1);
	}
	cmd_wait_init(&w);
	switch (what) {
	case 'd':
		if (cmd_user_flag(&u, 1) == -1) {
			rc = 2;
			break;
		}
		tokens_revoke_user(u.id, "user disabled", 0, cmd_actor, NULL,
		    cmd_logout_cb, &w);
		if ((n = cmd_wait(&w)) == -1) {
			rc = 2;
			break;
		}
		printf("disabled %s; ended %d session(s) and revoked %d API "
		    "key(s)\n", u.id, n, w.n);
		break;
	case 'e':
		if (cmd_user_flag(&u, 0) == -1) {
			rc = 2;
			break;
		}
		printf("enabled %s\n", u.id);
		break;
	case 'l':
		tokens_revoke_user(u.id, "user logout", o.keep_keys, cmd_actor,
		    NULL, cmd_logout_cb, &w);
		if ((n = cmd_wait(&w)) == -1) {
			rc = 2;
			break;
		}
		if (o.keep_keys)
			printf("logged out %s: ended %d session(s); tokens "
			    "issued so far no longer work; API keys kept\n",
			    u.id, n);
		else
			printf("logged out %s: ended %d session(s) and revoked "
			    "%d API key(s); tokens issued so far no longer "
			    "work\n", u.id, n, w.n);
		break;
	}
	if (rc == 2)
		fprintf(stderr, "%s: database error\n", BSP_NAME);
	user_clear(&u);
	cmd_close();
	return (rc);
}

static int
cmd_user_disable(int argc, char **argv)
{
	return (cmd_user_change(argc, argv, "disable", 'd'));
}

static int
cmd_user_enable(int argc, char **argv)
{
	return (cmd_user_change(argc, argv, "enable", 'e'));
}

static int
cmd_user_logout(int argc, char **argv)
{
	return (cmd_user_change(argc, argv, "logout", 'l'));
}

/* signing-key rotate */
static int
cmd_signing_rotate(int argc, char **argv)
{
	struct cmd_opts	 o;
	struct cmd_wait	 w;
	int		 rc = 0;

	if (cmd_parse(argc, argv, "", &o, 0) == -1) {
		fprintf(stderr, "usage: %s signing-key rotate\n", BSP_NAME);
		return (1);
	}
	if (cmd_open() == -1)
		return (2);
	cmd_wait_init(&w);
	tokens_signing_rotate(cfg, cmd_cause_cb, &w);
	if (cmd_wait(&w) == -1) {
		fprintf(stderr, "%s: %s\n", BSP_NAME, w.cause != NULL ?
		    w.cause : "database error");
		rc = 1;
	} else
		printf("rotated; the previous key keeps verifying until its "
		    "last token expires\n");
	cmd_wait_clear(&w);
	cmd_close();
	return (rc);
}

/* Find and run a command; returns the exit status. */
int
command_run(int argc, char **argv)
{
	size_t	i;

	for (i = 0; i < ncommands; i++) {
		if (strcmp(argv[0], commands[i].name) != 0)
			continue;
		if (commands[i].sub == NULL)
			return (commands[i].fn(argc, argv));
		if (argc > 1 && strcmp(argv[1], commands[i].sub) == 0)
			return (commands[i].fn(argc - 1, argv + 1));
	}
	fprintf(stderr, "%s: unknown command \"%s%s%s\"\n", BSP_NAME, argv[0],
	    argc > 1 ? " " : "", argc > 1 ? argv[1] : "");
	command_usage(stderr);
	return (1);
}
