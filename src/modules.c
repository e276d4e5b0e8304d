/*
 * modules.c: start, reload, check and stop the subsystems that hold state
 * derived from the configuration, in a fixed order.
 */

#include <stdlib.h>

#include "bsp.h"
#include "aws-creds.h"

/* Process-wide state, here so every test program linking libbsp has it. */
struct event_base	*bsp_base;
struct evdns_base	*bsp_dns;
int			 bsp_debug;
int			 bsp_verbose;
time_t			 bsp_start_time;

/*
 * A reload is two steps: prepare (may fail, changes nothing anyone sees)
 * for every module, then commit (cannot fail) for every module, or abort
 * for those prepared when one failed.
 */
struct module {
	const char	*name;
	int		(*init)(struct config *, char **);
	int		(*prepare)(struct config *, char **);
	void		(*commit)(struct config *);
	void		(*abort)(void);
	int		(*check)(struct config *, char **);
	void		(*free)(void);
};

static int	tokens_module_init(struct config *, char **);
static int	aws_module_init(struct config *, char **);
static void	aws_module_commit(struct config *);
static void	oauth_module_commit(struct config *);

/* Started in this order, stopped in the reverse. */
static const struct module modules[] = {
	{ "tokens", tokens_module_init, tokens_reload_prepare,
	  tokens_reload_commit, tokens_reload_abort, tokens_check,
	  tokens_free },
	{ "relay", relay_init, relay_reload_prepare, relay_reload_commit,
	  relay_reload_abort, NULL, relay_free_all },
	{ "aws", aws_module_init, NULL, aws_module_commit, NULL, NULL,
	  aws_creds_free },
	{ "oauth", oauth_init, NULL, oauth_module_commit, NULL, NULL,
	  oauth_free },
	{ "usage", usage_init, NULL, NULL, NULL, NULL, usage_free },
	{ NULL, NULL, NULL, NULL, NULL, NULL, NULL }
};

/* New credential-chain settings; they start resolving at once. */
static void
aws_module_commit(struct config *c)
{
	char	*cause = NULL;

	if (aws_creds_reload(c, &cause) == -1) {
		log_warnx("aws credentials: %s", cause);
		free(cause);
	}
}

/* The identity providers and trusted issuers to keep loaded. */
static void
oauth_module_commit(struct config *c)
{
	char	*cause = NULL;

	if (oauth_reload(c, &cause) == -1) {
		log_warnx("identity providers: %s", cause);
		free(cause);
	}
}

/* With aws.bearer_token there is no credential chain to run. */
static int
aws_ready(const char **detail)
{
	if (cfg->aws_bearer_token != NULL)
		return (1);
	return (aws_creds_ready(detail));
}

static int
aws_module_init(struct config *c, char **cause)
{
	if (c->aws_bearer_token == NULL && aws_creds_init(c, cause) == -1)
		return (-1);
	health_register("aws_credentials", aws_ready);
	return (0);
}

static int
tokens_module_init(struct config *c, char **cause)
{
	if (tokens_init(c, cause) == -1)
		return (-1);
	health_register("signing_key", tokens_ready);
	return (0);
}

/* Start every module; on failure the cause says which and why. */
int
modules_init(struct config *c, char **cause)
{
	const struct module	*m;

	for (m = modules; m->name != NULL; m++) {
		if (m->init != NULL && m->init(c, cause) == -1)
			return (-1);
	}
	return (0);
}

/*
 * Prepare a new configuration; on failure nothing has changed. In the
 * reverse order, so that the tokens module goes last: its prepare may
 * write a new signing key to the database, which no abort undoes.
 */
int
modules_prepare(struct config *c, char **cause)
{
	size_t	n = 0;

	while (modules[n].name != NULL)
		n++;
	while (n-- > 0) {
		if (modules[n].prepare != NULL &&
		    modules[n].prepare(c, cause) == -1) {
			modules_abort();
			return (-1);
		}
	}
	return (0);
}

/* Put a prepared configuration in use. */
void
modules_commit(struct config *c)
{
	const struct module	*m;

	for (m = modules; m->name != NULL; m++) {
		if (m->commit != NULL)
			m->commit(c);
	}
}

/* Drop what modules_prepare() made (safe when nothing was). */
void
modules_abort(void)
{
	const struct module	*m;

	for (m = modules; m->name != NULL; m++) {
		if (m->abort != NULL)
			m->abort();
	}
}

/* Checks for -n that need more than the configuration itself. */
int
modules_check(struct config *c, char **cause)
{
	const struct module	*m;

	for (m = modules; m->name != NULL; m++) {
		if (m->check != NULL && m->check(c, cause) == -1)
			return (-1);
	}
	return (0);
}

void
modules_free(void)
{
	const struct module	*m;
	size_t			 n = 0;

	for (m = modules; m->name != NULL; m++)
		n++;
	while (n-- > 0) {
		if (modules[n].free != NULL)
			modules[n].free();
	}
}
