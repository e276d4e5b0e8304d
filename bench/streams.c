/*
 * streams.c: the two ends of bench/streams.sh.
 *
 *   streams serve [--frames-from-body] PORT FRAMES INTERVAL_MS
 *	A fake InvokeModelWithResponseStream upstream (libevent evhttp):
 *	POST /model/{id}/invoke-with-response-stream answers 200,
 *	Content-Type application/vnd.amazon.eventstream, then FRAMES
 *	event-stream `chunk` frames whose payload is
 *	{"bytes":"<base64 of {"type":"content_block_delta","index":0,
 *	"delta":{"type":"text_delta","text":"<seq N>"}}>"} and a last chunk
 *	{"type":"message_stop","amazon-bedrock-invocationMetrics":{...}}.
 *	Frame 0 goes with the head; each next one INTERVAL_MS later (0: all
 *	at once).  Other paths answer 404.  With --frames-from-body, a
 *	request body's "max_tokens":N (1 <= N <= FRAMES) sets that stream's
 *	number of chunks (and the metrics' outputTokenCount) instead.
 *
 *   streams client HOST PORT PATH STREAMS FRAMES [TOKEN]
 *	Opens STREAMS connections at once, one POST each (Authorization:
 *	Bearer TOKEN, a small Anthropic body), and checks every frame of
 *	every answer: prelude and message CRC-32, the three headers, the
 *	payload, and that the text is "<seq N>" with N = 0, 1, 2, ... in
 *	order, then the message_stop.  Times (from the request being
 *	queued): head received (TTFB of the head), first frame, done.
 *	Prints one RESULT line and the percentiles.  Exits 1 on any
 *	error, lost, extra, corrupt or reordered frame.
 *
 *   streams client --ramp MS HOST PORT PATH STREAMS FRAMES [TOKEN]
 *	The same, but stream i is opened MS * i / STREAMS ms after the
 *	first instead of all at once: every stream still overlaps every
 *	other when the streams outlive MS (FRAMES x INTERVAL_MS > MS), and
 *	each one's times are those of a request arriving at a relay that
 *	carries up to STREAMS - 1 live streams, not the tail of a queue of
 *	STREAMS requests that arrived in the same instant.  The RESULT line
 *	adds live_max, the most streams open at once (opened, not yet
 *	done), and live_p50 and live_min, the streams open as each one got
 *	its first frame.
 *
 *   streams client --duration SECS [--progress SECS] [--per-conn N]
 *	    [--vary] HOST PORT PATH STREAMS FRAMES [TOKEN]
 *	The soak: keeps STREAMS streams in flight for SECS seconds; each
 *	slot starts its next stream as soon as its last one ends (new
 *	streams are started until SECS, then the ones in flight finish).
 *	Every stream is checked as above.  --per-conn N: N streams one after
 *	the other on each connection (keep-alive) before it is closed and a
 *	new one opened (1, the default: a new connection per stream).
 *	--vary: each stream asks for N chunks ("max_tokens":N, for a serve
 *	--frames-from-body upstream), N drawn uniformly from
 *	[FRAMES/2, 3*FRAMES/2] with a fixed seed, so that streams end at
 *	different times.  --progress SECS: a PROGRESS line every SECS on
 *	stdout (in flight, started, completed, frames, errors so far).
 *	The RESULT line adds the streams started and completed, the mean
 *	and minimum number in flight, and the sum of the completed streams'
 *	chunk counts (their output tokens).
 *
 * Build: cc -O2 streams.c $(pkg-config --cflags --libs libevent) -lz
 */

#include <sys/resource.h>
#include <sys/time.h>

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <zlib.h>

static struct event_base	*base;

static double
now(void)
{
	struct timespec	ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (ts.tv_sec + ts.tv_nsec / 1e9);
}

