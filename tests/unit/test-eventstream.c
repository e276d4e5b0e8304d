/*
 * test-eventstream.c: event-stream decoder and encoder tests.
 *
 * The three frames from BEDROCK-FACTS §2.2 (built with zlib.crc32 and
 * decoded by @smithy/eventstream-codec) are the independent oracle; the
 * rest checks splitting, every validation rule and the encoder.
 */

#include <sys/types.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "bsp.h"
#include "eventstream.h"
#include "tap.h"

static const char vec1_hex[] =
    "0000001e00000000baf2f68a7b22666f6f223a2022626172227dae7258e4";
static const char vec2_hex[] =
    "000000870000004b87ea2bf30b3a6576656e742d747970650700056368756e6b0d3a"
    "636f6e74656e742d747970650700106170706c69636174696f6e2f6a736f6e0d3a6d"
    "6573736167652d747970650700056576656e747b226279746573223a2265794a3065"
    "58426c496a6f696257567a6332466e5a56397a64473977496e303d227dba48ab22";
static const char vec3_hex[] =
    "000000b0000000614f5086b30f3a657863657074696f6e2d74797065070013746872"
    "6f74746c696e67457863657074696f6e0d3a636f6e74656e742d7479706507001061"
    "70706c69636174696f6e2f6a736f6e0d3a6d6573736167652d747970650700096578"
    "63657074696f6e7b226d657373616765223a22546f6f206d616e7920746f6b656e73"
    "2c20706c656173652077616974206265666f726520747279696e6720616761696e2e"
    "227df70ae57f";

#define MAX_STREAM	4096

/* What the callback saw. */
struct seen {
	int		 n;
	size_t		 max_pending;
	uint8_t		 frames[MAX_STREAM];	/* concatenated frames */
	size_t		 flen;
	char		 evt[8][64];
	size_t		 payload_len[8];
	int		 stop_at;		/* return -1 on this message */
	struct es_decoder *d;
};

typedef void (*check_fn)(const struct es_message *);
struct check {
	check_fn	 fn;
	int		 n;
};

static size_t	 unhex(const char *, uint8_t *, size_t);
static int	 with_messages(const uint8_t *, size_t, check_fn);
static int	 check_cb(const struct es_message *, void *);
static void	 check_all_types(const struct es_message *);
static void	 check_lookups(const struct es_message *);
static void	 check_error_frame(const struct es_message *);
static void	 check_exception(const struct es_message *);
static void	 check_json(const struct es_message *);
static int	 collect(const struct es_message *, void *);
static int	 decode(const uint8_t *, size_t, size_t, struct seen *,
		    const char **);
static void	 fix_crcs(uint8_t *, size_t);
static size_t	 frame_raw(uint8_t *, const uint8_t *, size_t, const void *,
		    size_t);
static void	 expect_error(const uint8_t *, size_t, const char *,
		    const char *);
static int	 count_headers(const struct es_message *, void *);
static void	 test_decoder_size(void);
static void	 test_vectors(void);
static void	 test_splits(void);
static void	 test_errors(void);
static void	 test_header_errors(void);
static void	 test_all_types(void);
static void	 test_lookups(void);
static void	 test_exception_json(void);
static void	 test_encoder_errors(void);
static void	 test_buffering(void);

static size_t
unhex(const char *s, uint8_t *out, size_t outlen)
{
	size_t		 n = 0;
	unsigned int	 hi, lo;

	for (; s[0] != '\0' && s[1] != '\0' && n < outlen; s += 2) {
		hi = (unsigned int)(s[0] <= '9' ? s[0] - '0' : s[0] - 'a' + 10);
		lo = (unsigned int)(s[1] <= '9' ? s[1] - '0' : s[1] - 'a' + 10);
		out[n++] = (uint8_t)(hi << 4 | lo);
	}
	return (n);
}

static int
collect(const struct es_message *m, void *arg)
{
	struct seen	*s = arg;

	if (s->d != NULL && es_decoder_pending(s->d) > s->max_pending)
		s->max_pending = es_decoder_pending(s->d);
	if (s->n < 8) {
		if (es_header_strcpy(m, ES_H_EVENT_TYPE, s->evt[s->n],
		    sizeof s->evt[s->n]) == -1)
			s->evt[s->n][0] = '\0';
		s->payload_len[s->n] = m->payload_len;
	}
	if (s->flen + m->frame_len <= sizeof s->frames) {
		memcpy(s->frames + s->flen, m->frame, m->frame_len);
		s->flen += m->frame_len;
	}
	s->n++;
	return (s->n == s->stop_at ? -1 : 0);
}

/*
 * Decode buf in chunks of step bytes (0: all at once); returns what
 * es_decoder_finish() returned and the error, if any.
 */
