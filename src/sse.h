/*
 * sse.h: a reader of server-sent events (the WHATWG EventSource stream
 * format) fed in pieces as they arrive, for the relay to read usage on the
 * side of a stream it passes on unchanged. Bounded: an event larger than
 * the reader's limit is skipped, not kept.
 */

#ifndef SSE_H
#define SSE_H

#include <stddef.h>
#include <stdint.h>

#define SSE_EVENT_MAX	64	/* an event name */

/* One dispatched event: its name ("message" if none) and data. */
typedef void (*sse_event_cb)(void *, const char *, const char *, size_t);

struct sse_reader {
	sse_event_cb	 cb;
	void		*cb_arg;
	size_t		 max;		/* data bytes kept per event */

	char		*data;		/* this event's data so far */
	size_t		 len;
	size_t		 cap;
	int		 has_data;
	int		 over;		/* this event is too large: skipped */
	char		 event[SSE_EVENT_MAX];
	size_t		 elen;
	int		 event_over;	/* this line's event name too long */

	char		 field[16];	/* the current line's field name */
	size_t		 flen;
	int		 state;		/* where in the line */
	int		 cr;		/* the last byte was '\r' */
	int		 bom;		/* bytes of a leading BOM checked */
	uint64_t	 nevents;
};

void		 sse_reader_init(struct sse_reader *, size_t, sse_event_cb,
		    void *);
void		 sse_reader_feed(struct sse_reader *, const void *, size_t);
int		 sse_reader_idle(const struct sse_reader *);
void		 sse_reader_free(struct sse_reader *);

#endif /* SSE_H */
