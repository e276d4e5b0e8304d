/*
 * route-openai.c: the OpenAI-compatible routes of bedrock-runtime, for
 * tools that speak only that: POST /openai/v1/chat/completions and POST
 * /openai/v1/responses, relayed to the same paths under openai.path on
 * the Bedrock endpoint (SigV4, openai.signing_name). The body's model is
 * resolved like the Anthropic routes' (models.c; Bedrock ids such as
 * openai.gpt-oss-120b-1:0 pass as they are) and the model policy and rate
 * limits see it; the body goes on with only the model changed (when an
 * alias changed it), and streams come back unchanged, their usage read
 * on the side. Errors are in OpenAI's envelope (RF_OPENAI).
 */

#include <stdlib.h>
#include <string.h>

#include "bsp.h"
#include "anthropic.h"

static const char *const openai_headers[] = {
	"Content-Type", "Accept", NULL
};

/* POST /openai/v1/chat/completions, /openai/v1/responses */
void
route_openai(struct request *r)
{
	struct relay_call	 call;
	struct anthropic_edit	 ed;
	const uint8_t		*body;
	size_t			 len;
	json_t			*j = NULL, *st;
	const char		*model, *why, *op;
	char			*resolved = NULL, *bedrock = NULL, *path = NULL;
	int			 chat;

	memset(&call, 0, sizeof call);
	if (!r->cfg->openai_enabled) {
		route_not_found(r);
		return;
	}
	chat = strcmp(r->route->name, "openai_chat") == 0;
	op = chat ? "/chat/completions" : "/responses";
	if (server_body(r, &body, &len) == -1 ||
	    (j = json_loadb((const char *)body, len, 0, NULL)) == NULL ||
	    !json_is_object(j)) {
		server_error_api(r, 400, "invalid_request_error",
		    "the request body is not a JSON object");
		goto out;
	}
	model = json_string_value(json_object_get(j, "model"));
	if (model == NULL || model[0] == '\0' || strlen(model) > 2048) {
		server_error_api(r, 400, "invalid_request_error",
		    "model: a model id (a string) is required");
		goto out;
	}
	st = json_object_get(j, "stream");
	if (st != NULL && !json_is_boolean(st) && !json_is_null(st)) {
		server_error_api(r, 400, "invalid_request_error",
		    "stream: must be true or false");
		goto out;
	}
	request_set_model(r, model, strlen(model));
	if (models_resolve(r->cfg, model, &resolved, NULL, NULL, &why) == -1) {
		server_error_api(r, 400, "invalid_request_error", "model %s: %s",
		    model, why);
		goto out;
	}
	if ((bedrock = relay_model_check(resolved, &why)) == NULL) {
		server_error_api(r, 400, "invalid_request_error",
		    "model %s: the Bedrock id it names is malformed: %s",
		    model, why);
		goto out;
	}
	if (strcmp(bedrock, model) != 0) {
		memset(&ed, 0, sizeof ed);
		ed.model = bedrock;
		if (anthropic_rewrite(body, len, &ed, &call.body,
		    &call.body_len, &why) == -1) {
			server_error_api(r, 400, "invalid_request_error", "%s",
			    why);
			goto out;
		}
	}
	xasprintf(&path, "%s%s", r->cfg->openai_path, op);
	call.name = chat ? "ChatCompletions" : "Responses";
	call.model = bedrock;
	call.path = path;
	call.service = r->cfg->openai_signing_name;
	call.headers = openai_headers;
	call.flags = RELAY_OPENAI | (json_is_true(st) ?
	    RELAY_STREAM | RELAY_SSE : 0);
	relay_call(r, &call);
out:
	free(call.body);
	free(path);
	free(resolved);
	free(bedrock);
	json_decref(j);
}