static int
decode(const uint8_t *buf, size_t len, size_t step, struct seen *s,
    const char **err)
{
	static char		errbuf[ES_ERROR_LEN];
	struct es_decoder	d;
	size_t			off, n;
	int			rv;

	memset(s, 0, sizeof *s);
	es_decoder_init(&d, 0, collect, s);
	s->d = &d;
	if (step == 0)
		step = len;
	for (off = 0; off < len; off += n) {
		n = len - off < step ? len - off : step;
		if (es_decoder_feed(&d, buf + off, n) == -1)
			break;
		if (es_decoder_pending(&d) > s->max_pending)
			s->max_pending = es_decoder_pending(&d);
	}
	rv = es_decoder_finish(&d);
	errbuf[0] = '\0';
	if (es_decoder_error(&d) != NULL)
		bsp_strlcpy(errbuf, es_decoder_error(&d), sizeof errbuf);
	*err = errbuf;
	es_decoder_free(&d);
	s->d = NULL;
	return (rv);
}

/* Recompute both CRCs of a frame in place. */
static void
fix_crcs(uint8_t *f, size_t len)
{
	uint32_t	c;

	c = es_crc32(0, f, 8);
	f[8] = c >> 24;
	f[9] = c >> 16;
	f[10] = c >> 8;
	f[11] = c;
	c = es_crc32(0, f, len - 4);
	f[len - 4] = c >> 24;
	f[len - 3] = c >> 16;
	f[len - 2] = c >> 8;
	f[len - 1] = c;
}

/* A frame from a raw header block, with correct lengths and CRCs. */
static size_t
frame_raw(uint8_t *out, const uint8_t *hdrs, size_t hlen, const void *pl,
    size_t plen)
{
	size_t	total = ES_OVERHEAD + hlen + plen;

	out[0] = total >> 24;
	out[1] = total >> 16;
	out[2] = total >> 8;
	out[3] = total;
	out[4] = hlen >> 24;
	out[5] = hlen >> 16;
	out[6] = hlen >> 8;
	out[7] = hlen;
	memcpy(out + ES_PRELUDE_LEN, hdrs, hlen);
	memcpy(out + ES_PRELUDE_LEN + hlen, pl, plen);
	fix_crcs(out, total);
	return (total);
}

/* Decoding buf fails, whole and byte by byte, with want in the reason. */
static void
expect_error(const uint8_t *buf, size_t len, const char *want,
    const char *what)
{
	struct seen	 s;
	const char	*err;
	int		 rv;

	rv = decode(buf, len, 0, &s, &err);
	ok(rv == -1 && strstr(err, want) != NULL && s.n == 0,
	    "%s: refused (\"%s\")", what, err);
	rv = decode(buf, len, 1, &s, &err);
	ok(rv == -1 && strstr(err, want) != NULL && s.n == 0,
	    "%s: refused byte by byte", what);
}

static void
test_vectors(void)
{
	static const char	 msg3[] =
	    "Too many tokens, please wait before trying again.";
	struct es_header	 h[3];
	struct seen		 s;
	uint8_t			 v[3][256], out[512];
	size_t			 vlen[3], n;
	const char		*err;

	is_int(es_crc32(0, "123456789", 9), 0xcbf43926, "CRC-32 check value");
	is_int(es_crc32(es_crc32(0, "1234", 4), "56789", 5), 0xcbf43926,
	    "CRC-32 continues");
	vlen[0] = unhex(vec1_hex, v[0], sizeof v[0]);
	vlen[1] = unhex(vec2_hex, v[1], sizeof v[1]);
	vlen[2] = unhex(vec3_hex, v[2], sizeof v[2]);

	/* 1: no headers. */
	is_int(decode(v[0], vlen[0], 0, &s, &err), 0, "vector 1 decodes");
	is_int(s.n, 1, "vector 1: one message");
	is_int(s.payload_len[0], 14, "vector 1: payload length");
	ok(s.flen == vlen[0] && memcmp(s.frames, v[0], vlen[0]) == 0,
	    "vector 1: frame");
	n = es_encode(NULL, 0, "{\"foo\": \"bar\"}", 14, out, sizeof out);
	ok(n == vlen[0] && memcmp(out, v[0], n) == 0,
	    "vector 1: encodes to the same bytes");

	/* 2: a Bedrock chunk. */
	is_int(decode(v[1], vlen[1], 0, &s, &err), 0, "vector 2 decodes");
	is_int(s.n, 1, "vector 2: one message");
	is_str(s.evt[0], "chunk", "vector 2: :event-type");
	is_int(s.payload_len[0], 44, "vector 2: payload length");
	memset(h, 0, sizeof h);
	h[0].name = ":event-type";
	h[0].name_len = 11;
	h[0].type = ES_TYPE_STRING;
	h[0].data = (const uint8_t *)"chunk";
	h[0].len = 5;
	h[1].name = ":content-type";
	h[1].name_len = 13;
	h[1].type = ES_TYPE_STRING;
	h[1].data = (const uint8_t *)"application/json";
	h[1].len = 16;
	h[2].name = ":message-type";
	h[2].name_len = 13;
	h[2].type = ES_TYPE_STRING;
	h[2].data = (const uint8_t *)"event";
	h[2].len = 5;
	n = es_encode(h, 3, "{\"bytes\":\"eyJ0eXBlIjoibWVzc2FnZV9zdG9wIn0=\"}",
	    44, out, sizeof out);
	ok(n == vlen[1] && memcmp(out, v[1], n) == 0,
	    "vector 2: encodes to the same bytes");
	is_int(es_encoded_len(h, 3, 44), vlen[1], "vector 2: encoded length");

	/* 3: an exception. */
	is_int(decode(v[2], vlen[2], 0, &s, &err), 0, "vector 3 decodes");
	is_int(s.n, 1, "vector 3: one message");
	n = es_encode_exception("throttlingException", msg3, out, sizeof out);
	ok(n == vlen[2] && memcmp(out, v[2], n) == 0,
	    "vector 3: es_encode_exception gives the same bytes");
	is_int(es_encode_exception("throttlingException", msg3, out,
	    vlen[2] - 1), 0, "vector 3: one byte short of room");
}

