/*
 * modules.c: start, reload, check and stop the subsystems that hold state
 * derived from the configuration, in a fixed order.
 */

#include <stdlib.h>

#include "bsp.h"

/* Process-wide state, here so every test program linking libbsp has it. */
struct event_base	*bsp_base;
struct evdns_base	*bsp_dns;
int			 bsp_debug;
int			 bsp_verbose;
time_t			 bsp_start_time;

struct module {
	const char	*name;
	int		(*init)(struct config *, char **);
	int		(*reload)(struct config *, char **);
	int		(*check)(struct config *, char **);
	void		(*free)(void);
};

static int	tokens_module_init(struct config *, char **);

static const struct module modules[] = {
	{ "tokens", tokens_module_init, tokens_reload, tokens_check,
	  tokens_free },
	{ NULL, NULL, NULL, NULL, NULL }
};

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

/* Prepare a new configuration; nothing changes unless all succeed. */
int
modules_reload(struct config *c, char **cause)
{
	const struct module	*m;

	for (m = modules; m->name != NULL; m++) {
		if (m->reload != NULL && m->reload(c, cause) == -1)
			return (-1);
	}
	return (0);
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
