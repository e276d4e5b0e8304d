/*
 * route-static.c: /static/NAME, the pages' two assets (web.c has them),
 * cacheable for an hour, with an ETag.
 */

#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "bsp.h"
#include "web.h"

/* GET /static/{name}: the two assets, cacheable for an hour, with ETag. */
void
route_static(struct request *r)
{
	struct evbuffer	*b;
	const char	*body, *ctype, *etag, *inm;
	size_t		 len;

	body = NULL;
	if (r->nparams == 1)
		body = web_static(r->params[0].p, r->params[0].len, &ctype,
		    &len, &etag);
	if (body == NULL) {
		server_reply_text(r, 404, "text/plain; charset=utf-8",
		    "not found\n");
		return;
	}
	server_set_header(r, "Cache-Control", "public, max-age=3600");
	server_set_header(r, "ETag", etag);
	inm = server_header(r, "If-None-Match");
	if (inm != NULL &&
	    (strcmp(inm, "*") == 0 || strstr(inm, etag) != NULL)) {
		server_reply(r, 304, NULL, NULL);
		return;
	}
	if ((b = evbuffer_new()) == NULL)
		fatalx("%s: evbuffer_new", __func__);
	evbuffer_add_reference(b, body, len, NULL, NULL);
	server_reply(r, 200, ctype, b);
	evbuffer_free(b);
}
