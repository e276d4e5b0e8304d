/*
 * test-anthropic.c: the pure parts of the Anthropic front end: request
 * bodies read and rewritten (anthropic.c), stream chunks as server-sent
 * events and the error vocabulary, the server-sent event reader (sse.c)
 * fed in every split, and model names resolved through the alias table
 * (models.c).
 */

#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <jansson.h>

#include "bsp.h"
#include "anthropic.h"
#include "sse.h"
#include "tap.h"

/* The rewrite of body as a string ("" on failure). */
static char *
rewrite(const char *body, const struct anthropic_edit *ed)
{
	uint8_t		*out;
	size_t		 len;
	const char	*why;

	if (anthropic_rewrite((const uint8_t *)body, strlen(body), ed, &out,
	    &len, &why) == -1)
		return (xstrdup(""));
	return ((char *)out);
}

static void
test_read(void)
{
	struct anthropic_req	 req;
	const char		*why;
	static const char *const bad[] = {
		"", "[]", "{", "{\"model\":7}", "{\"model\":\"\"}",
		"{\"messages\":[]}", "{\"model\":\"m\",\"stream\":\"yes\"}",
		"{\"model\":\"m\",\"stream\":1}",
		"{\"model\":\"a\",\"model\":\"b\"}",
		"{\"model\":\"a\",\"stream\":true,\"stream\":false}",
		"{\"model\":\"a\\u0000b\"}", "{\"model\":\"m\"} x",
	};
	size_t			 i;
	const char		*ok1 = "{\"model\":\"claude-x\",\"stream\":true,"
				    "\"anthropic_beta\":[\"b\"]}";

	is_int(anthropic_read((const uint8_t *)ok1, strlen(ok1), &req, &why),
	    0, "read: a streamed request");
	is_str(req.model, "claude-x", "read: its model");
	ok(req.stream && req.has_beta && !req.has_version && !req.has_profile,
	    "read: stream, anthropic_beta present, the others not");
	anthropic_req_clear(&req);
	for (i = 0; i < nitems(bad); i++) {
		ok(anthropic_read((const uint8_t *)bad[i], strlen(bad[i]), &req,
		    &why) == -1 && why != NULL, "read: refused: %s", bad[i]);
		anthropic_req_clear(&req);
	}
}

static void
test_rewrite(void)
{
	struct anthropic_edit	 ed;
	char			*s;
	json_t			*j;

	memset(&ed, 0, sizeof ed);
	ed.drop_model = ed.drop_stream = 1;
	ed.version = "bedrock-2023-05-31";
	ed.betas = "a, b ,,c";
	/* As JSON.stringify writes the SDK's object: members appended last. */
	s = rewrite("{\"model\":\"m\",\"max_tokens\":5,\"stream\":true,"
	    "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", &ed);
	is_str(s, "{\"max_tokens\":5,\"messages\":[{\"role\":\"user\","
	    "\"content\":\"hi\"}],\"anthropic_version\":\"bedrock-2023-05-31\","
	    "\"anthropic_beta\":[\"a\",\"b\",\"\",\"c\"]}",
	    "invoke: model and stream out, version and betas in");
	free(s);
	s = rewrite("{\"model\":\"m\"}", &ed);
	is_str(s, "{\"anthropic_version\":\"bedrock-2023-05-31\","
	    "\"anthropic_beta\":[\"a\",\"b\",\"\",\"c\"]}",
	    "invoke: a body of only the model");
	free(s);
	s = rewrite("{}", &ed);
	is_str(s, "{\"anthropic_version\":\"bedrock-2023-05-31\","
	    "\"anthropic_beta\":[\"a\",\"b\",\"\",\"c\"]}", "invoke: {}");
	free(s);
	/* Pretty text keeps its separators; present members win. */
	s = rewrite("{\n  \"a\": 1.50,\n  \"model\": \"m\",\n  \"b\": "
	    "{\"x\": [1, 2e3]},\n  \"anthropic_version\": \"keep\",\n  "
	    "\"anthropic_beta\": [\"own\"]\n}\n", &ed);
	is_str(s, "{\n  \"a\": 1.50,\"b\": {\"x\": [1, 2e3]},\n  "
	    "\"anthropic_version\": \"keep\",\n  \"anthropic_beta\": "
	    "[\"own\"]\n}\n", "invoke: number text, nesting and the body's "
	    "own version and betas kept");
	free(s);
	ed.betas = NULL;
	ed.profile = "prof-1";
	ed.max_tokens = 1;
	s = rewrite("{\"stream\":false,\"model\":\"m\",\"messages\":[]}", &ed);
	is_str(s, "{\"messages\":[],\"anthropic_version\":"
	    "\"bedrock-2023-05-31\",\"user_profile_id\":\"prof-1\","
	    "\"max_tokens\":1}", "count tokens: profile and max_tokens");
	free(s);
	/* A name with an escape: through jansson, same members. */
	ed.max_tokens = 0;
	ed.profile = NULL;
	s = rewrite("{\"mod\\u0065l\":\"m\",\"t\":0.1,\"stream\":true}", &ed);
	j = json_loads(s, 0, NULL);
	ok(j != NULL && json_object_get(j, "model") == NULL &&
	    json_object_get(j, "stream") == NULL &&
	    json_real_value(json_object_get(j, "t")) == 0.1 &&
	    strcmp(json_string_value(json_object_get(j, "anthropic_version")),
	    "bedrock-2023-05-31") == 0, "invoke: an escaped name, through "
	    "jansson: %s", s);
	json_decref(j);
	free(s);
	/* Native: only the model's value changes. */
	memset(&ed, 0, sizeof ed);
	ed.model = "us.anthropic.claude-x";
	s = rewrite("{ \"stream\" : true , \"model\" : \"claude-x\" , "
	    "\"z\":null }", &ed);
	is_str(s, "{ \"stream\" : true , \"model\" : \"us.anthropic.claude-x\" "
	    ", \"z\":null }", "native: the model replaced in place");
	free(s);
	ed.betas = "x";
	s = rewrite("{\"model\":\"claude-x\"}", &ed);
	is_str(s, "{\"model\":\"us.anthropic.claude-x\",\"anthropic_beta\":"
	    "[\"x\"]}", "native: betas moved into the body");
	free(s);
	ed.betas = "\xff";
	s = rewrite("{\"model\":\"claude-x\"}", &ed);
	is_str(s, "", "a beta that is not UTF-8 is refused");
	free(s);
}

