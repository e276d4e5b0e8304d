/*
 * eventstream.c: AWS event stream decoder and encoder.
 *
 * The decoder takes bytes in any split, keeps only the current incomplete
 * frame (bounded by its limit; a whole frame already in the input is not
 * copied), validates both CRCs, the lengths and every header, and calls
 * back once per message. Any error is sticky and never reads out of
 * bounds. The encoder builds frames, e.g. the exception frame the proxy
 * sends when it has to end a stream itself.
 */

#include <sys/types.h>

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bsp.h"
#include "eventstream.h"

#define ES_RETAIN	(64 * 1024)	/* largest buffer kept between frames */

/* CRC-32, reflected polynomial 0xEDB88320 (zlib, gzip). */
static const uint32_t es_crc_table[256] = {
	0x00000000, 0x77073096, 0xee0e612c, 0x990951ba,
	0x076dc419, 0x706af48f, 0xe963a535, 0x9e6495a3,
	0x0edb8832, 0x79dcb8a4, 0xe0d5e91e, 0x97d2d988,
	0x09b64c2b, 0x7eb17cbd, 0xe7b82d07, 0x90bf1d91,
	0x1db71064, 0x6ab020f2, 0xf3b97148, 0x84be41de,
	0x1adad47d, 0x6ddde4eb, 0xf4d4b551, 0x83d385c7,
	0x136c9856, 0x646ba8c0, 0xfd62f97a, 0x8a65c9ec,
	0x14015c4f, 0x63066cd9, 0xfa0f3d63, 0x8d080df5,
	0x3b6e20c8, 0x4c69105e, 0xd56041e4, 0xa2677172,
	0x3c03e4d1, 0x4b04d447, 0xd20d85fd, 0xa50ab56b,
	0x35b5a8fa, 0x42b2986c, 0xdbbbc9d6, 0xacbcf940,
	0x32d86ce3, 0x45df5c75, 0xdcd60dcf, 0xabd13d59,
	0x26d930ac, 0x51de003a, 0xc8d75180, 0xbfd06116,
	0x21b4f4b5, 0x56b3c423, 0xcfba9599, 0xb8bda50f,
	0x2802b89e, 0x5f058808, 0xc60cd9b2, 0xb10be924,
	0x2f6f7c87, 0x58684c11, 0xc1611dab, 0xb6662d3d,
	0x76dc4190, 0x01db7106, 0x98d220bc, 0xefd5102a,
	0x71b18589, 0x06b6b51f, 0x9fbfe4a5, 0xe8b8d433,
	0x7807c9a2, 0x0f00f934, 0x9609a88e, 0xe10e9818,
	0x7f6a0dbb, 0x086d3d2d, 0x91646c97, 0xe6635c01,
	0x6b6b51f4, 0x1c6c6162, 0x856530d8, 0xf262004e,
	0x6c0695ed, 0x1b01a57b, 0x8208f4c1, 0xf50fc457,
	0x65b0d9c6, 0x12b7e950, 0x8bbeb8ea, 0xfcb9887c,
	0x62dd1ddf, 0x15da2d49, 0x8cd37cf3, 0xfbd44c65,
	0x4db26158, 0x3ab551ce, 0xa3bc0074, 0xd4bb30e2,
	0x4adfa541, 0x3dd895d7, 0xa4d1c46d, 0xd3d6f4fb,
	0x4369e96a, 0x346ed9fc, 0xad678846, 0xda60b8d0,
	0x44042d73, 0x33031de5, 0xaa0a4c5f, 0xdd0d7cc9,
	0x5005713c, 0x270241aa, 0xbe0b1010, 0xc90c2086,
	0x5768b525, 0x206f85b3, 0xb966d409, 0xce61e49f,
	0x5edef90e, 0x29d9c998, 0xb0d09822, 0xc7d7a8b4,
	0x59b33d17, 0x2eb40d81, 0xb7bd5c3b, 0xc0ba6cad,
	0xedb88320, 0x9abfb3b6, 0x03b6e20c, 0x74b1d29a,
	0xead54739, 0x9dd277af, 0x04db2615, 0x73dc1683,
	0xe3630b12, 0x94643b84, 0x0d6d6a3e, 0x7a6a5aa8,
	0xe40ecf0b, 0x9309ff9d, 0x0a00ae27, 0x7d079eb1,
	0xf00f9344, 0x8708a3d2, 0x1e01f268, 0x6906c2fe,
	0xf762575d, 0x806567cb, 0x196c3671, 0x6e6b06e7,
	0xfed41b76, 0x89d32be0, 0x10da7a5a, 0x67dd4acc,
	0xf9b9df6f, 0x8ebeeff9, 0x17b7be43, 0x60b08ed5,
	0xd6d6a3e8, 0xa1d1937e, 0x38d8c2c4, 0x4fdff252,
	0xd1bb67f1, 0xa6bc5767, 0x3fb506dd, 0x48b2364b,
	0xd80d2bda, 0xaf0a1b4c, 0x36034af6, 0x41047a60,
	0xdf60efc3, 0xa867df55, 0x316e8eef, 0x4669be79,
	0xcb61b38c, 0xbc66831a, 0x256fd2a0, 0x5268e236,
	0xcc0c7795, 0xbb0b4703, 0x220216b9, 0x5505262f,
	0xc5ba3bbe, 0xb2bd0b28, 0x2bb45a92, 0x5cb36a04,
	0xc2d7ffa7, 0xb5d0cf31, 0x2cd99e8b, 0x5bdeae1d,
	0x9b64c2b0, 0xec63f226, 0x756aa39c, 0x026d930a,
	0x9c0906a9, 0xeb0e363f, 0x72076785, 0x05005713,
	0x95bf4a82, 0xe2b87a14, 0x7bb12bae, 0x0cb61b38,
	0x92d28e9b, 0xe5d5be0d, 0x7cdcefb7, 0x0bdbdf21,
	0x86d3d2d4, 0xf1d4e242, 0x68ddb3f8, 0x1fda836e,
	0x81be16cd, 0xf6b9265b, 0x6fb077e1, 0x18b74777,
	0x88085ae6, 0xff0f6a70, 0x66063bca, 0x11010b5c,
	0x8f659eff, 0xf862ae69, 0x616bffd3, 0x166ccf45,
	0xa00ae278, 0xd70dd2ee, 0x4e048354, 0x3903b3c2,
	0xa7672661, 0xd06016f7, 0x4969474d, 0x3e6e77db,
	0xaed16a4a, 0xd9d65adc, 0x40df0b66, 0x37d83bf0,
	0xa9bcae53, 0xdebb9ec5, 0x47b2cf7f, 0x30b5ffe9,
	0xbdbdf21c, 0xcabac28a, 0x53b39330, 0x24b4a3a6,
	0xbad03605, 0xcdd70693, 0x54de5729, 0x23d967bf,
	0xb3667a2e, 0xc4614ab8, 0x5d681b02, 0x2a6f2b94,
	0xb40bbe37, 0xc30c8ea1, 0x5a05df1b, 0x2d02ef8d,
};

