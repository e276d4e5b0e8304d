/*
 * modules.c: start, reload, check and stop the subsystems that hold state
 * derived from the configuration, in a fixed order; run their checks of
 * the configuration, and their housekeeping: a sync when another process
 * (an admin command) or daemon has written to the database, and when the
 * database first comes up (the store's watcher, store_watch), and
 * maintenance every cache.cleanup_interval. The lower layers never call up
 * for any of this: each module is called from here.
 */

#include <stdlib.h>

#include <event2/event.h>
#include <event2/event_struct.h>

#include "bsp.h"
#include "aws-creds.h"
#include "store.h"

#define MODULES_RETRY_SECS	2	/* a first load that failed, again */

/*
 * A reload is two steps: prepare (may fail, changes nothing anyone sees)
 * for every module, then commit (cannot fail) for every module, or abort
 * for those prepared when one failed.
 */
struct module {
	const char	*name;
	/* Checks of its part of a configuration being loaded. */
	void		(*config_check)(struct config *,
			    struct config_errors *);
	int		(*init)(struct config *, char **);
	int		(*prepare)(struct config *, char **);
	void		(*commit)(struct config *);
	void		(*abort)(void);
	int		(*check)(struct config *, char **);
	/*
	 * Another process or daemon wrote to the database, or it came up:
	 * reload what it keeps.
	 */
	void		(*sync)(void);
	/* Housekeeping, every cache.cleanup_interval. */
	void		(*maint)(time_t);
	void		(*free)(void);
};

static int	tokens_module_init(struct config *, char **);
static int	aws_module_init(struct config *, char **);
static void	aws_module_commit(struct config *);
static void	oauth_module_commit(struct config *);
static void	auth_module_commit(struct config *);
static void	auth_module_maint(time_t);

/* Started in this order, stopped in the reverse. */
static const struct module modules[] = {
	{ "store", store_config_check, NULL, NULL, NULL, NULL, NULL, NULL,
	  NULL, NULL },
	{ "users", NULL, NULL, NULL, NULL, NULL, NULL, users_sync, NULL,
	  NULL },
	{ "tokens", tokens_config_check, tokens_module_init,
	  tokens_reload_prepare, tokens_reload_commit, tokens_reload_abort,
	  tokens_check, tokens_sync, tokens_maint, tokens_free },
	{ "apikeys", NULL, NULL, NULL, NULL, NULL, NULL, apikeys_sync,
	  apikeys_maint, NULL },
	{ "auth", NULL, NULL, NULL, auth_module_commit, NULL, NULL, NULL,
	  auth_module_maint, auth_cache_clear },
	{ "audit", NULL, NULL, NULL, NULL, NULL, NULL, NULL, audit_maint,
	  NULL },
	{ "policy", policy_config_check, NULL, NULL, NULL, NULL, NULL, NULL,
	  ratelimit_maint, ratelimit_free },
	{ "relay", NULL, relay_init, relay_reload_prepare,
	  relay_reload_commit, relay_reload_abort, NULL, NULL, NULL,
	  relay_free_all },
	{ "aws", NULL, aws_module_init, NULL, aws_module_commit, NULL, NULL,
	  NULL, NULL, aws_creds_free },
	{ "oauth", oauth_config_check, oauth_init, NULL, oauth_module_commit,
	  NULL, NULL, NULL, NULL, oauth_free },
	{ "device", device_config_check, NULL, NULL, NULL, NULL, NULL, NULL,
	  device_maint, device_free },
	{ "gateway", gateway_config_check, NULL, NULL, NULL, NULL, NULL, NULL,
	  NULL, NULL },
	{ "usage", NULL, usage_init, NULL, NULL, NULL, NULL, NULL, NULL,
	  usage_free },
	{ NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL }
};

/* The housekeeping timers; only in the daemon. */
static struct {
	int		 started;
	int		 stopping;
	int		 failed;
	struct event	 retry_ev;
	struct event	 maint_ev;
} mod;

/* Every module's check of a configuration being loaded (config_load). */
void
modules_config_check(struct config *c, struct config_errors *errs)
{
	const struct module	*m;

	for (m = modules; m->name != NULL; m++) {
		if (m->config_check != NULL)
			m->config_check(c, errs);
	}
}

/* Reload, in every module, what another process may have changed. */
static void
modules_sync(void *arg)
{
	const struct module	*m;
	const char		*detail;

	/* Down: it says when it is up again (the first connection). */
	if (mod.stopping || !store_ready(&detail))
		return;
	log_debug("database changed by another process or came up; "
	    "reloading state");
	for (m = modules; m->name != NULL; m++) {
		if (m->sync != NULL)
			m->sync();
	}
}

/*
 * Until the state the credential checks need has been loaded once (the
 * database was down, or a load failed), try again now and then.
 */
static void
modules_retry_cb(int fd, short ev, void *arg)
{
	const char	*detail;

	if (store_ready(&detail) && !tokens_loaded(&detail))
		modules_sync(NULL);
}

/* What no retry mends (another daemon's KEK): stop, saying why. */
static void
modules_fatal(const char *cause)
{
	log_errorx("%s", cause);
	mod.failed = 1;
	if (bsp_base != NULL)
		event_base_loopexit(bsp_base, NULL);
}

/* Did a module stop the daemon (exit status 2)? */
int
modules_failed(void)
{
	return (mod.failed);
}

static void
modules_maint_cb(int fd, short ev, void *arg)
{
	const struct module	*m;
	time_t			 now = now_wall();

	for (m = modules; m->name != NULL; m++) {
		if (m->maint != NULL)
			m->maint(now);
	}
}

static void
modules_timers_start(struct config *c)
{
	struct timeval	retry = { MODULES_RETRY_SECS, 0 }, maint;

	if (bsp_base == NULL || mod.started)
		return;
	mod.stopping = 0;
	store_watch(modules_sync, NULL);
	event_assign(&mod.retry_ev, bsp_base, -1, EV_PERSIST, modules_retry_cb,
	    NULL);
	event_add(&mod.retry_ev, &retry);
	maint.tv_sec = (time_t)c->cache_cleanup_interval;
	maint.tv_usec = 0;
	event_assign(&mod.maint_ev, bsp_base, -1, EV_PERSIST,
	    modules_maint_cb, NULL);
	event_add(&mod.maint_ev, &maint);
	mod.started = 1;
}

/* Verified tokens were cached under the old keys and policy. */
static void
auth_module_commit(struct config *c)
{
	auth_cache_clear();
}

static void
auth_module_maint(time_t now)
{
	auth_cache_sweep();
}

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
	tokens_on_fatal(modules_fatal);
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
	modules_timers_start(c);
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

	mod.stopping = 1;
	if (mod.started) {
		event_del(&mod.retry_ev);
		event_del(&mod.maint_ev);
		mod.started = 0;
	}
	for (m = modules; m->name != NULL; m++)
		n++;
	while (n-- > 0) {
		if (modules[n].free != NULL)
			modules[n].free();
	}
}
