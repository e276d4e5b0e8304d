/*
 * route-anthropic.c: the Anthropic Messages API in front of Bedrock, for
 * the Anthropic SDKs and Claude Code's ANTHROPIC_BASE_URL: POST
 * /v1/messages (with any query, such as ?beta=true), POST
 * /v1/messages/count_tokens, GET /v1/models and /v1/models/{id}.
 *
 * The body's model is resolved to a Bedrock id (models.c), held to the
 * checks of ids in Bedrock paths, and the model policy and rate limits see
 * that id (relay_call, route-bedrock.c). With anthropic.upstream invoke
 * the request becomes InvokeModel or InvokeModelWithResponseStream as
 * @anthropic-ai/bedrock-sdk builds it (anthropic.c rewrites the body) and
 * the event stream comes back as Anthropic server-sent events; with native
 * it goes to bedrock-runtime's own Messages API with only the model
 * changed, and its events come back unchanged. Errors are in Anthropic's
 * envelope (RF_ANTHROPIC).
 */

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "bsp.h"
#include "crypto.h"
#include "anthropic.h"
#include "sigv4.h"

#define MODELS_LIMIT_DEFAULT	20
#define MODELS_LIMIT_MAX	1000
#define BETAS_MAX		8192

/* The client headers the native route forwards (anthropic.native_betas). */
static const char *const native_headers[] = {
	"Content-Type", "Accept", "anthropic-version", "anthropic-beta", NULL
};
static const char *const native_headers_nobeta[] = {
	"Content-Type", "Accept", "anthropic-version", NULL
};

/*
 * Every anthropic-beta header's value joined with commas (as fetch's
 * Headers.get joins them), or NULL; *over when they are too long.
 */
static char *
anthropic_betas(struct request *r, int *over)
{
	struct evkeyvalq	*in;
	struct evkeyval		*kv;
	char			*all = NULL, *next;

	*over = 0;
	if (r->http == NULL)
		return (NULL);
	in = evhttp_request_get_input_headers(r->http);
	TAILQ_FOREACH(kv, in, next) {
		if (strcasecmp(kv->key, "anthropic-beta") != 0)
			continue;
		if (all == NULL)
			all = xstrdup(kv->value);
		else {
			xasprintf(&next, "%s, %s", all, kv->value);
			free(all);
			all = next;
		}
		if (strlen(all) > BETAS_MAX) {
			*over = 1;
			free(all);
			return (NULL);
		}
	}
	return (all);
}

/*
 * The body of a Messages request, read, its model resolved and checked,
 * and the anthropic-beta headers: 0 with *req, *bedrock and *betas (NULL
 * if none), or -1 after answering (what was set is the caller's to free).
 */
static int
anthropic_begin(struct request *r, struct anthropic_req *req, char **bedrock,
    char **betas)
{
	const uint8_t	*body;
	size_t		 len;
	const char	*why;
	char		*resolved;
	int		 over;

	memset(req, 0, sizeof *req);
	*bedrock = *betas = NULL;
	if (server_body(r, &body, &len) == -1) {
		server_error_api(r, 400, "invalid_request_error",
		    "cannot read the request body");
		return (-1);
	}
	if (anthropic_read(body, len, req, &why) == -1) {
		server_error_api(r, 400, "invalid_request_error", "%s", why);
		return (-1);
	}
	request_set_model(r, req->model, strlen(req->model));
	if (models_resolve(r->cfg, req->model, &resolved, NULL, NULL, &why) ==
	    -1) {
		server_error_api(r, 400, "invalid_request_error",
		    "model %s: %s", req->model, why);
		return (-1);
	}
	*bedrock = relay_model_check(resolved, &why);
	if (*bedrock == NULL) {
		server_error_api(r, 400, "invalid_request_error",
		    "model %s: the Bedrock id it names is malformed: %s",
		    req->model, why);
		free(resolved);
		return (-1);
	}
	free(resolved);
	if ((*betas = anthropic_betas(r, &over)) == NULL && over) {
		server_error_api(r, 400, "invalid_request_error",
		    "anthropic-beta is too long");
		return (-1);
	}
	return (0);
}

