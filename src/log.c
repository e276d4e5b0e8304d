/*
 * log.c: logging in the OpenBSD log.c shape.
 *
 * Lines go to stderr or syslog as logfmt ("text") or JSON lines. Every value
 * is escaped on the way out, so text that came from the network can be
 * logged without letting it forge lines or fields. Secrets never reach this
 * file unmasked: callers pass them through log_mask().
 *
 * Once the event loop runs (log_buffer_start), info and debug lines to
 * stderr (the access log among them) are gathered in a buffer and written
 * together at the end of the loop turn that made them, by a zero-delay
 * timer made active when the first line goes in: one write(2) for many
 * lines. The buffer is written first, so that lines keep their order,
 * whenever a warning or an error is logged (those are written at once),
 * when the next line would not fit, before a fork (log_flush), when
 * buffering stops at shutdown and at exit.
 */

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "bsp.h"

#define LOG_LINE_MAX	16384
#define LOG_VALUE_MAX	2048
#define LOG_BUF_SIZE	LOG_LINE_MAX	/* a whole line always fits */

static const char	*log_progname = BSP_NAME;
static int		 log_level = LOG_LVL_INFO;
static int		 log_format = LOG_FMT_TEXT;
static int		 log_syslog;
static int		 log_trace_mask;

static struct {
	struct event	*ev;		/* the end-of-turn flush; NULL: off */
	int		 direct;	/* inside libevent: write at once */
	size_t		 len;
	char		 buf[LOG_BUF_SIZE];
} log_out;

static const char *const log_level_names[] = {
	"error", "warn", "info", "debug"
};
static const int log_syslog_prio[] = {
	LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG
};
static const struct {
	const char	*name;
	int		 bit;
} log_trace_names[] = {
	{ "http",	TRACE_HTTP },
	{ "oauth",	TRACE_OAUTH },
	{ "upstream",	TRACE_UPSTREAM },
	{ "db",		TRACE_DB },
	{ "auth",	TRACE_AUTH },
	{ "config",	TRACE_CONFIG },
	{ "all",	0xff },
};

static void	log_vmsg(int, const char *, const char *, va_list)
		    printflike(3, 0);
static void	log_write(const char *, size_t);
static void	log_flush_cb(evutil_socket_t, short, void *);

/* All of len bytes to stderr; what cannot be written is dropped. */
static void
log_write(const char *p, size_t len)
{
	ssize_t	n;

	while (len > 0) {
		if ((n = write(STDERR_FILENO, p, len)) == -1) {
			if (errno == EINTR)
				continue;
			return;		/* nowhere left to complain */
		}
		p += n;
		len -= (size_t)n;
	}
}

/* Write the buffered lines now. */
void
log_flush(void)
{
	int	saved_errno = errno;

	if (log_out.len != 0) {
		log_write(log_out.buf, log_out.len);
		log_out.len = 0;
	}
	errno = saved_errno;
}

static void
log_flush_cb(evutil_socket_t fd, short ev, void *arg)
{
	log_flush();
}

/*
 * Gather info and debug lines to stderr and write them at the end of each
 * turn of base's loop (and at exit, if log_buffer_stop is not reached).
 */
void
log_buffer_start(struct event_base *base)
{
	static int	registered;

	if (log_out.ev != NULL)
		return;
	if ((log_out.ev = evtimer_new(base, log_flush_cb, NULL)) == NULL)
		fatalx("%s: evtimer_new", __func__);
	if (!registered && atexit(log_flush) == 0)
		registered = 1;
}

/* Write what is buffered and write each line at once from now on. */
void
log_buffer_stop(void)
{
	log_flush();
	if (log_out.ev != NULL) {
		event_free(log_out.ev);
		log_out.ev = NULL;
	}
}

void
log_init(const char *progname)
{
	if (progname != NULL)
		log_progname = progname;
	log_level = LOG_LVL_INFO;
	log_format = LOG_FMT_TEXT;
	log_syslog = 0;
	tzset();
}

