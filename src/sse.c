/*
 * sse.c: a reader of server-sent events fed in pieces of any size, as the
 * WHATWG HTML standard ("Interpreting an event stream") reads them: lines
 * end in CR, LF or CRLF; "data" lines add to the event's data, "event"
 * names it, lines starting with ':' are comments, an empty line dispatches
 * the event (none if it had no data). Memory is bounded by the reader's
 * limit: the data of a larger event is dropped and the event skipped.
 */

#include <stdlib.h>
#include <string.h>

#include "bsp.h"
#include "sse.h"

enum {
	SSE_LINE_START,
	SSE_FIELD,
	SSE_AFTER_COLON,
	SSE_VALUE,
	SSE_COMMENT,
};

/* The current line's field, once its name is known. */
enum {
	SSE_F_OTHER,
	SSE_F_DATA,
	SSE_F_EVENT,
};

void
sse_reader_init(struct sse_reader *s, size_t max, sse_event_cb cb,
    void *arg)
{
	memset(s, 0, sizeof *s);
	s->max = max;
	s->cb = cb;
	s->cb_arg = arg;
}

void
sse_reader_free(struct sse_reader *s)
{
	free(s->data);
	s->data = NULL;
	s->len = s->cap = 0;
}

/* Between events: nothing of a line or an event is pending. */
int
sse_reader_idle(const struct sse_reader *s)
{
	return (s->state == SSE_LINE_START && !s->has_data && s->elen == 0);
}

static int
sse_field(const struct sse_reader *s)
{
	if (s->flen == 4 && memcmp(s->field, "data", 4) == 0)
		return (SSE_F_DATA);
	if (s->flen == 5 && memcmp(s->field, "event", 5) == 0)
		return (SSE_F_EVENT);
	return (SSE_F_OTHER);
}

static void
sse_data_add(struct sse_reader *s, const char *p, size_t n)
{
	size_t	ncap;

	if (s->over)
		return;
	if (s->len + n > s->max) {
		s->over = 1;
		free(s->data);
		s->data = NULL;
		s->len = s->cap = 0;
		return;
	}
	if (s->len + n + 1 > s->cap) {
		ncap = s->cap == 0 ? 256 : s->cap;
		while (ncap < s->len + n + 1)
			ncap *= 2;
		s->data = xreallocarray(s->data, 1, ncap);
		s->cap = ncap;
	}
	memcpy(s->data + s->len, p, n);
	s->len += n;
	s->data[s->len] = '\0';
}

/* A value's bytes for the current line's field. */
static void
sse_value(struct sse_reader *s, const char *p, size_t n)
{
	size_t	have;

	switch (sse_field(s)) {
	case SSE_F_DATA:
		sse_data_add(s, p, n);
		break;
	case SSE_F_EVENT:
		if (s->event_over)
			break;
		have = s->elen;
		if (have + n < sizeof s->event) {
			memcpy(s->event + have, p, n);
			s->elen = have + n;
			s->event[s->elen] = '\0';
		} else {
			s->event[0] = '\0';	/* too long: unnamed */
			s->elen = 0;
			s->event_over = 1;
		}
		break;
	}
}

/* The end of an event: pass it on when it had data. */
static void
sse_dispatch(struct sse_reader *s)
{
	if (s->has_data && !s->over) {
		if (s->len > 0)
			s->len--;	/* the last data line's LF */
		if (s->data != NULL)
			s->data[s->len] = '\0';
		s->nevents++;
		s->cb(s->cb_arg, s->event[0] != '\0' ? s->event : "message",
		    s->data != NULL ? s->data : "", s->len);
	}
	s->has_data = 0;
	s->over = 0;
	s->len = 0;
	s->event[0] = '\0';
	s->elen = 0;
}

/* The end of a line. */
static void
sse_eol(struct sse_reader *s)
{
	switch (s->state) {
	case SSE_LINE_START:
		sse_dispatch(s);
		break;
	case SSE_FIELD:
	case SSE_AFTER_COLON:
	case SSE_VALUE:
		if (sse_field(s) == SSE_F_DATA) {
			sse_data_add(s, "\n", 1);
			s->has_data = 1;
		} else if (s->state == SSE_FIELD &&
		    sse_field(s) == SSE_F_EVENT) {
			s->event[0] = '\0';
			s->elen = 0;
		}
		break;
	}
	s->state = SSE_LINE_START;
	s->flen = 0;
	s->event_over = 0;
}

void
sse_reader_feed(struct sse_reader *s, const void *buf, size_t len)
{
	const char	*p = buf, *end = p + len;
	size_t		 n;
	char		 c;

	while (p < end) {
		c = *p;
		if (s->bom < 3) {
			/* An optional UTF-8 byte order mark, first. */
			if ((unsigned char)c == "\xef\xbb\xbf"[s->bom] &&
			    s->state == SSE_LINE_START && s->flen == 0) {
				s->bom++;
				p++;
				continue;
			}
			s->bom = 3;
		}
		if (c == '\n' && s->cr) {
			s->cr = 0;
			p++;
			continue;
		}
		s->cr = 0;
		if (c == '\r' || c == '\n') {
			s->cr = c == '\r';
			sse_eol(s);
			p++;
			continue;
		}
		switch (s->state) {
		case SSE_LINE_START:
			if (c == ':') {
				s->state = SSE_COMMENT;
				p++;
				continue;
			}
			s->state = SSE_FIELD;
			/* FALLTHROUGH */
		case SSE_FIELD:
			if (c == ':') {
				s->state = SSE_AFTER_COLON;
				if (sse_field(s) == SSE_F_EVENT) {
					s->event[0] = '\0';
					s->elen = 0;
				}
			} else if (s->flen < sizeof s->field)
				s->field[s->flen++] = c;
			else
				s->flen = sizeof s->field;	/* unknown */
			p++;
			continue;
		case SSE_AFTER_COLON:
			s->state = SSE_VALUE;
			if (c == ' ') {
				p++;
				continue;
			}
			/* FALLTHROUGH */
		case SSE_VALUE:
			for (n = 0; p + n < end && p[n] != '\r' && p[n] != '\n';
			    n++)
				;
			sse_value(s, p, n);
			p += n;
			continue;
		case SSE_COMMENT:
			for (n = 0; p + n < end && p[n] != '\r' && p[n] != '\n';
			    n++)
				;
			p += n;
			continue;
		}
	}
}
