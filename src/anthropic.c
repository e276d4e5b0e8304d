/*
 * anthropic.c: the Anthropic Messages API in front of Bedrock.
 *
 * Request bodies are edited in their text, not re-serialized: the members
 * found by the text reader (json_members) are copied byte for byte, the
 * ones to drop are left out and the ones to add are appended, in the order
 * @anthropic-ai/bedrock-sdk adds them (anthropic_version, anthropic_beta,
 * user_profile_id). So a compact body comes out as that SDK's
 * JSON.stringify would write it, and no field is ever flattened or lost.
 * A body the text reader cannot follow (a top-level member name with an
 * escape, nesting deeper than it reads) is edited through jansson instead,
 * which keeps every value exactly (numbers with 17 digits).
 *
 * Stream chunks become server-sent events with the chunk's JSON as the
 * data, unchanged; the event name is its "type".
 */

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <jansson.h>

#include "bsp.h"
#include "anthropic.h"

#define ANTHROPIC_MODEL_MAX	2048
#define ANTHROPIC_MEMBERS_MAX	256

/* One top-level member as found in the text. */
struct am_span {
	const char	*start;		/* its name's opening quote */
	const char	*value;
	const char	*end;		/* past its value */
	int		 kind;
};
enum {
	AM_OTHER,
	AM_MODEL,
	AM_STREAM,
	AM_VERSION,
	AM_BETA,
	AM_PROFILE,
	AM_MAX_TOKENS,
};
static const char *const am_names[] = {
	NULL, "model", "stream", "anthropic_version", "anthropic_beta",
	"user_profile_id", "max_tokens"
};

struct am_scan {
	struct am_span	 v[ANTHROPIC_MEMBERS_MAX];
	size_t		 n;
	int		 over;
	int		 seen[nitems(am_names)];
};

static void
am_scan_cb(void *arg, const char *k, size_t klen, const char *v, size_t vlen)
{
	struct am_scan	*s = arg;
	struct am_span	*sp;
	size_t		 i;

	if (s->n == nitems(s->v)) {
		s->over = 1;
		return;
	}
	sp = &s->v[s->n++];
	sp->start = k - 1;
	sp->value = v;
	sp->end = v + vlen;
	sp->kind = AM_OTHER;
	for (i = 1; i < nitems(am_names); i++) {
		if (strlen(am_names[i]) == klen &&
		    memcmp(am_names[i], k, klen) == 0) {
			sp->kind = (int)i;
			s->seen[i]++;
			break;
		}
	}
}

/* The members of body, or -1 when the text reader cannot tell them. */
static int
am_scan(const uint8_t *body, size_t len, struct am_scan *s)
{
	memset(s, 0, sizeof *s);
	if (json_members((const char *)body, len, am_scan_cb, s) == -1 ||
	    s->over)
		return (-1);
	return (0);
}

/*
 * Read a Messages request body: it must be a JSON object with a string
 * model; 0 with req filled, or -1 with *why (static, safe to show).
 */
int
anthropic_read(const uint8_t *body, size_t len, struct anthropic_req *req,
    const char **why)
{
	json_t		*j, *m, *st;
	struct am_scan	*s;
	const char	*model;

	memset(req, 0, sizeof *req);
	if ((j = json_loadb((const char *)body, len, 0, NULL)) == NULL) {
		*why = "the request body is not valid JSON";
		return (-1);
	}
	if (!json_is_object(j)) {
		*why = "the request body is not a JSON object";
		goto fail;
	}
	m = json_object_get(j, "model");
	if (!json_is_string(m) || (model = json_string_value(m))[0] == '\0' ||
	    json_string_length(m) > ANTHROPIC_MODEL_MAX ||
	    strlen(model) != json_string_length(m)) {
		*why = "model: a model id (a string) is required";
		goto fail;
	}
	st = json_object_get(j, "stream");
	if (st != NULL && !json_is_boolean(st) && !json_is_null(st)) {
		*why = "stream: must be true or false";
		goto fail;
	}
	s = xmalloc(sizeof *s);
	if (am_scan(body, len, s) == 0 &&
	    (s->seen[AM_MODEL] > 1 || s->seen[AM_STREAM] > 1)) {
		free(s);
		*why = "model or stream is given more than once";
		goto fail;
	}
	free(s);
	req->model = xstrdup(model);
	req->stream = json_is_true(st);
	req->has_version = json_object_get(j, "anthropic_version") != NULL;
	req->has_beta = json_object_get(j, "anthropic_beta") != NULL;
	req->has_profile = json_object_get(j, "user_profile_id") != NULL;
	json_decref(j);
	return (0);
fail:
	json_decref(j);
	return (-1);
}

