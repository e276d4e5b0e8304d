/*
 * server-route.c: the route table the routes layer hands the server
 * (route-table.c), and finding a request's route by its path and method.
 *
 * A pattern's "{}" matches one non-empty path segment; RF_BEDROCK routes
 * are also served under /bedrock. A route without a pattern is the
 * metrics route: its path comes from metrics.path.
 */

#include <sys/queue.h>

#include <stdlib.h>
#include <string.h>

#include "bsp.h"
#include "server-int.h"

static struct {
	const struct route	*v;
	size_t			 n;
	void			(*none)(struct request *);
} table;

/*
 * Take the route table, and the handler of paths that match none of its
 * routes. The table must outlive the server.
 */
void
server_routes(const struct route *v, size_t n,
    void (*none)(struct request *))
{
	table.v = v;
	table.n = n;
	table.none = none;
}

/* Answer a request whose path no route takes. */
void
server_route_none(struct request *r)
{
	if (table.none == NULL)
		fatalx("%s: no route table", __func__);
	table.none(r);
}

/* Match a raw path against a pattern, capturing "{}" segments. */
static int
server_route_match(const char *pattern, const char *path, struct request *r)
{
	const char	*p = pattern, *s = path, *e;
	size_t		 n = 0;

	while (*p != '\0') {
		if (p[0] == '{' && p[1] == '}') {
			e = s + strcspn(s, "/");
			if (e == s || n >= REQUEST_MAX_PARAMS)
				return (0);
			if (r != NULL) {
				r->params[n].p = s;
				r->params[n].len = (size_t)(e - s);
			}
			n++;
			s = e;
			p += 2;
			continue;
		}
		if (*p != *s)
			return (0);
		p++;
		s++;
	}
	if (*s != '\0')
		return (0);
	if (r != NULL)
		r->nparams = n;
	return (1);
}

/*
 * Whether the first two characters already tell a pattern from a path
 * (most of the ~60 patterns differ from a path at its second): a test
 * before the call, which took 2.6 k instructions per request.
 */
static inline int
server_route_differ(const char *p, const char *s)
{
	if (p[0] == '{')
		return (0);
	if (p[0] != s[0])
		return (1);
	if (s[0] == '\0')
		return (0);
	return (p[1] != '{' && p[1] != s[1]);
}

/*
 * Find the route for a raw path; *allowed gets the methods any match
 * takes, and *owner (if not NULL) the first route the path matches
 * whatever the method: a 405 is answered in its family's words. With r,
 * its parameters are captured too.
 */
const struct route *
server_route_find(const struct config *c, const char *rawpath, int method,
    int *allowed, const struct route **owner, struct request *r)
{
	const struct route	*rt;
	const char		*path = rawpath;
	size_t			 i;
	int			 pass;

	if (table.v == NULL)
		fatalx("%s: no route table", __func__);
	*allowed = 0;
	if (owner != NULL)
		*owner = NULL;
	for (pass = 0; pass < 2; pass++) {
		if (pass == 1) {
			if (strncmp(rawpath, "/bedrock/", 9) != 0)
				break;
			path = rawpath + 8;
		}
		for (i = 0; i < table.n; i++) {
			rt = &table.v[i];
			if (pass == 1 && !(rt->flags & RF_BEDROCK))
				continue;
			if (rt->pattern == NULL) {
				if (!c->metrics_enabled ||
				    strcmp(path, c->metrics_path) != 0)
					continue;
			} else if (server_route_differ(rt->pattern, path) ||
			    !server_route_match(rt->pattern, path, NULL))
				continue;
			*allowed |= rt->methods;
			if (owner != NULL && *owner == NULL)
				*owner = rt;
			if ((rt->methods & method) == 0)
				continue;
			if (rt->pattern != NULL && r != NULL)
				server_route_match(rt->pattern, path, r);
			return (rt);
		}
		if (*allowed != 0)
			return (NULL);
	}
	return (NULL);
}
