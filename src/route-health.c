/*
 * route-health.c: /health, /health/ready, /metrics, and the fixed answers
 * for paths we do not serve.
 */

#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "bsp.h"
#include "store.h"

#define HEALTH_MAX_CHECKS 8

static struct {
	const char	*name;
	int		(*fn)(const char **);
} health_checks[HEALTH_MAX_CHECKS];
static size_t	nhealth_checks;

/*
 * The database, and what the credential checks need from it in memory
 * (loaded once: with PostgreSQL, after it first comes up).
 */
static int
health_database(const char **detail)
{
	if (!store_ready(detail))
		return (0);
	return (tokens_loaded(detail));
}

/* Add a component to /health/ready; fn returns 1 when it is ready. */
void
health_register(const char *name, int (*fn)(const char **))
{
	if (nhealth_checks == HEALTH_MAX_CHECKS)
		fatalx("too many health checks");
	health_checks[nhealth_checks].name = name;
	health_checks[nhealth_checks].fn = fn;
	nhealth_checks++;
}

/* No checks but the database's. */
void
health_reset(void)
{
	nhealth_checks = 0;
	health_register("database", health_database);
}

/* Liveness: says nothing about the configuration. */
void
route_health(struct request *r)
{
	server_reply_json(r, 200, json_pack("{s:s}", "status", "ok"));
}

/* Readiness: every registered component, 503 if any is not ready. */
void
route_health_ready(struct request *r)
{
	json_t		*comps = json_object(), *c;
	const char	*detail;
	size_t		 i;
	int		 ok = 1, up;

	for (i = 0; i < nhealth_checks; i++) {
		detail = NULL;
		up = health_checks[i].fn(&detail);
		c = json_pack("{s:s}", "status", up ? "ok" : "unavailable");
		if (!up && detail != NULL)
			json_object_set_new(c, "detail", json_string(detail));
		json_object_set_new(comps, health_checks[i].name, c);
		ok &= up;
	}
	server_reply_json(r, ok ? 200 : 503, json_pack("{s:s,s:o}", "status",
	    ok ? "ok" : "unavailable", "components", comps));
}

void
route_metrics(struct request *r)
{
	struct evbuffer	*b = evbuffer_new();

	metrics_render(b);
	server_reply(r, 200, "text/plain; version=0.0.4; charset=utf-8", b);
	evbuffer_free(b);
}

/* Unknown paths: Bedrock-shaped under Bedrock prefixes, else RFC 6749. */
void
route_not_found(struct request *r)
{
	if (strncmp(r->path, "/model/", 7) == 0 ||
	    strncmp(r->path, "/guardrail/", 11) == 0 ||
	    strncmp(r->path, "/bedrock/", 9) == 0) {
		server_error_bedrock(r, 404, "UnknownOperationException",
		    "this proxy does not serve %s %s", r->method,
		    strncmp(r->path, "/bedrock/", 9) == 0 ? "under /bedrock" :
		    "here");
		return;
	}
	server_error_oauth(r, 404, "not_found", "no such endpoint");
}