/* The edited body for the call, or -1 after answering. */
static int
anthropic_body(struct request *r, const struct anthropic_edit *ed,
    uint8_t **out, size_t *outlen)
{
	const uint8_t	*body;
	size_t		 len;
	const char	*why;

	if (server_body(r, &body, &len) == -1 ||
	    anthropic_rewrite(body, len, ed, out, outlen, &why) == -1) {
		server_error_api(r, 400, "invalid_request_error", "%s",
		    "the request cannot be rewritten for Bedrock");
		return (-1);
	}
	return (0);
}

/* The InvokeModel edit: model and stream out, version and betas in. */
static void
anthropic_invoke_edit(struct request *r, struct anthropic_edit *ed,
    const char *betas)
{
	const char	*v = r->cfg->anthropic_invoke_version;

	memset(ed, 0, sizeof *ed);
	ed->drop_model = 1;
	ed->drop_stream = 1;
	if (strcmp(v, "header") == 0 &&
	    (v = server_header(r, "anthropic-version")) == NULL)
		v = "bedrock-2023-05-31";
	ed->version = v;
	ed->betas = betas;
	ed->profile = server_header(r, "anthropic-user-profile-id");
}

/* The Bedrock model path of an operation: /model/<id>/<op>. */
static char *
anthropic_model_path(const char *bedrock, const char *op)
{
	char	*enc, *path;

	if ((enc = sigv4_uri_encode(bedrock, strlen(bedrock))) == NULL)
		return (NULL);
	xasprintf(&path, "/model/%s/%s", enc, op);
	free(enc);
	return (path);
}

/* The call to bedrock-runtime's own Messages API (anthropic.upstream native). */
static int
anthropic_native(struct request *r, struct relay_call *call,
    const char *bedrock, const char *betas, const char *suffix,
    char **path)
{
	struct anthropic_edit	 ed;
	int			 inbody;

	inbody = r->cfg->anthropic_native_betas == 1;
	memset(&ed, 0, sizeof ed);
	ed.model = bedrock;
	ed.betas = inbody ? betas : NULL;
	if (anthropic_body(r, &ed, &call->body, &call->body_len) == -1)
		return (-1);
	xasprintf(path, "%s%s", r->cfg->anthropic_native_path, suffix);
	call->path = *path;
	call->service = r->cfg->anthropic_native_signing_name;
	call->headers = inbody ? native_headers_nobeta : native_headers;
	return (0);
}

/* POST /v1/messages */
void
route_anthropic_messages(struct request *r)
{
	struct anthropic_req	 req;
	struct anthropic_edit	 ed;
	struct relay_call	 call;
	char			*bedrock = NULL, *betas = NULL, *path = NULL;

	memset(&call, 0, sizeof call);
	if (anthropic_begin(r, &req, &bedrock, &betas) == -1)
		goto out;
	call.name = "Messages";
	call.model = bedrock;
	if (r->cfg->anthropic_upstream == ANTHROPIC_UP_NATIVE) {
		if (anthropic_native(r, &call, bedrock, betas, "", &path) == -1)
			goto out;
		call.flags = req.stream ? RELAY_STREAM | RELAY_SSE : 0;
	} else {
		anthropic_invoke_edit(r, &ed, betas);
		if (anthropic_body(r, &ed, &call.body, &call.body_len) == -1)
			goto out;
		if ((path = anthropic_model_path(bedrock, req.stream ?
		    "invoke-with-response-stream" : "invoke")) == NULL) {
			server_error_api(r, 400, "invalid_request_error",
			    "the model id cannot be put in a path");
			goto out;
		}
		call.path = path;
		call.service = "bedrock";
		call.flags = req.stream ? RELAY_STREAM | RELAY_TO_SSE : 0;
	}
	relay_call(r, &call);
out:
	free(call.body);
	free(path);
	free(betas);
	free(bedrock);
	anthropic_req_clear(&req);
}