static void
test_splits(void)
{
	struct es_decoder	 d;
	struct seen		 s;
	uint8_t			 buf[1024];
	size_t			 len, l2, i, j, bad = 0, badpend = 0;
	const char		*err;

	len = unhex(vec1_hex, buf, sizeof buf);
	len += unhex(vec2_hex, buf + len, sizeof buf - len);
	len += unhex(vec3_hex, buf + len, sizeof buf - len);
	is_int(decode(buf, len, 1, &s, &err), 0, "three messages byte by byte");
	is_int(s.n, 3, "  three callbacks");
	ok(s.flen == len && memcmp(s.frames, buf, len) == 0,
	    "  frames are the input, in order");
	is_str(s.evt[1], "chunk", "  second is the chunk");
	ok(s.max_pending <= 0xb0, "  never holds more than one frame (%zu)",
	    s.max_pending);
	for (i = 2; i < 200; i += 7) {
		if (decode(buf, len, i, &s, &err) != 0 || s.n != 3 ||
		    s.flen != len || memcmp(s.frames, buf, len) != 0)
			bad++;
	}
	is_int(bad, 0, "chunk sizes 2..199 all decode the same");

	/* Every one and two split points of a two-message buffer. */
	len = unhex(vec2_hex, buf, sizeof buf);
	l2 = len + unhex(vec3_hex, buf + len, sizeof buf - len);
	bad = 0;
	for (i = 0; i <= l2; i++) {
		for (j = i; j <= l2; j++) {
			memset(&s, 0, sizeof s);
			es_decoder_init(&d, 0, collect, &s);
			if (es_decoder_feed(&d, buf, i) != 0 ||
			    es_decoder_feed(&d, buf + i, j - i) != 0)
				bad++;
			if (es_decoder_pending(&d) > 0xb0)
				badpend++;
			if (es_decoder_feed(&d, buf + j, l2 - j) != 0 ||
			    es_decoder_finish(&d) != 0 || s.n != 2 ||
			    s.flen != l2 || memcmp(s.frames, buf, l2) != 0)
				bad++;
			es_decoder_free(&d);
		}
	}
	is_int(bad, 0, "every split point (i, j) of two messages decodes");
	is_int(badpend, 0, "  and holds at most one frame");
}

