/*
 * fuzz-relay-usage.c: libFuzzer target for the relay's reading of what
 * Bedrock sends back: the side reader of a streamed answer (relay_feed()
 * and relay_frame(): event and exception types, the {"bytes":"<base64>"}
 * chunks found by relay_relay_chunk_bytes() without a parser, their decoded JSON, the
 * ConverseStream metadata) and the usage of a whole answer read from its
 * text (relay_usage_from_answer()), and the x-amzn-ErrorType test of
 * relay_expired(). These functions are static, so route-bedrock.c is
 * compiled into this file.
 *
 * The first input byte picks how the rest is used: as raw event-stream
 * bytes; or split at 0xff bytes into payloads, each sent as a chunk frame
 * as it is, as a chunk frame whose "bytes" are the payload in base64, or
 * as a frame whose event or message type its first byte picks. Whatever
 * the mode, the rest is also read as a whole answer and as an error type.
 *
 * Oracles that abort: a stream fed in one buffer and one fed byte by byte
 * give the same counts and exception; every count is -1 (absent) or not
 * negative; a span relay_chunk_bytes() finds lies inside the payload and, when
 * jansson loads the payload as an object (without duplicate names), is
 * exactly its "bytes" string; relay_relay_usage_from_answer() agrees with jansson's
 * reading of the same answer whenever jansson loads it without duplicate
 * names (an answer with a NUL byte is left out: jansson 2.14 drops a NUL
 * after a number); relay_expired() says yes only for a status of 400 or
 * 403 and a type that names one of the three expired-credential errors.
 */

#include "route-bedrock.c"

#define FZ_MAX_RECORDS	64

int		 LLVMFuzzerTestOneInput(const uint8_t *, size_t);
static void	 fz_relay_init(struct relay *);
static void	 fz_relay_free(struct relay *);
static void	 fz_same(const struct relay *, const struct relay *);
static void	 fz_counts(const struct relay *);
static size_t	 fz_frame(uint8_t *, size_t *, size_t, const char *,
		    const char *, const uint8_t *, size_t);
static void	 fz_chunk_bytes(const uint8_t *, size_t);
static void	 fz_stream(const uint8_t *, size_t);
static void	 fz_answer(const uint8_t *, size_t);
static void	 fz_expired(const uint8_t *, size_t);

static void
fz_relay_init(struct relay *rl)
{
	memset(rl, 0, sizeof *rl);
	rl->in = rl->out = rl->cache_read = rl->cache_write = -1;
	es_decoder_init(&rl->u.dec, 0, relay_frame, rl);
	rl->dec_on = 1;
}

static void
fz_relay_free(struct relay *rl)
{
	es_decoder_free(&rl->u.dec);
	free(rl->exception);
}

static void
fz_counts(const struct relay *rl)
{
	if (rl->in < -1 || rl->out < -1 || rl->cache_read < -1 ||
	    rl->cache_write < -1)
		abort();
}

static void
fz_same(const struct relay *a, const struct relay *b)
{
	fz_counts(a);
	fz_counts(b);
	if (a->in != b->in || a->out != b->out ||
	    a->cache_read != b->cache_read ||
	    a->cache_write != b->cache_write ||
	    a->have_metrics != b->have_metrics ||
	    (a->exception == NULL) != (b->exception == NULL) ||
	    (a->exception != NULL && strcmp(a->exception, b->exception) != 0))
		abort();
}

/* Append one frame with the given message and event types. */
static size_t
fz_frame(uint8_t *buf, size_t *len, size_t cap, const char *mtype,
    const char *etype, const uint8_t *payload, size_t plen)
{
	struct es_header	 h[3];
	size_t			 n = 0, flen;

	memset(h, 0, sizeof h);
	h[n].name = ES_H_MESSAGE_TYPE;
	h[n].name_len = strlen(ES_H_MESSAGE_TYPE);
	h[n].type = ES_TYPE_STRING;
	h[n].data = (const uint8_t *)mtype;
	h[n++].len = strlen(mtype);
	h[n].name = strcmp(mtype, "event") == 0 ? ES_H_EVENT_TYPE :
	    strcmp(mtype, "error") == 0 ? ES_H_ERROR_CODE :
	    ES_H_EXCEPTION_TYPE;
	h[n].name_len = strlen(h[n].name);
	h[n].type = ES_TYPE_STRING;
	h[n].data = (const uint8_t *)etype;
	h[n++].len = strlen(etype);
	h[n].name = ES_H_CONTENT_TYPE;
	h[n].name_len = strlen(ES_H_CONTENT_TYPE);
	h[n].type = ES_TYPE_STRING;
	h[n].data = (const uint8_t *)"application/json";
	h[n++].len = strlen("application/json");

	flen = es_encoded_len(h, n, plen);
	if (flen == 0 || *len + flen > cap)
		return (0);
	if (es_encode(h, n, payload, plen, buf + *len, flen) != flen)
		abort();
	*len += flen;
	return (flen);
}