/* POST /v1/messages/count_tokens */
void
route_anthropic_count_tokens(struct request *r)
{
	struct anthropic_req	 req;
	struct anthropic_edit	 ed;
	struct relay_call	 call;
	char			*bedrock = NULL, *betas = NULL, *path = NULL;
	char			*b64 = NULL;
	uint8_t			*inner = NULL;
	size_t			 ilen;

	memset(&call, 0, sizeof call);
	if (r->cfg->anthropic_count_tokens == ANTHROPIC_COUNT_OFF) {
		server_error_api(r, 501, "not_supported", "token counting is "
		    "not offered by this proxy (anthropic.count_tokens: off)");
		return;
	}
	if (anthropic_begin(r, &req, &bedrock, &betas) == -1)
		goto out;
	call.name = "CountTokens";
	call.model = bedrock;
	if (r->cfg->anthropic_count_tokens == ANTHROPIC_COUNT_NATIVE) {
		if (anthropic_native(r, &call, bedrock, betas, "/count_tokens",
		    &path) == -1)
			goto out;
		relay_call(r, &call);
		goto out;
	}
	/* CountTokens takes the InvokeModel body, base64, in a wrapper. */
	anthropic_invoke_edit(r, &ed, betas);
	ed.max_tokens = 1;
	if (anthropic_body(r, &ed, &inner, &ilen) == -1)
		goto out;
	b64 = crypto_b64_encode_alloc(inner, ilen);
	xasprintf((char **)&call.body, "{\"input\":{\"invokeModel\":"
	    "{\"body\":\"%s\"}}}", b64);
	call.body_len = strlen((char *)call.body);
	if ((path = anthropic_model_path(bedrock, "count-tokens")) == NULL) {
		server_error_api(r, 400, "invalid_request_error",
		    "the model id cannot be put in a path");
		goto out;
	}
	call.path = path;
	call.service = "bedrock";
	call.flags = RELAY_COUNT;
	relay_call(r, &call);
out:
	free(call.body);
	free(inner);
	free(b64);
	free(path);
	free(betas);
	free(bedrock);
	anthropic_req_clear(&req);
}

/* One model the caller may use, for the list. */
struct model_entry {
	char	*id;
	char	*display_name;
	char	 created[32];
};
struct model_set {
	struct request		*r;
	struct model_entry	*v;
	size_t			 n;
};

/* When a dated id (claude-...-YYYYMMDD) came out, else the epoch. */
static void
model_created(const char *id, char *buf, size_t len)
{
	size_t	n = id != NULL ? strlen(id) : 0, i;

	snprintf(buf, len, "1970-01-01T00:00:00Z");
	if (n < 9 || id[n - 9] != '-')
		return;
	for (i = n - 8; i < n; i++) {
		if (id[i] < '0' || id[i] > '9')
			return;
	}
	snprintf(buf, len, "%.4s-%.2s-%.2sT00:00:00Z", id + n - 8,
	    id + n - 4, id + n - 2);
}

/* models_list() callback: keep what the model policy lets the caller use. */
static void
model_collect(void *arg, const char *id, const char *display,
    const char *last, const char *bedrock)
{
	struct model_set	*set = arg;
	struct model_entry	*e;
	const char		*why;
	char			*checked;

	if ((checked = relay_model_check(bedrock, &why)) == NULL)
		return;
	if (!policy_model_allowed(set->r->cfg, set->r->principal, checked,
	    &why)) {
		free(checked);
		return;
	}
	free(checked);
	set->v = xreallocarray(set->v, set->n + 1, sizeof *set->v);
	e = &set->v[set->n++];
	e->id = xstrdup(id);
	e->display_name = xstrdup(display != NULL ? display : id);
	model_created(last, e->created, sizeof e->created);
}