static void
test_errors(void)
{
	struct es_decoder	 d;
	struct seen		 s;
	uint8_t			 v[256], w[512], t[64];
	uint32_t		 big;
	size_t			 len, i;
	const char		*err;

	len = unhex(vec2_hex, v, sizeof v);

	memcpy(w, v, len);
	w[9] ^= 0x01;
	expect_error(w, len, "prelude CRC", "corrupt prelude CRC");
	memcpy(w, v, len);
	w[3] ^= 0x01;
	expect_error(w, len, "prelude CRC", "corrupt total length");
	memcpy(w, v, len);
	w[len - 1] ^= 0x80;
	expect_error(w, len, "message CRC", "corrupt message CRC");
	memcpy(w, v, len);
	w[100] ^= 0x20;
	expect_error(w, len, "message CRC", "corrupt payload");
	memcpy(w, v, len);
	w[20] ^= 0x20;
	expect_error(w, len, "message CRC", "corrupt header");

	/* Truncated: the feed is fine, the end of stream is not. */
	for (i = 1; i < len; i += (i < 20 ? 1 : 17)) {
		if (decode(v, i, 0, &s, &err) != -1 ||
		    strstr(err, "incomplete") == NULL || s.n != 0)
			break;
	}
	ok(i >= len, "truncated frames report incomplete at the end");
	decode(v, 5, 0, &s, &err);
	is_str(err, "incomplete message at end of stream (5 of 12 prelude "
	    "bytes)", "  in the prelude");
	decode(v, len - 1, 1, &s, &err);
	is_str(err, "incomplete message at end of stream (134 of 135 bytes)",
	    "  one byte short");
	is_int(decode(v, 0, 0, &s, &err), 0, "an empty stream is fine");

	/* Lengths. */
	memset(t, 0, sizeof t);
	t[0] = 0;
	t[3] = 15;
	fix_crcs(t, 16);
	expect_error(t, 16, "below 16", "total length 15");
	big = ES_MAX_MESSAGE_LEN + 1;
	t[0] = (big >> 24) & 0xff;
	t[1] = (big >> 16) & 0xff;
	t[2] = (big >> 8) & 0xff;
	t[3] = big & 0xff;
	fix_crcs(t, 16);
	expect_error(t, 16, "over the limit", "total length over the cap");
	memset(t, 0xff, 8);
	fix_crcs(t, 16);
	expect_error(t, 16, "over the limit", "total length 4 GiB");
	memset(t, 0, sizeof t);
	t[3] = 32;
	t[7] = 17;
	fix_crcs(t, 32);
	expect_error(t, 32, "runs past message length", "headers_len > "
	    "total - 16");
	t[0] = 0;
	t[1] = 0x03;	/* total 0x30020 */
	t[2] = 0x00;
	t[3] = 0x20;
	t[4] = 0;
	t[5] = 0x02;	/* headers 0x20001 > 128 KiB */
	t[6] = 0;
	t[7] = 0x01;
	fix_crcs(t, 16);
	expect_error(t, 16, "headers length 131073 is over",
	    "headers over 128 KiB");

	/* A caller's lower limit. */
	memset(&s, 0, sizeof s);
	es_decoder_init(&d, 100, collect, &s);
	is_int(es_decoder_feed(&d, v, len), -1, "a 135-byte frame over a "
	    "100-byte limit");
	ok(strstr(es_decoder_error(&d), "over the limit 100") != NULL,
	    "  says so (%s)", es_decoder_error(&d));
	es_decoder_free(&d);

	/* Sticky, and reset clears it. */
	memset(&s, 0, sizeof s);
	es_decoder_init(&d, 0, collect, &s);
	memcpy(w, v, len);
	w[9] ^= 1;
	is_int(es_decoder_feed(&d, w, len), -1, "sticky: first error");
	is_int(es_decoder_feed(&d, v, len), -1, "sticky: good data refused");
	is_int(es_decoder_finish(&d), -1, "sticky: finish fails");
	is_int(s.n, 0, "sticky: no callback");
	es_decoder_reset(&d);
	ok(es_decoder_error(&d) == NULL, "reset clears the error");
	is_int(es_decoder_feed(&d, v, len), 0, "reset: decodes again");
	is_int(s.n, 1, "reset: one callback");
	es_decoder_free(&d);

	/* The handler stops the decoder. */
	memcpy(w, v, len);
	memcpy(w + len, v, len);
	memset(&s, 0, sizeof s);
	s.stop_at = 1;
	es_decoder_init(&d, 0, collect, &s);
	is_int(es_decoder_feed(&d, w, 2 * len), -1, "handler returns -1");
	is_int(s.n, 1, "  no second callback");
	ok(strstr(es_decoder_error(&d), "stopped") != NULL, "  reason: %s",
	    es_decoder_error(&d));
	es_decoder_free(&d);
}

