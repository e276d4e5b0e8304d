/*
 * audit.c: the audit log. Each security-relevant event becomes a row in
 * audit_log, written inside the unit of work it describes (so it commits
 * or rolls back with the change), and a log line. Details are JSON built
 * by the caller from non-secret fields only.
 */

#include <stdlib.h>
#include <string.h>

#include "bsp.h"
#include "store.h"

static struct store_stmt st_insert = STORE_STMT("INSERT INTO audit_log (ts, "
    "event, user_id, actor, client_addr, detail) VALUES ($1, $2, $3, $4, $5, "
    "$6)");
static struct store_stmt st_purge = STORE_STMT("DELETE FROM audit_log WHERE "
    "ts < $1");

/*
 * Record one event in the unit t; detail (may be NULL) is consumed.
 * done(t, status, arg) when the row is written: a failure fails the unit,
 * which the caller rolls back.
 */
void
audit_event(struct store_txn *t, const char *event, const char *user_id,
    const char *actor, const char *client, json_t *detail, store_step_cb done,
    void *arg)
{
	char			*d = NULL;
	struct log_field	 f[] = {
		LFS("event", event),
		LFS("user", user_id),
		LFS("actor", actor),
		LFS("client", client),
		LFS("detail", NULL),
	};

	if (detail != NULL) {
		d = json_dumps(detail, JSON_COMPACT | JSON_SORT_KEYS);
		json_decref(detail);
		f[4].str = d;
	}
	log_fields(LOG_LVL_INFO, "audit", f, nitems(f));
	{
		struct store_param	p[] = {
			SP_INT(now_wall()), SP_TEXT(event), SP_TEXT(user_id),
			SP_TEXT(actor), SP_TEXT(client), SP_TEXT(d),
		};

		/* The parameters are copied: d is ours to free. */
		store_exec(t, &st_insert, p, nitems(p), NULL, done, arg);
	}
	free(d);
}

static void
audit_purged(int status, void *arg)
{
	if (status != STORE_OK)
		log_warnx("audit: purge failed");
}

/* Drop rows older than the cutoff. */
void
audit_purge(time_t cutoff, store_end_cb done, void *arg)
{
	struct store_param	p[] = { SP_INT(cutoff) };

	store_run(STORE_WRITE, &st_purge, p, nitems(p), NULL,
	    done != NULL ? done : audit_purged, arg);
}

/* Housekeeping: rows older than audit.retention_days. */
void
audit_maint(time_t now)
{
	audit_purge(now - (time_t)cfg->audit_retention_days * 86400, NULL,
	    NULL);
}
