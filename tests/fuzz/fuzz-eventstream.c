/*
 * fuzz-eventstream.c: libFuzzer target for the event-stream decoder.
 *
 * The input is decoded whole, byte by byte and in two more split patterns;
 * every run must see the same messages, the same frames and the same
 * error. Each decoded message must encode back to its exact frame. The
 * input is also used as an exception message, whose frame must decode and
 * whose body must be valid JSON. A copy of the input with every CRC made
 * right is decoded the same way, so that mutated headers reach the header
 * parser instead of stopping at the CRC checks.
 */

#include <sys/types.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "bsp.h"
#include "eventstream.h"

#define FZ_MAX_MESSAGE	(1024 * 1024)

struct fz_run {
	size_t		 n;
	uint32_t	 crc;		/* over all frames */
	int		 rv;
	char		 error[ES_ERROR_LEN];
};

int		 LLVMFuzzerTestOneInput(const uint8_t *, size_t);
static int	 fz_message(const struct es_message *, void *);
static int	 fz_json(const struct es_message *, void *);
static void	 fz_decode(const uint8_t *, size_t, int, struct fz_run *);
static void	 fz_exception(const uint8_t *, size_t);
static void	 fz_put32(uint8_t *, uint32_t);
static void	 fz_fix_crcs(uint8_t *, size_t);
static void	 fz_compare(const uint8_t *, size_t);

static int
fz_message(const struct es_message *m, void *arg)
{
	struct fz_run	*r = arg;
	uint8_t		*buf;
	char		 s[16];
	size_t		 i, n;

	r->n++;
	r->crc = es_crc32(r->crc, m->frame, m->frame_len);

	/* Re-encoding gives the same frame byte for byte. */
	buf = xmalloc(m->frame_len);
	n = es_encode(m->headers, m->nheaders, m->payload, m->payload_len,
	    buf, m->frame_len);
	if (n != m->frame_len || memcmp(buf, m->frame, n) != 0)
		abort();
	free(buf);

	if (m->payload + m->payload_len + 4 != m->frame + m->frame_len)
		abort();
	for (i = 0; i < m->nheaders; i++) {
		if (m->headers[i].name_len == 0 ||
		    m->headers[i].name < (const char *)m->frame ||
		    m->headers[i].name + m->headers[i].name_len >
		    (const char *)m->payload)
			abort();
	}
	(void)es_header_str(m, ES_H_MESSAGE_TYPE, &n);
	(void)es_header_strcpy(m, ES_H_EVENT_TYPE, s, sizeof s);
	(void)es_header_find(m, ES_H_EXCEPTION_TYPE);
	return (0);
}

/*
 * Decode with a split pattern: 0 whole, 1 byte by byte, 2 chunks sized
 * from the input's first byte, 3 pseudo-random chunks.
 */
static void
fz_decode(const uint8_t *data, size_t size, int pattern, struct fz_run *r)
{
	struct es_decoder	d;
	const char		*e;
	size_t			off, n;
	uint32_t		seed = (uint32_t)size * 2654435761u;

	memset(r, 0, sizeof *r);
	es_decoder_init(&d, FZ_MAX_MESSAGE, fz_message, r);
	for (off = 0; off < size; off += n) {
		switch (pattern) {
		case 0:
			n = size;
			break;
		case 1:
			n = 1;
			break;
		case 2:
			n = 1 + data[0] % 61;
			break;
		default:
			seed = seed * 1103515245u + 12345u;
			n = 1 + (seed >> 16) % 300;
			break;
		}
		if (n > size - off)
			n = size - off;
		if (es_decoder_feed(&d, data + off, n) == -1)
			break;
		if (es_decoder_pending(&d) > FZ_MAX_MESSAGE)
			abort();
	}
	r->rv = es_decoder_finish(&d);
	if ((e = es_decoder_error(&d)) != NULL)
		bsp_strlcpy(r->error, e, sizeof r->error);
	if ((r->rv == -1) != (e != NULL))
		abort();
	es_decoder_free(&d);
}

static int
fz_json(const struct es_message *m, void *arg)
{
	json_t	*j;
	int	*n = arg;

	if ((j = json_loadb((const char *)m->payload, m->payload_len, 0,
	    NULL)) == NULL || !json_is_string(json_object_get(j, "message")))
		abort();
	json_decref(j);
	(*n)++;
	return (0);
}

/* The input as an exception message: the frame decodes, the body parses. */
static void
fz_exception(const uint8_t *data, size_t size)
{
	struct es_decoder	 d;
	char			*msg;
	uint8_t			*out;
	size_t			 n, outlen;
	int			 count = 0;

	if (size > 4096)
		size = 4096;
	msg = xmemdup0(data, size);
	outlen = 6 * size + 256;
	out = xmalloc(outlen);
	n = es_encode_exception("throttlingException", msg, out, outlen);
	if (n == 0)
		abort();
	es_decoder_init(&d, 0, fz_json, &count);
	if (es_decoder_feed(&d, out, n) != 0 || es_decoder_finish(&d) != 0 ||
	    count != 1)
		abort();
	es_decoder_free(&d);
	free(out);
	free(msg);
}

static void
fz_put32(uint8_t *p, uint32_t v)
{
	p[0] = v >> 24;
	p[1] = (v >> 16) & 0xff;
	p[2] = (v >> 8) & 0xff;
	p[3] = v & 0xff;
}

/* Make the prelude and message CRCs of each frame in buf right. */
static void
fz_fix_crcs(uint8_t *buf, size_t size)
{
	size_t		off = 0;
	uint32_t	total;

	while (size - off >= ES_PRELUDE_LEN) {
		total = (uint32_t)buf[off] << 24 | (uint32_t)buf[off + 1] << 16 |
		    (uint32_t)buf[off + 2] << 8 | buf[off + 3];
		fz_put32(buf + off + 8, es_crc32(0, buf + off, 8));
		if (total < ES_OVERHEAD || total > size - off)
			break;
		fz_put32(buf + off + total - 4,
		    es_crc32(0, buf + off, total - 4));
		off += total;
	}
}

/* Every split pattern gives the same result. */
static void
fz_compare(const uint8_t *data, size_t size)
{
	struct fz_run	r[4];
	int		i;

	for (i = 0; i < 4; i++) {
		fz_decode(data, size, i, &r[i]);
		if (i > 0 && (r[i].n != r[0].n || r[i].crc != r[0].crc ||
		    r[i].rv != r[0].rv || strcmp(r[i].error, r[0].error) != 0))
			abort();
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t	*copy;

	fz_compare(data, size);
	if (size != 0) {
		copy = xmalloc(size);
		memcpy(copy, data, size);
		fz_fix_crcs(copy, size);
		fz_compare(copy, size);
		free(copy);
	}
	fz_exception(data, size);
	return (0);
}