static char *
sse_of(const char *json)
{
	struct evbuffer	*b = evbuffer_new();
	char		 type[ANTHROPIC_TYPE_MAX], *s;
	size_t		 n;

	if (anthropic_sse_event(b, (const uint8_t *)json, strlen(json), type,
	    sizeof type) == 0) {
		evbuffer_free(b);
		return (xstrdup("-"));
	}
	n = evbuffer_get_length(b);
	s = xmalloc(n + 1);
	evbuffer_remove(b, s, n);
	s[n] = '\0';
	evbuffer_free(b);
	return (s);
}

static void
test_sse_encode(void)
{
	struct evbuffer	*b;
	char		*s;
	size_t		 n;

	s = sse_of("{\"type\":\"message_stop\",\"amazon-bedrock-"
	    "invocationMetrics\":{\"inputTokenCount\":1}}");
	is_str(s, "event: message_stop\ndata: {\"type\":\"message_stop\","
	    "\"amazon-bedrock-invocationMetrics\":{\"inputTokenCount\":1}}\n\n",
	    "sse: the chunk's JSON unchanged as the data");
	free(s);
	s = sse_of("{\n\"index\":0,\r\n\"type\" : \"content_block_stop\"\r}");
	is_str(s, "event: content_block_stop\ndata: {\ndata: \"index\":0,\n"
	    "data: \"type\" : \"content_block_stop\"\ndata: }\n\n",
	    "sse: a JSON of several lines: one data line each");
	free(s);
	s = sse_of("{\"ty\\u0070e\":\"ping\"}");
	is_str(s, "event: ping\ndata: {\"ty\\u0070e\":\"ping\"}\n\n",
	    "sse: an escaped name, through jansson");
	free(s);
	is_str((s = sse_of("{\"bytes\":\"x\"}")), "-", "sse: no type: dropped");
	free(s);
	is_str((s = sse_of("{\"type\":\"a\\nevent: x\"}")), "-",
	    "sse: a type that could break a line: dropped");
	free(s);
	is_str((s = sse_of("{\"type\":7}")), "-", "sse: a type not a string");
	free(s);
	is_str((s = sse_of("not json")), "-", "sse: not JSON: dropped");
	free(s);
	b = evbuffer_new();
	anthropic_sse_error(b, "overloaded_error", "busy \"now\"");
	anthropic_sse_ping(b);
	n = evbuffer_get_length(b);
	s = xmalloc(n + 1);
	evbuffer_remove(b, s, n);
	s[n] = '\0';
	is_str(s, "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":"
	    "\"overloaded_error\",\"message\":\"busy \\\"now\\\"\"}}\n\n"
	    "event: ping\ndata: {\"type\": \"ping\"}\n\n",
	    "sse: an error event and a ping, as Anthropic writes them");
	free(s);
	evbuffer_free(b);
}