static uint32_t	 es_get16(const uint8_t *);
static uint32_t	 es_get32(const uint8_t *);
static uint64_t	 es_get64(const uint8_t *);
static void	 es_put16(uint8_t *, uint32_t);
static void	 es_put32(uint8_t *, uint32_t);
static void	 es_put64(uint8_t *, uint64_t);
static int64_t	 es_signed(uint64_t, int);
static int	 es_fail(struct es_decoder *, const char *, ...)
		    printflike(2, 3);
static int	 es_prelude(struct es_decoder *, const uint8_t *);
static int	 es_parse_headers(struct es_decoder *, const uint8_t *, size_t,
		    struct es_header *, size_t *);
static int	 es_process(struct es_decoder *, const uint8_t *, size_t);
static size_t	 es_value_len(const struct es_header *);
static size_t	 es_utf8_len(const uint8_t *, size_t);
static size_t	 es_json_escape(const char *, uint8_t *);

uint32_t
es_crc32(uint32_t crc, const void *data, size_t len)
{
	const uint8_t	*p = data;

	crc = ~crc;
	while (len-- > 0)
		crc = es_crc_table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
	return (~crc);
}

static uint32_t
es_get16(const uint8_t *p)
{
	return ((uint32_t)p[0] << 8 | p[1]);
}