/* Apply level, format and output; syslog is opened on first use. */
void
log_configure(int level, int format, int use_syslog)
{
	if (level < LOG_LVL_ERROR)
		level = LOG_LVL_ERROR;
	if (level > LOG_LVL_DEBUG)
		level = LOG_LVL_DEBUG;
	log_level = level;
	log_format = format;
	if (use_syslog && !log_syslog)
		openlog(log_progname, LOG_PID | LOG_NDELAY, LOG_DAEMON);
	else if (!use_syslog && log_syslog)
		closelog();
	log_syslog = use_syslog;
}

int
log_get_level(void)
{
	return (log_level);
}

/* Parse "http,oauth" into a mask of TRACE_* bits. */
int
log_parse_trace(const char *spec, int *mask, char **cause)
{
	char	*copy, *p, *word;
	size_t	 i;
	int	 m = 0;

	copy = p = xstrdup(spec);
	while ((word = strsep(&p, ",")) != NULL) {
		if (*word == '\0')
			continue;
		for (i = 0; i < nitems(log_trace_names); i++) {
			if (strcasecmp(word, log_trace_names[i].name) == 0)
				break;
		}
		if (i == nitems(log_trace_names)) {
			if (cause != NULL)
				xasprintf(cause, "unknown trace category "
				    "\"%s\" (known: http, oauth, upstream, db, "
				    "auth, config, all)", word);
			free(copy);
			return (-1);
		}
		m |= log_trace_names[i].bit;
	}
	free(copy);
	*mask = m;
	return (0);
}

void
log_set_trace(int mask)
{
	log_trace_mask = mask;
}

int
log_trace_on(int cat)
{
	return ((log_trace_mask & cat) != 0);
}

/*
 * Escape len bytes of s into dst (size dsize, always terminated): quotes,
 * backslashes and control characters become escapes, invalid UTF-8 becomes
 * \xNN. The result is safe inside a double-quoted logfmt or JSON string.
 * Returns the length written; output is cut (with "...") if it does not fit.
 */
size_t
log_escape(const char *s, size_t len, char *dst, size_t dsize)
{
	const unsigned char	*u = (const unsigned char *)s;
	size_t			 i = 0, o = 0, n;
	char			 tmp[8];
	const char		*add;
	size_t			 addlen;

	if (dsize == 0)
		return (0);
	while (i < len) {
		add = tmp;
		if (u[i] == '"') {
			add = "\\\"";
			addlen = 2;
			n = 1;
		} else if (u[i] == '\\') {
			add = "\\\\";
			addlen = 2;
			n = 1;
		} else if (u[i] == '\n') {
			add = "\\n";
			addlen = 2;
			n = 1;
		} else if (u[i] == '\r') {
			add = "\\r";
			addlen = 2;
			n = 1;
		} else if (u[i] == '\t') {
			add = "\\t";
			addlen = 2;
			n = 1;
		} else if (u[i] < 0x20 || u[i] == 0x7f) {
			snprintf(tmp, sizeof tmp, "\\u%04x", u[i]);
			addlen = 6;
			n = 1;
		} else if ((n = utf8_seq(u + i, len - i)) == 0) {
			/* JSON has no \x; \u00NN would change the meaning. */
			snprintf(tmp, sizeof tmp, "\\\\x%02x", u[i]);
			addlen = strlen(tmp);
			n = 1;
		} else {
			add = (const char *)u + i;
			addlen = n;
		}
		if (o + addlen + 4 >= dsize) {
			if (dsize >= 4) {
				o = o > dsize - 4 ? dsize - 4 : o;
				memcpy(dst + o, "...", 3);
				o += 3;
			}
			break;
		}
		memcpy(dst + o, add, addlen);
		o += addlen;
		i += n;
	}
	dst[o] = '\0';
	return (o);
}

