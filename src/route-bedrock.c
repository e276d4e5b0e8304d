/*
 * route-bedrock.c: the Bedrock relay.
 *
 * For each runtime operation: the ids in the path (model, guardrail and
 * its version) are percent-decoded once and checked (relay_id_decode()),
 * then the principal's model rules, rate limits and budgets (the call's
 * worst case reserved against every cap, budget.c; settled with its real
 * cost when the call ends, however it ends) are checked before AWS is
 * called; the request is re-signed with SigV4 (or given
 * aws.bearer_token) and sent with the body byte for byte, a path rebuilt
 * from the checked ids in the AWS SDKs' encoding (the client's own
 * encoding and query string stay here), and only an allow-list of headers.
 * Answers come back unchanged: errors with their status, body and error
 * type, streams frame by frame as they arrive. An event-stream decoder
 * reads the stream on the side, for usage and exceptions, without touching
 * the bytes.
 *
 * A stream's memory is bounded: when the client's output buffer is above
 * RELAY_HIGH_WATER the upstream is paused, and resumed once the client has
 * read it. A client that goes away cancels the upstream call. Timeouts map
 * to 504 before the stream begins and to an exception frame after.
 *
 * Each relayed call is a small state machine (relay_enter() traces it):
 * NEW -> SENT -> STREAMING -> DONE, with WAIT_CREDS when AWS said the
 * credentials had expired and a refreshed set is awaited (once).
 *
 * Two Bedrock calls get a fixed answer instead: the bidirectional stream
 * (HTTP/2 only) and the control plane's inference profiles.
 *
 * The Anthropic and OpenAI front ends (route-anthropic.c, route-openai.c)
 * use the same relay through relay_call(), with their own operation name,
 * upstream path, body and headers, and errors in their API's envelope
 * (server_error_bedrock() speaks the route's shape). Their streams are
 * either an event stream re-emitted as Anthropic server-sent events
 * (RELAY_TO_SSE: each chunk's JSON unchanged as an event's data, a ping
 * after anthropic.ping_interval of upstream silence, exceptions and
 * failures as an "error" event), or the upstream's own server-sent events
 * passed on unchanged and read on the side for usage (RELAY_SSE).
 */

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "bsp.h"
#include "crypto.h"
#include "anthropic.h"
#include "aws-call.h"
#include "aws-creds.h"
#include "eventstream.h"
#include "http-client.h"
#include "sigv4.h"
#include "sse.h"

#define RELAY_HIGH_WATER	(256 * 1024)
#define RELAY_MAX_BODY		(64 * 1024 * 1024)
#define RELAY_ERR_BODY_MAX	(1024 * 1024)
#define RELAY_USAGE_FRAME_MAX	(64 * 1024)
#define RELAY_MODEL_MAX		2048
#define RELAY_MAX_HEADERS	(SIGV4_MAX_HEADERS + 8)
#define RELAY_SSE_EVENT_MAX	(256 * 1024)	/* kept to read usage */
#define RELAY_META_HEADER	"X-Amzn-Bedrock-Request-Metadata"

struct relay_op {
	const char	*route;		/* route name in the table */
	const char	*name;		/* Bedrock operation */
	int		 stream;
	int		 has_model;
};

static const struct relay_op relay_ops[] = {
	{ "bedrock_invoke", "InvokeModel", 0, 1 },
	{ "bedrock_invoke_stream", "InvokeModelWithResponseStream", 1, 1 },
	{ "bedrock_converse", "Converse", 0, 1 },
	{ "bedrock_converse_stream", "ConverseStream", 1, 1 },
	{ "bedrock_count_tokens", "CountTokens", 0, 1 },
	{ "bedrock_guardrail", "ApplyGuardrail", 0, 0 },
};

enum relay_state {
	RS_NEW,
	RS_SENT,
	RS_WAIT_CREDS,
	RS_WAIT_ROLE,
	RS_STREAMING,
	RS_DONE,
};
static const char *const relay_state_names[] = {
	"NEW", "SENT", "WAIT_CREDS", "WAIT_ROLE", "STREAMING", "DONE"
};

struct relay {
	struct request		*r;
	const struct relay_op	*op;		/* Bedrock routes */
	const char		*name;		/* the operation */
	int			 flags;		/* RELAY_* */
	const char		*service;	/* SigV4 signing name */
	struct hc_body		*body;		/* ours, shared with the */
						/* client; or NULL */
	const char *const	*fwd;		/* headers forwarded, or NULL */
	enum relay_state	 state;
	char			*model;		/* decoded, for policy, usage */
	char			*path;		/* wire path sent upstream */
	struct aws_creds	*creds;
	int			 user_role;	/* creds: the user's session */
	struct awsrole_wait	*rwait;		/* RS_WAIT_ROLE */
	char			*meta_header;	/* request metadata, or NULL */
	struct hc_req		*up;
	int			 attempts;
	int			 paused;
	int			 status;	/* upstream */
	struct evbuffer		*errbody;
	int			 errbody_over;	/* larger than we keep */
	struct evkeyvalq	 errheaders;
	int			 errheaders_set;
	union {
		struct es_decoder dec;	/* dec_on */
		struct sse_reader sse;	/* sse_on (RELAY_SSE) */
	}			 u;
	int			 dec_on;
	int			 dec_warned;
	long long		 in, out, cache_read, cache_write;
	long long		 cache_write_1h;	/* of cache_write */
	struct budget_hold	*hold;		/* reserved against the caps */
	int			 have_metrics;	/* invocationMetrics seen */
	double			 t0;
	double			 t_first;
	const char		*outcome;
	char			*exception;
	char			*session;	/* X-Claude-Code-Session-Id */
	int			 sse_on;	/* RELAY_SSE: read on the side */
	struct evbuffer		*events;	/* RELAY_TO_SSE: to send */
	struct event		*ping;		/* RELAY_TO_SSE, or NULL */
	int			 saw_stop;	/* message_stop sent */
	int			 ended;		/* an error event sent */
};

static struct {
	struct hc_target	*target;
	struct hc_target	*next_target;	/* prepared by a reload */
	char			*endpoint;
	struct metric		*m_upstream;
	struct metric		*m_upstream_seconds;
	struct metric		*m_streams;
	long			 active_streams;
} rel;

static void	relay_send(struct relay *);
static void	relay_finish(struct relay *);
static void	relay_drained(struct request *);
static void	relay_feed(struct relay *, struct evbuffer *);
static void	relay_sse_event(void *, const char *, const char *, size_t);
static void	relay_log_fields(struct relay *);

static void
relay_enter(struct relay *rl, enum relay_state s)
{
	log_trace(TRACE_UPSTREAM, "relay %s: %s -> %s", rl->r->id,
	    relay_state_names[rl->state], relay_state_names[s]);
	if (s == RS_STREAMING && rl->state != RS_STREAMING) {
		rel.active_streams++;
		metric_set(rel.m_streams, NULL, (double)rel.active_streams);
	} else if (rl->state == RS_STREAMING && s != RS_STREAMING) {
		rel.active_streams--;
		metric_set(rel.m_streams, NULL, (double)rel.active_streams);
	}
	rl->state = s;
}

static void
relay_free(void *arg)
{
	struct relay	*rl = arg;

	if (rl->state == RS_STREAMING)
		relay_enter(rl, RS_DONE);
	if (rl->creds != NULL)
		aws_creds_unref(rl->creds);
	awsrole_user_cancel(rl->rwait);
	free(rl->meta_header);
	if (rl->dec_on)
		es_decoder_free(&rl->u.dec);
	if (rl->errbody != NULL)
		evbuffer_free(rl->errbody);
	if (rl->errheaders_set)
		evhttp_clear_headers(&rl->errheaders);
	if (rl->sse_on)
		sse_reader_free(&rl->u.sse);
	if (rl->ping != NULL)
		event_free(rl->ping);
	if (rl->events != NULL)
		evbuffer_free(rl->events);
	budget_hold_free(rl->hold);
	hc_body_unref(rl->body);
	free(rl->model);
	free(rl->path);
	free(rl->exception);
	free(rl->session);
	free(rl);
}

/* Module. */
int
relay_init(struct config *c, char **cause)
{
	if (hc_init(c->aws_ca_file, cause) == -1)
		return (-1);
	if ((rel.target = hc_target_new(c->aws_endpoint, cause)) == NULL)
		return (-1);
	rel.endpoint = xstrdup(c->aws_endpoint);
	if (rel.m_upstream == NULL) {
		rel.m_upstream = metric_new("bsp_upstream_requests_total",
		    METRIC_COUNTER, "Bedrock calls by operation and status "
		    "code (or error kind).");
		rel.m_upstream_seconds = metric_new(
		    "bsp_upstream_request_duration_seconds", METRIC_HISTOGRAM,
		    "Bedrock call duration by operation.");
		rel.m_streams = metric_new("bsp_active_streams", METRIC_GAUGE,
		    "Streams being relayed now.");
		metric_set(rel.m_streams, NULL, 0);
	}
	return (0);
}

/* A reload: the trust store and endpoint prepared, then put in use. */
int
relay_reload_prepare(struct config *c, char **cause)
{
	relay_reload_abort();
	if (hc_reload_prepare(c->aws_ca_file, cause) == -1)
		return (-1);
	if (strcmp(c->aws_endpoint, rel.endpoint) != 0 &&
	    (rel.next_target = hc_target_new(c->aws_endpoint, cause)) ==
	    NULL) {
		hc_reload_abort();
		return (-1);
	}
	return (0);
}

void
relay_reload_commit(struct config *c)
{
	hc_reload_commit();
	if (rel.next_target != NULL) {
		/* Requests in flight keep the old target: leak-free swap. */
		hc_target_free(rel.target);
		rel.target = rel.next_target;
		rel.next_target = NULL;
		free(rel.endpoint);
		rel.endpoint = xstrdup(c->aws_endpoint);
	}
}

