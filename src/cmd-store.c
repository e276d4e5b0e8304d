/*
 * cmd-store.c: the administrative commands' database: opened as the
 * daemon opens it (with PostgreSQL on an event loop of the command's own,
 * with a resolver, waited for until ready or database.timeout), or
 * another one by its URL ("db copy"'s target), and closed. The commands run the daemon's asynchronous calls and wait for
 * each with store_wait().
 */

#include <stdlib.h>

#include <event2/dns.h>
#include <event2/event.h>

#include "bsp.h"
#include "store.h"

static int	cmd_own_base;

/* Open the database of sc; -1 with *cause if it cannot be. */
static int
cmd_store_start(struct store_conf *sc, char **cause)
{
	int	rc;

	if (bsp_base == NULL) {
		if ((bsp_base = event_base_new()) == NULL)
			fatalx("cannot create the event loop");
		cmd_own_base = 1;
	}
	if (sc->kind == STORE_PG && bsp_dns == NULL &&
	    (bsp_dns = evdns_base_new(bsp_base,
	    EVDNS_BASE_INITIALIZE_NAMESERVERS)) == NULL &&
	    (bsp_dns = evdns_base_new(bsp_base, 0)) == NULL)
		fatalx("evdns_base_new");
	rc = store_open(sc, cause);
	store_conf_clear(sc);
	if (rc == -1) {
		cmd_store_close();
		return (-1);
	}
	if (store_wait_ready(cfg->database_timeout * 1000, cause) == -1) {
		cmd_store_close();
		return (-1);
	}
	return (0);
}

/* Open the configured database; -1 with *cause if it cannot be. */
int
cmd_store_open(char **cause)
{
	struct store_conf	sc;

	if (store_conf_from_config(cfg, &sc, cause) == -1)
		return (-1);
	return (cmd_store_start(&sc, cause));
}

/*
 * Open the database of url (with the configuration's other database.*
 * settings), bringing its schema to this binary's version whatever
 * database.migrate says; -1 with *cause if it cannot be.
 */
int
cmd_store_open_url(const char *url, const char *password, char **cause)
{
	struct store_conf	sc;

	if (store_conf_from_url(url, &sc, cause) == -1)
		return (-1);
	if (password != NULL)
		sc.password = xstrdup(password);
	sc.busy_timeout = cfg->database_busy_timeout;
	sc.pool_size = 1;
	sc.timeout = cfg->database_timeout;
	sc.migrate = 1;
	return (cmd_store_start(&sc, cause));
}

void
cmd_store_close(void)
{
	store_close();
	if (bsp_dns != NULL && cmd_own_base) {
		evdns_base_free(bsp_dns, 0);
		bsp_dns = NULL;
	}
	if (cmd_own_base) {
		event_base_free(bsp_base);
		bsp_base = NULL;
		cmd_own_base = 0;
	}
}
