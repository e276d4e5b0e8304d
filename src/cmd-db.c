/*
 * cmd-db.c: "db copy --from URL --to URL": every table of one database
 * into another, empty one, checked row by row (store-copy.c), so that a
 * proxy that outgrows one VM's SQLite file moves to PostgreSQL (or back)
 * with its users, keys, sessions and usage. The target's schema is
 * brought to this binary's version first, by the store as the daemon
 * would; the source is only read.
 */

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bsp.h"
#include "store.h"

/* The target, for store_copy's prepare hook. */
struct cmd_db_target {
	const char	*url;
	const char	*password;
};

/* The configuration's password goes with its own database.url only. */
static const char *
cmd_db_password(const char *url)
{
	if (cfg->database_password != NULL && cfg->database_url != NULL &&
	    strcmp(url, cfg->database_url) == 0)
		return (cfg->database_password);
	return (NULL);
}

/* Bring the target to this binary's schema (made if need be). */
static int
cmd_db_prepare(void *arg, char **cause)
{
	struct cmd_db_target	*t = arg;
	char			*why = NULL;

	if (cmd_store_open_url(t->url, t->password, &why) == -1) {
		xasprintf(cause, "cannot ready the target: %s", why);
		free(why);
		return (-1);
	}
	cmd_store_close();
	return (0);
}

/* db copy --from URL --to URL */
int
cmd_db_copy(int argc, char **argv)
{
	static const struct option	 opts[] = {
		{ "from", required_argument, NULL, 'f' },
		{ "to", required_argument, NULL, 't' },
		{ NULL, 0, NULL, 0 },
	};
	struct store_copy_args		 a;
	struct cmd_db_target		 t;
	struct store_conf		 sc;
	const char			*from = NULL, *to = NULL;
	char				*cause = NULL;
	int				 ch, rc;

	optind = 0;
	opterr = 1;
	while ((ch = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
		switch (ch) {
		case 'f':
			from = optarg;
			break;
		case 't':
			to = optarg;
			break;
		default:
			goto usage;
		}
	}
	if (optind != argc || from == NULL || to == NULL)
		goto usage;
	if (store_conf_from_url(from, &sc, &cause) == -1) {
		fprintf(stderr, "%s: --from: %s\n", BSP_NAME, cause);
		free(cause);
		return (1);
	}
	store_conf_clear(&sc);
	if (store_conf_from_url(to, &sc, &cause) == -1) {
		fprintf(stderr, "%s: --to: %s\n", BSP_NAME, cause);
		free(cause);
		return (1);
	}
	store_conf_clear(&sc);

	memset(&t, 0, sizeof t);
	t.url = to;
	t.password = cmd_db_password(to);
	memset(&a, 0, sizeof a);
	a.from = from;
	a.from_password = cmd_db_password(from);
	a.to = to;
	a.to_password = t.password;
	a.timeout = cfg->database_timeout;
	a.prepare = cmd_db_prepare;
	a.arg = &t;
	rc = store_copy(&a, stdout, &cause);
	if (rc != 0) {
		fprintf(stderr, "%s: db copy: %s%s\n", BSP_NAME, cause,
		    rc == STORE_COPY_FAILED ? " (no row was copied)" : "");
		free(cause);
		return (rc == STORE_COPY_REFUSED ? 1 : 2);
	}
	return (0);
usage:
	fprintf(stderr, "usage: %s db copy --from URL --to URL\n", BSP_NAME);
	return (1);
}