void
relay_reload_abort(void)
{
	hc_reload_abort();
	if (rel.next_target != NULL)
		hc_target_free(rel.next_target);
	rel.next_target = NULL;
}

void
relay_free_all(void)
{
	relay_reload_abort();
	hc_shutdown();
	if (rel.target != NULL)
		hc_target_free(rel.target);
	rel.target = NULL;
	free(rel.endpoint);
	rel.endpoint = NULL;
}

static int
relay_header_forwarded(struct relay *rl, const char *name)
{
	size_t	i;

	if (rl->fwd != NULL) {
		for (i = 0; rl->fwd[i] != NULL; i++) {
			if (strcasecmp(name, rl->fwd[i]) == 0)
				return (1);
		}
		return (0);
	}
	return (strcasecmp(name, "Content-Type") == 0 ||
	    strcasecmp(name, "Accept") == 0 ||
	    strncasecmp(name, "X-Amzn-Bedrock-", 15) == 0);
}

static int
relay_header_returned(const char *name)
{
	/* By the first letter: most of an answer's headers start no name. */
	switch (name[0]) {
	case 'C':
	case 'c':
		return (strcasecmp(name, "Content-Type") == 0);
	case 'R':
	case 'r':
		return (strcasecmp(name, "Retry-After") == 0);
	case 'X':
	case 'x':
		return (strncasecmp(name, "X-Amzn-Bedrock-", 15) == 0 ||
		    strcasecmp(name, "x-amzn-RequestId") == 0 ||
		    strcasecmp(name, "x-amzn-ErrorType") == 0 ||
		    strcasecmp(name, "x-should-retry") == 0);
	}
	return (0);
}

/* Copy the allow-listed upstream response headers to our reply. */
static void
relay_copy_headers(struct relay *rl, const struct evkeyvalq *h)
{
	struct evkeyval	*kv;

	if (h == NULL)
		return;
	TAILQ_FOREACH(kv, h, next) {
		if (!relay_header_returned(kv->key))
			continue;
		/* Re-emitted as server-sent events: our own type. */
		if ((rl->flags & RELAY_TO_SSE) && rl->state == RS_STREAMING &&
		    strncasecmp(kv->key, "Content-Type", 12) == 0)
			continue;
		if ((rl->r->route->flags & RF_API) &&
		    strcasecmp(kv->key, "x-amzn-ErrorType") == 0)
			continue;
		server_set_header(rl->r, kv->key, kv->value);
	}
}

/* A header's count: digits only, or -1. */
static long long
relay_count(const char *v)
{
	char		*end;
	long long	 n;

	n = strtoll(v, &end, 10);
	return (*v != '\0' && *end == '\0' && n >= 0 ? n : -1);
}

/*
 * Bedrock's token-count headers (input, output, cache read, cache write),
 * found in one pass over the answer's headers: -1 for one absent or not a
 * count; of a name sent twice, the first counts.
 */
#define RELAY_COUNT_PREFIX	"X-Amzn-Bedrock-"
static void
relay_header_counts(const struct evkeyvalq *h, long long v[4])
{
	static const char *const names[4] = {
		"Input-Token-Count", "Output-Token-Count",
		"Cache-Read-Input-Token-Count", "Cache-Write-Input-Token-Count"
	};
	const size_t		 plen = sizeof RELAY_COUNT_PREFIX - 1;
	struct evkeyval		*kv;
	int			 seen[4] = { 0 };
	size_t			 i;

	for (i = 0; i < 4; i++)
		v[i] = -1;
	if (h == NULL)
		return;
	TAILQ_FOREACH(kv, h, next) {
		if (strncasecmp(kv->key, RELAY_COUNT_PREFIX, plen) != 0)
			continue;
		for (i = 0; i < 4; i++) {
			if (!seen[i] && strcasecmp(kv->key + plen,
			    names[i]) == 0) {
				seen[i] = 1;
				v[i] = relay_count(kv->value);
				break;
			}
		}
	}
}

/*
 * The members that carry the input, output, cache-read and cache-write
 * counts, each in Anthropic, Converse, InvokeModel-metrics and OpenAI
 * spelling (OpenAI's cached tokens are nested: relay_usage_openai); the
 * first spelling present counts.
 */
#define RELAY_SPELLINGS	4
static const char *const relay_usage_names[4][RELAY_SPELLINGS] = {
	{ "input_tokens", "inputTokens", "inputTokenCount", "prompt_tokens" },
	{ "output_tokens", "outputTokens", "outputTokenCount",
	  "completion_tokens" },
	{ "cache_read_input_tokens", "cacheReadInputTokens",
	  "cacheReadInputTokenCount", NULL },
	{ "cache_creation_input_tokens", "cacheWriteInputTokens",
	  "cacheWriteInputTokenCount", NULL },
};

/* json_members() callback: a usage member's count, read from its text. */
static void
relay_usage_text_member(void *arg, const char *k, size_t klen, const char *v,
    size_t vlen)
{
	long long	(*got)[RELAY_SPELLINGS] = arg;
	size_t		 i, s;

	for (i = 0; i < 4; i++) {
		for (s = 0; s < RELAY_SPELLINGS; s++) {
			if (relay_usage_names[i][s] != NULL &&
			    strlen(relay_usage_names[i][s]) == klen &&
			    memcmp(relay_usage_names[i][s], k, klen) == 0) {
				got[i][s] = json_uint(v, vlen);
				return;
			}
		}
	}
}

/*
 * The four counts of a usage object, jansson's (j) or its text (j NULL),
 * -1 where absent; -1 if the text reader cannot tell, so jansson must.
 */
static int
relay_usage_read(json_t *j, const char *text, size_t len, long long v[4])
{
	long long	 got[4][RELAY_SPELLINGS], n;
	size_t		 i, s;
	json_t		*m;

	for (i = 0; i < 4; i++) {
		for (s = 0; s < RELAY_SPELLINGS; s++) {
			m = j != NULL && relay_usage_names[i][s] != NULL ?
			    json_object_get(j, relay_usage_names[i][s]) : NULL;
			got[i][s] = json_is_integer(m) &&
			    json_integer_value(m) >= 0 ? json_integer_value(m) :
			    -1;
		}
	}
	if (j == NULL &&
	    json_members(text, len, relay_usage_text_member, got) == -1)
		return (-1);
	for (i = 0; i < 4; i++) {
		v[i] = -1;
		for (s = 0; s < RELAY_SPELLINGS; s++) {
			if ((n = got[i][s]) == -2)
				return (-1);
			if (n >= 0) {
				v[i] = n;
				break;
			}
		}
	}
	return (0);
}

/* A final count replaces; a running one (stream events) only grows. */
static void
relay_usage_apply(struct relay *rl, const long long v[4], int final)
{
	if (v[0] >= 0 && (final || rl->in <= 0))
		rl->in = v[0];
	if (v[1] >= 0 && (final || v[1] > rl->out))
		rl->out = v[1];
	if (v[2] >= 0)
		rl->cache_read = v[2];
	if (v[3] >= 0)
		rl->cache_write = v[3];
}

/*
 * Anthropic's split of the cache writes, usage.cache_creation: the
 * tokens written to the 1-hour cache (priced apart from the 5-minute).
 */
static void
relay_usage_1h(struct relay *rl, json_t *cc)
{
	json_t	*n = json_object_get(cc, "ephemeral_1h_input_tokens");

	if (json_is_integer(n) && json_integer_value(n) >= 0)
		rl->cache_write_1h = json_integer_value(n);
}

/* The same, from the usage object's text; parsed only when present. */
static void
relay_usage_1h_text(struct relay *rl, const char *u, size_t ulen)
{
	const char	*cc;
	size_t		 cclen;
	json_t		*j;

	if (json_member(u, ulen, "cache_creation", &cc, &cclen) != 1 ||
	    cc[0] != '{')
		return;
	if ((j = json_loadb(cc, cclen, 0, NULL)) != NULL) {
		relay_usage_1h(rl, j);
		json_decref(j);
	}
}

/* Usage from a JSON object in Anthropic or Converse spelling. */
static void
relay_usage_from_json(struct relay *rl, json_t *u, int final)
{
	long long	v[4];

	if (json_is_object(u) && relay_usage_read(u, NULL, 0, v) == 0) {
		relay_usage_apply(rl, v, final);
		relay_usage_1h(rl, json_object_get(u, "cache_creation"));
	}
}

/*
 * The usage member of a whole answer (InvokeModel, Converse), read from
 * the text; jansson parses the answer only when the reader cannot tell.
 */
static void
relay_usage_from_answer(struct relay *rl, const char *text, size_t len)
{
	const char	*u;
	size_t		 ulen;
	long long	 v[4];
	json_t		*j;

	if (text == NULL || len == 0)
		return;
	switch (json_member(text, len, "usage", &u, &ulen)) {
	case 0:
		return;
	case 1:
		if (u[0] != '{')
			return;
		if (relay_usage_read(NULL, u, ulen, v) == 0) {
			relay_usage_apply(rl, v, 1);
			relay_usage_1h_text(rl, u, ulen);
			return;
		}
		break;
	}
	if ((j = json_loadb(text, len, 0, NULL)) != NULL) {
		relay_usage_from_json(rl, json_object_get(j, "usage"), 1);
		json_decref(j);
	}
}

/* Look at one chunk's inner JSON (Anthropic SSE data objects). */
static void
relay_usage_from_chunk(struct relay *rl, json_t *j)
{
	const char	*type = json_string_value(json_object_get(j, "type"));
	json_t		*m;

	if ((m = json_object_get(j, "amazon-bedrock-invocationMetrics")) !=
	    NULL) {
		relay_usage_from_json(rl, m, 1);
		rl->have_metrics = 1;
		return;
	}
	if (rl->have_metrics || type == NULL)
		return;
	if (strcmp(type, "message_start") == 0)
		relay_usage_from_json(rl, json_object_get(json_object_get(j,
		    "message"), "usage"), 0);
	else if (strcmp(type, "message_delta") == 0)
		relay_usage_from_json(rl, json_object_get(j, "usage"), 0);
}