/* Does a logfmt value need quotes? */
static int
log_needs_quote(const char *s)
{
	if (*s == '\0')
		return (1);
	for (; *s != '\0'; s++) {
		if (*s <= ' ' || *s == '"' || *s == '=' || *s == '\\' ||
		    (unsigned char)*s >= 0x7f)
			return (1);
	}
	return (0);
}

/*
 * Fields stop at LOG_FIELDS_MAX so that the closing "}" and the newline
 * always fit: a line is always one whole line.
 */
#define LOG_FIELDS_MAX	(LOG_LINE_MAX - 8)

static void
log_line_add(char *line, size_t *off, const char *s, size_t len)
{
	if (*off + len > LOG_FIELDS_MAX)
		len = *off < LOG_FIELDS_MAX ? LOG_FIELDS_MAX - *off : 0;
	memcpy(line + *off, s, len);
	*off += len;
	line[*off] = '\0';
}

/* The end of a line ("}" for JSON, the newline): never cut. */
static void
log_line_end(char *line, size_t *off, const char *s)
{
	size_t	len = strlen(s);

	memcpy(line + *off, s, len);
	*off += len;
	line[*off] = '\0';
}

static void
log_line_addf(char *line, size_t *off, const char *fmt, ...)
    printflike(3, 4);
static void
log_line_addf(char *line, size_t *off, const char *fmt, ...)
{
	va_list	ap;
	int	n;

	if (*off >= LOG_FIELDS_MAX)
		return;
	va_start(ap, fmt);
	n = vsnprintf(line + *off, LOG_FIELDS_MAX + 1 - *off, fmt, ap);
	va_end(ap);
	if (n > 0) {
		*off += (size_t)n;
		if (*off > LOG_FIELDS_MAX)
			*off = LOG_FIELDS_MAX;
		line[*off] = '\0';
	}
}

/* A NUL-terminated piece (cut at LOG_FIELDS_MAX like any other). */
static void
log_line_adds(char *line, size_t *off, const char *s)
{
	log_line_add(line, off, s, strlen(s));
}

/*
 * One field. A quoted value is cut by log_escape() (with "...") to the room
 * left before LOG_FIELDS_MAX, and a field that does not fit even so is left
 * out: a field must never be cut, which would leave a string open. Pieces
 * are copied, not formatted: an access-log line has about fifteen fields.
 */
static void
log_line_kv(char *line, size_t *off, const char *key, const char *val, int num)
{
	char	esc[LOG_VALUE_MAX];
	size_t	room, over, dsize, vlen = strlen(val);

	room = *off < LOG_FIELDS_MAX ? LOG_FIELDS_MAX - *off : 0;
	over = strlen(key) + 6;		/* ,"key":"" or  key="" */
	if (num ? over + vlen > room : over + 4 > room)
		return;
	dsize = room - over + 1 < sizeof esc ? room - over + 1 : sizeof esc;
	if (log_format == LOG_FMT_JSON) {
		log_line_add(line, off, ",\"", 2);
		log_line_adds(line, off, key);
		if (num) {
			log_line_add(line, off, "\":", 2);
			log_line_add(line, off, val, vlen);
		} else {
			log_line_add(line, off, "\":\"", 3);
			log_line_add(line, off, esc,
			    log_escape(val, vlen, esc, dsize));
			log_line_add(line, off, "\"", 1);
		}
		return;
	}
	if (*off != 0)
		log_line_add(line, off, " ", 1);
	log_line_adds(line, off, key);
	if (num || (!log_needs_quote(val) && vlen < LOG_VALUE_MAX)) {
		log_line_add(line, off, "=", 1);
		log_line_add(line, off, val, vlen);
	} else {
		log_line_add(line, off, "=\"", 2);
		log_line_add(line, off, esc, log_escape(val, vlen, esc, dsize));
		log_line_add(line, off, "\"", 1);
	}
}

/*
 * The time of a line, "2026-12-07T10:12:44.360Z": the part up to the
 * seconds is formatted once per second.
 */