static void
test_header_errors(void)
{
	static const struct {
		const char	*hex;
		const char	*want;
		const char	*what;
	} t[] = {
		{ "00", "empty name", "name length 0" },
		{ "05616263", "name runs past", "name past the end" },
		{ "03616263", "no type", "no type byte" },
		{ "0161", "no type", "name then nothing" },
		{ "01610a", "unknown type 10", "type 10" },
		{ "0161ff", "unknown type 255", "type 255" },
		{ "016102", "value runs past", "byte without value" },
		{ "01610300", "value runs past", "int16 short" },
		{ "016104000000", "value runs past", "int32 short" },
		{ "01610500000000000000", "value runs past", "int64 short" },
		{ "016108000000", "value runs past", "timestamp short" },
		{ "01610900112233", "value runs past", "uuid short" },
		{ "016107", "value runs past", "string without length" },
		{ "01610700", "value runs past", "string half a length" },
		{ "0161070005616263", "value runs past", "string past end" },
		{ "0161060002ff", "value runs past", "bytes past end" },
		{ "01610700016101620700", "value runs past",
		  "second header past end" },
	};
	uint8_t		 hdr[256], f[ES_MAX_HEADERS * 3 + 64];
	uint8_t		 many[(ES_MAX_HEADERS + 1) * 3];
	uint8_t		*big, *hb;
	struct seen	 s;
	const char	*err;
	size_t		 i, hlen, n;

	for (i = 0; i < nitems(t); i++) {
		hlen = unhex(t[i].hex, hdr, sizeof hdr);
		n = frame_raw(f, hdr, hlen, "x", 1);
		expect_error(f, n, t[i].want, t[i].what);
	}

	/* A string longer than 32767, inside a large enough block. */
	hlen = 5 + 32768;
	hb = xcalloc(1, hlen);
	big = xcalloc(1, ES_OVERHEAD + hlen);
	memcpy(hb, "\x01\x61\x07\x80\x00", 5);
	n = frame_raw(big, hb, hlen, "", 0);
	expect_error(big, n, "value length 32768 is over",
	    "string of 32768 bytes");
	memcpy(hb, "\x01\x61\x07\x7f\xff", 5);
	n = frame_raw(big, hb, hlen - 1, "", 0);
	is_int(decode(big, n, 0, &s, &err), 0, "string of 32767 bytes");
	free(hb);
	free(big);

	/* ES_MAX_HEADERS is fine, one more is not. */
	for (i = 0; i < ES_MAX_HEADERS + 1; i++) {
		many[3 * i] = 1;
		many[3 * i + 1] = 'a';
		many[3 * i + 2] = ES_TYPE_TRUE;
	}
	n = frame_raw(f, many, 3 * ES_MAX_HEADERS, "", 0);
	is_int(decode(f, n, 0, &s, &err), 0, "%d headers decode",
	    ES_MAX_HEADERS);
	n = frame_raw(f, many, sizeof many, "", 0);
	expect_error(f, n, "more than", "too many headers");
}

static const uint8_t test_uuid[16] = {
	0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77,
	0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff,
};
static const struct {
	const char	*name;
	enum es_type	 type;
	int64_t		 num;
	const char	*data;
	size_t		 len;
} all_types[] = {
	{ "t", ES_TYPE_TRUE, 1, NULL, 0 },
	{ "f", ES_TYPE_FALSE, 0, NULL, 0 },
	{ "b", ES_TYPE_BYTE, -128, NULL, 0 },
	{ "b2", ES_TYPE_BYTE, 127, NULL, 0 },
	{ "s", ES_TYPE_INT16, -2, NULL, 0 },
	{ "s2", ES_TYPE_INT16, 32767, NULL, 0 },
	{ "i", ES_TYPE_INT32, INT32_MIN, NULL, 0 },
	{ "i2", ES_TYPE_INT32, 0x01020304, NULL, 0 },
	{ "l", ES_TYPE_INT64, INT64_MIN, NULL, 0 },
	{ "l2", ES_TYPE_INT64, INT64_MAX, NULL, 0 },
	{ "bytes", ES_TYPE_BYTES, 0, "\x00\xff\x01", 3 },
	{ "empty", ES_TYPE_STRING, 0, "", 0 },
	{ "str", ES_TYPE_STRING, 0, "h\xc3\xa9llo", 6 },
	{ "ts", ES_TYPE_TIMESTAMP, 1440938160000LL, NULL, 0 },
	{ "u", ES_TYPE_UUID, 0, (const char *)test_uuid, 16 },
};

/* Decode buf byte by byte (so frames are buffered) and run fn on each. */
static int
with_messages(const uint8_t *buf, size_t len, check_fn fn)
{
	struct es_decoder	d;
	struct check		c;
	size_t			i;
	int			rv = 0;

	c.fn = fn;
	c.n = 0;
	es_decoder_init(&d, 0, check_cb, &c);
	for (i = 0; i < len; i++) {
		if (es_decoder_feed(&d, buf + i, 1) != 0)
			rv = -1;
	}
	if (es_decoder_finish(&d) != 0)
		rv = -1;
	es_decoder_free(&d);
	return (rv == 0 ? c.n : -1);
}

static int
check_cb(const struct es_message *m, void *arg)
{
	struct check	*c = arg;

	c->fn(m);
	c->n++;
	return (0);
}