/*
 * The base64 string of a chunk's payload as AWS writes it,
 * {"bytes":"<base64>",...}, found without a parser: "bytes" must be the
 * first member (so the match is outside any string) and its value free of
 * escapes. NULL for any other shape; the caller then asks jansson.
 */
static const char *
relay_chunk_bytes(const uint8_t *p, size_t len, size_t *outlen)
{
	const uint8_t	*end = p + len, *s;

#define SKIP_WS() while (p < end && (*p == ' ' || *p == '\t' || \
	    *p == '\r' || *p == '\n')) p++
	SKIP_WS();
	if (p == end || *p++ != '{')
		return (NULL);
	SKIP_WS();
	if ((size_t)(end - p) < 7 || memcmp(p, "\"bytes\"", 7) != 0)
		return (NULL);
	p += 7;
	SKIP_WS();
	if (p == end || *p++ != ':')
		return (NULL);
	SKIP_WS();
#undef SKIP_WS
	if (p == end || *p++ != '"')
		return (NULL);
	for (s = p; p < end && *p != '"'; p++)
		if (*p == '\\')
			return (NULL);
	if (p == end)
		return (NULL);
	*outlen = (size_t)(p - s);
	return ((const char *)s);
}

/*
 * The usage in one chunk's base64 JSON. Anthropic's content_block_delta
 * chunks, nearly all of a stream, never carry usage: they are recognised by
 * their first 36 base64 characters, {"type":"content_block_delt, and
 * skipped without decoding. Other chunks are decoded and parsed only when
 * they mention usage or the invocation metrics.
 */
#define CHUNK_DELTA_B64		"eyJ0eXBlIjoiY29udGVudF9ibG9ja19kZWx0"
#define CHUNK_DELTA_JSON	"{\"type\":\"content_block_delta\""

/* The usage in one chunk's (or Anthropic event's) JSON text. */
static void
relay_raw_usage(struct relay *rl, const uint8_t *raw, size_t rawlen)
{
	json_t	*inner;

	if (rawlen >= sizeof CHUNK_DELTA_JSON - 1 && memcmp(raw,
	    CHUNK_DELTA_JSON, sizeof CHUNK_DELTA_JSON - 1) == 0)
		return;
	if ((memmem(raw, rawlen, "usage", 5) != NULL ||
	    memmem(raw, rawlen, "invocationMetrics", 17) != NULL) &&
	    (inner = json_loadb((const char *)raw, rawlen, 0, NULL)) != NULL) {
		relay_usage_from_chunk(rl, inner);
		json_decref(inner);
	}
}

/* A chunk's base64 payload decoded (xmalloc'd), or NULL. */
static uint8_t *
relay_chunk_decode(const char *b64, size_t b64len, size_t *rawlen)
{
	uint8_t	*raw;

	raw = xmalloc(b64len + 1);
	if (crypto_b64_decode(b64, b64len, raw, b64len, rawlen) != 0) {
		free(raw);
		return (NULL);
	}
	return (raw);
}

static void
relay_chunk_usage(struct relay *rl, const char *b64, size_t b64len)
{
	uint8_t		*raw;
	size_t		 rawlen;

	if (b64len >= sizeof CHUNK_DELTA_B64 - 1 && memcmp(b64,
	    CHUNK_DELTA_B64, sizeof CHUNK_DELTA_B64 - 1) == 0)
		return;
	if ((raw = relay_chunk_decode(b64, b64len, &rawlen)) != NULL) {
		relay_raw_usage(rl, raw, rawlen);
		free(raw);
	}
}

/*
 * RELAY_TO_SSE: one chunk re-emitted as an Anthropic event, its JSON
 * unchanged; usage read on the way.
 */
static void
relay_chunk_sse(struct relay *rl, const char *b64, size_t b64len)
{
	uint8_t		*raw;
	size_t		 rawlen;
	char		 type[ANTHROPIC_TYPE_MAX];

	if ((raw = relay_chunk_decode(b64, b64len, &rawlen)) == NULL) {
		log_warnx("relay %s: a stream chunk is not base64; dropped",
		    rl->r->id);
		return;
	}
	relay_raw_usage(rl, raw, rawlen);
	if (anthropic_sse_event(rl->events, raw, rawlen, type, sizeof type) == 0)
		log_debug("relay %s: a stream chunk without a type; dropped",
		    rl->r->id);
	else if (strcmp(type, "message_stop") == 0)
		rl->saw_stop = 1;
	free(raw);
}

/* RELAY_TO_SSE: end the events with an error event (once). */
static void
relay_sse_error(struct relay *rl, int status, const char *exception,
    const char *msg)
{
	if (rl->ended)
		return;
	rl->ended = 1;
	anthropic_sse_error(rl->events, anthropic_error_type(status, exception),
	    msg);
}

/*
 * RELAY_TO_SSE: an exception (or unmodelled error) frame as an error
 * event, with the message it carries.
 */
static void
relay_frame_error(struct relay *rl, const struct es_message *m, int unmodelled)
{
	char		 msg[512];
	const char	*t;
	json_t		*j = NULL;

	msg[0] = '\0';
	if (unmodelled)
		(void)es_header_strcpy(m, ES_H_ERROR_MESSAGE, msg, sizeof msg);
	else if ((j = json_loadb((const char *)m->payload, m->payload_len, 0,
	    NULL)) != NULL && (t = json_string_value(json_object_get(j,
	    "message"))) != NULL)
		bsp_strlcpy(msg, t, sizeof msg);
	json_decref(j);
	relay_sse_error(rl, 200, rl->exception, msg[0] != '\0' ? msg :
	    "Bedrock ended the stream with an error");
}

/*
 * The side decoder: usage and exceptions, bytes untouched; with
 * RELAY_TO_SSE, the chunks re-emitted as server-sent events.
 */
static int
relay_frame(const struct es_message *m, void *arg)
{
	struct relay	*rl = arg;
	char		 mt[32], et[64];
	json_t		*j;
	const char	*b64;
	size_t		 b64len;

	if (es_header_strcpy(m, ES_H_MESSAGE_TYPE, mt, sizeof mt) == -1)
		return (0);
	if (strcmp(mt, "exception") == 0 || strcmp(mt, "error") == 0) {
		if (es_header_strcpy(m, strcmp(mt, "error") == 0 ?
		    ES_H_ERROR_CODE : ES_H_EXCEPTION_TYPE, et, sizeof et) == 0) {
			free(rl->exception);
			rl->exception = xstrdup(et);
		}
		if (rl->flags & RELAY_TO_SSE)
			relay_frame_error(rl, m, strcmp(mt, "error") == 0);
		return (0);
	}
	if (rl->flags & RELAY_TO_SSE) {
		if (rl->ended || es_header_strcpy(m, ES_H_EVENT_TYPE, et,
		    sizeof et) == -1 || strcmp(et, "chunk") != 0)
			return (0);
		if ((b64 = relay_chunk_bytes(m->payload, m->payload_len,
		    &b64len)) != NULL)
			relay_chunk_sse(rl, b64, b64len);
		else {
			j = json_loadb((const char *)m->payload, m->payload_len,
			    0, NULL);
			if ((b64 = json_string_value(json_object_get(j,
			    "bytes"))) != NULL)
				relay_chunk_sse(rl, b64, strlen(b64));
			json_decref(j);
		}
		return (0);
	}
	if (m->payload_len > RELAY_USAGE_FRAME_MAX ||
	    es_header_strcpy(m, ES_H_EVENT_TYPE, et, sizeof et) == -1)
		return (0);
	if (strcmp(et, "metadata") == 0) {
		/* ConverseStream: {"usage":{...},"metrics":{...}} */
		j = json_loadb((const char *)m->payload, m->payload_len, 0, NULL);
		relay_usage_from_json(rl, json_object_get(j, "usage"), 1);
		json_decref(j);
		return (0);
	}
	if (strcmp(et, "chunk") != 0)
		return (0);
	if ((b64 = relay_chunk_bytes(m->payload, m->payload_len,
	    &b64len)) != NULL)
		relay_chunk_usage(rl, b64, b64len);
	else if (memmem(m->payload, m->payload_len, "\"bytes\"", 7) != NULL) {
		/* Any other shape: let jansson find it. */
		j = json_loadb((const char *)m->payload, m->payload_len, 0,
		    NULL);
		if ((b64 = json_string_value(json_object_get(j, "bytes"))) !=
		    NULL)
			relay_chunk_usage(rl, b64, strlen(b64));
		json_decref(j);
	}
	return (0);
}

/* OpenAI's usage object: counts, and the cached tokens nested in it. */
static void
relay_usage_openai(struct relay *rl, json_t *u)
{
	json_t	*d, *n;

	if (!json_is_object(u))
		return;
	relay_usage_from_json(rl, u, 1);
	if ((d = json_object_get(u, "prompt_tokens_details")) == NULL)
		d = json_object_get(u, "input_tokens_details");
	n = json_object_get(d, "cached_tokens");
	if (json_is_integer(n) && json_integer_value(n) >= 0)
		rl->cache_read = json_integer_value(n);
}

/* The usage of a whole OpenAI answer. */
static void
relay_usage_openai_text(struct relay *rl, struct evbuffer *body)
{
	json_t	*j;

	if ((j = json_loadb((const char *)evbuffer_pullup(body, -1),
	    evbuffer_get_length(body), 0, NULL)) == NULL)
		return;
	relay_usage_openai(rl, json_object_get(j, "usage"));
	json_decref(j);
}

/*
 * RELAY_SSE: one event of the upstream's stream, read on the side: usage
 * (Anthropic's message_start and message_delta, OpenAI's usage objects)
 * and Anthropic's error events.
 */