static void
log_time(char *buf, size_t len)
{
	static time_t	 last = -1;
	static char	 head[64];
	struct timespec	 ts;
	struct tm	 tm;
	long		 ms;

	clock_gettime(CLOCK_REALTIME, &ts);
	if (ts.tv_sec != last) {
		gmtime_r(&ts.tv_sec, &tm);
		snprintf(head, sizeof head, "%04d-%02d-%02dT%02d:%02d:%02d",
		    tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
		    tm.tm_min, tm.tm_sec);
		last = ts.tv_sec;
	}
	ms = ts.tv_nsec / 1000000;
	snprintf(buf, len, "%s.%c%c%cZ", head, (char)('0' + ms / 100),
	    (char)('0' + ms / 10 % 10), (char)('0' + ms % 10));
}

/* Emit one log line with a message and structured fields. */
void
log_fields(int level, const char *msg, const struct log_field *f, size_t n)
{
	char		 line[LOG_LINE_MAX], tbuf[64], num[64];
	size_t		 off = 0, i;
	int		 saved_errno = errno;

	if (level > log_level)
		return;
	line[0] = '\0';
	if (log_format == LOG_FMT_JSON)
		log_line_add(line, &off, "{", 1);
	if (!log_syslog) {
		log_time(tbuf, sizeof tbuf);
		if (log_format == LOG_FMT_JSON) {
			log_line_adds(line, &off, "\"time\":\"");
			log_line_adds(line, &off, tbuf);
			log_line_add(line, &off, "\"", 1);
		} else {
			log_line_adds(line, &off, "time=");
			log_line_adds(line, &off, tbuf);
		}
		log_line_kv(line, &off, "level", log_level_names[level], 0);
	} else if (log_format == LOG_FMT_JSON)
		log_line_addf(line, &off, "\"level\":\"%s\"",
		    log_level_names[level]);
	else
		log_line_addf(line, &off, "level=%s", log_level_names[level]);
	log_line_kv(line, &off, "msg", msg, 0);
	for (i = 0; i < n; i++) {
		if (f[i].key == NULL)
			continue;
		switch (f[i].kind) {
		case LF_STR:
			if (f[i].str == NULL)
				continue;
			log_line_kv(line, &off, f[i].key, f[i].str, 0);
			break;
		case LF_INT:
			num_lld(num, f[i].num);
			log_line_kv(line, &off, f[i].key, num, 1);
			break;
		case LF_DBL:
			num_fixed6(num, sizeof num, f[i].dbl);
			log_line_kv(line, &off, f[i].key, num, 1);
			break;
		}
	}
	if (log_format == LOG_FMT_JSON)
		log_line_end(line, &off, "}");

	if (log_syslog)
		syslog(log_syslog_prio[level], "%s", line);
	else {
		log_line_end(line, &off, "\n");
		if (log_out.ev != NULL && !log_out.direct &&
		    level >= LOG_LVL_INFO) {
			if (off > sizeof log_out.buf - log_out.len)
				log_flush();
			if (log_out.len == 0)
				event_active(log_out.ev, EV_TIMEOUT, 1);
			memcpy(log_out.buf + log_out.len, line, off);
			log_out.len += off;
		} else {
			/* Whole lines, in order: what is buffered first. */
			log_flush();
			log_write(line, off);
		}
	}
	errno = saved_errno;
}

static void
log_vmsg(int level, const char *errstr, const char *fmt, va_list ap)
{
	char			msg[LOG_LINE_MAX / 2];
	struct log_field	f[1] = { LFS("error", errstr) };

	if (level > log_level)
		return;
	vsnprintf(msg, sizeof msg, fmt, ap);
	log_fields(level, msg, f, errstr != NULL ? 1 : 0);
}

void
log_warn(const char *fmt, ...)
{
	va_list	ap;
	char	err[256];

	bsp_strlcpy(err, strerror(errno), sizeof err);
	va_start(ap, fmt);
	log_vmsg(LOG_LVL_WARN, err, fmt, ap);
	va_end(ap);
}

