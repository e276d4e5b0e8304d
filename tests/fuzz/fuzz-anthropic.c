/*
 * fuzz-anthropic.c: libFuzzer target for what the Anthropic front end
 * reads from the network: request bodies (anthropic_read and
 * anthropic_rewrite, src/anthropic.c), stream chunks re-emitted as
 * server-sent events (anthropic_sse_event) and upstream server-sent events
 * (the reader of src/sse.c).
 *
 * Oracles that abort. jansson is the judge of bodies: a body that
 * anthropic_read() takes is rewritten both ways (InvokeModel: model and
 * stream out, anthropic_version and anthropic_beta in unless present;
 * native: the model replaced), and each result loads in jansson with
 * every other member equal to the original's. An event's data lines put
 * back together are the chunk with its line ends made LF, under a type of
 * safe characters. The reader dispatches the same events whether the
 * input comes whole or in three pieces, and never more data than its
 * limit.
 */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <jansson.h>

#include "bsp.h"
#include "anthropic.h"
#include "sse.h"

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

#define FZ_CHECK(c) do {						\
	if (!(c)) {							\
		fprintf(stderr, "oracle failed: %s (line %d)\n", #c,	\
		    __LINE__);						\
		abort();						\
	}								\
} while (0)

#define FZ_SSE_MAX	64

/* Every member of orig but skip is in out, equal. */
static void
fz_same_members(json_t *orig, json_t *out, const char *const *skip)
{
	const char		*k;
	json_t			*v;
	const char *const	*s;

	json_object_foreach(orig, k, v) {
		for (s = skip; *s != NULL && strcmp(*s, k) != 0; s++)
			;
		if (*s != NULL)
			continue;
		FZ_CHECK(json_equal(v, json_object_get(out, k)));
	}
}

static void
fz_body(const uint8_t *data, size_t size)
{
	static const char *const skip_invoke[] = {
		"model", "stream", "anthropic_version", "anthropic_beta", NULL
	};
	static const char *const skip_native[] = { "model", NULL };
	struct anthropic_req	 req;
	struct anthropic_edit	 ed;
	const char		*why;
	uint8_t			*out;
	size_t			 outlen;
	json_t			*orig, *j, *v;

	if (anthropic_read(data, size, &req, &why) == -1) {
		FZ_CHECK(why != NULL);
		return;
	}
	orig = json_loadb((const char *)data, size, 0, NULL);
	FZ_CHECK(json_is_object(orig));
	FZ_CHECK(strcmp(json_string_value(json_object_get(orig, "model")),
	    req.model) == 0);

	memset(&ed, 0, sizeof ed);
	ed.drop_model = ed.drop_stream = 1;
	ed.version = "bedrock-2023-05-31";
	ed.betas = "b1, b2";
	if (anthropic_rewrite(data, size, &ed, &out, &outlen, &why) == 0) {
		j = json_loadb((const char *)out, outlen, 0, NULL);
		FZ_CHECK(json_is_object(j));
		FZ_CHECK(json_object_get(j, "model") == NULL);
		FZ_CHECK(json_object_get(j, "stream") == NULL);
		v = json_object_get(j, "anthropic_version");
		FZ_CHECK(req.has_version ? json_equal(v,
		    json_object_get(orig, "anthropic_version")) :
		    strcmp(json_string_value(v), ed.version) == 0);
		v = json_object_get(j, "anthropic_beta");
		FZ_CHECK(req.has_beta ? json_equal(v,
		    json_object_get(orig, "anthropic_beta")) :
		    json_array_size(v) == 2);
		fz_same_members(orig, j, skip_invoke);
		json_decref(j);
		free(out);
	}
	memset(&ed, 0, sizeof ed);
	ed.model = "us.anthropic.claude-x";
	if (anthropic_rewrite(data, size, &ed, &out, &outlen, &why) == 0) {
		j = json_loadb((const char *)out, outlen, 0, NULL);
		FZ_CHECK(json_is_object(j));
		FZ_CHECK(strcmp(json_string_value(json_object_get(j, "model")),
		    ed.model) == 0);
		fz_same_members(orig, j, skip_native);
		json_decref(j);
		free(out);
	}
	json_decref(orig);
	anthropic_req_clear(&req);
}