static void
relay_sse_event(void *arg, const char *event, const char *data, size_t len)
{
	struct relay	*rl = arg;
	json_t		*j, *u;
	const char	*t;

	if (strcmp(event, "error") != 0 && memmem(data, len, "usage", 5) ==
	    NULL)
		return;
	if ((j = json_loadb(data, len, 0, NULL)) == NULL)
		return;
	if (strcmp(event, "error") == 0) {
		t = json_string_value(json_object_get(json_object_get(j,
		    "error"), "type"));
		free(rl->exception);
		rl->exception = xstrdup(t != NULL && str_is_printable(t,
		    strlen(t)) && strlen(t) < 64 ? t : "error");
	} else if (rl->flags & RELAY_OPENAI) {
		u = json_object_get(j, "usage");
		if (!json_is_object(u))
			u = json_object_get(json_object_get(j, "response"),
			    "usage");
		relay_usage_openai(rl, u);
	} else
		relay_usage_from_chunk(rl, j);
	json_decref(j);
}

/* RELAY_TO_SSE: a ping after anthropic.ping_interval of silence. */
static void
relay_ping_cb(int fd, short ev, void *arg)
{
	struct relay	*rl = arg;
	struct timeval	 tv;

	if (rl->state != RS_STREAMING || rl->ended)
		return;
	if (!rl->paused) {
		anthropic_sse_ping(rl->events);
		server_stream_write(rl->r, rl->events, relay_drained);
	}
	tv.tv_sec = (time_t)rl->r->cfg->anthropic_ping_interval;
	tv.tv_usec = 0;
	evtimer_add(rl->ping, &tv);
}

/* (Re)start the silence before a ping. */
static void
relay_ping_arm(struct relay *rl)
{
	struct timeval	tv;

	if (rl->r->cfg->anthropic_ping_interval <= 0)
		return;
	if (rl->ping == NULL &&
	    (rl->ping = evtimer_new(bsp_base, relay_ping_cb, rl)) == NULL)
		fatalx("%s: evtimer_new", __func__);
	tv.tv_sec = (time_t)rl->r->cfg->anthropic_ping_interval;
	tv.tv_usec = 0;
	evtimer_add(rl->ping, &tv);
}

/*
 * RELAY_TO_SSE: upstream bytes in, events out. A stream the decoder cannot
 * follow, or one that carried an exception, ends with an error event; the
 * upstream call is stopped then.
 */
static void
relay_to_sse(struct relay *rl, struct hc_req *up, struct evbuffer *data)
{
	if (!rl->ended && !rl->u.dec.failed)
		relay_feed(rl, data);
	evbuffer_drain(data, evbuffer_get_length(data));
	if (rl->u.dec.failed && !rl->ended) {
		log_warnx("relay %s: cannot read the upstream event stream "
		    "(%s); ending it", rl->r->id, es_decoder_error(&rl->u.dec));
		free(rl->exception);
		rl->exception = xstrdup("internalServerException");
		relay_sse_error(rl, 200, NULL, "the proxy cannot read the "
		    "event stream Bedrock sent");
	}
	if (evbuffer_get_length(rl->events) > 0)
		server_stream_write(rl->r, rl->events, relay_drained);
	if (rl->ended) {
		hc_cancel(up);
		rl->up = NULL;
		relay_log_fields(rl);
		server_stream_end(rl->r);
		relay_finish(rl);
		return;
	}
	relay_ping_arm(rl);
	if (!rl->paused && server_stream_pending(rl->r) > RELAY_HIGH_WATER) {
		rl->paused = 1;
		hc_pause(up);
	}
}

/*
 * A stream of server-sent events failed: an error event in the route's
 * API (after an empty line if the upstream's last event was cut short).
 */
static void
relay_sse_fail(struct relay *rl, const char *type, const char *msg)
{
	struct evbuffer	*b;
	json_t		*j;
	char		*t;

	if (rl->flags & RELAY_TO_SSE) {
		relay_sse_error(rl, 200, type, msg);
		server_stream_write(rl->r, rl->events, NULL);
		return;
	}
	if ((b = evbuffer_new()) == NULL)
		fatalx("evbuffer_new");
	if (rl->sse_on && !sse_reader_idle(&rl->u.sse))
		evbuffer_add(b, "\n\n", 2);
	if (rl->flags & RELAY_OPENAI) {
		j = json_pack("{s:{s:s, s:s, s:n, s:n}}", "error", "message",
		    msg, "type", "server_error", "param", "code");
		if (j == NULL || (t = json_dumps(j, JSON_COMPACT)) == NULL)
			fatalx("%s: json", __func__);
		json_decref(j);
		evbuffer_add_printf(b, "data: %s\n\n", t);
		free(t);
	} else
		anthropic_sse_error(b, anthropic_error_type(200, type), msg);
	rl->ended = 1;
	server_stream_write(rl->r, b, NULL);
	evbuffer_free(b);
}

/*
 * Is an upstream error body already in the route's envelope (bedrock-
 * runtime's Anthropic and OpenAI routes may answer in their API's words)?
 */
static int
relay_api_envelope(struct relay *rl, struct evbuffer *body)
{
	json_t	*j, *e;
	int	 yes;

	if (body == NULL || evbuffer_get_length(body) == 0 ||
	    (j = json_loadb((const char *)evbuffer_pullup(body, -1),
	    evbuffer_get_length(body), 0, NULL)) == NULL)
		return (0);
	e = json_object_get(j, "error");
	if (rl->r->route->flags & RF_OPENAI)
		yes = json_is_string(json_object_get(e, "message"));
	else
		yes = json_is_string(json_object_get(e, "type")) &&
		    json_is_string(json_object_get(j, "type")) &&
		    strcmp(json_string_value(json_object_get(j, "type")),
		    "error") == 0;
	json_decref(j);
	return (yes);
}

/*
 * An upstream error in AWS's shape ({"message"} and x-amzn-ErrorType) in
 * the route's envelope: the status as an Anthropic client expects it, the
 * type from the exception, Bedrock's message unchanged (Claude Code reads
 * some of its wording).
 */
static void
relay_api_error(struct relay *rl, struct evbuffer *body)
{
	json_t		*j = NULL;
	const char	*m = NULL;
	char		 buf[64];

	if (body != NULL && evbuffer_get_length(body) > 0 &&
	    (j = json_loadb((const char *)evbuffer_pullup(body, -1),
	    evbuffer_get_length(body), 0, NULL)) != NULL &&
	    (m = json_string_value(json_object_get(j, "message"))) == NULL)
		m = json_string_value(json_object_get(j, "Message"));
	if (m == NULL) {
		snprintf(buf, sizeof buf, "Bedrock answered %d", rl->status);
		m = buf;
	}
	server_error_bedrock(rl->r, rl->status, rl->exception != NULL ?
	    rl->exception : "", "%s", m);
	json_decref(j);
	if (body != NULL)
		evbuffer_drain(body, evbuffer_get_length(body));
}

/* Bedrock's CountTokens answer, {"inputTokens":N}, in Anthropic's words. */
static void
relay_count_answer(struct relay *rl, struct evbuffer *body)
{
	json_t	*j = NULL, *n;

	if (body != NULL && evbuffer_get_length(body) > 0)
		j = json_loadb((const char *)evbuffer_pullup(body, -1),
		    evbuffer_get_length(body), 0, NULL);
	n = json_object_get(j, "inputTokens");
	if (!json_is_integer(n) || json_integer_value(n) < 0)
		server_error_bedrock(rl->r, 502, "InternalServerException",
		    "Bedrock's CountTokens answer cannot be read");
	else
		server_reply_json(rl->r, 200, json_pack("{s:I}",
		    "input_tokens", (json_int_t)json_integer_value(n)));
	json_decref(j);
	if (body != NULL)
		evbuffer_drain(body, evbuffer_get_length(body));
}

/* What the access log line says about the upstream; before each reply. */
static void
relay_log_fields(struct relay *rl)
{
	struct request	*r = rl->r;

	r->upstream_status = rl->status;
	r->tokens_in = rl->in > 0 ? rl->in : 0;
	r->tokens_out = rl->out > 0 ? rl->out : 0;
}

/* Write the usage row, the access log fields and the metrics. */
static void
relay_account(struct relay *rl, int status)
{
	struct usage		 u;
	struct budget_tokens	 bt;
	struct request		*r = rl->r;
	struct principal	*p = r->principal;
	char			 labels[256], code[32];
	double			 now = now_mono();

	memset(&u, 0, sizeof u);
	u.ts = now_wall();
	u.user_id = p->sub;
	u.api_key_id = p->key_id;
	u.model = rl->model;
	u.route = rl->name;
	u.status = status;
	u.input_tokens = rl->in > 0 ? rl->in : 0;
	u.output_tokens = rl->out > 0 ? rl->out : 0;
	u.cache_read_tokens = rl->cache_read > 0 ? rl->cache_read : 0;
	u.cache_write_tokens = rl->cache_write > 0 ? rl->cache_write : 0;
	u.cache_write_1h_tokens = rl->cache_write_1h > 0 ?
	    rl->cache_write_1h : 0;
	if (u.cache_write_1h_tokens > u.cache_write_tokens)
		u.cache_write_tokens = u.cache_write_1h_tokens;
	bt.input = u.input_tokens;
	bt.output = u.output_tokens;
	bt.cache_read = u.cache_read_tokens;
	bt.cache_write = u.cache_write_tokens;
	bt.cache_write_1h = u.cache_write_1h_tokens;
	/* The reservation settled with the real cost (none if refused). */
	u.cost_micros = budget_settle(rl->hold, r->cfg, p, rl->model, &bt,
	    u.ts);
	rl->hold = NULL;
	u.latency_ms = (long long)((now - rl->t0) * 1000);
	u.first_byte_ms = rl->t_first > 0 ?
	    (long long)((rl->t_first - rl->t0) * 1000) : -1;
	u.request_id = r->id;
	u.session_id = rl->session;
	u.outcome = rl->exception != NULL ? rl->exception :
	    rl->outcome != NULL ? rl->outcome : "ok";
	usage_record(&u);
	if (r->cfg->rl_tokens_per_minute > 0 && p != NULL)
		ratelimit_charge(r->cfg, p, u.input_tokens + u.output_tokens);
	relay_log_fields(rl);

	if (rl->attempts == 0)
		return;		/* refused here: no upstream call to count */
	if (rl->status > 0)
		num_lld(code, rl->status);
	else
		bsp_strlcpy(code, rl->outcome != NULL ? rl->outcome : "error",
		    sizeof code);
	metric_label(labels, sizeof labels, "operation", rl->name, "code",
	    code, NULL);
	metric_add(rel.m_upstream, labels, 1);
	metric_label(labels, sizeof labels, "operation", rl->name, NULL);
	metric_observe(rel.m_upstream_seconds, labels, now - rl->t0);
}

