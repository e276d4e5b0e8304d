/* test-log.c: escaping of network text, secret masking, trace parsing. */

#include <stdlib.h>
#include <string.h>

#include "bsp.h"
#include "tap.h"

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
	int	 mask = 0;
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
	return (tap_done());
}