static void
test_errors(void)
{
	static const struct {
		int		 status;
		const char	*exception;
		int		 want_status;
		const char	*want_type;
	} t[] = {
		{ 400, "ValidationException", 400, "invalid_request_error" },
		{ 403, "AccessDeniedException", 403, "permission_error" },
		{ 403, "UnrecognizedClientException", 502, "api_error" },
		{ 403, "ExpiredTokenException", 502, "api_error" },
		{ 404, "ResourceNotFoundException", 404, "not_found_error" },
		{ 408, "ModelTimeoutException", 504, "timeout_error" },
		{ 424, "ModelErrorException", 500, "api_error" },
		{ 429, "ThrottlingException", 429, "rate_limit_error" },
		{ 429, "ModelNotReadyException", 429, "rate_limit_error" },
		{ 500, "InternalServerException", 500, "api_error" },
		{ 503, "ServiceUnavailableException", 503, "overloaded_error" },
		{ 200, "throttlingException", 200, "rate_limit_error" },
		{ 200, "modelStreamErrorException", 500, "api_error" },
		{ 200, NULL, 200, "api_error" },
		{ 401, NULL, 401, "authentication_error" },
		{ 413, "", 413, "request_too_large" },
		{ 501, NULL, 501, "not_supported" },
	};
	size_t	i;
	int	st;

	for (i = 0; i < nitems(t); i++) {
		st = anthropic_error_status(t[i].status, t[i].exception);
		is_int(st, t[i].want_status, "error status: %d %s", t[i].status,
		    t[i].exception ? t[i].exception : "-");
		is_str(anthropic_error_type(t[i].status == 200 ? 200 : st,
		    t[i].exception), t[i].want_type,
		    "error type: %d %s", t[i].status,
		    t[i].exception ? t[i].exception : "-");
	}
}

/* The events an SSE reader dispatched, as one string. */
struct sse_log {
	char	buf[4096];
};

static void
sse_log_cb(void *arg, const char *event, const char *data, size_t len)
{
	struct sse_log	*l = arg;
	size_t		 have = strlen(l->buf);

	snprintf(l->buf + have, sizeof l->buf - have, "[%s|%.*s]", event,
	    (int)len, data);
}

static void
test_sse_read(void)
{
	static const char	 stream[] = "\xef\xbb\xbf: a comment\r\n"
				    "event: message_start\r\ndata: {\"a\":1}\r\n\r\n"
				    "data: one\ndata:two\ndata\n\n"
				    "event: e1\nevent: e2\nid: 7\nretry: 5\n"
				    "data: x\r\r"
				    "event: lonely\n\n"
				    "data: big-" "0123456789012345678901234567890"
				    "\n\n"
				    "data: [DONE]\n\n";
	static const char	 want[] = "[message_start|{\"a\":1}]"
				    "[message|one\ntwo\n][e2|x][message|[DONE]]";
	struct sse_reader	 r;
	struct sse_log		 l;
	size_t			 len = sizeof stream - 1, i, j, bad = 0;

	memset(&l, 0, sizeof l);
	sse_reader_init(&r, 32, sse_log_cb, &l);
	sse_reader_feed(&r, stream, len);
	is_str(l.buf, want, "sse reader: lines, fields, comments, a BOM, an "
	    "event over the limit skipped");
	ok(sse_reader_idle(&r), "sse reader: idle after a whole stream");
	sse_reader_free(&r);
	/* Split at every boundary (and into three at every pair). */
	for (i = 1; i < len; i++) {
		for (j = i; j < len; j += (j == i ? 1 : 7)) {
			memset(&l, 0, sizeof l);
			sse_reader_init(&r, 32, sse_log_cb, &l);
			sse_reader_feed(&r, stream, i);
			if (j > i)
				sse_reader_feed(&r, stream + i, j - i);
			sse_reader_feed(&r, stream + j, len - j);
			if (strcmp(l.buf, want) != 0)
				bad++;
			sse_reader_free(&r);
		}
	}
	is_int(bad, 0, "sse reader: the same events whatever the splits");
	memset(&l, 0, sizeof l);
	sse_reader_init(&r, 32, sse_log_cb, &l);
	sse_reader_feed(&r, "data: half", 10);
	ok(!sse_reader_idle(&r), "sse reader: not idle inside an event");
	sse_reader_free(&r);
}