/* End the relay: account, drop our reference to the request. */
static void
relay_finish(struct relay *rl)
{
	int	status;

	if (rl->state == RS_DONE)
		return;
	if (rl->ping != NULL) {
		event_free(rl->ping);
		rl->ping = NULL;
	}
	status = rl->r->client_gone && !rl->r->replied ? 499 : rl->r->status;
	relay_enter(rl, RS_DONE);
	relay_account(rl, status);
	request_unref(rl->r);
}

/* The client went away: stop the upstream call. */
static void
relay_abort(struct request *r)
{
	struct relay	*rl = r->state;

	if (rl == NULL || rl->state == RS_DONE)
		return;
	log_trace(TRACE_UPSTREAM, "relay %s: client gone; cancelling", r->id);
	if (rl->up != NULL) {
		hc_cancel(rl->up);
		rl->up = NULL;
	}
	if (rl->state == RS_WAIT_CREDS)
		aws_creds_cancel_wait(rl);
	awsrole_user_cancel(rl->rwait);
	rl->rwait = NULL;
	rl->outcome = "client_gone";
	relay_finish(rl);
}

/* The client has read what we sent: read more from upstream. */
static void
relay_drained(struct request *r)
{
	struct relay	*rl = r->state;

	if (rl != NULL && rl->paused && rl->up != NULL) {
		rl->paused = 0;
		hc_resume(rl->up);
	}
}

static void
relay_on_head(struct hc_req *up, int status, const struct evkeyvalq *h,
    void *arg)
{
	struct relay	*rl = arg;

	rl->status = status;
	rl->t_first = now_mono();
	if (status != 200) {
		/* An error before the stream began: collect it whole. */
		rl->errbody = evbuffer_new();
		TAILQ_INIT(&rl->errheaders);
		rl->errheaders_set = 1;
		if (h != NULL) {
			struct evkeyval *kv;

			TAILQ_FOREACH(kv, h, next)
				evhttp_add_header(&rl->errheaders, kv->key,
				    kv->value);
		}
		return;
	}
	/*
	 * Only an error head sends the request again: a stream does not
	 * hold its body (a Claude Code turn's is tens of kB) or the merged
	 * metadata header (or the path it was sent to) for the minutes it
	 * lasts.
	 */
	hc_body_unref(rl->body);
	rl->body = NULL;
	free(rl->meta_header);
	rl->meta_header = NULL;
	free(rl->path);
	rl->path = NULL;
	relay_enter(rl, RS_STREAMING);
	relay_copy_headers(rl, h);
	if (rl->flags & RELAY_SSE) {
		sse_reader_init(&rl->u.sse, RELAY_SSE_EVENT_MAX,
		    relay_sse_event, rl);
		rl->sse_on = 1;
	} else {
		es_decoder_init(&rl->u.dec, 0, relay_frame, rl);
		rl->dec_on = 1;
	}
	if (rl->flags & RELAY_TO_SSE) {
		server_set_header(rl->r, "Content-Type",
		    "text/event-stream; charset=utf-8");
		server_set_header(rl->r, "Cache-Control", "no-cache");
		if ((rl->events = evbuffer_new()) == NULL)
			fatalx("evbuffer_new");
		relay_ping_arm(rl);
	}
	server_stream_start(rl->r, 200);
}

/*
 * Feed every byte of data to the side decoder, in buffer order, without
 * copying. evbuffer_peek() with a negative length fills at most nitems(v)
 * extents and does not say how many more there are, so walk the buffer by
 * offset with an explicit length.
 */
static void
relay_feed(struct relay *rl, struct evbuffer *data)
{
	struct evbuffer_iovec	 v[16];
	struct evbuffer_ptr	 p;
	size_t			 total, off = 0, start;
	int			 n, i;

	total = evbuffer_get_length(data);
	while (off < total && (rl->sse_on || !rl->u.dec.failed)) {
		start = off;
		if (evbuffer_ptr_set(data, &p, off, EVBUFFER_PTR_SET) == -1)
			break;
		n = evbuffer_peek(data, (ev_ssize_t)(total - off), &p, v,
		    (int)nitems(v));
		if (n <= 0)
			break;
		for (i = 0; i < n && i < (int)nitems(v) && off < total; i++) {
			if (v[i].iov_len > total - off)
				v[i].iov_len = total - off;
			if (rl->sse_on)
				sse_reader_feed(&rl->u.sse, v[i].iov_base,
				    v[i].iov_len);
			else
				es_decoder_feed(&rl->u.dec, v[i].iov_base,
				    v[i].iov_len);
			off += v[i].iov_len;
		}
		if (off == start)
			break;
	}
}

static void
relay_on_data(struct hc_req *up, struct evbuffer *data, void *arg)
{
	struct relay		*rl = arg;

	if (rl->errbody != NULL) {
		if (evbuffer_get_length(rl->errbody) +
		    evbuffer_get_length(data) <= RELAY_ERR_BODY_MAX)
			evbuffer_add_buffer(rl->errbody, data);
		else {
			rl->errbody_over = 1;
			evbuffer_drain(data, evbuffer_get_length(data));
		}
		return;
	}
	if (rl->flags & RELAY_TO_SSE) {
		relay_to_sse(rl, up, data);
		return;
	}
	if (rl->sse_on)
		relay_feed(rl, data);
	/* Read along, then pass the bytes on unchanged. */
	if (rl->dec_on && !rl->u.dec.failed)
		relay_feed(rl, data);
	if (rl->dec_on && rl->u.dec.failed && !rl->dec_warned) {
		rl->dec_warned = 1;
		log_warnx("relay %s: cannot follow the upstream event "
		    "stream (%s); relaying it unchanged", rl->r->id,
		    es_decoder_error(&rl->u.dec));
	}
	server_stream_write(rl->r, data, relay_drained);
	if (!rl->paused && server_stream_pending(rl->r) > RELAY_HIGH_WATER) {
		rl->paused = 1;
		hc_pause(up);
	}
}

/*
 * Is this upstream answer "your credentials expired"? Only the error type
 * decides: the bare name of x-amzn-ErrorType (before any ':', after any
 * '#', as the AWS SDKs read it), which AWS sets. A message may echo the
 * input or a model's words, so no text in the body counts.
 */
static int
relay_expired(struct relay *rl, const struct evkeyvalq *h)
{
	static const char *const types[] = {
		"ExpiredTokenException", "ExpiredToken",
		"UnrecognizedClientException",
	};
	const char	*t, *hash;
	size_t		 len, i;

	if (rl->status != 403 && rl->status != 400)
		return (0);
	if (h == NULL || (t = evhttp_find_header(h, "x-amzn-ErrorType")) ==
	    NULL)
		return (0);
	len = strcspn(t, ":");
	if ((hash = memchr(t, '#', len)) != NULL) {
		len -= (size_t)(hash + 1 - t);
		t = hash + 1;
	}
	for (i = 0; i < nitems(types); i++) {
		if (strlen(types[i]) == len && memcmp(t, types[i], len) == 0)
			return (1);
	}
	return (0);
}

static void
relay_creds_cb(void *arg, int ok)
{
	struct relay	*rl = arg;

	if (rl->state != RS_WAIT_CREDS)
		return;
	if (!ok) {
		/* No fresher credentials to be had. */
		rl->outcome = "expired_credentials";
		relay_log_fields(rl);
		server_error_bedrock(rl->r, 403, "ExpiredTokenException",
		    "the proxy's AWS credentials have expired and could not be "
		    "refreshed");
		relay_finish(rl);
		return;
	}
	log_info("relay %s: retrying with refreshed AWS credentials",
	    rl->r->id);
	relay_send(rl);
}

/* Mid-stream failure: end the stream with an exception frame. */
static void
relay_stream_fail(struct relay *rl, enum hc_error err)
{
	struct request	*r = rl->r;
	struct evbuffer	*b;
	uint8_t		 frame[1024];
	size_t		 flen;
	const char	*type, *msg;

	if (err == HC_ERR_TIMEOUT_IDLE || err == HC_ERR_TIMEOUT_TOTAL) {
		type = "modelStreamErrorException";
		msg = "the model stream went silent; the proxy ended it";
	} else {
		type = "internalServerException";
		msg = "the connection to Bedrock broke during the stream";
	}
	if (rl->flags & (RELAY_TO_SSE | RELAY_SSE)) {
		relay_sse_fail(rl, type, msg);
		flen = 0;
	} else
		flen = es_encode_exception(type, msg, frame, sizeof frame);
	if (flen > 0) {
		b = evbuffer_new();
		evbuffer_add(b, frame, flen);
		server_stream_write(r, b, NULL);
		evbuffer_free(b);
	}
	free(rl->exception);
	rl->exception = xstrdup(type);
	relay_log_fields(rl);
	server_stream_end(r);
	relay_finish(rl);
}