static uint32_t
es_get32(const uint8_t *p)
{
	return ((uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	    (uint32_t)p[2] << 8 | p[3]);
}

static uint64_t
es_get64(const uint8_t *p)
{
	return ((uint64_t)es_get32(p) << 32 | es_get32(p + 4));
}

static void
es_put16(uint8_t *p, uint32_t v)
{
	p[0] = (v >> 8) & 0xff;
	p[1] = v & 0xff;
}

static void
es_put32(uint8_t *p, uint32_t v)
{
	p[0] = (v >> 24) & 0xff;
	p[1] = (v >> 16) & 0xff;
	p[2] = (v >> 8) & 0xff;
	p[3] = v & 0xff;
}

static void
es_put64(uint8_t *p, uint64_t v)
{
	es_put32(p, (uint32_t)(v >> 32));
	es_put32(p + 4, (uint32_t)v);
}

/* Two's-complement value of the low bits of v, without overflow. */
static int64_t
es_signed(uint64_t v, int bits)
{
	uint64_t	sign;

	if (bits < 64) {
		sign = (uint64_t)1 << (bits - 1);
		v &= (sign << 1) - 1;
		if (v & sign)
			return (-(int64_t)((sign << 1) - v));
		return ((int64_t)v);
	}
	if (v <= INT64_MAX)
		return ((int64_t)v);
	return (-(int64_t)(~v) - 1);
}

/* Enter the error state. */
static int
es_fail(struct es_decoder *d, const char *fmt, ...)
{
	va_list	ap;

	if (!d->failed) {
		va_start(ap, fmt);
		vsnprintf(d->error, sizeof d->error, fmt, ap);
		va_end(ap);
		d->failed = 1;
	}
	return (-1);
}

void
es_decoder_init(struct es_decoder *d, size_t max_message, es_message_cb cb,
    void *arg)
{
	memset(d, 0, sizeof *d);
	if (max_message == 0 || max_message > ES_MAX_MESSAGE_LEN)
		max_message = ES_MAX_MESSAGE_LEN;
	if (max_message < ES_OVERHEAD)
		max_message = ES_OVERHEAD;
	d->max_message = max_message;
	d->cb = cb;
	d->cb_arg = arg;
}

void
es_decoder_reset(struct es_decoder *d)
{
	es_decoder_init(d, d->max_message, d->cb, d->cb_arg);
}

void
es_decoder_free(struct es_decoder *d)
{
	free(d->buf);
	d->buf = NULL;
	d->cap = 0;
	d->have = d->need = 0;
}

const char *
es_decoder_error(const struct es_decoder *d)
{
	return (d->failed ? d->error : NULL);
}

size_t
es_decoder_pending(const struct es_decoder *d)
{
	return (d->have);
}

/* Check a 12-byte prelude and set the frame length. */
static int
es_prelude(struct es_decoder *d, const uint8_t *p)
{
	uint32_t	total, hlen, crc, want;

	total = es_get32(p);
	hlen = es_get32(p + 4);
	crc = es_get32(p + 8);
	if ((want = es_crc32(0, p, 8)) != crc)
		return (es_fail(d, "prelude CRC mismatch (0x%08x, want "
		    "0x%08x)", crc, want));
	if (total < ES_OVERHEAD)
		return (es_fail(d, "message length %u is below %u", total,
		    ES_OVERHEAD));
	if (total > d->max_message)
		return (es_fail(d, "message length %u is over the limit %zu",
		    total, d->max_message));
	if (hlen > total - ES_OVERHEAD)
		return (es_fail(d, "headers length %u runs past message "
		    "length %u", hlen, total));
	if (hlen > ES_MAX_HEADERS_LEN)
		return (es_fail(d, "headers length %u is over the limit %u",
		    hlen, ES_MAX_HEADERS_LEN));
	if (total - ES_OVERHEAD - hlen > ES_MAX_PAYLOAD_LEN)
		return (es_fail(d, "payload length %u is over the limit %u",
		    total - ES_OVERHEAD - hlen, ES_MAX_PAYLOAD_LEN));
	d->need = total;
	return (0);
}

/* Parse and check the header block into hdrs (ES_MAX_HEADERS of them). */
static int
es_parse_headers(struct es_decoder *d, const uint8_t *h, size_t hlen,
    struct es_header *hdrs, size_t *np)
{
	struct es_header	*hd;
	size_t			 off = 0, n = 0, nl, vlen;
	unsigned int		 type;

	while (off < hlen) {
		if (n == ES_MAX_HEADERS)
			return (es_fail(d, "more than %d headers",
			    ES_MAX_HEADERS));
		hd = &hdrs[n];
		memset(hd, 0, sizeof *hd);
		nl = h[off++];
		if (nl == 0)
			return (es_fail(d, "header %zu: empty name", n));
		if (nl > hlen - off)
			return (es_fail(d, "header %zu: name runs past the "
			    "headers", n));
		hd->name = (const char *)h + off;
		hd->name_len = nl;
		off += nl;
		if (off == hlen)
			return (es_fail(d, "header %zu: no type", n));
		type = h[off++];
		switch (type) {
		case ES_TYPE_TRUE:
		case ES_TYPE_FALSE:
			vlen = 0;
			break;
		case ES_TYPE_BYTE:
			vlen = 1;
			break;
		case ES_TYPE_INT16:
			vlen = 2;
			break;
		case ES_TYPE_INT32:
			vlen = 4;
			break;
		case ES_TYPE_INT64:
		case ES_TYPE_TIMESTAMP:
			vlen = 8;
			break;
		case ES_TYPE_BYTES:
		case ES_TYPE_STRING:
			vlen = 2;
			break;
		case ES_TYPE_UUID:
			vlen = 16;
			break;
		default:
			return (es_fail(d, "header %zu: unknown type %u", n,
			    type));
		}
		if (vlen > hlen - off)
			return (es_fail(d, "header %zu: value runs past the "
			    "headers", n));
		hd->type = type;
		switch (type) {
		case ES_TYPE_TRUE:
			hd->num = 1;
			break;
		case ES_TYPE_FALSE:
			hd->num = 0;
			break;
		case ES_TYPE_BYTE:
			hd->num = es_signed(h[off], 8);
			break;
		case ES_TYPE_INT16:
			hd->num = es_signed(es_get16(h + off), 16);
			break;
		case ES_TYPE_INT32:
			hd->num = es_signed(es_get32(h + off), 32);
			break;
		case ES_TYPE_INT64:
		case ES_TYPE_TIMESTAMP:
			hd->num = es_signed(es_get64(h + off), 64);
			break;
		case ES_TYPE_UUID:
			hd->data = h + off;
			hd->len = 16;
			break;
		case ES_TYPE_BYTES:
		case ES_TYPE_STRING:
			hd->len = es_get16(h + off);
			off += 2;
			vlen = hd->len;
			if (vlen > ES_MAX_HEADER_VALUE)
				return (es_fail(d, "header %zu: value length "
				    "%zu is over %d", n, vlen,
				    ES_MAX_HEADER_VALUE));
			if (vlen > hlen - off)
				return (es_fail(d, "header %zu: value runs "
				    "past the headers", n));
			hd->data = h + off;
			break;
		}
		off += vlen;
		n++;
	}
	*np = n;
	return (0);
}

/*
 * A whole frame whose prelude has been checked. The headers are parsed
 * into an array on the stack, not in the decoder: a message is valid only
 * during the callback, and every stream relayed keeps a decoder.
 */
static int
es_process(struct es_decoder *d, const uint8_t *frame, size_t total)
{
	struct es_header	 headers[ES_MAX_HEADERS];
	struct es_message	 msg;
	uint32_t		 hlen, crc, want;
	size_t			 n = 0;

	hlen = es_get32(frame + 4);
	crc = es_get32(frame + total - 4);
	if ((want = es_crc32(0, frame, total - 4)) != crc)
		return (es_fail(d, "message CRC mismatch (0x%08x, want "
		    "0x%08x)", crc, want));
	if (es_parse_headers(d, frame + ES_PRELUDE_LEN, hlen, headers,
	    &n) == -1)
		return (-1);
	memset(&msg, 0, sizeof msg);
	msg.frame = frame;
	msg.frame_len = total;
	msg.headers = headers;
	msg.nheaders = n;
	msg.payload = frame + ES_PRELUDE_LEN + hlen;
	msg.payload_len = total - ES_OVERHEAD - hlen;
	d->nmessages++;
	if (d->cb != NULL && d->cb(&msg, d->cb_arg) != 0)
		return (es_fail(d, "stopped by the message handler"));
	return (0);
}

int
es_decoder_feed(struct es_decoder *d, const void *data, size_t len)
{
	const uint8_t	*p = data;
	size_t		 n;
	int		 rv;

	if (d->failed)
		return (-1);
	if (len == 0)
		return (0);
	if (p == NULL)
		return (es_fail(d, "no data"));
	d->nbytes += len;
	while (len > 0) {
		/* A whole frame in the input with nothing buffered. */
		if (d->have == 0 && len >= ES_PRELUDE_LEN) {
			if (es_prelude(d, p) == -1)
				return (-1);
			if (len >= d->need) {
				n = d->need;
				d->need = 0;
				if (es_process(d, p, n) == -1)
					return (-1);
				p += n;
				len -= n;
				continue;
			}
		}

		if (d->have < ES_PRELUDE_LEN) {
			n = ES_PRELUDE_LEN - d->have;
			if (n > len)
				n = len;
			memcpy(d->pre + d->have, p, n);
			d->have += n;
			p += n;
			len -= n;
			if (d->have < ES_PRELUDE_LEN)
				break;
			if (es_prelude(d, d->pre) == -1)
				return (-1);
			if (d->cap < d->need) {
				free(d->buf);
				d->buf = xmalloc(d->need);
				d->cap = d->need;
			}
			memcpy(d->buf, d->pre, ES_PRELUDE_LEN);
		}

		n = d->need - d->have;
		if (n > len)
			n = len;
		memcpy(d->buf + d->have, p, n);
		d->have += n;
		p += n;
		len -= n;
		if (d->have == d->need) {
			rv = es_process(d, d->buf, d->need);
			d->have = d->need = 0;
			if (d->cap > ES_RETAIN) {
				free(d->buf);
				d->buf = NULL;
				d->cap = 0;
			}
			if (rv == -1)
				return (-1);
		}
	}
	return (0);
}

int
es_decoder_finish(struct es_decoder *d)
{
	if (d->failed)
		return (-1);
	if (d->have > 0 && d->have < ES_PRELUDE_LEN)
		return (es_fail(d, "incomplete message at end of stream "
		    "(%zu of %d prelude bytes)", d->have, ES_PRELUDE_LEN));
	if (d->have > 0)
		return (es_fail(d, "incomplete message at end of stream "
		    "(%zu of %zu bytes)", d->have, d->need));
	return (0);
}

const struct es_header *
es_header_find(const struct es_message *msg, const char *name)
{
	size_t	i, len;

	len = strlen(name);
	for (i = 0; i < msg->nheaders; i++) {
		if (msg->headers[i].name_len == len &&
		    memcmp(msg->headers[i].name, name, len) == 0)
			return (&msg->headers[i]);
	}
	return (NULL);
}

const char *
es_header_str(const struct es_message *msg, const char *name, size_t *lenp)
{
	const struct es_header	*h;

	if ((h = es_header_find(msg, name)) == NULL ||
	    h->type != ES_TYPE_STRING)
		return (NULL);
	if (lenp != NULL)
		*lenp = h->len;
	return (h->len == 0 ? "" : (const char *)h->data);
}

int
es_header_strcpy(const struct es_message *msg, const char *name, char *buf,
    size_t buflen)
{
	const char	*s;
	size_t		 len;

	if ((s = es_header_str(msg, name, &len)) == NULL || len >= buflen ||
	    memchr(s, '\0', len) != NULL)
		return (-1);
	memcpy(buf, s, len);
	buf[len] = '\0';
	return (0);
}

/* Encoded size of a header's type byte and value; 0 if invalid. */
static size_t
es_value_len(const struct es_header *h)
{
	switch (h->type) {
	case ES_TYPE_TRUE:
	case ES_TYPE_FALSE:
		return (1);
	case ES_TYPE_BYTE:
		return (h->num >= INT8_MIN && h->num <= INT8_MAX ? 1 + 1 : 0);
	case ES_TYPE_INT16:
		return (h->num >= INT16_MIN && h->num <= INT16_MAX ?
		    1 + 2 : 0);
	case ES_TYPE_INT32:
		return (h->num >= INT32_MIN && h->num <= INT32_MAX ?
		    1 + 4 : 0);
	case ES_TYPE_INT64:
	case ES_TYPE_TIMESTAMP:
		return (1 + 8);
	case ES_TYPE_BYTES:
	case ES_TYPE_STRING:
		if (h->len > ES_MAX_HEADER_VALUE ||
		    (h->len != 0 && h->data == NULL))
			return (0);
		return (1 + 2 + h->len);
	case ES_TYPE_UUID:
		return (h->data == NULL ? 0 : 1 + 16);
	}
	return (0);
}

size_t
es_encoded_len(const struct es_header *headers, size_t nheaders,
    size_t payload_len)
{
	size_t	i, hlen = 0, vlen;

	if (nheaders != 0 && headers == NULL)
		return (0);
	for (i = 0; i < nheaders; i++) {
		if (headers[i].name == NULL || headers[i].name_len == 0 ||
		    headers[i].name_len > 255)
			return (0);
		if ((vlen = es_value_len(&headers[i])) == 0)
			return (0);
		/* name length byte, name, then type byte and value */
		hlen += 1 + headers[i].name_len + vlen;
		if (hlen > ES_MAX_HEADERS_LEN)
			return (0);
	}
	if (payload_len > ES_MAX_PAYLOAD_LEN)
		return (0);
	return (ES_OVERHEAD + hlen + payload_len);
}

size_t
es_encode(const struct es_header *headers, size_t nheaders,
    const void *payload, size_t payload_len, uint8_t *out, size_t outlen)
{
	const struct es_header	*h;
	size_t			 total, hlen, off, i;

	if ((total = es_encoded_len(headers, nheaders, payload_len)) == 0 ||
	    total > outlen || out == NULL ||
	    (payload_len != 0 && payload == NULL))
		return (0);
	hlen = total - ES_OVERHEAD - payload_len;
	es_put32(out, (uint32_t)total);
	es_put32(out + 4, (uint32_t)hlen);
	es_put32(out + 8, es_crc32(0, out, 8));
	off = ES_PRELUDE_LEN;
	for (i = 0; i < nheaders; i++) {
		h = &headers[i];
		out[off++] = (uint8_t)h->name_len;
		memcpy(out + off, h->name, h->name_len);
		off += h->name_len;
		out[off++] = (uint8_t)h->type;
		switch (h->type) {
		case ES_TYPE_TRUE:
		case ES_TYPE_FALSE:
			break;
		case ES_TYPE_BYTE:
			out[off++] = (uint8_t)h->num;
			break;
		case ES_TYPE_INT16:
			es_put16(out + off, (uint32_t)h->num);
			off += 2;
			break;
		case ES_TYPE_INT32:
			es_put32(out + off, (uint32_t)h->num);
			off += 4;
			break;
		case ES_TYPE_INT64:
		case ES_TYPE_TIMESTAMP:
			es_put64(out + off, (uint64_t)h->num);
			off += 8;
			break;
		case ES_TYPE_BYTES:
		case ES_TYPE_STRING:
			es_put16(out + off, (uint32_t)h->len);
			off += 2;
			if (h->len != 0)
				memcpy(out + off, h->data, h->len);
			off += h->len;
			break;
		case ES_TYPE_UUID:
			memcpy(out + off, h->data, 16);
			off += 16;
			break;
		}
	}
	if (payload_len != 0)
		memcpy(out + off, payload, payload_len);
	off += payload_len;
	es_put32(out + off, es_crc32(0, out, off));
	return (total);
}

/* Length of a valid UTF-8 sequence at p (RFC 3629), or 0. */
static size_t
es_utf8_len(const uint8_t *p, size_t left)
{
	size_t	n, i;
	uint8_t	lo = 0x80, hi = 0xbf;

	if (p[0] < 0x80)
		return (1);
	if (p[0] >= 0xc2 && p[0] <= 0xdf)
		n = 2;
	else if (p[0] >= 0xe0 && p[0] <= 0xef) {
		n = 3;
		if (p[0] == 0xe0)
			lo = 0xa0;
		else if (p[0] == 0xed)
			hi = 0x9f;
	} else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
		n = 4;
		if (p[0] == 0xf0)
			lo = 0x90;
		else if (p[0] == 0xf4)
			hi = 0x8f;
	} else
		return (0);
	if (left < n || p[1] < lo || p[1] > hi)
		return (0);
	for (i = 2; i < n; i++) {
		if (p[i] < 0x80 || p[i] > 0xbf)
			return (0);
	}
	return (n);
}

