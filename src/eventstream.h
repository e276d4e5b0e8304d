/*
 * eventstream.h: AWS event stream (application/vnd.amazon.eventstream)
 * incremental decoder and encoder. BEDROCK-FACTS §2.
 *
 * Frame: [u32 total][u32 headers_len][u32 prelude_crc][headers][payload]
 * [u32 message_crc], big-endian, CRC-32 (zlib polynomial) over the prelude
 * and over everything before message_crc.
 */

#ifndef EVENTSTREAM_H
#define EVENTSTREAM_H

#include <stddef.h>
#include <stdint.h>

#define ES_PRELUDE_LEN		12
#define ES_OVERHEAD		16	/* prelude + message CRC */
#define ES_MAX_HEADERS_LEN	(128 * 1024)		/* botocore */
#define ES_MAX_PAYLOAD_LEN	(24 * 1024 * 1024)	/* botocore */
#define ES_MAX_MESSAGE_LEN	\
	(ES_OVERHEAD + ES_MAX_HEADERS_LEN + ES_MAX_PAYLOAD_LEN)
#define ES_MAX_HEADER_VALUE	32767	/* string/bytes (smithy) */
#define ES_MAX_HEADERS		64	/* headers in one message */
#define ES_ERROR_LEN		128

/* Header names Bedrock uses. */
#define ES_H_MESSAGE_TYPE	":message-type"
#define ES_H_EVENT_TYPE		":event-type"
#define ES_H_EXCEPTION_TYPE	":exception-type"
#define ES_H_CONTENT_TYPE	":content-type"
#define ES_H_ERROR_CODE		":error-code"
#define ES_H_ERROR_MESSAGE	":error-message"

enum es_type {
	ES_TYPE_TRUE = 0,
	ES_TYPE_FALSE = 1,
	ES_TYPE_BYTE = 2,
	ES_TYPE_INT16 = 3,
	ES_TYPE_INT32 = 4,
	ES_TYPE_INT64 = 5,
	ES_TYPE_BYTES = 6,
	ES_TYPE_STRING = 7,
	ES_TYPE_TIMESTAMP = 8,	/* ms since the epoch */
	ES_TYPE_UUID = 9,
};

/*
 * One header. name and data are not NUL-terminated: when decoding they
 * point into the frame. For TRUE/FALSE/BYTE/INT16/INT32/INT64/TIMESTAMP
 * the value is in num (TRUE 1, FALSE 0); for BYTES/STRING data and len;
 * for UUID data and len 16.
 */
struct es_header {
	const char		*name;
	size_t			 name_len;
	enum es_type		 type;
	int64_t			 num;
	const uint8_t		*data;
	size_t			 len;
};

/* A complete, validated message; valid only during the callback. */
struct es_message {
	const uint8_t		*frame;		/* the whole frame */
	size_t			 frame_len;
	const struct es_header	*headers;
	size_t			 nheaders;
	const uint8_t		*payload;
	size_t			 payload_len;
};

/*
 * Called once per message. Return 0 to go on, -1 to stop: the decoder
 * then enters its error state. The callback must not feed, reset or free
 * the decoder that called it.
 */
typedef int (*es_message_cb)(const struct es_message *, void *);

struct es_decoder {
	es_message_cb		 cb;
	void			*cb_arg;
	size_t			 max_message;

	/* the incomplete message (bytes of the current frame only) */
	uint8_t			 pre[ES_PRELUDE_LEN];
	uint8_t			*buf;
	size_t			 cap;
	size_t			 have;
	size_t			 need;		/* frame length, 0 if unknown */

	int			 failed;
	char			 error[ES_ERROR_LEN];
	uint64_t		 nmessages;
	uint64_t		 nbytes;
};

/* max_message 0 means ES_MAX_MESSAGE_LEN; larger values are clamped. */
void		 es_decoder_init(struct es_decoder *, size_t, es_message_cb,
		    void *);
/* Feed bytes as they arrive; 0, or -1 once in the (sticky) error state. */
int		 es_decoder_feed(struct es_decoder *, const void *, size_t);
/* At end of stream: -1 if in error or a message is incomplete. */
int		 es_decoder_finish(struct es_decoder *);
/* The reason for the error state, or NULL. */
const char	*es_decoder_error(const struct es_decoder *);
/* Bytes of the current incomplete message held by the decoder. */
size_t		 es_decoder_pending(const struct es_decoder *);
/* Back to the initial state, keeping the callback and limit. */
void		 es_decoder_reset(struct es_decoder *);
void		 es_decoder_free(struct es_decoder *);

/* Header lookups (the first header of that name). */
const struct es_header *es_header_find(const struct es_message *,
		    const char *);
/* A string header's bytes (not NUL-terminated), or NULL. */
const char	*es_header_str(const struct es_message *, const char *,
		    size_t *);
/* Copy a string header with a NUL; -1 if absent, not a string or too long. */
int		 es_header_strcpy(const struct es_message *, const char *,
		    char *, size_t);

/* CRC-32 (zlib); start with crc 0. */
uint32_t	 es_crc32(uint32_t, const void *, size_t);

/*
 * Encode a frame into out. Returns the frame length, or 0 if a header or
 * the frame is invalid or out is too small (then *out is untouched past
 * outlen). es_encoded_len() gives the length without writing.
 */
size_t		 es_encoded_len(const struct es_header *, size_t, size_t);
size_t		 es_encode(const struct es_header *, size_t, const void *,
		    size_t, uint8_t *, size_t);

/*
 * An exception frame: :exception-type=type, :content-type=application/json,
 * :message-type=exception, body {"message":"..."} with the message
 * JSON-escaped (invalid UTF-8 becomes U+FFFD). Returns the length or 0.
 */
size_t		 es_encode_exception(const char *, const char *, uint8_t *,
		    size_t);

#endif /* EVENTSTREAM_H */