/* The call failed: mid-stream an exception frame, before it 502 or 504. */
static void
relay_upstream_failed(struct relay *rl, const struct hc_result *res)
{
	struct request	*r = rl->r;
	int		 code;

	rl->outcome = hc_error_name(res->error);
	if (rl->state == RS_STREAMING) {
		relay_stream_fail(rl, res->error);
		return;
	}
	switch (res->error) {
	case HC_ERR_TIMEOUT_CONNECT:
	case HC_ERR_TIMEOUT_FIRST_BYTE:
	case HC_ERR_TIMEOUT_IDLE:
	case HC_ERR_TIMEOUT_TOTAL:
		code = 504;
		break;
	default:
		code = 502;
		break;
	}
	log_warnx("relay %s: %s %s: %s", r->id, rl->name,
	    hc_error_name(res->error), res->message);
	relay_log_fields(rl);
	/* The details (addresses, certificate names) are the log's. */
	server_error_bedrock(r, code, "ServiceUnavailableException",
	    "cannot reach Bedrock (%s); the proxy's log has the details under "
	    "request id %s", hc_error_name(res->error), r->id);
	relay_finish(rl);
}

/* AWS said the credentials expired: drop the answer, wait for new ones. */
static void
relay_wait_creds(struct relay *rl)
{
	relay_enter(rl, RS_WAIT_CREDS);
	if (rl->errbody != NULL) {
		evbuffer_free(rl->errbody);
		rl->errbody = NULL;
	}
	if (rl->errheaders_set) {
		evhttp_clear_headers(&rl->errheaders);
		rl->errheaders_set = 0;
	}
	if (rl->user_role) {
		/* The user's session: assume the role again, once. */
		log_info("relay %s: AWS refused the per-user role session; "
		    "assuming it again", rl->r->id);
		awsrole_user_rejected(rl->r->principal, rl->creds);
		relay_send(rl);
		return;
	}
	log_info("relay %s: AWS says the credentials expired; refreshing once",
	    rl->r->id);
	aws_creds_expired(rl->creds, relay_creds_cb, rl);
}

/* The counts of a 200 answer: the service's headers win over the body. */
static void
relay_answer_usage(struct relay *rl, const struct evkeyvalq *h,
    struct evbuffer *body)
{
	long long	v[4];

	relay_header_counts(h, v);
	if (v[0] >= 0)
		rl->in = v[0];
	if (v[1] >= 0)
		rl->out = v[1];
	if (v[2] >= 0)
		rl->cache_read = v[2];
	if (v[3] >= 0)
		rl->cache_write = v[3];
	if (strcmp(rl->name, "CountTokens") == 0) {
		rl->in = rl->out = 0;
		return;
	}
	if (body == NULL || evbuffer_get_length(body) >= RELAY_ERR_BODY_MAX)
		return;
	if (rl->flags & RELAY_OPENAI) {
		relay_usage_openai_text(rl, body);
		return;
	}
	relay_usage_from_answer(rl, (const char *)evbuffer_pullup(body, -1),
	    evbuffer_get_length(body));
	/* Bedrock's own counts, where it sent them, over the body's. */
	if (v[0] >= 0)
		rl->in = v[0];
	if (v[1] >= 0)
		rl->out = v[1];
}

/* A complete, non-streamed answer (or a streaming op's error). */
static void
relay_answer(struct relay *rl, const struct hc_result *res)
{
	struct request		*r = rl->r;
	struct evbuffer		*body;
	const struct evkeyvalq	*h;
	const char		*type;

	h = rl->errheaders_set ? &rl->errheaders : res->headers;
	body = rl->errbody != NULL ? rl->errbody : res->body;
	if (rl->errbody != NULL && res->body != NULL)
		evbuffer_add_buffer(rl->errbody, res->body);
	if (rl->status == 0)
		rl->status = res->status;
	if (rl->t_first == 0)
		rl->t_first = res->t_head > 0 ? rl->t0 + res->t_head :
		    now_mono();
	if (rl->creds != NULL && rl->attempts == 1 && relay_expired(rl, h)) {
		relay_wait_creds(rl);
		return;
	}
	if (rl->status == 200)
		relay_answer_usage(rl, h, body);
	else if (h != NULL &&
	    (type = evhttp_find_header(h, "x-amzn-ErrorType")) != NULL &&
	    strcspn(type, ":") > 0) {
		free(rl->exception);
		rl->exception = xstrndup(type, strcspn(type, ":"));
	} else if (rl->status >= 400)
		rl->outcome = "upstream_error";
	relay_copy_headers(rl, h);
	if (rl->errbody_over || (rl->errbody != NULL && res->body != NULL &&
	    evbuffer_get_length(rl->errbody) > RELAY_ERR_BODY_MAX)) {
		/* Never a truncated body that looks whole: our own words. */
		relay_log_fields(rl);
		server_error_bedrock(r, rl->status, rl->exception != NULL ?
		    rl->exception : "InternalServerException", "Bedrock "
		    "answered %d with an error body larger than %d bytes",
		    rl->status, RELAY_ERR_BODY_MAX);
		relay_finish(rl);
		return;
	}
	if (rl->status >= 400)
		r->log_error = "upstream";
	relay_log_fields(rl);
	if ((r->route->flags & RF_API) && rl->status >= 400 &&
	    !relay_api_envelope(rl, body)) {
		relay_api_error(rl, body);
		relay_finish(rl);
		return;
	}
	if ((rl->flags & RELAY_COUNT) && rl->status == 200) {
		relay_count_answer(rl, body);
		relay_finish(rl);
		return;
	}
	server_reply(r, rl->status, NULL, body);
	relay_finish(rl);
}

/* The upstream answered (or failed) completely. */
static void
relay_on_done(struct hc_req *up, const struct hc_result *res, void *arg)
{
	struct relay	*rl = arg;

	rl->up = NULL;
	if (rl->state == RS_DONE)
		return;
	if (res->error != HC_OK) {
		relay_upstream_failed(rl, res);
		return;
	}
	if (rl->state != RS_STREAMING) {
		relay_answer(rl, res);
		return;
	}
	if (rl->dec_on && es_decoder_finish(&rl->u.dec) == -1 &&
	    !rl->u.dec.failed)
		log_warnx("relay %s: the upstream stream ended inside a frame",
		    rl->r->id);
	if ((rl->flags & RELAY_TO_SSE) && !rl->saw_stop && !rl->ended) {
		/* Truncated, or cut inside a frame: say so, never end quietly. */
		free(rl->exception);
		rl->exception = xstrdup("internalServerException");
		relay_sse_error(rl, 200, NULL, "the model stream from Bedrock "
		    "ended before message_stop");
		server_stream_write(rl->r, rl->events, NULL);
	}
	relay_log_fields(rl);
	server_stream_end(rl->r);
	relay_finish(rl);
}

/*
 * The client's headers that go upstream (the allow-list), both for the
 * signature and for the request; -1 if there are too many.
 */
static int
relay_forward_headers(struct relay *rl, struct sigv4_header *sh, size_t *ns,
    struct hc_header *hdr, size_t *nh)
{
	struct evkeyvalq	*in;
	struct evkeyval		*kv;

	in = evhttp_request_get_input_headers(rl->r->http);
	TAILQ_FOREACH(kv, in, next) {
		if (!relay_header_forwarded(rl, kv->key))
			continue;
		if (rl->meta_header != NULL && strcasecmp(kv->key,
		    RELAY_META_HEADER) == 0)
			continue;	/* merged into ours */
		if (*ns == SIGV4_MAX_HEADERS)
			return (-1);
		sh[*ns].name = kv->key;
		sh[*ns].value = kv->value;
		(*ns)++;
		hdr[*nh].name = kv->key;
		hdr[*nh].value = kv->value;
		(*nh)++;
	}
	if (rl->meta_header != NULL) {
		if (*ns == SIGV4_MAX_HEADERS)
			return (-1);
		sh[*ns].name = RELAY_META_HEADER;
		sh[*ns].value = rl->meta_header;
		(*ns)++;
		hdr[*nh].name = RELAY_META_HEADER;
		hdr[*nh].value = rl->meta_header;
		(*nh)++;
	}
	return (0);
}

/* The user's role session could not be had: a clean answer by class. */
static void
relay_role_failed(struct relay *rl, int cls)
{
	struct request	*r = rl->r;
	int		 code = 503;
	const char	*type = "ServiceUnavailableException";

	switch (cls) {
	case AWS_CALL_DENIED:
		code = 403;
		type = "AccessDeniedException";
		break;
	case AWS_CALL_THROTTLED:
		type = "ThrottlingException";
		break;
	case AWS_CALL_CLIENT:
		code = 500;
		type = "InternalServerException";
		break;
	}
	rl->outcome = "user_role_failed";
	relay_log_fields(rl);
	server_error_bedrock(r, code, type, "the proxy could not assume your "
	    "AWS role (%s); its log has the details under request id %s",
	    aws_call_class_name((enum aws_call_class)cls), r->id);
	relay_finish(rl);
}

/* The user's role session arrived (or did not): send, or answer. */
static void
relay_role_cb(struct aws_creds *c, int cls, const char *msg, void *arg)
{
	struct relay	*rl = arg;

	rl->rwait = NULL;
	if (c != NULL)
		aws_creds_unref(c);	/* the cache has it now */
	if (rl->state != RS_WAIT_ROLE)
		return;
	if (c == NULL) {
		relay_role_failed(rl, cls);
		return;
	}
	relay_send(rl);
}

/*
 * rl->creds from the user's role session: 0 when in hand, 1 when it is
 * being made (relay_role_cb sends), -1 when the request was answered.
 */
static int
relay_user_role(struct relay *rl)
{
	struct request	*r = rl->r;
	int		 rc, cls = AWS_CALL_SERVER;

	rc = awsrole_user_get(r->cfg, r->principal, &rl->creds, &cls,
	    relay_role_cb, rl, &rl->rwait);
	if (rc == 1) {
		rl->user_role = 1;
		return (0);
	}
	if (rc == 0) {
		relay_enter(rl, RS_WAIT_ROLE);
		return (1);
	}
	relay_role_failed(rl, cls);
	return (-1);
}