/*
 * {"message":"<s>"} into out, which has room for 6 * strlen(s) + 16
 * bytes. Returns the length.
 */
static size_t
es_json_escape(const char *s, uint8_t *out)
{
	static const char	 hex[] = "0123456789abcdef";
	const uint8_t		*p = (const uint8_t *)s;
	size_t			 left = strlen(s), o = 0, n;

	memcpy(out, "{\"message\":\"", 12);
	o = 12;
	while (left > 0) {
		switch (*p) {
		case '"':
		case '\\':
			out[o++] = '\\';
			out[o++] = *p;
			break;
		case '\n':
			out[o++] = '\\';
			out[o++] = 'n';
			break;
		case '\r':
			out[o++] = '\\';
			out[o++] = 'r';
			break;
		case '\t':
			out[o++] = '\\';
			out[o++] = 't';
			break;
		default:
			if (*p < 0x20) {
				memcpy(out + o, "\\u00", 4);
				out[o + 4] = hex[*p >> 4];
				out[o + 5] = hex[*p & 0xf];
				o += 6;
			} else if ((n = es_utf8_len(p, left)) == 0) {
				memcpy(out + o, "\xef\xbf\xbd", 3);
				o += 3;
			} else {
				memcpy(out + o, p, n);
				o += n;
				p += n - 1;
				left -= n - 1;
			}
			break;
		}
		p++;
		left--;
	}
	memcpy(out + o, "\"}", 2);
	return (o + 2);
}

