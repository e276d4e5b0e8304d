/*
 * audit.c: the audit log. Each security-relevant event becomes a row in
 * audit_log (written in the caller's transaction, so it commits or rolls
 * back with the change it describes) and a log line. Details are JSON built
 * by the caller from non-secret fields only.
 */

#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "bsp.h"

static struct db_stmt	st_insert = { "INSERT INTO audit_log (ts, event, "
    "user_id, actor, client_addr, detail) VALUES (?, ?, ?, ?, ?, ?)",
    NULL, NULL };
static struct db_stmt	st_purge = { "DELETE FROM audit_log WHERE ts < ?",
    NULL, NULL };

/*
 * Record one event. detail (may be NULL) is consumed. A failure to write is
 * logged; the caller's transaction decides whether the change stands.
 */
void
audit_event(const char *event, const char *user_id, const char *actor,
    const char *client, json_t *detail)
{
	sqlite3_stmt		*st;
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
	if (bsp_db == NULL) {
		free(d);
		return;
	}
	st = db_prepare(&st_insert);
	sqlite3_bind_int64(st, 1, (sqlite3_int64)now_wall());
	sqlite3_bind_text(st, 2, event, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, user_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, actor, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 5, client, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 6, d, -1, SQLITE_STATIC);
	if (sqlite3_step(st) != SQLITE_DONE)
		log_warnx("audit: cannot record %s: %s", event, db_errmsg());
	sqlite3_reset(st);
	free(d);
}

/* Drop rows older than the cutoff; returns the number removed or -1. */
/* Housekeeping: rows older than audit.retention_days. */
void
audit_maint(time_t now)
{
	audit_purge(now - (time_t)cfg->audit_retention_days * 86400);
}

int
audit_purge(time_t cutoff)
{
	sqlite3_stmt	*st;

	st = db_prepare(&st_purge);
	sqlite3_bind_int64(st, 1, (sqlite3_int64)cutoff);
	if (sqlite3_step(st) != SQLITE_DONE) {
		log_warnx("audit: purge failed: %s", db_errmsg());
		return (-1);
	}
	return (sqlite3_changes(bsp_db));
}