/*
 * Sign this attempt with the current AWS credentials (kept in rl->creds,
 * to tell AWS's "expired" apart from a refresh): 0; 1 while the user's
 * role session is being made (relay_send is called again); -1 when the
 * request has been answered.
 */
static int
relay_sign(struct relay *rl, const uint8_t *body, size_t blen,
    const struct sigv4_header *sh, size_t ns, struct sigv4_result *sres)
{
	struct request		*r = rl->r;
	struct config		*c = r->cfg;
	struct sigv4_request	 sreq;
	struct sigv4_creds	 sc;
	const char		*err;

	if (rl->creds != NULL)
		aws_creds_unref(rl->creds);
	rl->creds = NULL;
	rl->user_role = 0;
	if (c->aws_user_role_arn != NULL) {
		switch (relay_user_role(rl)) {
		case 0:
			break;
		case 1:
			return (1);	/* waiting for the user's session */
		default:
			return (-1);
		}
	} else if ((rl->creds = aws_creds_get()) == NULL) {
		rl->outcome = "no_credentials";
		server_error_bedrock(r, 503, "ServiceUnavailableException",
		    "the proxy has no AWS credentials: %s",
		    aws_creds_problem());
		relay_finish(rl);
		return (-1);
	}
	memset(&sreq, 0, sizeof sreq);
	sreq.method = "POST";
	sreq.host = hc_target_host(rel.target);
	sreq.path = rl->path;
	sreq.query = NULL;
	sreq.headers = sh;
	sreq.nheaders = ns;
	sreq.payload = body;
	sreq.payload_len = blen;
	sreq.region = c->aws_region;
	sreq.service = rl->service;
	sreq.when = now_wall();
	sreq.flags = SIGV4_CONTENT_SHA256;
	sc.access_key_id = rl->creds->access_key_id;
	sc.secret_access_key = rl->creds->secret_access_key;
	sc.session_token = rl->creds->session_token;
	if (sigv4_sign(&sreq, &sc, sres, &err) == -1) {
		log_warnx("relay %s: cannot sign: %s", r->id, err);
		rl->outcome = "bad_request";
		server_error_bedrock(r, 400, "ValidationException",
		    "the request cannot be signed: %s", err);
		relay_finish(rl);
		return (-1);
	}
	return (0);
}

/* Hand the request to the HTTP client, with the timeouts of its kind. */
static void
relay_start(struct relay *rl, const struct hc_header *hdr, size_t nh,
    const uint8_t *body, size_t blen)
{
	struct request		*r = rl->r;
	struct config		*c = r->cfg;
	struct hc_request	 hreq;
	struct hc_timeouts	 to;
	char			*cause = NULL;

	to.connect_ms = c->to_upstream_connect * 1000;
	to.first_byte_ms = c->to_upstream_first_byte * 1000;
	to.idle_ms = ((rl->flags & RELAY_STREAM) ? c->to_stream_idle :
	    c->to_upstream_first_byte) * 1000;
	to.total_ms = HC_TIMEOUT_NONE;
	hc_request_init(&hreq, "POST", rl->path, hdr, nh, body, blen,
	    (rl->flags & RELAY_STREAM) ? 0 : RELAY_MAX_BODY, &to,
	    relay_on_done, rl);
	/* Our body (or none), not a copy of it: the client takes a
	 * reference. */
	hreq.shared_body = rl->body;
	if (rl->flags & RELAY_STREAM) {
		hreq.flags = HC_STREAM;
		hreq.on_head = relay_on_head;
		hreq.on_data = relay_on_data;
	}
	rl->attempts++;
	rl->status = 0;
	rl->t_first = 0;
	if ((rl->up = hc_start(rel.target, &hreq, &cause)) == NULL) {
		log_warnx("relay %s: %s", r->id, cause);
		rl->outcome = "internal";
		server_error_bedrock(r, 500, "InternalServerException",
		    "cannot send the request upstream");
		free(cause);
		relay_finish(rl);
		return;
	}
	relay_enter(rl, RS_SENT);
}

/* Sign (or not) and send the request upstream. */
static void
relay_send(struct relay *rl)
{
	struct request		*r = rl->r;
	struct hc_header	 hdr[RELAY_MAX_HEADERS];
	struct sigv4_header	 sh[SIGV4_MAX_HEADERS];
	struct sigv4_result	 sres;
	const uint8_t		*body;
	size_t			 blen, nh = 0, ns = 0, i;
	char			*bearer = NULL;

	if (rl->body != NULL) {
		body = hc_body_data(rl->body);
		blen = hc_body_len(rl->body);
	} else if (server_body(r, &body, &blen) == -1) {
		rl->outcome = "bad_request";
		server_error_bedrock(r, 400, "ValidationException",
		    "cannot read the request body");
		relay_finish(rl);
		return;
	} else if (blen > 0) {
		/*
		 * The body as an allocation of its own (a send again after a
		 * refusal reads it here): the input buffer's chunk, the size
		 * of the read the body came in, is let go instead of being
		 * held for the whole of a stream. The HTTP client sends
		 * this one, not a copy of its own.
		 */
		rl->body = hc_body_new(body, blen);
		body = hc_body_data(rl->body);
		server_body_release(r);
	}
	if (relay_forward_headers(rl, sh, &ns, hdr, &nh) == -1) {
		rl->outcome = "bad_request";
		server_error_bedrock(r, 400, "ValidationException",
		    "too many X-Amzn-Bedrock headers");
		relay_finish(rl);
		return;
	}
	if (r->cfg->aws_bearer_token != NULL) {
		xasprintf(&bearer, "Bearer %s", r->cfg->aws_bearer_token);
		hdr[nh].name = "Authorization";
		hdr[nh].value = bearer;
		nh++;
	} else {
		if (relay_sign(rl, body, blen, sh, ns, &sres) != 0)
			return;
		for (i = 0; i < sres.nout; i++)
			hdr[nh++] = (struct hc_header){ sres.out[i].name,
			    sres.out[i].value };
	}
	hdr[nh].name = "User-Agent";
	hdr[nh].value = BSP_NAME "/" PACKAGE_VERSION;
	nh++;
	relay_start(rl, hdr, nh, body, blen);
	freezero_str(bearer);
}

static const struct relay_op *
relay_op_find(const struct route *rt)
{
	size_t	i;

	for (i = 0; i < nitems(relay_ops); i++) {
		if (strcmp(relay_ops[i].route, rt->name) == 0)
			return (&relay_ops[i]);
	}
	return (NULL);
}

/* An id byte: a letter, a digit or one of "-._:/" (ASCII only). */
static int
relay_id_char(int c)
{
	return ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
	    (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' ||
	    c == ':' || c == '/');
}

/*
 * A Bedrock path label from the wire (a model id, a guardrail id or
 * version), percent-decoded once and checked; NULL with *why (static,
 * safe to show) if it is not one. What is left may hold only letters,
 * digits and "-._:/", which every model id, inference profile and ARN that
 * Bedrock defines is made of, and none of its '/'-separated segments may be
 * empty, "." or "..". So no server on the way can resolve it into another
 * path, and a second level of encoding ("%252F" leaves a '%'), backslashes,
 * controls, NUL and bytes outside ASCII never get through.
 */
char *
relay_id_decode(const char *p, size_t len, size_t max, const char **why)
{
	char		*id;
	const char	*s;
	size_t		 n;

	if ((id = pct_decode_segment(p, len, max)) == NULL) {
		*why = "empty, too long, bad percent-encoding or not printable "
		    "ASCII";
		return (NULL);
	}
	*why = NULL;
	for (s = id; *s != '\0' && *why == NULL; s++) {
		if (!relay_id_char((unsigned char)*s))
			*why = "only letters, digits and -._:/ may be used";
	}
	for (s = id; *why == NULL; s += n + 1) {
		n = strcspn(s, "/");
		if (n == 0 || (n == 1 && s[0] == '.') ||
		    (n == 2 && s[0] == '.' && s[1] == '.'))
			*why = "an empty, \".\" or \"..\" segment";
		else if (s[n] == '\0')
			break;
	}
	if (*why != NULL) {
		free(id);
		return (NULL);
	}
	return (id);
}

/*
 * The upstream path: the endpoint's own path, then the route's pattern with
 * each "{}" replaced by its checked label as the AWS SDKs encode it.
 */
static char *
relay_upstream_path(const char *pattern, char *const *label, size_t n)
{
	const char	*base, *p, *brace;
	char		*path, *enc;
	size_t		 blen = 0, i = 0, len, size, elen, plen;

	base = hc_target_path(rel.target);
	if (base != NULL) {
		blen = strlen(base);
		while (blen > 0 && base[blen - 1] == '/')
			blen--;
	}
	/* Room for the base and the pattern; each label adds its own. */
	size = blen + strlen(pattern) + 1;
	path = xmalloc(size);
	if (blen > 0)
		memcpy(path, base, blen);
	len = blen;
	for (p = pattern; (brace = strstr(p, "{}")) != NULL; p = brace + 2) {
		if (i == n ||
		    (enc = sigv4_uri_encode(label[i], strlen(label[i]))) ==
		    NULL) {
			free(path);
			return (NULL);
		}
		elen = strlen(enc);
		size += elen;
		path = xreallocarray(path, 1, size);
		plen = (size_t)(brace - p);
		memcpy(path + len, p, plen);
		memcpy(path + len + plen, enc, elen);
		len += plen + elen;
		free(enc);
		i++;
	}
	memcpy(path + len, p, strlen(p) + 1);
	return (path);
}