/* The fast reader's span is the "bytes" string jansson reads. */
static void
fz_chunk_bytes(const uint8_t *p, size_t len)
{
	const char	*s;
	size_t		 slen;
	json_t		*j, *b;

	if ((s = relay_chunk_bytes(p, len, &slen)) == NULL)
		return;
	if (s < (const char *)p || s + slen > (const char *)p + len ||
	    memchr(s, '"', slen) != NULL || memchr(s, '\\', slen) != NULL)
		abort();
	if ((j = json_loadb((const char *)p, len, JSON_REJECT_DUPLICATES,
	    NULL)) == NULL)
		return;
	if (json_is_object(j)) {
		b = json_object_get(j, "bytes");
		if (!json_is_string(b) || json_string_length(b) != slen ||
		    memcmp(json_string_value(b), s, slen) != 0)
			abort();
	}
	json_decref(j);
}

static void
fz_stream(const uint8_t *data, size_t size)
{
	static const char *const types[][2] = {
		{ "event", "chunk" }, { "event", "metadata" },
		{ "event", "messageStart" }, { "exception",
		"throttlingException" }, { "error", "InternalFailure" },
		{ "exception", "" }, { "other", "chunk" },
	};
	struct relay	 a, b;
	struct evbuffer	*eb;
	const uint8_t	*p, *end, *sep;
	uint8_t		*stream = NULL;
	char		*b64, *wrap;
	size_t		 len = 0, cap, n, i, rec = 0;
	int		 mode;

	if (size < 1)
		return;
	mode = data[0] % 4;
	p = data + 1;
	end = data + size;

	if (mode == 0) {
		stream = xmalloc(size);
		memcpy(stream, p, (size_t)(end - p));
		len = (size_t)(end - p);
	} else {
		cap = 4 * size + FZ_MAX_RECORDS * 256;
		stream = xmalloc(cap);
		while (p <= end && rec++ < FZ_MAX_RECORDS) {
			if ((sep = memchr(p, 0xff, (size_t)(end - p))) == NULL)
				sep = end;
			n = (size_t)(sep - p);
			if (mode == 1) {
				fz_chunk_bytes(p, n);
				(void)fz_frame(stream, &len, cap, "event",
				    "chunk", p, n);
			} else if (mode == 2) {
				b64 = crypto_b64_encode_alloc(p, n);
				xasprintf(&wrap,
				    "{\"bytes\":\"%s\",\"p\":\"x\"}", b64);
				fz_chunk_bytes((uint8_t *)wrap, strlen(wrap));
				(void)fz_frame(stream, &len, cap, "event",
				    "chunk", (uint8_t *)wrap, strlen(wrap));
				free(wrap);
				free(b64);
			} else if (n > 0) {
				i = p[0] % nitems(types);
				fz_chunk_bytes(p + 1, n - 1);
				(void)fz_frame(stream, &len, cap, types[i][0],
				    types[i][1], p + 1, n - 1);
			}
			if (sep == end)
				break;
			p = sep + 1;
		}
	}

	/* One buffer through relay_feed(), and byte by byte. */
	fz_relay_init(&a);
	fz_relay_init(&b);
	if ((eb = evbuffer_new()) == NULL)
		abort();
	n = len / 2;
	evbuffer_add(eb, stream, n);
	evbuffer_add(eb, stream + n, len - n);
	relay_feed(&a, eb);
	evbuffer_free(eb);
	for (i = 0; i < len && !b.u.dec.failed; i++)
		es_decoder_feed(&b.u.dec, stream + i, 1);
	if (a.u.dec.failed != b.u.dec.failed)
		abort();
	fz_same(&a, &b);
	(void)es_decoder_finish(&a.u.dec);
	fz_relay_free(&a);
	fz_relay_free(&b);
	free(stream);
}

/* The text reader and jansson read the same usage from an answer. */
static void
fz_answer(const uint8_t *data, size_t size)
{
	struct relay	 a, b;
	json_t		*j;

	memset(&a, 0, sizeof a);
	a.in = a.out = a.cache_read = a.cache_write = -1;
	b = a;
	relay_usage_from_answer(&a, (const char *)data, size);
	fz_counts(&a);
	if (memchr(data, '\0', size) != NULL ||
	    (j = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES,
	    NULL)) == NULL)
		return;
	if (json_is_object(j))
		relay_usage_from_json(&b, json_object_get(j, "usage"), 1);
	json_decref(j);
	if (a.in != b.in || a.out != b.out || a.cache_read != b.cache_read ||
	    a.cache_write != b.cache_write)
		abort();
}

static void
fz_expired(const uint8_t *data, size_t size)
{
	struct relay	 rl;
	struct evkeyvalq h;
	char		*v;
	int		 status;

	v = xmemdup0(data, size);
	TAILQ_INIT(&h);
	if (evhttp_add_header(&h, "x-amzn-ErrorType", v) == 0) {
		for (status = 399; status <= 403; status++) {
			memset(&rl, 0, sizeof rl);
			rl.status = status;
			if (relay_expired(&rl, &h) && ((status != 400 &&
			    status != 403) ||
			    (strstr(v, "ExpiredToken") == NULL &&
			    strstr(v, "UnrecognizedClientException") == NULL)))
				abort();
		}
	}
	evhttp_clear_headers(&h);
	free(v);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1 || size > 256 * 1024)
		return (0);
	fz_stream(data, size);
	fz_answer(data + 1, size - 1);
	fz_expired(data + 1, size - 1);
	return (0);
}