static void
check_all_types(const struct es_message *m)
{
	const struct es_header	*g;
	size_t			 i, bad = 0;

	is_int(m->nheaders, nitems(all_types), "  header count");
	for (i = 0; i < nitems(all_types); i++) {
		g = es_header_find(m, all_types[i].name);
		if (g == NULL || g->type != all_types[i].type) {
			bad++;
			continue;
		}
		if (all_types[i].data == NULL && g->num != all_types[i].num)
			bad++;
		if (all_types[i].data != NULL && (g->len != all_types[i].len ||
		    (g->len != 0 &&
		    memcmp(g->data, all_types[i].data, g->len) != 0)))
			bad++;
	}
	is_int(bad, 0, "  every header value reads back");
	ok(m->payload_len == 3 && memcmp(m->payload, "pay", 3) == 0,
	    "  payload");
	ok(es_header_str(m, "bytes", NULL) == NULL,
	    "  es_header_str ignores a bytes header");
	ok(es_header_str(m, "empty", NULL) != NULL,
	    "  es_header_str finds an empty string");
}

static void
test_all_types(void)
{
	struct es_header	 h[nitems(all_types)];
	struct seen		 s;
	uint8_t			 out[1024];
	size_t			 n, i;
	const char		*err;

	memset(h, 0, sizeof h);
	for (i = 0; i < nitems(all_types); i++) {
		h[i].name = all_types[i].name;
		h[i].name_len = strlen(all_types[i].name);
		h[i].type = all_types[i].type;
		h[i].num = all_types[i].num;
		h[i].data = (const uint8_t *)all_types[i].data;
		h[i].len = all_types[i].len;
	}
	n = es_encode(h, nitems(h), "pay", 3, out, sizeof out);
	ok(n != 0, "all types encode (%zu bytes)", n);
	/* Spot-check big-endian values. */
	ok(memmem(out, n, "\x01s\x03\xff\xfe", 5) != NULL,
	    "int16 -2 is ff fe");
	ok(memmem(out, n, "\x02i2\x04\x01\x02\x03\x04", 8) != NULL,
	    "int32 is big-endian");
	ok(memmem(out, n, "\x02l2\x05\x7f\xff\xff\xff\xff\xff\xff\xff", 12)
	    != NULL, "int64 is big-endian");
	ok(memmem(out, n, "\x05" "bytes\x06\x00\x03\x00\xff\x01", 12) !=
	    NULL, "bytes has a u16 length");

	is_int(decode(out, n, 0, &s, &err), 0, "all types decode");
	ok(s.flen == n && memcmp(s.frames, out, n) == 0, "  frame intact");
	is_int(with_messages(out, n, check_all_types), 1, "  values:");
}

static void
check_lookups(const struct es_message *m)
{
	const char	*p;
	char		 buf[32];
	size_t		 n;

	p = es_header_str(m, ES_H_EXCEPTION_TYPE, &n);
	ok(p != NULL && n == 19 && memcmp(p, "throttlingException", 19) == 0,
	    "es_header_str :exception-type");
	is_int(es_header_strcpy(m, ES_H_MESSAGE_TYPE, buf, sizeof buf), 0,
	    "es_header_strcpy :message-type");
	is_str(buf, "exception", "  value");
	is_int(es_header_strcpy(m, ES_H_CONTENT_TYPE, buf, sizeof buf), 0,
	    "es_header_strcpy :content-type");
	is_str(buf, "application/json", "  value");
	is_int(es_header_strcpy(m, ES_H_EXCEPTION_TYPE, buf, 19), -1,
	    "es_header_strcpy: too small");
	is_int(es_header_strcpy(m, ES_H_EXCEPTION_TYPE, buf, 20), 0,
	    "es_header_strcpy: just enough");
	ok(es_header_str(m, ES_H_EVENT_TYPE, NULL) == NULL,
	    "absent :event-type");
	ok(es_header_str(m, ES_H_ERROR_CODE, NULL) == NULL,
	    "absent :error-code");
	ok(es_header_find(m, ":message-typ") == NULL, "no prefix match");
	ok(m->payload_len == 63 && memcmp(m->payload, "{\"message\"", 10) == 0,
	    "payload");
}

static void
check_error_frame(const struct es_message *m)
{
	char	buf[64];

	is_int(es_header_strcpy(m, ES_H_ERROR_CODE, buf, sizeof buf), 0,
	    ":error-code");
	is_str(buf, "InternalFailure", "  value");
	is_int(es_header_strcpy(m, ES_H_ERROR_MESSAGE, buf, sizeof buf), -1,
	    ":error-message with a NUL is refused by strcpy");
	ok(es_header_str(m, ES_H_ERROR_MESSAGE, NULL) != NULL,
	    "  but es_header_str returns it");
}