void
log_warnx(const char *fmt, ...)
{
	va_list	ap;

	va_start(ap, fmt);
	log_vmsg(LOG_LVL_WARN, NULL, fmt, ap);
	va_end(ap);
}

void
log_errorx(const char *fmt, ...)
{
	va_list	ap;

	va_start(ap, fmt);
	log_vmsg(LOG_LVL_ERROR, NULL, fmt, ap);
	va_end(ap);
}

void
log_info(const char *fmt, ...)
{
	va_list	ap;

	va_start(ap, fmt);
	log_vmsg(LOG_LVL_INFO, NULL, fmt, ap);
	va_end(ap);
}

void
log_debug(const char *fmt, ...)
{
	va_list	ap;

	if (log_level < LOG_LVL_DEBUG)
		return;
	va_start(ap, fmt);
	log_vmsg(LOG_LVL_DEBUG, NULL, fmt, ap);
	va_end(ap);
}

/* Trace lines are written at info level when their category is on. */
void
log_trace(int cat, const char *fmt, ...)
{
	va_list			ap;
	char			msg[LOG_LINE_MAX / 2];
	struct log_field	f[1];
	size_t			i;

	if ((log_trace_mask & cat) == 0)
		return;
	f[0] = (struct log_field)LFS("trace", "?");
	for (i = 0; i < nitems(log_trace_names); i++) {
		if (log_trace_names[i].bit == cat)
			f[0].str = log_trace_names[i].name;
	}
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	log_fields(log_level < LOG_LVL_INFO ? log_level : LOG_LVL_INFO, msg,
	    f, 1);
}

void
fatal(const char *fmt, ...)
{
	va_list	ap;
	char	err[256];

	bsp_strlcpy(err, strerror(errno), sizeof err);
	va_start(ap, fmt);
	log_vmsg(LOG_LVL_ERROR, err, fmt, ap);
	va_end(ap);
	exit(2);
}

void
fatalx(const char *fmt, ...)
{
	va_list	ap;

	va_start(ap, fmt);
	log_vmsg(LOG_LVL_ERROR, NULL, fmt, ap);
	va_end(ap);
	exit(2);
}

/*
 * Describe a secret without revealing it: a well-known public prefix (which
 * says what kind of credential it is) and the length. Anything else shows
 * only its length.
 */
const char *
log_mask(const char *secret, char *buf, size_t len)
{
	static const char *const prefixes[] = {
		"bsr_", "bsk_", "eyJ", "AKIA", "ASIA", "ABSK", "bedrock-api-key-"
	};
	size_t	i, slen;

	if (secret == NULL) {
		bsp_strlcpy(buf, "(none)", len);
		return (buf);
	}
	slen = strlen(secret);
	for (i = 0; i < nitems(prefixes); i++) {
		if (strncmp(secret, prefixes[i], strlen(prefixes[i])) == 0 &&
		    slen > strlen(prefixes[i]) + 8) {
			snprintf(buf, len, "%s...(%zu chars)", prefixes[i], slen);
			return (buf);
		}
	}
	snprintf(buf, len, "***(%zu chars)", slen);
	return (buf);
}

/*
 * libevent's own messages come from inside the loop's machinery, where
 * making the flush event active is not safe: they are written at once.
 */
static void
log_libevent_cb(int severity, const char *msg)
{
	log_out.direct = 1;
	switch (severity) {
	case EVENT_LOG_DEBUG:
		log_trace(TRACE_HTTP, "libevent: %s", msg);
		break;
	case EVENT_LOG_MSG:
		log_info("libevent: %s", msg);
		break;
	case EVENT_LOG_WARN:
		log_warnx("libevent: %s", msg);
		break;
	default:
		log_errorx("libevent: %s", msg);
		break;
	}
	log_out.direct = 0;
}

static void
log_libevent_fatal(int err)
{
	fatalx("libevent fatal error %d", err);
}

/* Route libevent's own messages into our log. */
void
log_libevent_init(void)
{
	event_set_log_callback(log_libevent_cb);
	event_set_fatal_callback(log_libevent_fatal);
}