static void
model_set_free(struct model_set *set)
{
	size_t	i;

	for (i = 0; i < set->n; i++) {
		free(set->v[i].id);
		free(set->v[i].display_name);
	}
	free(set->v);
}

static json_t *
model_json(const struct model_entry *e)
{
	return (json_pack("{s:s, s:s, s:s, s:s}", "type", "model", "id",
	    e->id, "display_name", e->display_name, "created_at", e->created));
}

/* GET /v1/models: the models the caller may use, in Anthropic's list shape. */
void
route_anthropic_models(struct request *r)
{
	struct model_set	 set;
	json_t			*data, *j;
	char			 buf[256], *end;
	const char		*after, *before;
	long			 limit = MODELS_LIMIT_DEFAULT;
	size_t			 i, from = 0, to;

	memset(&set, 0, sizeof set);
	set.r = r;
	if (server_query(r, "limit", buf, sizeof buf) != NULL) {
		limit = strtol(buf, &end, 10);
		if (buf[0] == '\0' || *end != '\0' || limit < 1 ||
		    limit > MODELS_LIMIT_MAX) {
			server_error_api(r, 400, "invalid_request_error",
			    "limit: an integer from 1 to %d", MODELS_LIMIT_MAX);
			return;
		}
	}
	models_list(r->cfg, model_collect, &set);
	after = server_query(r, "after_id", buf, sizeof buf);
	if (after != NULL) {
		for (i = 0; i < set.n && strcmp(set.v[i].id, after) != 0; i++)
			;
		from = i < set.n ? i + 1 : set.n;
	}
	to = set.n;
	before = NULL;
	if (after == NULL && (before = server_query(r, "before_id", buf,
	    sizeof buf)) != NULL) {
		for (i = 0; i < set.n && strcmp(set.v[i].id, before) != 0; i++)
			;
		to = i < set.n ? i : 0;
		from = to > (size_t)limit ? to - (size_t)limit : 0;
	}
	if (to - from > (size_t)limit)
		to = from + (size_t)limit;
	data = json_array();
	for (i = from; i < to; i++)
		json_array_append_new(data, model_json(&set.v[i]));
	j = json_pack("{s:o, s:b}", "data", data, "has_more",
	    before != NULL ? from > 0 : to < set.n);
	if (j != NULL) {
		json_object_set_new(j, "first_id", from < to ?
		    json_string(set.v[from].id) : json_null());
		json_object_set_new(j, "last_id", from < to ?
		    json_string(set.v[to - 1].id) : json_null());
	}
	server_reply_json(r, 200, j);
	model_set_free(&set);
}

/*
 * The Anthropic ids of the models the caller may use, as GET /v1/models
 * lists them (for the managed settings' availableModels).
 */
json_t *
route_anthropic_model_ids(struct request *r)
{
	struct model_set	 set;
	json_t			*a = json_array();
	size_t			 i;

	memset(&set, 0, sizeof set);
	set.r = r;
	models_list(r->cfg, model_collect, &set);
	for (i = 0; i < set.n; i++)
		json_array_append_new(a, json_string(set.v[i].id));
	model_set_free(&set);
	return (a);
}

/* GET /v1/models/{id} */
void
route_anthropic_model(struct request *r)
{
	struct model_set	 set;
	char			*id;
	size_t			 i;

	if (r->nparams != 1 || (id = pct_decode_segment(r->params[0].p,
	    r->params[0].len, 256)) == NULL) {
		server_error_api(r, 404, "not_found_error", "no such model");
		return;
	}
	memset(&set, 0, sizeof set);
	set.r = r;
	models_list(r->cfg, model_collect, &set);
	for (i = 0; i < set.n && strcmp(set.v[i].id, id) != 0; i++)
		;
	if (i < set.n)
		server_reply_json(r, 200, model_json(&set.v[i]));
	else
		server_error_api(r, 404, "not_found_error",
		    "model %s: not found, or not one you may use", id);
	free(id);
	model_set_free(&set);
}