static void
test_lookups(void)
{
	struct es_header	 h[3];
	uint8_t			 v[256];
	size_t			 len;

	len = unhex(vec3_hex, v, sizeof v);
	is_int(with_messages(v, len, check_lookups), 1, "vector 3 lookups");

	memset(h, 0, sizeof h);
	h[0].name = ES_H_MESSAGE_TYPE;
	h[0].name_len = strlen(ES_H_MESSAGE_TYPE);
	h[0].type = ES_TYPE_STRING;
	h[0].data = (const uint8_t *)"error";
	h[0].len = 5;
	h[1].name = ES_H_ERROR_CODE;
	h[1].name_len = strlen(ES_H_ERROR_CODE);
	h[1].type = ES_TYPE_STRING;
	h[1].data = (const uint8_t *)"InternalFailure";
	h[1].len = 15;
	h[2].name = ES_H_ERROR_MESSAGE;
	h[2].name_len = strlen(ES_H_ERROR_MESSAGE);
	h[2].type = ES_TYPE_STRING;
	h[2].data = (const uint8_t *)"a\0b";
	h[2].len = 3;
	len = es_encode(h, 3, NULL, 0, v, sizeof v);
	is_int(with_messages(v, len, check_error_frame), 1, "error frame");
}

static void
check_exception(const struct es_message *m)
{
	json_t	*j;
	size_t	 n;

	ok(es_header_str(m, ES_H_EXCEPTION_TYPE, &n) != NULL && n == 21,
	    "  :exception-type set");
	ok(m->payload_len == 48 && memcmp(m->payload, "{\"message\":\"a "
	    "\\\"q\\\" \\\\ b\\nc\\t\\u0001 \xc3\xa9 \xef\xbf\xbd end\"}",
	    m->payload_len) == 0, "  body escaped, invalid UTF-8 replaced");
	j = json_loadb((const char *)m->payload, m->payload_len, 0, NULL);
	ok(j != NULL, "  body is valid JSON");
	is_str(json_string_value(json_object_get(j, "message")),
	    "a \"q\" \\ b\nc\t\x01 \xc3\xa9 \xef\xbf\xbd end",
	    "  message round-trips");
	json_decref(j);
}

static void
check_json(const struct es_message *m)
{
	json_t	*j;

	j = json_loadb((const char *)m->payload, m->payload_len, 0, NULL);
	ok(j != NULL, "  still valid JSON");
	json_decref(j);
}

static void
test_exception_json(void)
{
	uint8_t	out[512];
	size_t	n;

	n = es_encode_exception("modelTimeoutException",
	    "a \"q\" \\ b\nc\t\x01 \xc3\xa9 \xff end", out, sizeof out);
	ok(n != 0, "exception with characters to escape");
	is_int(with_messages(out, n, check_exception), 1, "  decodes");

	n = es_encode_exception("x", "\xe0\x80\x80\xed\xa0\x80\xf4\x90\x80"
	    "\x80\xf0\x9f\x98\x80\xc3", out, sizeof out);
	ok(n != 0, "overlong, surrogate, >U+10FFFF, truncated sequences");
	is_int(with_messages(out, n, check_json), 1, "  decodes");
	is_int(es_encode_exception("", "m", out, sizeof out), 0,
	    "empty exception type refused");
	is_int(es_encode_exception(NULL, "m", out, sizeof out), 0,
	    "NULL exception type refused");
}

static void
test_encoder_errors(void)
{
	struct es_header	h;
	uint8_t			out[64];
	char			name[257];

	memset(&h, 0, sizeof h);
	h.name = "a";
	h.name_len = 1;
	h.type = ES_TYPE_TRUE;
	is_int(es_encode(&h, 1, "", 0, out, sizeof out), 19,
	    "one bool header: 19 bytes");
	is_int(es_encode(&h, 1, "", 0, out, 18), 0, "no room: 0");
	h.name_len = 0;
	is_int(es_encode(&h, 1, "", 0, out, sizeof out), 0, "empty name");
	memset(name, 'n', sizeof name);
	h.name = name;
	h.name_len = 256;
	is_int(es_encoded_len(&h, 1, 0), 0, "256-byte name");
	h.name_len = 255;
	is_int(es_encoded_len(&h, 1, 0), 16 + 1 + 255 + 1,
	    "255-byte name");
	h.name_len = 1;
	h.type = ES_TYPE_BYTE;
	h.num = 128;
	is_int(es_encoded_len(&h, 1, 0), 0, "byte 128 refused");
	h.type = ES_TYPE_INT16;
	h.num = -32769;
	is_int(es_encoded_len(&h, 1, 0), 0, "int16 -32769 refused");
	h.type = ES_TYPE_INT32;
	h.num = (int64_t)INT32_MAX + 1;
	is_int(es_encoded_len(&h, 1, 0), 0, "int32 2^31 refused");
	h.type = ES_TYPE_STRING;
	h.data = (const uint8_t *)"x";
	h.len = 32768;
	is_int(es_encoded_len(&h, 1, 0), 0, "32768-byte string refused");
	h.type = ES_TYPE_UUID;
	h.data = NULL;
	is_int(es_encoded_len(&h, 1, 0), 0, "uuid without data refused");
	h.type = (enum es_type)10;
	is_int(es_encoded_len(&h, 1, 0), 0, "type 10 refused");
	is_int(es_encoded_len(NULL, 0, ES_MAX_PAYLOAD_LEN + 1), 0,
	    "payload over 24 MiB refused");
	is_int(es_encoded_len(NULL, 0, ES_MAX_PAYLOAD_LEN),
	    ES_MAX_PAYLOAD_LEN + 16, "payload of 24 MiB fine");
}