void
anthropic_req_clear(struct anthropic_req *req)
{
	free(req->model);
	memset(req, 0, sizeof *req);
}

/* A string as JSON text, appended; -1 if it is not valid UTF-8. */
static int
am_add_string(struct evbuffer *b, const char *s, size_t len)
{
	json_t	*j;
	char	*t;

	if ((j = json_stringn(s, len)) == NULL)
		return (-1);
	t = json_dumps(j, JSON_ENCODE_ANY | JSON_COMPACT);
	json_decref(j);
	if (t == NULL)
		return (-1);
	evbuffer_add(b, t, strlen(t));
	free(t);
	return (0);
}

/*
 * The anthropic-beta header's list as the SDK splits it: at every comma,
 * each item trimmed of white space (empty items stay).
 */
static int
am_add_betas(struct evbuffer *b, const char *list)
{
	const char	*p = list, *e, *s;
	size_t		 n;

	evbuffer_add(b, "[", 1);
	for (;;) {
		n = strcspn(p, ",");
		s = p;
		e = p + n;
		while (s < e && isspace((unsigned char)*s))
			s++;
		while (e > s && isspace((unsigned char)e[-1]))
			e--;
		if (am_add_string(b, s, (size_t)(e - s)) == -1)
			return (-1);
		if (p[n] == '\0')
			break;
		evbuffer_add(b, ",", 1);
		p += n + 1;
	}
	evbuffer_add(b, "]", 1);
	return (0);
}

/* The members an edit appends, each after a comma when *first is 0. */
static int
am_add_members(struct evbuffer *b, const struct anthropic_edit *ed,
    const int *seen, int *first)
{
	struct {
		int		 kind;
		const char	*v;
	} add[] = {
		{ AM_VERSION, ed->version },
		{ AM_BETA, ed->betas },
		{ AM_PROFILE, ed->profile },
		{ AM_MAX_TOKENS, ed->max_tokens ? "1" : NULL },
	};
	size_t	i;
	int	rc;

	for (i = 0; i < nitems(add); i++) {
		if (add[i].v == NULL || seen[add[i].kind] > 0)
			continue;
		if (!*first)
			evbuffer_add(b, ",", 1);
		*first = 0;
		evbuffer_add_printf(b, "\"%s\":", am_names[add[i].kind]);
		if (add[i].kind == AM_BETA)
			rc = am_add_betas(b, add[i].v);
		else if (add[i].kind == AM_MAX_TOKENS) {
			evbuffer_add(b, "1", 1);
			rc = 0;
		} else
			rc = am_add_string(b, add[i].v, strlen(add[i].v));
		if (rc == -1)
			return (-1);
	}
	return (0);
}

/* Edit the body's text (the text reader found its members). */
static int
am_rewrite_text(const uint8_t *body, size_t len, struct am_scan *s,
    const struct anthropic_edit *ed, struct evbuffer *b)
{
	const char	*text = (const char *)body, *close;
	struct am_span	*sp;
	size_t		 i;
	int		 first = 1, prev_kept = 0, drop;

	if (s->n == 0) {
		close = memrchr(text, '}', len);
		evbuffer_add(b, text, (size_t)(close - text));
		if (am_add_members(b, ed, s->seen, &first) == -1)
			return (-1);
		evbuffer_add(b, close, len - (size_t)(close - text));
		return (0);
	}
	evbuffer_add(b, text, (size_t)(s->v[0].start - text));
	for (i = 0; i < s->n; i++) {
		sp = &s->v[i];
		drop = (sp->kind == AM_MODEL && ed->drop_model) ||
		    (sp->kind == AM_STREAM && ed->drop_stream);
		if (drop) {
			prev_kept = 0;
			continue;
		}
		if (!first) {
			if (prev_kept)
				evbuffer_add(b, s->v[i - 1].end,
				    (size_t)(sp->start - s->v[i - 1].end));
			else
				evbuffer_add(b, ",", 1);
		}
		first = 0;
		prev_kept = 1;
		if (sp->kind == AM_MODEL && ed->model != NULL) {
			evbuffer_add(b, sp->start,
			    (size_t)(sp->value - sp->start));
			if (am_add_string(b, ed->model, strlen(ed->model)) ==
			    -1)
				return (-1);
		} else
			evbuffer_add(b, sp->start,
			    (size_t)(sp->end - sp->start));
	}
	if (am_add_members(b, ed, s->seen, &first) == -1)
		return (-1);
	sp = &s->v[s->n - 1];
	evbuffer_add(b, sp->end, len - (size_t)(sp->end - text));
	return (0);
}

