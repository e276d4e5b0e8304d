/*
 * test-route.c: finding a request's route (server-route.c) against a
 * plain reading of the rules, on a table made to hit its corners and on
 * thousands of generated paths: the first route whose pattern matches
 * and which takes the method wins; the methods of every matching route
 * make the 405's Allow; "{}" is one non-empty segment; RF_BEDROCK routes
 * also answer under /bedrock; a route without a pattern is the metrics
 * route at metrics.path. The quick test on a pattern's first two
 * characters must never change an answer.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/http.h>

#include "bsp.h"
#include "server-int.h"
#include "tap.h"

static void
handler(struct request *r)
{
}

static const struct route table[] = {
	{ "root", EVHTTP_REQ_GET, "/", handler, 0 },
	{ "lead", EVHTTP_REQ_GET, "/{}/x", handler, 0 },
	{ "invoke", EVHTTP_REQ_POST, "/model/{}/invoke", handler,
	  RF_BEDROCK },
	{ "invoke_get", EVHTTP_REQ_GET, "/model/{}/invoke", handler, 0 },
	{ "m", EVHTTP_REQ_GET, "/m", handler, 0 },
	{ "mx", EVHTTP_REQ_DELETE, "/m{}", handler, 0 },
	{ "metrics", EVHTTP_REQ_GET, NULL, handler, 0 },
	{ "models", EVHTTP_REQ_GET, "/models", handler, RF_BEDROCK },
	{ "two", EVHTTP_REQ_POST, "/a/{}/b/{}", handler, 0 },
	{ "empty", EVHTTP_REQ_GET, "", handler, 0 },
};

static const int methods[] = {
	EVHTTP_REQ_GET, EVHTTP_REQ_POST, EVHTTP_REQ_DELETE
};

/* The rules as written: "{}" one non-empty segment, the rest equal. */
static int
plain_match(const char *p, const char *s)
{
	size_t	n;

	if (p[0] == '\0')
		return (s[0] == '\0');
	if (p[0] == '{' && p[1] == '}') {
		n = strcspn(s, "/");
		return (n > 0 && plain_match(p + 2, s + n));
	}
	return (p[0] == s[0] && plain_match(p + 1, s + 1));
}

static const struct route *
plain_find(const struct config *c, const char *raw, int method, int *allowed)
{
	const struct route	*rt;
	const char		*path;
	size_t			 i;
	int			 pass, m;

	*allowed = 0;
	for (pass = 0; pass < 2; pass++) {
		if (pass == 1 && strncmp(raw, "/bedrock/", 9) != 0)
			break;
		path = pass == 0 ? raw : raw + 8;
		for (i = 0; i < nitems(table); i++) {
			rt = &table[i];
			if (pass == 1 && !(rt->flags & RF_BEDROCK))
				continue;
			m = rt->pattern == NULL ? c->metrics_enabled &&
			    strcmp(path, c->metrics_path) == 0 :
			    plain_match(rt->pattern, path);
			if (!m)
				continue;
			*allowed |= rt->methods;
			if (rt->methods & method)
				return (rt);
		}
		if (*allowed != 0)
			return (NULL);
	}
	return (NULL);
}

/* Whether server_route_find says what the rules say; 1 if so. */
static int
same(const struct config *c, const char *path, int method)
{
	const struct route	*want, *got, *owner;
	int			 wallowed, gallowed;

	want = plain_find(c, path, method, &wallowed);
	got = server_route_find(c, path, method, &gallowed, &owner, NULL);
	if (want == got && wallowed == gallowed)
		return (1);
	diag("\"%s\" method %d: %s (allowed %d), want %s (allowed %d)", path,
	    method, got != NULL ? got->name : "none", gallowed,
	    want != NULL ? want->name : "none", wallowed);
	return (0);
}

static const char *
find(const struct config *c, const char *path, int method, int *allowed)
{
	const struct route	*rt, *owner;

	rt = server_route_find(c, path, method, allowed, &owner, NULL);
	return (rt != NULL ? rt->name : "none");
}

int
main(void)
{
	static const char	 alphabet[] = "/mxabo{}e-";
	static const char *const fixed[] = {
		"", "/", "//", "/x", "/a/x", "/{}/x", "/m", "/mm", "/m/",
		"/model", "/models", "/model/a/invoke", "/model//invoke",
		"/bedrock/model/a/invoke", "/bedrock/models", "/bedrock/m",
		"/bedrock/", "/bedrock", "/metrics", "/bedrock/metrics",
		"/a/1/b/2", "/a//b/2", "/a/1/b/", "x", "m", "{}",
	};
	struct config	c;
	char		path[16], mpath[] = "/metrics";
	size_t		i, j, n, bad = 0;
	int		allowed;

	log_init("test-route");
	memset(&c, 0, sizeof c);
	c.metrics_enabled = 1;
	c.metrics_path = mpath;
	server_routes(table, nitems(table), handler);

	is_str(find(&c, "/", EVHTTP_REQ_GET, &allowed), "root", "/: the root");
	is_str(find(&c, "/a/x", EVHTTP_REQ_GET, &allowed), "lead",
	    "a pattern that begins with a segment");
	is_str(find(&c, "/model/a/invoke", EVHTTP_REQ_GET, &allowed),
	    "invoke_get", "the first route that takes the method");
	is_str(find(&c, "/model/a/invoke", EVHTTP_REQ_DELETE, &allowed),
	    "none", "none takes DELETE");
	is_int(allowed, EVHTTP_REQ_GET | EVHTTP_REQ_POST, "405: GET and POST "
	    "allowed");
	is_str(find(&c, "/bedrock/model/a/invoke", EVHTTP_REQ_POST, &allowed),
	    "invoke", "a Bedrock route under /bedrock");
	is_str(find(&c, "/bedrock/model/a/invoke", EVHTTP_REQ_GET, &allowed),
	    "none", "not the other one");
	is_str(find(&c, "/mq", EVHTTP_REQ_DELETE, &allowed), "mx",
	    "\"{}\" after a character");
	is_str(find(&c, "/metrics", EVHTTP_REQ_GET, &allowed), "metrics",
	    "the metrics route at metrics.path");
	is_str(find(&c, "", EVHTTP_REQ_GET, &allowed), "empty",
	    "an empty path, an empty pattern");

	for (i = 0; i < nitems(fixed); i++)
		for (j = 0; j < nitems(methods); j++)
			bad += !same(&c, fixed[i], methods[j]);
	ok(bad == 0, "%zu chosen paths: as the rules say", nitems(fixed));

	/* Paths of the alphabet at random: short ones, then longer. */
	srandom(16);
	for (i = 0; i < 200000; i++) {
		n = i < 100000 ? i % 6 : 6 + (size_t)random() % 10;
		for (j = 0; j < n; j++)
			path[j] = alphabet[(size_t)random() %
			    (sizeof alphabet - 1)];
		path[n] = '\0';
		if (i % 4 == 0 && n > 0)
			path[0] = '/';
		bad += !same(&c, path, methods[i % nitems(methods)]);
		if (bad > 5)
			break;
	}
	ok(bad == 0, "200,000 generated paths: as the rules say");

	c.metrics_enabled = 0;
	is_str(find(&c, "/metrics", EVHTTP_REQ_GET, &allowed), "none",
	    "no metrics route when metrics are off");
	return (tap_done());
}