static const char b64chars[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static size_t
b64_encode(const unsigned char *in, size_t len, char *out)
{
	size_t	i, o = 0;
	unsigned v;

	for (i = 0; i + 2 < len; i += 3) {
		v = in[i] << 16 | in[i + 1] << 8 | in[i + 2];
		out[o++] = b64chars[v >> 18 & 63];
		out[o++] = b64chars[v >> 12 & 63];
		out[o++] = b64chars[v >> 6 & 63];
		out[o++] = b64chars[v & 63];
	}
	if (i < len) {
		v = in[i] << 16 | (i + 1 < len ? in[i + 1] << 8 : 0);
		out[o++] = b64chars[v >> 18 & 63];
		out[o++] = b64chars[v >> 12 & 63];
		out[o++] = i + 1 < len ? b64chars[v >> 6 & 63] : '=';
		out[o++] = '=';
	}
	out[o] = '\0';
	return (o);
}

static int
b64_val(int c)
{
	const char *p;

	if (c == '\0' || (p = strchr(b64chars, c)) == NULL)
		return (-1);
	return ((int)(p - b64chars));
}

/* Decode; -1 on anything that is not canonical base64. */
static long
b64_decode(const char *in, size_t len, unsigned char *out)
{
	size_t	i, o = 0;
	int	a, b, c, d;

	if (len % 4 != 0)
		return (-1);
	for (i = 0; i < len; i += 4) {
		a = b64_val(in[i]);
		b = b64_val(in[i + 1]);
		if (a < 0 || b < 0)
			return (-1);
		out[o++] = (unsigned char)(a << 2 | b >> 4);
		if (in[i + 2] == '=') {
			if (i + 4 != len || in[i + 3] != '=')
				return (-1);
			break;
		}
		if ((c = b64_val(in[i + 2])) < 0)
			return (-1);
		out[o++] = (unsigned char)((b & 15) << 4 | c >> 2);
		if (in[i + 3] == '=') {
			if (i + 4 != len)
				return (-1);
			break;
		}
		if ((d = b64_val(in[i + 3])) < 0)
			return (-1);
		out[o++] = (unsigned char)((c & 3) << 6 | d);
	}
	return ((long)o);
}

static void
put32(unsigned char *p, uint32_t v)
{
	p[0] = v >> 24;
	p[1] = v >> 16;
	p[2] = v >> 8;
	p[3] = v;
}

static uint32_t
get32(const unsigned char *p)
{
	return ((uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	    (uint32_t)p[2] << 8 | p[3]);
}

static const char *const hnames[3] = {
	":event-type", ":content-type", ":message-type"
};
static const char *const hvalues[3] = {
	"chunk", "application/json", "event"
};

/* The inner JSON of chunk seq (seq < 0: the final message_stop). */
static int
inner_json(long seq, int frames, char *out, size_t len)
{
	if (seq >= 0)
		return (snprintf(out, len, "{\"type\":\"content_block_delta\","
		    "\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":"
		    "\"<seq %ld>\"}}", seq));
	return (snprintf(out, len, "{\"type\":\"message_stop\","
	    "\"amazon-bedrock-invocationMetrics\":{\"inputTokenCount\":17,"
	    "\"outputTokenCount\":%d,\"invocationLatency\":1000,"
	    "\"firstByteLatency\":5}}", frames));
}

/* One whole event-stream frame for chunk seq; returns its length. */
static size_t
frame_encode(long seq, int frames, unsigned char *out, size_t outlen)
{
	char		 inner[512], b64[800], payload[900];
	unsigned char	 hdr[256], *p;
	size_t		 hl = 0, pl, total, i, n;
	uLong		 crc;

	inner_json(seq, frames, inner, sizeof inner);
	b64_encode((unsigned char *)inner, strlen(inner), b64);
	pl = (size_t)snprintf(payload, sizeof payload, "{\"bytes\":\"%s\"}",
	    b64);
	for (i = 0; i < 3; i++) {
		n = strlen(hnames[i]);
		hdr[hl++] = (unsigned char)n;
		memcpy(hdr + hl, hnames[i], n);
		hl += n;
		hdr[hl++] = 7;
		n = strlen(hvalues[i]);
		hdr[hl++] = (unsigned char)(n >> 8);
		hdr[hl++] = (unsigned char)n;
		memcpy(hdr + hl, hvalues[i], n);
		hl += n;
	}
	total = 12 + hl + pl + 4;
	if (total > outlen)
		abort();
	p = out;
	put32(p, (uint32_t)total);
	put32(p + 4, (uint32_t)hl);
	put32(p + 8, (uint32_t)crc32(0, p, 8));
	memcpy(p + 12, hdr, hl);
	memcpy(p + 12 + hl, payload, pl);
	crc = crc32(0, p, (uInt)(total - 4));
	put32(p + total - 4, (uint32_t)crc);
	return (total);
}

/* ---------------------------------------------------------------- serve */

struct sframe {
	unsigned char	*p;
	size_t		 len;
};
static struct sframe	*sframes;	/* frames + 1 */
static int		 s_frames;
static long		 s_interval_ms;
static int		 s_from_body;

struct sstream {
	struct evhttp_request	*req;
	struct event		*tick;
	int			 next;
	int			 frames;	/* chunks before message_stop */
	int			 dead;
};

static void
sstream_free(struct sstream *s)
{
	if (s->tick != NULL)
		event_free(s->tick);
	free(s);
}

static void
sstream_closed(struct evhttp_connection *evcon, void *arg)
{
	struct sstream	*s = arg;

	s->dead = 1;
}

/* Add frame i of stream s to b: a chunk, or the last one, message_stop. */
static void
sstream_add(struct sstream *s, struct evbuffer *b, int i)
{
	unsigned char	 buf[2048];
	size_t		 len;

	if (i < s->frames)
		evbuffer_add_reference(b, sframes[i].p, sframes[i].len, NULL,
		    NULL);
	else if (s->frames == s_frames)
		evbuffer_add_reference(b, sframes[s_frames].p,
		    sframes[s_frames].len, NULL, NULL);
	else {
		/* Its outputTokenCount is this stream's: copied, not kept. */
		len = frame_encode(-1, s->frames, buf, sizeof buf);
		evbuffer_add(b, buf, len);
	}
}

/* Send the next frame(s); end the reply after the last. */
static void
sstream_send(struct sstream *s, int all)
{
	struct evbuffer	*b;

	if (s->dead) {
		sstream_free(s);
		return;
	}
	b = evbuffer_new();
	do {
		sstream_add(s, b, s->next);
		s->next++;
	} while (all && s->next <= s->frames);
	evhttp_send_reply_chunk(s->req, b);
	evbuffer_free(b);
	if (s->next > s->frames) {
		evhttp_connection_set_closecb(
		    evhttp_request_get_connection(s->req), NULL, NULL);
		evhttp_send_reply_end(s->req);
		sstream_free(s);
	}
}

static void
sstream_tick(evutil_socket_t fd, short ev, void *arg)
{
	sstream_send(arg, 0);
}

/* The "max_tokens":N of a request body, or -1. */
static long
body_max_tokens(struct evhttp_request *req)
{
	struct evbuffer	*in = evhttp_request_get_input_buffer(req);
	struct evbuffer_ptr p;
	char		 num[16];
	size_t		 n;
	static const char key[] = "\"max_tokens\":";

	p = evbuffer_search(in, key, sizeof key - 1, NULL);
	if (p.pos < 0 || evbuffer_ptr_set(in, &p, sizeof key - 1,
	    EVBUFFER_PTR_ADD) != 0)
		return (-1);
	n = (size_t)evbuffer_copyout_from(in, &p, num, sizeof num - 1);
	if (n == (size_t)-1)
		return (-1);
	num[n] = '\0';
	return (strtol(num, NULL, 10));
}

static void
serve_cb(struct evhttp_request *req, void *arg)
{
	const char	*uri = evhttp_request_get_uri(req);
	struct evkeyvalq *oh = evhttp_request_get_output_headers(req);
	struct sstream	*s;
	struct timeval	 tv;
	const char	*suffix = "/invoke-with-response-stream";
	size_t		 ul = strlen(uri), sl = strlen(suffix);
	long		 n = s_frames;

	if (evhttp_request_get_command(req) != EVHTTP_REQ_POST ||
	    strncmp(uri, "/model/", 7) != 0 || ul < sl ||
	    strcmp(uri + ul - sl, suffix) != 0) {
		evhttp_send_error(req, 404, NULL);
		return;
	}
	if (s_from_body && ((n = body_max_tokens(req)) < 1 || n > s_frames)) {
		evhttp_send_error(req, 400, "max_tokens out of range");
		return;
	}
	evhttp_add_header(oh, "Content-Type",
	    "application/vnd.amazon.eventstream");
	evhttp_add_header(oh, "X-Amzn-Bedrock-Content-Type",
	    "application/json");
	evhttp_add_header(oh, "x-amzn-RequestId",
	    "8f2b1c3e-0000-4000-8000-00000000b5e7");
	s = calloc(1, sizeof *s);
	s->req = req;
	s->frames = (int)n;
	evhttp_connection_set_closecb(evhttp_request_get_connection(req),
	    sstream_closed, s);
	evhttp_send_reply_start(req, 200, "OK");
	if (s_interval_ms <= 0) {
		sstream_send(s, 1);
		return;
	}
	s->tick = event_new(base, -1, EV_PERSIST, sstream_tick, s);
	tv.tv_sec = s_interval_ms / 1000;
	tv.tv_usec = (s_interval_ms % 1000) * 1000;
	event_add(s->tick, &tv);
	sstream_send(s, 0);
}

static int
serve(int port, int frames, long interval_ms)
{
	struct evhttp	*http;
	struct evconnlistener *lev;
	struct sockaddr_in sin;
	unsigned char	 buf[2048];
	int		 i;

	s_frames = frames;
	s_interval_ms = interval_ms;
	sframes = calloc((size_t)frames + 1, sizeof *sframes);
	for (i = 0; i <= frames; i++) {
		sframes[i].len = frame_encode(i < frames ? i : -1, frames, buf,
		    sizeof buf);
		sframes[i].p = malloc(sframes[i].len);
		memcpy(sframes[i].p, buf, sframes[i].len);
	}
	http = evhttp_new(base);
	evhttp_set_timeout(http, 600);
	/* A deep accept queue (evhttp_bind_socket() listens with 128): a
	 * thousand simultaneous connects must not be the upstream's
	 * bottleneck. */
	memset(&sin, 0, sizeof sin);
	sin.sin_family = AF_INET;
	sin.sin_port = htons((uint16_t)port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	lev = evconnlistener_new_bind(base, NULL, NULL,
	    LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_FREE, 4096,
	    (struct sockaddr *)&sin, sizeof sin);
	if (lev == NULL || evhttp_bind_listener(http, lev) == NULL) {
		fprintf(stderr, "streams serve: cannot bind port %d\n", port);
		return (1);
	}
	evhttp_set_gencb(http, serve_cb, NULL);
	fprintf(stderr, "streams serve: port %d, %d frames + 1%s, every %ld "
	    "ms, frame 0 %zu bytes\n", port, frames,
	    s_from_body ? " (or the body's max_tokens)" : "", interval_ms,
	    sframes[0].len);
	event_base_dispatch(base);
	return (0);
}

/* --------------------------------------------------------------- client */

struct cstream {
	long			 id;
	struct evhttp_connection *evcon;
	struct evbuffer		*acc;
	double			 t0, t_head, t_first, t_done;
	long			 nframes;	/* chunks expected */
	long			 next;		/* next expected seq */
	long			 frames;	/* frames received */
	int			 got_stop;
	int			 status;
	int			 bad_crc, bad_hdr, bad_payload, reorder, extra;
	int			 failed;
	int			 nerr;		/* errors in this stream */
	int			 uses;		/* streams on this evcon */
	struct event		*restart;	/* soak: start the next one */
	struct event		*start;		/* --ramp: when to open */
	int			 live_first;	/* open at the first frame */
};

static struct cstream	*cs;
static int		 c_n, c_frames, c_left;
static int		 c_sse;		/* /v1/messages: server-sent events */
static const char	*c_host;
static int		 c_port;
static long		 c_total_frames, c_errors;
static char		 c_err_first[256];
static long		 c_ramp_ms;	/* --ramp */
static int		 c_live, c_live_max;
static const char	*c_path, *c_auth, *c_body;
static size_t		 c_body_len;

static void
cerr(struct cstream *s, const char *what)
{
	c_errors++;
	s->nerr++;
	if (c_err_first[0] == '\0')
		snprintf(c_err_first, sizeof c_err_first, "stream %ld frame "
		    "%ld: %s", s->id, s->frames, what);
}

/* Check one whole frame at p (len bytes). */
static void
check_frame(struct cstream *s, const unsigned char *p, size_t len)
{
	uint32_t	 hl = get32(p + 4), crc;
	const unsigned char *h, *pl, *hend;
	size_t		 plen, i, nl, vl;
	int		 seen = 0;
	char		 want[512], *b64;
	unsigned char	 dec[800];
	long		 dl;
	static const char pre[] = "{\"bytes\":\"";

	s->frames++;
	c_total_frames++;
	if ((uint32_t)crc32(0, p, 8) != get32(p + 8) ||
	    (crc = (uint32_t)crc32(0, p, (uInt)(len - 4))) !=
	    get32(p + len - 4)) {
		s->bad_crc++;
		cerr(s, "bad CRC");
		return;
	}
	if (hl > len - 16) {
		s->bad_hdr++;
		cerr(s, "headers longer than the frame");
		return;
	}
	h = p + 12;
	hend = h + hl;
	while (h < hend) {
		nl = h[0];
		if (h + 1 + nl + 3 > hend || h[1 + nl] != 7) {
			s->bad_hdr++;
			cerr(s, "bad header");
			return;
		}
		vl = (size_t)h[2 + nl] << 8 | h[3 + nl];
		if (h + 4 + nl + vl > hend) {
			s->bad_hdr++;
			cerr(s, "bad header length");
			return;
		}
		for (i = 0; i < 3; i++)
			if (strlen(hnames[i]) == nl &&
			    memcmp(h + 1, hnames[i], nl) == 0 &&
			    strlen(hvalues[i]) == vl &&
			    memcmp(h + 4 + nl, hvalues[i], vl) == 0)
				seen |= 1 << i;
		h += 4 + nl + vl;
	}
	if (seen != 7) {
		s->bad_hdr++;
		cerr(s, "missing or wrong :event-type/:content-type/"
		    ":message-type");
		return;
	}
	pl = p + 12 + hl;
	plen = len - 16 - hl;
	if (plen < sizeof pre + 1 || memcmp(pl, pre, sizeof pre - 1) != 0 ||
	    memcmp(pl + plen - 2, "\"}", 2) != 0) {
		s->bad_payload++;
		cerr(s, "payload is not {\"bytes\":\"...\"}");
		return;
	}
	b64 = (char *)pl + sizeof pre - 1;
	dl = b64_decode(b64, plen - (sizeof pre - 1) - 2, dec);
	if (dl < 0) {
		s->bad_payload++;
		cerr(s, "bad base64");
		return;
	}
	if (s->got_stop) {
		s->extra++;
		cerr(s, "frame after message_stop");
		return;
	}
	inner_json(s->next < s->nframes ? s->next : -1, s->nframes, want,
	    sizeof want);
	if ((size_t)dl != strlen(want) || memcmp(dec, want, (size_t)dl) != 0) {
		s->reorder++;
		cerr(s, "unexpected chunk (lost, reordered or altered)");
		return;
	}
	if (s->next == s->nframes)
		s->got_stop = 1;
	s->next++;
}

/*
 * /v1/messages: each event "event: T\ndata: JSON\n\n" must carry the
 * chunk's JSON unchanged (pings are skipped).
 */
static void
client_feed_sse(struct cstream *s)
{
	struct evbuffer_ptr	 e;
	char			*ev, *data, *nl, want[512];
	size_t			 n;

	for (;;) {
		e = evbuffer_search(s->acc, "\n\n", 2, NULL);
		if (e.pos < 0)
			return;
		n = (size_t)e.pos + 2;
		ev = (char *)evbuffer_pullup(s->acc, (ev_ssize_t)n);
		ev[n - 2] = '\0';
		if (strncmp(ev, "event: ping\n", 12) == 0) {
			evbuffer_drain(s->acc, n);
			continue;
		}
		s->frames++;
		c_total_frames++;
		if (strncmp(ev, "event: ", 7) != 0 ||
		    (nl = strchr(ev, '\n')) == NULL ||
		    strncmp(nl + 1, "data: ", 6) != 0) {
			s->bad_payload++;
			cerr(s, "not an event: data: event");
		} else if (s->got_stop) {
			s->extra++;
			cerr(s, "event after message_stop");
		} else {
			data = nl + 7;
			inner_json(s->next < c_frames ? s->next : -1, c_frames,
			    want, sizeof want);
			if (strcmp(data, want) != 0) {
				s->reorder++;
				cerr(s, "unexpected event (lost, reordered or "
				    "altered)");
			} else {
				if (s->next == c_frames)
					s->got_stop = 1;
				s->next++;
			}
		}
		evbuffer_drain(s->acc, n);
	}
}

static void
client_feed(struct cstream *s)
{
	unsigned char	 pre[4], *p;
	uint32_t	 total;

	if (c_sse) {
		client_feed_sse(s);
		return;
	}
	for (;;) {
		if (evbuffer_get_length(s->acc) < 12)
			return;
		evbuffer_copyout(s->acc, pre, 4);
		total = get32(pre);
		if (total < 16 || total > 16 * 1024 * 1024) {
			cerr(s, "impossible frame length");
			s->failed = 1;
			evbuffer_drain(s->acc, evbuffer_get_length(s->acc));
			return;
		}
		if (evbuffer_get_length(s->acc) < total)
			return;
		p = evbuffer_pullup(s->acc, total);
		check_frame(s, p, total);
		evbuffer_drain(s->acc, total);
	}
}

static int
client_head_cb(struct evhttp_request *req, void *arg)
{
	struct cstream	*s = arg;
	const char	*ct;

	s->t_head = now();
	s->status = evhttp_request_get_response_code(req);
	ct = evhttp_find_header(evhttp_request_get_input_headers(req),
	    "Content-Type");
	if (s->status != 200)
		cerr(s, "status not 200");
	else if (ct == NULL || strcmp(ct, c_sse ?
	    "text/event-stream; charset=utf-8" :
	    "application/vnd.amazon.eventstream") != 0)
		cerr(s, "wrong Content-Type");
	return (0);
}

static void
client_chunk_cb(struct evhttp_request *req, void *arg)
{
	struct cstream	*s = arg;
	struct evbuffer	*in = evhttp_request_get_input_buffer(req);

	if (s->t_first == 0 && evbuffer_get_length(in) > 0) {
		s->t_first = now();
		s->live_first = c_live;
	}
	evbuffer_add_buffer(s->acc, in);
	client_feed(s);
}

static void	soak_done(struct cstream *);

static void
client_done_cb(struct evhttp_request *req, void *arg)
{
	struct cstream	*s = arg;

	if (req == NULL || evhttp_request_get_response_code(req) == 0) {
		cerr(s, "request failed (connection error)");
		s->failed = 1;
	} else {
		if (s->t_head == 0)
			client_head_cb(req, s);
		client_chunk_cb(req, s);
	}
	s->t_done = now();
	if (evbuffer_get_length(s->acc) != 0)
		cerr(s, "trailing partial frame");
	if (!s->got_stop || s->next != s->nframes + 1) {
		cerr(s, "stream ended early");
		s->failed = 1;
	}
	if (s->restart != NULL) {
		soak_done(s);
		return;
	}
	c_live--;
	if (--c_left == 0)
		event_base_loopexit(base, NULL);
}

static int
dcmp(const void *a, const void *b)
{
	double	x = *(const double *)a, y = *(const double *)b;

	return (x < y ? -1 : x > y);
}

static double
pct(double *v, int n, double p)
{
	int	i = (int)(p / 100.0 * n + 0.5) - 1;

	if (i < 0)
		i = 0;
	if (i >= n)
		i = n - 1;
	return (v[i]);
}

/* Stream s's POST: its headers and body, its callbacks. */
static struct evhttp_request *
client_request(struct cstream *s, const char *auth, const char *accept,
    const void *body, size_t len)
{
	struct evhttp_request	*req;
	struct evkeyvalq	*oh;

	req = evhttp_request_new(client_done_cb, s);
	evhttp_request_set_header_cb(req, client_head_cb);
	evhttp_request_set_chunked_cb(req, client_chunk_cb);
	oh = evhttp_request_get_output_headers(req);
	evhttp_add_header(oh, "Host", c_host);
	evhttp_add_header(oh, "Authorization", auth);
	evhttp_add_header(oh, "Content-Type", "application/json");
	evhttp_add_header(oh, "Accept", accept);
	evbuffer_add(evhttp_request_get_output_buffer(req), body, len);
	return (req);
}

/* Open stream s's connection and send its request. */
static int
client_open(struct cstream *s)
{
	struct evhttp_request	*req;

	s->evcon = evhttp_connection_base_new(base, NULL, c_host,
	    (ev_uint16_t)c_port);
	evhttp_connection_set_timeout(s->evcon, 300);
	req = client_request(s, c_auth, c_sse ? "text/event-stream" :
	    "application/vnd.amazon.eventstream", c_body, c_body_len);
	s->t0 = now();
	if (evhttp_make_request(s->evcon, req, EVHTTP_REQ_POST,
	    c_path) != 0) {
		fprintf(stderr, "streams client: cannot send %ld\n", s->id);
		return (-1);
	}
	if (++c_live > c_live_max)
		c_live_max = c_live;
	return (0);
}

static void
client_start_cb(evutil_socket_t fd, short what, void *arg)
{
	struct cstream	*s = arg;

	(void)fd;
	(void)what;
	if (client_open(s) == -1)
		exit(2);
}

static int
client(const char *host, int port, const char *path, int n, int frames,
    const char *token)
{
	struct rusage		 ru;
	char			 auth[4096];
	double			 t_start, t_end, *head, *first, *done, *live;
	int			 i, nok = 0;
	long			 lost = 0, crc = 0, hdr = 0, payload = 0,
				 reorder = 0, extra = 0, failed = 0;
	static const char body[] = "{\"anthropic_version\":\"bedrock-2023-05-31\","
	    "\"max_tokens\":256,\"messages\":[{\"role\":\"user\",\"content\":"
	    "[{\"type\":\"text\",\"text\":\"Count to two hundred, one number "
	    "per line.\"}]}]}";
	char			 mbody[1024];

	/* /v1/messages: the Anthropic request, model RELAY_MODEL. */
	c_sse = strncmp(path, "/v1/messages", 12) == 0;
	if (c_sse)
		snprintf(mbody, sizeof mbody, "{\"model\":\"%s\",\"stream\":"
		    "true,\"max_tokens\":256,\"messages\":[{\"role\":\"user\","
		    "\"content\":[{\"type\":\"text\",\"text\":\"Count to two "
		    "hundred, one number per line.\"}]}]}",
		    getenv("RELAY_MODEL") != NULL ? getenv("RELAY_MODEL") :
		    "anthropic.claude-3-haiku-20240307-v1:0");

	c_n = c_left = n;
	c_frames = frames;
	c_host = host;
	c_port = port;
	cs = calloc((size_t)n, sizeof *cs);
	snprintf(auth, sizeof auth, "Bearer %s", token != NULL ? token : "x");
	c_path = path;
	c_auth = auth;
	c_body = c_sse ? mbody : body;
	c_body_len = c_sse ? strlen(mbody) : sizeof body - 1;
	t_start = now();
	for (i = 0; i < n; i++) {
		struct cstream *s = &cs[i];
		struct timeval	tv;
		long		us;

		s->id = i;
		s->nframes = frames;
		s->acc = evbuffer_new();
		if (c_ramp_ms <= 0) {
			if (client_open(s) == -1)
				return (2);
			continue;
		}
		us = c_ramp_ms * 1000 * i / n;
		tv.tv_sec = us / 1000000;
		tv.tv_usec = us % 1000000;
		s->start = evtimer_new(base, client_start_cb, s);
		evtimer_add(s->start, &tv);
	}
	event_base_dispatch(base);
	t_end = now();
	head = calloc((size_t)n, sizeof *head);
	first = calloc((size_t)n, sizeof *first);
	done = calloc((size_t)n, sizeof *done);
	live = calloc((size_t)n, sizeof *live);
	for (i = 0; i < n; i++) {
		struct cstream *s = &cs[i];

		if (s->t_head > 0 && s->t_first > 0) {
			head[nok] = (s->t_head - s->t0) * 1e6;
			first[nok] = (s->t_first - s->t0) * 1e6;
			done[nok] = (s->t_done - s->t0) * 1e6;
			live[nok] = s->live_first;
			nok++;
		}
		lost += (frames + 1) - (s->next < frames + 1 ? s->next :
		    frames + 1);
		crc += s->bad_crc;
		hdr += s->bad_hdr;
		payload += s->bad_payload;
		reorder += s->reorder;
		extra += s->extra;
		failed += s->failed;
	}
	qsort(head, (size_t)nok, sizeof *head, dcmp);
	qsort(first, (size_t)nok, sizeof *first, dcmp);
	qsort(done, (size_t)nok, sizeof *done, dcmp);
	qsort(live, (size_t)nok, sizeof *live, dcmp);
	getrusage(RUSAGE_SELF, &ru);
	printf("RESULT streams=%d ok=%d frames=%ld expected=%ld lost=%ld "
	    "bad_crc=%ld bad_headers=%ld bad_payload=%ld out_of_order=%ld "
	    "extra=%ld failed=%ld errors=%ld wall_s=%.3f "
	    "head_p50_us=%.0f head_p99_us=%.0f head_max_us=%.0f "
	    "first_p50_us=%.0f first_p90_us=%.0f first_p99_us=%.0f "
	    "first_max_us=%.0f done_p50_us=%.0f done_max_us=%.0f "
	    "client_cpu_s=%.2f ramp_ms=%ld live_max=%d live_p50=%.0f "
	    "live_min=%.0f\n", n, nok, c_total_frames,
	    (long)n * (frames + 1), lost, crc, hdr, payload, reorder, extra,
	    failed, c_errors, t_end - t_start,
	    pct(head, nok, 50), pct(head, nok, 99), pct(head, nok, 100),
	    pct(first, nok, 50), pct(first, nok, 90), pct(first, nok, 99),
	    pct(first, nok, 100), pct(done, nok, 50), pct(done, nok, 100),
	    ru.ru_utime.tv_sec + ru.ru_stime.tv_sec +
	    (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6, c_ramp_ms,
	    c_live_max, pct(live, nok, 50), pct(live, nok, 0));
	if (c_errors > 0)
		printf("first error: %s\n", c_err_first);
	return (c_errors > 0 || nok != n || c_total_frames !=
	    (long)n * (frames + 1) ? 1 : 0);
}

/* ----------------------------------------------------------------- soak */

static double	 k_t0, k_stop_t;
static int	 k_stopping, k_inflight, k_inflight_min = -1, k_per_conn = 1;
static int	 k_vary;
static long	 k_started, k_ended, k_ok, k_expected, k_lost, k_crc, k_hdr,
		 k_payload, k_reorder, k_extra, k_tokens;
static double	 k_area, k_last, k_area_stop;
static double	*k_first;
static size_t	 k_nfirst, k_capfirst;
static const char *k_path, *k_auth;
static uint64_t	 k_rng = 0x9e3779b97f4a7c15ULL;

static uint64_t
k_random(void)
{
	/* xorshift64*: the same sequence of stream lengths every run. */
	k_rng ^= k_rng >> 12;
	k_rng ^= k_rng << 25;
	k_rng ^= k_rng >> 27;
	return (k_rng * 0x2545f4914f6cdd1dULL);
}

/* In-flight count changes by d; keeps its integral over time. */
static void
k_inflight_add(int d)
{
	double	t = now();

	k_area += k_inflight * (t - k_last);
	k_last = t;
	k_inflight += d;
	if (d < 0 && !k_stopping &&
	    (k_inflight_min < 0 || k_inflight < k_inflight_min))
		k_inflight_min = k_inflight;
}

/* Start slot s's next stream, on its connection or a new one. */
static void
soak_start(struct cstream *s)
{
	struct evhttp_request	*req;
	char			 body[512];
	int			 bl;

	if (s->evcon != NULL && (s->failed || s->nerr > 0 ||
	    s->uses >= k_per_conn)) {
		evhttp_connection_free(s->evcon);
		s->evcon = NULL;
	}
	if (s->evcon == NULL) {
		s->evcon = evhttp_connection_base_new(base, NULL, c_host,
		    (ev_uint16_t)c_port);
		evhttp_connection_set_timeout(s->evcon, 300);
		s->uses = 0;
	}
	s->uses++;
	s->id = k_started++;
	s->nframes = k_vary ? c_frames / 2 + (long)(k_random() %
	    (uint64_t)(c_frames + 1)) : c_frames;
	if (s->nframes < 1)
		s->nframes = 1;
	evbuffer_drain(s->acc, evbuffer_get_length(s->acc));
	s->t0 = s->t_head = s->t_first = s->t_done = 0;
	s->next = s->frames = 0;
	s->got_stop = s->status = 0;
	s->bad_crc = s->bad_hdr = s->bad_payload = s->reorder = s->extra = 0;
	s->failed = s->nerr = 0;
	bl = snprintf(body, sizeof body, "{\"anthropic_version\":"
	    "\"bedrock-2023-05-31\",\"max_tokens\":%ld,\"messages\":"
	    "[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":"
	    "\"Count to %ld, one number per line.\"}]}]}", s->nframes,
	    s->nframes);
	req = client_request(s, k_auth, "application/vnd.amazon.eventstream",
	    body, (size_t)bl);
	s->t0 = now();
	k_inflight_add(1);
	if (evhttp_make_request(s->evcon, req, EVHTTP_REQ_POST, k_path) != 0) {
		fprintf(stderr, "streams client: cannot send stream %ld\n",
		    s->id);
		exit(2);
	}
}

static void
soak_restart_cb(evutil_socket_t fd, short ev, void *arg)
{
	if (k_stopping) {
		if (k_inflight == 0)
			event_base_loopexit(base, NULL);
		return;
	}
	soak_start(arg);
}

/* Slot s's stream has ended (done callback): count it, start the next. */
static void
soak_done(struct cstream *s)
{
	struct timeval	zero = { 0, 0 };
	long		got = s->next < s->nframes + 1 ? s->next :
			    s->nframes + 1;

	k_inflight_add(-1);
	k_ended++;
	k_expected += s->nframes + 1;
	k_lost += s->nframes + 1 - got;
	k_crc += s->bad_crc;
	k_hdr += s->bad_hdr;
	k_payload += s->bad_payload;
	k_reorder += s->reorder;
	k_extra += s->extra;
	if (s->nerr == 0 && !s->failed) {
		k_ok++;
		k_tokens += s->nframes;
		if (s->t_first > 0) {
			if (k_nfirst == k_capfirst) {
				k_capfirst = k_capfirst ? 2 * k_capfirst :
				    65536;
				k_first = realloc(k_first, k_capfirst *
				    sizeof *k_first);
				if (k_first == NULL)
					abort();
			}
			k_first[k_nfirst++] = (s->t_first - s->t0) * 1e6;
		}
	}
	if (!k_stopping)
		evtimer_add(s->restart, &zero);
	else if (k_inflight == 0)
		event_base_loopexit(base, NULL);
}

static void
soak_progress_cb(evutil_socket_t fd, short ev, void *arg)
{
	printf("PROGRESS t=%.1f inflight=%d started=%ld ended=%ld ok=%ld "
	    "failed=%ld frames=%ld errors=%ld lost=%ld out_of_order=%ld\n",
	    now() - k_t0, k_inflight, k_started, k_ended, k_ok,
	    k_ended - k_ok, c_total_frames, c_errors, k_lost, k_reorder);
	fflush(stdout);
}

static void
soak_stop_cb(evutil_socket_t fd, short ev, void *arg)
{
	k_inflight_add(0);
	k_area_stop = k_area;
	k_stop_t = now();
	k_stopping = 1;
	printf("STOP t=%.1f inflight=%d: no new streams; waiting for the "
	    "ones in flight\n", k_stop_t - k_t0, k_inflight);
	fflush(stdout);
	if (k_inflight == 0)
		event_base_loopexit(base, NULL);
}

static int
soak_client(const char *host, int port, const char *path, int n, int frames,
    const char *token, long duration, long progress)
{
	struct event	*stop_ev, *prog_ev = NULL;
	struct timeval	 tv;
	struct rusage	 ru;
	char		 auth[4096];
	double		 t_end;
	int		 i;

	c_n = n;
	c_frames = frames;
	c_host = host;
	c_port = port;
	k_path = path;
	snprintf(auth, sizeof auth, "Bearer %s", token != NULL ? token : "x");
	k_auth = auth;
	cs = calloc((size_t)n, sizeof *cs);
	k_t0 = k_last = now();
	tv.tv_sec = duration;
	tv.tv_usec = 0;
	stop_ev = evtimer_new(base, soak_stop_cb, NULL);
	evtimer_add(stop_ev, &tv);
	if (progress > 0) {
		prog_ev = event_new(base, -1, EV_PERSIST, soak_progress_cb,
		    NULL);
		tv.tv_sec = progress;
		event_add(prog_ev, &tv);
	}
	for (i = 0; i < n; i++) {
		cs[i].acc = evbuffer_new();
		cs[i].restart = evtimer_new(base, soak_restart_cb, &cs[i]);
		soak_start(&cs[i]);
	}
	event_base_dispatch(base);
	t_end = now();
	if (prog_ev != NULL)
		soak_progress_cb(-1, 0, NULL);
	qsort(k_first, k_nfirst, sizeof *k_first, dcmp);
	getrusage(RUSAGE_SELF, &ru);
	printf("RESULT mode=soak duration_s=%ld streams=%d started=%ld "
	    "ended=%ld ok=%ld failed=%ld frames=%ld expected=%ld lost=%ld "
	    "bad_crc=%ld bad_headers=%ld bad_payload=%ld out_of_order=%ld "
	    "extra=%ld errors=%ld tokens=%ld inflight_mean=%.1f "
	    "inflight_min=%d wall_s=%.3f first_p50_us=%.0f first_p99_us=%.0f "
	    "first_max_us=%.0f client_cpu_s=%.2f\n", duration, n, k_started,
	    k_ended, k_ok, k_ended - k_ok, c_total_frames, k_expected, k_lost,
	    k_crc, k_hdr, k_payload, k_reorder, k_extra, c_errors, k_tokens,
	    k_stop_t > k_t0 ? k_area_stop / (k_stop_t - k_t0) : 0.0,
	    k_inflight_min, t_end - k_t0,
	    k_nfirst ? pct(k_first, (int)k_nfirst, 50) : 0,
	    k_nfirst ? pct(k_first, (int)k_nfirst, 99) : 0,
	    k_nfirst ? pct(k_first, (int)k_nfirst, 100) : 0,
	    ru.ru_utime.tv_sec + ru.ru_stime.tv_sec +
	    (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6);
	if (c_errors > 0)
		printf("first error: %s\n", c_err_first);
	return (c_errors > 0 || k_ok != k_ended || k_ended != k_started ||
	    c_total_frames != k_expected ? 1 : 0);
}

int
main(int argc, char **argv)
{
	struct rlimit	rl;
	long		duration = 0, progress = 0;
	int		i;

	/* As many descriptors as we may. */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	base = event_base_new();
	if (argc >= 2 && strcmp(argv[1], "serve") == 0) {
		i = 2;
		if (i < argc && strcmp(argv[i], "--frames-from-body") == 0) {
			s_from_body = 1;
			i++;
		}
		if (argc - i == 3)
			return (serve(atoi(argv[i]), atoi(argv[i + 1]),
			    atol(argv[i + 2])));
	}
	if (argc >= 2 && strcmp(argv[1], "client") == 0) {
		for (i = 2; i + 1 < argc && strncmp(argv[i], "--", 2) == 0;
		    i++) {
			if (strcmp(argv[i], "--vary") == 0)
				k_vary = 1;
			else if (strcmp(argv[i], "--duration") == 0)
				duration = atol(argv[++i]);
			else if (strcmp(argv[i], "--progress") == 0)
				progress = atol(argv[++i]);
			else if (strcmp(argv[i], "--per-conn") == 0)
				k_per_conn = atoi(argv[++i]);
			else if (strcmp(argv[i], "--ramp") == 0)
				c_ramp_ms = atol(argv[++i]);
			else
				break;
		}
		if (duration > 0 && k_per_conn > 0 &&
		    (argc - i == 5 || argc - i == 6))
			return (soak_client(argv[i], atoi(argv[i + 1]),
			    argv[i + 2], atoi(argv[i + 3]), atoi(argv[i + 4]),
			    argc - i == 6 ? argv[i + 5] : NULL, duration,
			    progress));
		if (duration == 0 && (argc - i == 5 || argc - i == 6))
			return (client(argv[i], atoi(argv[i + 1]), argv[i + 2],
			    atoi(argv[i + 3]), atoi(argv[i + 4]),
			    argc - i == 6 ? argv[i + 5] : NULL));
	}
	fprintf(stderr, "usage: streams serve [--frames-from-body] PORT FRAMES "
	    "INTERVAL_MS\n"
	    "       streams client [--ramp MS] HOST PORT PATH STREAMS FRAMES "
	    "[TOKEN]\n"
	    "       streams client --duration SECS [--progress SECS] "
	    "[--per-conn N] [--vary]\n"
	    "           HOST PORT PATH STREAMS FRAMES [TOKEN]\n");
	return (2);
}