/* Edit the body through jansson (the text reader could not follow it). */
static int
am_rewrite_json(const uint8_t *body, size_t len,
    const struct anthropic_edit *ed, struct evbuffer *b)
{
	json_t		*j, *a;
	struct evbuffer	*bb;
	char		*t;
	int		 rc = -1;

	if ((j = json_loadb((const char *)body, len, 0, NULL)) == NULL ||
	    !json_is_object(j))
		goto out;
	if (ed->drop_model)
		json_object_del(j, "model");
	else if (ed->model != NULL &&
	    json_object_set_new(j, "model", json_string(ed->model)) == -1)
		goto out;
	if (ed->drop_stream)
		json_object_del(j, "stream");
	if (ed->version != NULL &&
	    json_object_get(j, "anthropic_version") == NULL &&
	    json_object_set_new(j, "anthropic_version",
	    json_string(ed->version)) == -1)
		goto out;
	if (ed->betas != NULL && json_object_get(j, "anthropic_beta") == NULL) {
		/* The list as the text path writes it, read back. */
		if ((bb = evbuffer_new()) == NULL)
			fatalx("evbuffer_new");
		a = am_add_betas(bb, ed->betas) == 0 ? json_loadb((const char *)
		    evbuffer_pullup(bb, -1), evbuffer_get_length(bb), 0, NULL) :
		    NULL;
		evbuffer_free(bb);
		if (a == NULL || json_object_set_new(j, "anthropic_beta", a) ==
		    -1)
			goto out;
	}
	if (ed->profile != NULL &&
	    json_object_get(j, "user_profile_id") == NULL &&
	    json_object_set_new(j, "user_profile_id",
	    json_string(ed->profile)) == -1)
		goto out;
	if (ed->max_tokens && json_object_get(j, "max_tokens") == NULL)
		json_object_set_new(j, "max_tokens", json_integer(1));
	if ((t = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(17))) ==
	    NULL)
		goto out;
	evbuffer_add(b, t, strlen(t));
	free(t);
	rc = 0;
out:
	json_decref(j);
	return (rc);
}

/*
 * The body with the edit made: 0 with *out (xmalloc'd), or -1 with *why
 * (static, safe to show). The body must be a JSON object jansson loads
 * (anthropic_read() checked it; the OpenAI routes load it themselves).
 */
int
anthropic_rewrite(const uint8_t *body, size_t len,
    const struct anthropic_edit *ed, uint8_t **out, size_t *outlen,
    const char **why)
{
	struct evbuffer	*b;
	struct am_scan	*s;
	int		 rc;

	*out = NULL;
	*outlen = 0;
	if ((b = evbuffer_new()) == NULL)
		fatalx("evbuffer_new");
	s = xmalloc(sizeof *s);
	if (am_scan(body, len, s) == 0)
		rc = am_rewrite_text(body, len, s, ed, b);
	else
		rc = am_rewrite_json(body, len, ed, b);
	free(s);
	if (rc == -1) {
		*why = "the request cannot be rewritten for Bedrock (a value "
		    "that is not valid UTF-8?)";
		evbuffer_free(b);
		return (-1);
	}
	*outlen = evbuffer_get_length(b);
	*out = xmalloc(*outlen + 1);
	evbuffer_remove(b, *out, *outlen);
	(*out)[*outlen] = '\0';
	evbuffer_free(b);
	return (0);
}

/* An event type we may put on an "event:" line. */
static int
am_type_ok(const char *s, size_t len)
{
	size_t	i;

	if (len == 0 || len >= ANTHROPIC_TYPE_MAX)
		return (0);
	for (i = 0; i < len; i++) {
		if (!(islower((unsigned char)s[i]) ||
		    isdigit((unsigned char)s[i]) || s[i] == '_' ||
		    s[i] == '.'))
			return (0);
	}
	return (1);
}

/*
 * One stream chunk's JSON as a server-sent event: "event: <its type>",
 * then the JSON unchanged on data lines (one per line of it). 1 when
 * written, with the type in type[0..typesz); 0 when the chunk has no
 * usable type (not JSON, no string "type"): nothing is written, as the
 * Bedrock SDKs drop such chunks.
 */
