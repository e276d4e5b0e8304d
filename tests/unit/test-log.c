/*
 * test-log.c: escaping of network text, secret masking, trace parsing, and
 * the buffered lines of a running loop (none lost, none out of order).
 */

#include <sys/types.h>
#include <sys/wait.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "bsp.h"
#include "tap.h"

#define LOG_VALUE_MAX_TEST	4096	/* more than log.c's LOG_VALUE_MAX */

static char	logpath[] = "/tmp/test-log.XXXXXX";

/* What the log file holds, as "msg" values joined by ",". */
static const char *
logged(void)
{
	static char	 out[65536];
	char		 line[20000], *m, *e;
	FILE		*f;
	size_t		 o = 0;

	out[0] = '\0';
	if ((f = fopen(logpath, "r")) == NULL)
		return ("(no file)");
	while (fgets(line, sizeof line, f) != NULL) {
		if ((m = strstr(line, " msg=")) == NULL)
			continue;
		m += 5;
		e = m + strcspn(m, " \n");
		o += (size_t)snprintf(out + o, sizeof out - o, "%s%.*s",
		    o == 0 ? "" : ",", (int)(e - m), m);
		if (o >= sizeof out)
			break;
	}
	fclose(f);
	return (out);
}

/* Send stderr to a fresh log file; returns the old stderr. */
static int
log_to_file(void)
{
	int	fd, saved;

	saved = dup(STDERR_FILENO);
	if ((fd = open(logpath, O_WRONLY | O_CREAT | O_TRUNC, 0600)) == -1 ||
	    dup2(fd, STDERR_FILENO) == -1)
		abort();
	close(fd);
	return (saved);
}

/* The last line of the log file, without its time field. */
static const char *
last_line(void)
{
	static char	 line[20000];
	char		 buf[20000], *p;
	FILE		*f;

	line[0] = '\0';
	if ((f = fopen(logpath, "r")) == NULL)
		return ("(no file)");
	while (fgets(buf, sizeof buf, f) != NULL)
		memcpy(line, buf, strlen(buf) + 1);
	fclose(f);
	line[strcspn(line, "\n")] = '\0';
	/* time=2026-12-07T10:12:44.360Z or "time":"...", 24 characters */
	if ((p = strstr(line, "time")) != NULL && strlen(p) > 29)
		memmove(p + 4, p + 29 + (line[0] == '{' ? 2 : 0),
		    strlen(p + 29 + (line[0] == '{' ? 2 : 0)) + 1);
	return (line);
}