static void
fz_event(const uint8_t *data, size_t size)
{
	struct evbuffer	*b;
	char		 type[ANTHROPIC_TYPE_MAX], *s, *line, *p;
	size_t		 n, i;
	struct evbuffer	*want, *got;

	if ((b = evbuffer_new()) == NULL)
		abort();
	if (anthropic_sse_event(b, data, size, type, sizeof type) == 0) {
		FZ_CHECK(evbuffer_get_length(b) == 0);
		evbuffer_free(b);
		return;
	}
	FZ_CHECK(type[0] != '\0');
	for (i = 0; type[i] != '\0'; i++)
		FZ_CHECK(strchr("abcdefghijklmnopqrstuvwxyz0123456789_.",
		    type[i]) != NULL);
	n = evbuffer_get_length(b);
	s = xmalloc(n + 1);
	evbuffer_remove(b, s, n);
	s[n] = '\0';
	FZ_CHECK(n >= 2 && s[n - 1] == '\n' && s[n - 2] == '\n');
	s[n - 2] = '\0';
	want = evbuffer_new();
	got = evbuffer_new();
	for (i = 0; i < size; i++) {
		if (data[i] == '\r' && i + 1 < size && data[i + 1] == '\n')
			continue;
		evbuffer_add(want, data[i] == '\r' ? "\n" : (const char *)
		    &data[i], 1);
	}
	p = s;
	line = strsep(&p, "\n");
	FZ_CHECK(strncmp(line, "event: ", 7) == 0 &&
	    strcmp(line + 7, type) == 0);
	i = 0;
	while ((line = strsep(&p, "\n")) != NULL) {
		FZ_CHECK(strncmp(line, "data: ", 6) == 0);
		if (i++ > 0)
			evbuffer_add(got, "\n", 1);
		evbuffer_add(got, line + 6, strlen(line + 6));
	}
	/* A chunk may hold NUL bytes; compare what strsep could see. */
	if (memchr(data, '\0', size) == NULL)
		FZ_CHECK(evbuffer_get_length(want) ==
		    evbuffer_get_length(got) && (evbuffer_get_length(got) == 0 ||
		    memcmp(evbuffer_pullup(want, -1), evbuffer_pullup(got, -1),
		    evbuffer_get_length(got)) == 0));
	evbuffer_free(want);
	evbuffer_free(got);
	evbuffer_free(b);
	free(s);
}

/* The events a reader dispatched, each as name, NUL, length, data. */
static void
fz_sse_cb(void *arg, const char *event, const char *data, size_t len)
{
	struct evbuffer	*log = arg;

	FZ_CHECK(len <= FZ_SSE_MAX);
	FZ_CHECK(strlen(event) < SSE_EVENT_MAX);
	evbuffer_add(log, event, strlen(event) + 1);
	evbuffer_add(log, &len, sizeof len);
	evbuffer_add(log, data, len);
}

static void
fz_sse(const uint8_t *data, size_t size)
{
	struct sse_reader	 r;
	struct evbuffer		*whole, *parts;
	size_t			 a, b;

	whole = evbuffer_new();
	parts = evbuffer_new();
	sse_reader_init(&r, FZ_SSE_MAX, fz_sse_cb, whole);
	sse_reader_feed(&r, data, size);
	sse_reader_free(&r);
	a = size > 0 ? data[0] % (size + 1) : 0;
	b = size > 1 ? a + data[1] % (size - a + 1) : a;
	sse_reader_init(&r, FZ_SSE_MAX, fz_sse_cb, parts);
	sse_reader_feed(&r, data, a);
	sse_reader_feed(&r, data + a, b - a);
	sse_reader_feed(&r, data + b, size - b);
	sse_reader_free(&r);
	FZ_CHECK(evbuffer_get_length(whole) == evbuffer_get_length(parts));
	FZ_CHECK(evbuffer_get_length(whole) == 0 ||
	    memcmp(evbuffer_pullup(whole, -1), evbuffer_pullup(parts, -1),
	    evbuffer_get_length(whole)) == 0);
	evbuffer_free(whole);
	evbuffer_free(parts);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fz_body(data, size);
	fz_event(data, size);
	fz_sse(data, size);
	return (0);
}