size_t
es_encode_exception(const char *type, const char *message, uint8_t *out,
    size_t outlen)
{
	struct es_header	 h[3];
	uint8_t			*body;
	size_t			 mlen, blen, rv;

	if (type == NULL || message == NULL)
		return (0);
	mlen = strlen(message);
	if (mlen > ES_MAX_PAYLOAD_LEN / 6)
		return (0);
	memset(h, 0, sizeof h);
	h[0].name = ES_H_EXCEPTION_TYPE;
	h[0].name_len = strlen(ES_H_EXCEPTION_TYPE);
	h[0].type = ES_TYPE_STRING;
	h[0].data = (const uint8_t *)type;
	h[0].len = strlen(type);
	h[1].name = ES_H_CONTENT_TYPE;
	h[1].name_len = strlen(ES_H_CONTENT_TYPE);
	h[1].type = ES_TYPE_STRING;
	h[1].data = (const uint8_t *)"application/json";
	h[1].len = strlen("application/json");
	h[2].name = ES_H_MESSAGE_TYPE;
	h[2].name_len = strlen(ES_H_MESSAGE_TYPE);
	h[2].type = ES_TYPE_STRING;
	h[2].data = (const uint8_t *)"exception";
	h[2].len = strlen("exception");
	if (h[0].len == 0)
		return (0);

	body = xmalloc(6 * mlen + 16);
	blen = es_json_escape(message, body);
	rv = es_encode(h, nitems(h), body, blen, out, outlen);
	free(body);
	return (rv);
}