/* Fields as text and JSON, copied rather than formatted: the same lines. */
static void
test_fields(void)
{
	struct log_field	 f[] = {
		LFS("id", "abc"),
		LFS("path", "/a b\"c"),
		LFI("status", 200),
		LFI("neg", -9223372036854775807LL - 1),
		LFI("zero", 0),
		LFD("duration", 0.0123456789),
		LFS("empty", ""),
	};
	char			 big[LOG_VALUE_MAX_TEST + 1];
	struct log_field	 g[] = { LFS("big", big) };
	const char		*l;
	int			 saved;

	saved = log_to_file();
	log_configure(LOG_LVL_INFO, LOG_FMT_TEXT, 0);
	log_fields(LOG_LVL_INFO, "request", f, sizeof f / sizeof f[0]);
	is_str(last_line(), "time level=info msg=request id=abc "
	    "path=\"/a b\\\"c\" status=200 neg=-9223372036854775808 zero=0 "
	    "duration=0.012346 empty=\"\"", "fields: text");
	log_configure(LOG_LVL_INFO, LOG_FMT_JSON, 0);
	log_fields(LOG_LVL_INFO, "request", f, sizeof f / sizeof f[0]);
	is_str(last_line(), "{\"time\",\"level\":\"info\",\"msg\":\"request\","
	    "\"id\":\"abc\",\"path\":\"/a b\\\"c\",\"status\":200,"
	    "\"neg\":-9223372036854775808,\"zero\":0,"
	    "\"duration\":0.012346,\"empty\":\"\"}", "fields: JSON");
	memset(big, 'x', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	log_fields(LOG_LVL_INFO, "big", g, 1);
	l = last_line();
	ok(strstr(l, "...\"}") != NULL && strlen(l) < LOG_VALUE_MAX_TEST + 64,
	    "fields: a long value is cut with an ellipsis, the line closed");
	log_configure(LOG_LVL_INFO, LOG_FMT_TEXT, 0);
	dup2(saved, STDERR_FILENO);
	close(saved);
}

static void
test_buffer(void)
{
	struct event_base	*base;
	char			 want[65536], big[300];
	pid_t			 pid;
	size_t			 o, i;
	int			 saved, status;

	if ((base = event_base_new()) == NULL)
		abort();
	log_configure(LOG_LVL_DEBUG, LOG_FMT_TEXT, 0);
	saved = log_to_file();
	log_buffer_start(base);

	log_info("one");
	log_debug("two");
	is_str(logged(), "", "buffer: info and debug lines wait for the end of "
	    "the loop turn");
	event_base_loop(base, EVLOOP_NONBLOCK);
	is_str(logged(), "one,two", "buffer: written at the end of the turn, "
	    "in order");

	log_info("three");
	log_warnx("four");
	is_str(logged(), "one,two,three,four", "buffer: a warning is written "
	    "at once, after what was buffered");
	log_info("five");
	log_errorx("six");
	is_str(logged(), "one,two,three,four,five,six", "buffer: an error "
	    "too");

	/* Far more than the buffer holds, in one turn. */
	memset(big, 'x', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	o = (size_t)snprintf(want, sizeof want, "%s", logged());
	for (i = 0; i < 200; i++) {
		log_info("n%zu-%s", i, big);
		o += (size_t)snprintf(want + o, sizeof want - o, ",n%zu-%s", i,
		    big);
	}
	event_base_loop(base, EVLOOP_NONBLOCK);
	is_str(logged(), want, "buffer: 200 lines of 300 bytes in one turn, "
	    "none lost, in order");

	log_info("seven");
	log_flush();
	ok(strstr(logged(), ",seven") != NULL, "buffer: log_flush (before a "
	    "fork) writes what waits");

	log_info("eight");
	log_buffer_stop();
	ok(strstr(logged(), ",seven,eight") != NULL, "buffer: stopping (at "
	    "shutdown) writes what waits");
	log_info("nine");
	ok(strstr(logged(), ",eight,nine") != NULL, "buffer: stopped, lines "
	    "are written at once");

	/* A process that exits with lines still buffered writes them. */
	log_to_file();
	if ((pid = fork()) == 0) {
		log_buffer_start(base);
		log_info("ten");
		log_info("eleven");
		exit(0);
	}
	waitpid(pid, &status, 0);
	is_str(logged(), "ten,eleven", "buffer: lines buffered at exit are "
	    "written");

	dup2(saved, STDERR_FILENO);
	close(saved);
	unlink(logpath);
	event_base_free(base);
}

static const char *
esc(const char *s, size_t len)
{
	static char	buf[256];

	log_escape(s, len, buf, sizeof buf);
	return (buf);
}

int
main(void)
{
	char	 buf[64], small[8];
	int	 mask = 0, fd;
	char	*cause = NULL;

	is_str(esc("plain", 5), "plain", "plain text unchanged");
	is_str(esc("a\"b\\c", 5), "a\\\"b\\\\c", "quotes and backslashes");
	is_str(esc("x\nlevel=error msg=forged", 24),
	    "x\\nlevel=error msg=forged", "newline cannot forge a line");
	is_str(esc("\r\t\x01\x7f", 4), "\\r\\t\\u0001\\u007f", "controls");
	is_str(esc("caf\xc3\xa9", 5), "caf\xc3\xa9", "valid UTF-8 kept");
	is_str(esc("bad\xff\xfe", 5), "bad\\\\xff\\\\xfe", "invalid UTF-8 escaped");
	is_str(esc("\xed\xa0\x80", 3), "\\\\xed\\\\xa0\\\\x80",
	    "UTF-16 surrogate escaped");
	is_str(esc("a\0b", 3), "a\\u0000b", "NUL escaped");
	log_escape("0123456789abcdef", 16, small, sizeof small);
	ok(strlen(small) < sizeof small && strstr(small, "...") != NULL,
	    "long value cut with an ellipsis");

	log_mask("bsr_0123456789abcdefghijklmnopqrstuvwxyzABCDEFG", buf,
	    sizeof buf);
	is_str(buf, "bsr_...(47 chars)", "refresh token masked to its prefix");
	log_mask("supersecretvalue", buf, sizeof buf);
	is_str(buf, "***(16 chars)", "unknown secret shows only length");
	ok(strstr(log_mask("bsk_short", buf, sizeof buf), "short") == NULL,
	    "short secret with a known prefix does not leak its tail");

	ok(log_parse_trace("http,oauth", &mask, &cause) == 0 &&
	    mask == (TRACE_HTTP | TRACE_OAUTH), "trace categories");
	ok(log_parse_trace("http,nonsense", &mask, &cause) == -1 &&
	    cause != NULL && strstr(cause, "nonsense") != NULL,
	    "unknown trace category named in the error");
	free(cause);

	if ((fd = mkstemp(logpath)) == -1)
		abort();
	close(fd);
	test_fields();
	test_buffer();
	return (tap_done());
}