int
anthropic_sse_event(struct evbuffer *out, const uint8_t *json, size_t len,
    char *type, size_t typesz)
{
	const char	*v, *p, *end;
	size_t		 vlen, n;
	json_t		*j;
	int		 rc;

	type[0] = '\0';
	rc = json_member((const char *)json, len, "type", &v, &vlen);
	if (rc == 1 && vlen >= 2 && v[0] == '"' &&
	    memchr(v, '\\', vlen) == NULL && am_type_ok(v + 1, vlen - 2) &&
	    vlen - 2 < typesz) {
		memcpy(type, v + 1, vlen - 2);
		type[vlen - 2] = '\0';
	} else if (rc == -1) {
		/* Let jansson decide, and check it is JSON at all. */
		if ((j = json_loadb((const char *)json, len, 0, NULL)) ==
		    NULL)
			return (0);
		v = json_string_value(json_object_get(j, "type"));
		if (v != NULL && am_type_ok(v, strlen(v)) &&
		    strlen(v) < typesz)
			bsp_strlcpy(type, v, typesz);
		json_decref(j);
	}
	if (type[0] == '\0')
		return (0);
	evbuffer_add_printf(out, "event: %s\n", type);
	p = (const char *)json;
	end = p + len;
	for (;;) {
		for (n = 0; p + n < end && p[n] != '\n' && p[n] != '\r'; n++)
			;
		evbuffer_add(out, "data: ", 6);
		evbuffer_add(out, p, n);
		evbuffer_add(out, "\n", 1);
		p += n;
		if (p == end)
			break;
		/* A line end: CRLF, CR or LF (a last one, an empty line). */
		if (*p++ == '\r' && p < end && *p == '\n')
			p++;
	}
	evbuffer_add(out, "\n", 1);
	return (1);
}

/* An "error" event in the Anthropic envelope. */
void
anthropic_sse_error(struct evbuffer *out, const char *type, const char *msg)
{
	json_t	*j;
	char	*clean, *t;

	clean = utf8_sanitize(msg);
	j = json_pack("{s:s, s:{s:s, s:s}}", "type", "error", "error", "type",
	    type, "message", clean);
	free(clean);
	if (j == NULL || (t = json_dumps(j, JSON_COMPACT)) == NULL)
		fatalx("%s: cannot build an error event", __func__);
	json_decref(j);
	evbuffer_add_printf(out, "event: error\ndata: %s\n\n", t);
	free(t);
}

/* A keep-alive, as Anthropic's API sends it. */
void
anthropic_sse_ping(struct evbuffer *out)
{
	static const char	ping[] = "event: ping\ndata: {\"type\": "
				    "\"ping\"}\n\n";

	evbuffer_add(out, ping, sizeof ping - 1);
}

/* Bedrock error and exception names (either case of the first letter). */
static int
am_is(const char *t, const char *name)
{
	return (t != NULL && strcasecmp(t, name) == 0);
}

/*
 * The status an Anthropic client gets for an error Bedrock (or the relay,
 * in Bedrock's words) gave: AWS refusing the proxy's own credentials is a
 * gateway failure (502), not the client's (a 401 would make Claude Code
 * ask its user to sign in again); a model's failure (424) is a 500, its
 * time-out a 504.
 */
int
anthropic_error_status(int status, const char *t)
{
	if (am_is(t, "UnrecognizedClientException") ||
	    am_is(t, "InvalidSignatureException") ||
	    am_is(t, "IncompleteSignatureException") ||
	    am_is(t, "MissingAuthenticationTokenException") ||
	    am_is(t, "ExpiredTokenException") || am_is(t, "ExpiredToken"))
		return (502);
	if (am_is(t, "ModelErrorException") ||
	    am_is(t, "ModelStreamErrorException") || status == 424)
		return (500);
	if (am_is(t, "ModelTimeoutException") || status == 408)
		return (504);
	return (status);
}

/* The Anthropic error type for a status (after anthropic_error_status). */
const char *
anthropic_error_type(int status, const char *t)
{
	if (am_is(t, "ThrottlingException") ||
	    am_is(t, "ModelNotReadyException"))
		return ("rate_limit_error");
	if (am_is(t, "ServiceUnavailableException"))
		return ("overloaded_error");
	if (am_is(t, "ValidationException") || am_is(t, "ConflictException") ||
	    am_is(t, "ServiceQuotaExceededException"))
		return ("invalid_request_error");
	if (am_is(t, "ModelTimeoutException"))
		return ("timeout_error");
	if (status == 200)
		return ("api_error");	/* another failure mid-stream */
	switch (status) {
	case 400:
	case 405:
	case 411:
	case 415:
	case 431:
		return ("invalid_request_error");
	case 401:
		return ("authentication_error");
	case 403:
		return ("permission_error");
	case 404:
		return ("not_found_error");
	case 413:
		return ("request_too_large");
	case 429:
		return ("rate_limit_error");
	case 501:
		return ("not_supported");
	case 503:
	case 529:
		return ("overloaded_error");
	case 504:
		return ("timeout_error");
	default:
		return (status >= 500 ? "api_error" : "invalid_request_error");
	}
}