/* A relay for a request: its owner struct, freed with the request. */
static struct relay *
relay_new(struct request *r)
{
	struct relay	*rl;

	rl = xcalloc(1, sizeof *rl);
	rl->r = r;
	rl->t0 = now_mono();
	rl->in = rl->out = rl->cache_read = rl->cache_write = -1;
	rl->cache_write_1h = -1;
	r->state = rl;
	r->state_free = relay_free;
	return (rl);
}

/*
 * The budgets: the call's worst case reserved against every cap that
 * applies, or a refusal (429 naming the cap and when it resets; Anthropic
 * routes' billing_error with x-should-retry: false). CountTokens and
 * guardrails cost no model tokens and pass. 0, or -1 when answered.
 */
static int
relay_budget(struct relay *rl)
{
	struct request		*r = rl->r;
	struct budget_note	 note;
	struct budget_refusal	 why;
	const uint8_t		*body = NULL;
	size_t			 blen = 0;
	char			 buf[32];
	long long		 retry;

	if ((rl->flags & RELAY_COUNT) || (rl->op != NULL &&
	    (!rl->op->has_model || strcmp(rl->op->name, "CountTokens") == 0)))
		return (0);
	if (rl->body != NULL) {
		body = hc_body_data(rl->body);
		blen = hc_body_len(rl->body);
	} else if (server_body(r, &body, &blen) == -1) {
		body = NULL;
		blen = 0;
	}
	if (budget_admit(r->cfg, r->principal, rl->model, body, blen,
	    now_wall(), &rl->hold, &note, &why) == 0) {
		if (note.have) {
			server_set_header(r, "X-Budget-Remaining-USD",
			    note.remaining);
			server_set_header(r, "X-Budget-Window", note.window);
			server_set_header(r, "X-Budget-Name", note.cap);
			server_set_header(r, "X-Budget-Resets-At", note.resets);
		}
		if (note.warn[0] != '\0')
			server_set_header(r, "X-Budget-Warning", note.warn);
		return (0);
	}
	if (why.code == 429) {
		retry = (long long)why.resets - (long long)now_wall();
		snprintf(buf, sizeof buf, "%lld", retry > 0 ? retry : 1);
		server_set_header(r, "Retry-After", buf);
		if (why.cap != NULL)
			server_set_header(r, "X-Budget-Name", why.cap);
		server_set_header(r, "X-Budget-Remaining-USD", "0.000000");
	}
	if (why.code == 429 && (r->route->flags & RF_API)) {
		server_set_header(r, "x-should-retry", "false");
		server_error_api(r, 429, (r->route->flags & RF_OPENAI) ?
		    "insufficient_quota" : "billing_error", "%s", why.msg);
	} else
		server_error_bedrock(r, why.code, why.code == 429 ?
		    "ThrottlingException" : why.code == 503 ?
		    "ServiceUnavailableException" : "ValidationException",
		    "%s", why.msg);
	return (-1);
}

/*
 * aws.request_metadata: the caller's identity as Bedrock request metadata,
 * merged with the client's: the header on InvokeModel (and the Anthropic
 * routes that use it), the body's requestMetadata on Converse. 0, or -1
 * when the request was answered (a client's metadata that cannot be
 * merged).
 */
static int
relay_metadata(struct relay *rl)
{
	struct request	*r = rl->r;
	json_t		*ours;
	const uint8_t	*body;
	uint8_t		*nb;
	size_t		 blen, nlen;
	const char	*why = NULL, *name = rl->name;
	int		 header, rc = 0;

	header = (rl->flags & RELAY_META) || strcmp(name, "InvokeModel") == 0 ||
	    strcmp(name, "InvokeModelWithResponseStream") == 0;
	if (!header && (rl->op == NULL || (strcmp(name, "Converse") != 0 &&
	    strcmp(name, "ConverseStream") != 0)))
		return (0);
	ours = awsid_metadata(r->cfg, r->principal, rl->session);
	if (json_object_size(ours) == 0) {
		json_decref(ours);
		return (0);
	}
	if (header) {
		if ((rl->meta_header = awsid_metadata_header(ours,
		    server_header(r, RELAY_META_HEADER), &why)) == NULL)
			rc = -1;
	} else if (server_body(r, &body, &blen) == -1 ||
	    awsid_metadata_body(ours, body, blen, &nb, &nlen, &why) == -1)
		rc = -1;
	else {
		hc_body_unref(rl->body);
		rl->body = hc_body_take(nb, nlen);
	}
	json_decref(ours);
	if (rc == -1) {
		rl->outcome = "bad_request";
		server_error_bedrock(r, 400, "ValidationException", "%s",
		    why != NULL ? why : "cannot read the request body");
	}
	return (rc);
}

/*
 * The gate every relayed call passes once its model is known: the model
 * policy (a denial is a 403 in Bedrock's words, a 400 in the Anthropic
 * and OpenAI APIs'), the rate limits; then the call goes upstream.
 */
static void
relay_go(struct relay *rl)
{
	struct request	*r = rl->r;
	const char	*why, *sid;
	long long	 retry;
	char		 buf[32];

	request_set_model(r, rl->model, strlen(rl->model));
	/* Taken now: the inbound request may be gone when the row is made. */
	if ((sid = server_header(r, "X-Claude-Code-Session-Id")) != NULL &&
	    strlen(sid) <= 128 && str_is_printable(sid, strlen(sid)))
		rl->session = xstrdup(sid);
	if (!policy_model_allowed(r->cfg, r->principal, rl->model, &why)) {
		server_error_bedrock(r, (r->route->flags & RF_API) ? 400 : 403,
		    "AccessDeniedException", "%s: %s", why, rl->model);
		return;
	}
	if (!ratelimit_check(r->cfg, r->principal, &retry)) {
		snprintf(buf, sizeof buf, "%lld", retry);
		server_set_header(r, "Retry-After", buf);
		server_error_bedrock(r, 429, "ThrottlingException",
		    "rate limit exceeded; retry in %lld seconds", retry);
		return;
	}
	/* The metadata may grow the body the budget's worst case is read from. */
	if (r->cfg->aws_request_metadata.n > 0 && relay_metadata(rl) == -1)
		return;
	if (relay_budget(rl) == -1)
		return;
	request_ref(r);
	r->on_abort = relay_abort;
	relay_send(rl);
}

/* Every Bedrock runtime route: the gate, then the relay. */
void
route_bedrock(struct request *r)
{
	struct relay		*rl;
	const struct relay_op	*op = relay_op_find(r->route);
	const char		*why;
	char			*label[REQUEST_MAX_PARAMS];
	size_t			 i, n;

	if (op == NULL) {
		server_error_bedrock(r, 500, "InternalServerException",
		    "unknown operation");
		return;
	}
	rl = relay_new(r);
	rl->op = op;
	rl->name = op->name;
	rl->flags = op->stream ? RELAY_STREAM : 0;
	rl->service = "bedrock";

	/* The ids, decoded and checked; all else derives from them. */
	n = r->nparams;
	for (i = 0; i < n; i++) {
		label[i] = relay_id_decode(r->params[i].p, r->params[i].len,
		    RELAY_MODEL_MAX, &why);
		if (label[i] == NULL) {
			while (i > 0)
				free(label[--i]);
			server_error_bedrock(r, 400, "ValidationException",
			    "malformed %s: %s", op->has_model ?
			    "model identifier" :
			    "guardrail identifier or version", why);
			return;
		}
	}
	if (n != (op->has_model ? 1U : 2U) ||
	    (rl->path = relay_upstream_path(r->route->pattern, label, n)) ==
	    NULL) {
		for (i = 0; i < n; i++)
			free(label[i]);
		server_error_bedrock(r, 400, "ValidationException",
		    "the request path cannot be relayed");
		return;
	}
	/* A guardrail is gated as the id guardrail:ID. */
	if (op->has_model)
		rl->model = label[0];
	else {
		xasprintf(&rl->model, "guardrail:%s", label[0]);
		free(label[0]);
	}
	for (i = 1; i < n; i++)
		free(label[i]);
	relay_go(rl);
}

/*
 * A call for another front end (route-anthropic.c, route-openai.c): its
 * operation name, flags, Bedrock id (already checked, relay_model_check),
 * upstream path below the endpoint's own, signing name, body (taken) and
 * forwarded headers; then the same gate and relay as Bedrock's routes.
 */
void
relay_call(struct request *r, struct relay_call *call)
{
	struct relay	*rl;

	rl = relay_new(r);
	rl->name = call->name;
	rl->flags = call->flags;
	rl->service = call->service;
	rl->fwd = call->headers;
	if (call->body != NULL)
		rl->body = hc_body_take(call->body, call->body_len);
	call->body = NULL;
	rl->model = xstrdup(call->model);
	if ((rl->path = relay_upstream_path(call->path, NULL, 0)) == NULL) {
		server_error_bedrock(r, 500, "InternalServerException",
		    "the request path cannot be relayed");
		return;
	}
	relay_go(rl);
}

/*
 * A Bedrock id that came from a body or the alias table, held to the
 * checks of the ids in Bedrock paths (relay_id_decode), with no percent
 * sign at all: an xstrdup'd copy, or NULL with *why.
 */
char *
relay_model_check(const char *id, const char **why)
{
	if (strchr(id, '%') != NULL) {
		*why = "only letters, digits and -._:/ may be used";
		return (NULL);
	}
	return (relay_id_decode(id, strlen(id), RELAY_MODEL_MAX, why));
}

/* InvokeModelWithBidirectionalStream needs HTTP/2; evhttp speaks 1.1. */
void
route_bidi_stream(struct request *r)
{
	server_error_bedrock(r, 501, "ValidationException",
	    "InvokeModelWithBidirectionalStream needs HTTP/2, which this "
	    "proxy does not offer");
}

/*
 * Claude Code asks the control plane for inference profiles before it
 * infers; a 404 in Bedrock's shape makes it carry on with the model id.
 */
void
route_inference_profiles(struct request *r)
{
	server_error_bedrock(r, 404, "ResourceNotFoundException",
	    "inference profiles are not served by this proxy");
}