static void
test_buffering(void)
{
	struct es_decoder	 d;
	struct seen		 s;
	uint8_t			*big, *pl, v[256];
	size_t			 n, off, len, plen = 1024 * 1024 + 3;
	int			 bad = 0;

	/* Whole frames are decoded in place: nothing is buffered. */
	len = unhex(vec2_hex, v, sizeof v);
	memset(&s, 0, sizeof s);
	es_decoder_init(&d, 0, collect, &s);
	es_decoder_feed(&d, v, len);
	ok(d.buf == NULL && es_decoder_pending(&d) == 0,
	    "a whole frame is not copied");
	es_decoder_feed(&d, v, 100);
	is_int(es_decoder_pending(&d), 100, "part of a frame is held");
	es_decoder_feed(&d, v + 100, len - 100);
	is_int(es_decoder_pending(&d), 0, "  and released");
	ok(d.cap <= len, "  buffer sized to the frame (%zu)", d.cap);
	is_int(s.n, 2, "  two messages");
	es_decoder_free(&d);

	/* A 1 MiB payload in 4 KiB pieces; its buffer is not kept. */
	pl = xmalloc(plen);
	for (off = 0; off < plen; off++)
		pl[off] = (uint8_t)(off * 7);
	big = xmalloc(plen + 64);
	n = es_encode(NULL, 0, pl, plen, big, plen + 64);
	is_int(n, plen + 16, "1 MiB frame encodes");
	memset(&s, 0, sizeof s);
	es_decoder_init(&d, 0, collect, &s);
	s.d = &d;
	for (off = 0; off < n; off += 4096) {
		if (es_decoder_feed(&d, big + off,
		    n - off < 4096 ? n - off : 4096) != 0)
			bad++;
		if (es_decoder_pending(&d) > n)
			bad++;
	}
	is_int(bad, 0, "  fed in 4 KiB pieces");
	is_int(s.n, 1, "  one message");
	is_int(s.payload_len[0], plen, "  payload length");
	ok(d.buf == NULL && d.cap == 0, "  large buffer released");
	is_int(es_decoder_finish(&d), 0, "  clean end");
	es_decoder_free(&d);
	free(big);
	free(pl);
}

/*
 * Every stream relayed keeps a decoder: the parsed headers (64 of them,
 * 3 KiB) live on the stack during the callback, not in the decoder.
 * A message with ES_MAX_HEADERS headers still decodes.
 */
static int
count_headers(const struct es_message *m, void *arg)
{
	size_t	*n = arg;

	*n = m->nheaders;
	if (es_header_find(m, "h63") == NULL ||
	    es_header_find(m, "h63")->num != 63)
		*n = 0;
	return (0);
}

static void
test_decoder_size(void)
{
	struct es_header	 h[ES_MAX_HEADERS];
	struct es_decoder	 d;
	char			 names[ES_MAX_HEADERS][8];
	uint8_t			 buf[4096];
	size_t			 i, len, n = 0;
	int			 rv;

	ok(sizeof(struct es_decoder) <= 256,
	    "a decoder is small: %zu bytes", sizeof(struct es_decoder));
	for (i = 0; i < ES_MAX_HEADERS; i++) {
		snprintf(names[i], sizeof names[i], "h%zu", i);
		memset(&h[i], 0, sizeof h[i]);
		h[i].name = names[i];
		h[i].name_len = strlen(names[i]);
		h[i].type = ES_TYPE_INT32;
		h[i].num = (int64_t)i;
	}
	len = es_encode(h, ES_MAX_HEADERS, "x", 1, buf, sizeof buf);
	es_decoder_init(&d, 0, count_headers, &n);
	rv = len > 0 ? es_decoder_feed(&d, buf, len) : -1;
	ok(rv == 0 && n == ES_MAX_HEADERS,
	    "  a message with %d headers decodes (%zu)", ES_MAX_HEADERS, n);
	es_decoder_free(&d);
}

int
main(void)
{
	test_decoder_size();
	test_vectors();
	test_splits();
	test_errors();
	test_header_errors();
	test_all_types();
	test_lookups();
	test_exception_json();
	test_encoder_errors();
	test_buffering();
	return (tap_done());
}