/* Strings for the test configuration, freed at the end. */
static char	*kept[32];
static size_t	 nkept;

static char *
K(const char *s)
{
	if (nkept == nitems(kept))
		abort();
	return (kept[nkept++] = xstrdup(s));
}

static struct config *
models_config(void)
{
	static struct model_alias	 aliases[3];
	static struct config		 c;

	memset(&c, 0, sizeof c);
	memset(aliases, 0, sizeof aliases);
	aliases[0].id = K("house");
	aliases[0].bedrock_id = K("claude-haiku-4-5");
	aliases[0].display_name = K("House");
	aliases[1].id = K("loop-a");
	aliases[1].bedrock_id = K("loop-b");
	aliases[2].id = K("loop-b");
	aliases[2].bedrock_id = K("loop-a");
	c.model_aliases = aliases;
	c.nmodel_aliases = 3;
	c.models_builtin_aliases = 1;
	c.models_map_unlisted = 1;
	c.models_region_prefix = K("auto");
	c.aws_region = K("us-east-1");
	return (&c);
}

static const char *
resolve(struct config *c, const char *name)
{
	static char	 buf[256];
	char		*b;
	const char	*why;

	if (models_resolve(c, name, &b, NULL, NULL, &why) == -1)
		return ("-");
	bsp_strlcpy(buf, b, sizeof buf);
	free(b);
	return (buf);
}

static void
list_cb(void *arg, const char *id, const char *display, const char *last,
    const char *bedrock)
{
	int	*n = arg;

	(*n)++;
}

static void
test_models(void)
{
	struct config		*c = models_config();
	const char		*display, *last, *why;
	char			*b;
	int			 n = 0;

	is_str(resolve(c, "claude-sonnet-4-5"),
	    "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
	    "models: an undated name, through its dated id, prefixed");
	is_str(resolve(c, "house"), "us.anthropic.claude-haiku-4-5-20251001-v1:0",
	    "models: a configured alias of a built-in one");
	ok(models_resolve(c, "house", &b, &display, &last, &why) == 0 &&
	    strcmp(display, "House") == 0 &&
	    strcmp(last, "claude-haiku-4-5-20251001") == 0,
	    "models: its display name and the chain's last id");
	free(b);
	is_str(resolve(c, "loop-a"), "-", "models: an alias loop is refused");
	is_str(resolve(c, "gpt-4o"), "-", "models: an unknown name is refused");
	is_str(resolve(c, "claude-future-9"), "us.anthropic.claude-future-9",
	    "models: an unlisted claude-* name is mapped");
	is_str(resolve(c, "anthropic.claude-3-haiku-20240307-v1:0"),
	    "anthropic.claude-3-haiku-20240307-v1:0",
	    "models: a Bedrock id the client names is used as given");
	is_str(resolve(c, "arn:aws:bedrock:us-east-1:1:application-inference-"
	    "profile/x"), "arn:aws:bedrock:us-east-1:1:application-inference-"
	    "profile/x", "models: an ARN is used as given");
	c->models_map_unlisted = 0;
	is_str(resolve(c, "claude-future-9"), "-",
	    "models: map_unlisted off: refused");
	c->aws_region = K("eu-central-1");
	is_str(resolve(c, "claude-opus-4-7"), "eu.anthropic.claude-opus-4-7",
	    "models: the prefix from an EU region");
	c->aws_region = K("us-gov-west-1");
	is_str(resolve(c, "claude-opus-4-7"), "us-gov.anthropic.claude-opus-4-7",
	    "models: the prefix from a GovCloud region");
	c->models_region_prefix = K("global");
	is_str(resolve(c, "claude-opus-4-7"), "global.anthropic.claude-opus-4-7",
	    "models: an explicit prefix");
	c->models_region_prefix = K("none");
	is_str(resolve(c, "claude-opus-4-7"), "anthropic.claude-opus-4-7",
	    "models: no prefix");
	models_list(c, list_cb, &n);
	ok(n > 20, "models: the list has the built-in and configured ids "
	    "(%d), not the loop", n);
	c->models_builtin_aliases = 0;
	n = 0;
	models_list(c, list_cb, &n);
	is_int(n, 0, "models: without the built-in table, house resolves to "
	    "nothing known and the loop is left out");
	while (nkept > 0)
		free(kept[--nkept]);
}

int
main(void)
{
	test_read();
	test_rewrite();
	test_sse_encode();
	test_errors();
	test_sse_read();
	test_models();
	return (tap_done());
}
