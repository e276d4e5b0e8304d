/*
 * test-util.c: string lists, CIDRs, host:port, URLs, globbing, durations,
 * and the blocks kept for libevent (xmalloc.c's evmem).
 */

#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <malloc.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "bsp.h"
#include "tap.h"

static int
match(const char *cidr, const char *addr)
{
	struct cidr		c;
	struct sockaddr_storage	ss;

	if (cidr_parse(cidr, &c) == -1 || addr_parse(addr, &ss) == -1)
		return (-1);
	return (cidr_match(&c, (struct sockaddr *)&ss));
}

/* sockaddr_str() of IPv4 addresses against inet_ntop(); 1 if all agree. */
static int
ipv4_as_inet_ntop(void)
{
	struct sockaddr_in	sin;
	char			want[INET_ADDRSTRLEN], got[INET_ADDRSTRLEN];
	uint32_t		a;
	long			i;

	memset(&sin, 0, sizeof sin);
	sin.sin_family = AF_INET;
	srandom(4);
	for (i = 0; i < 256 * 4 + 100000; i++) {
		if (i < 256 * 4)	/* each byte through all its values */
			a = (uint32_t)(i % 256) << (8 * (i / 256));
		else
			a = (uint32_t)random() ^ ((uint32_t)random() << 16);
		sin.sin_addr.s_addr = htonl(a);
		if (inet_ntop(AF_INET, &sin.sin_addr, want, sizeof want) ==
		    NULL || sockaddr_str((struct sockaddr *)&sin, got,
		    sizeof got) == -1 || strcmp(want, got) != 0) {
			diag("%s: \"%s\"", want, got);
			return (0);
		}
	}
	return (1);
}

/* sockaddr_group() of a parsed address, or "-" when it fails. */
static const char *
group(const char *addr, char *buf, size_t len)
{
	struct sockaddr_storage	ss;

	memset(&ss, 0, sizeof ss);
	if (addr_parse(addr, &ss) == -1 ||
	    sockaddr_group((struct sockaddr *)&ss, buf, len) == -1)
		bsp_strlcpy(buf, "-", len);
	return (buf);
}

/*
 * n blocks of size made and given back to evmem: how many of the first
 * want taken again are the last want given, last in first out. Blocks
 * kept are handed out in that order, so a cap shows in the first out: a
 * list holding all n would begin with the n-th.
 */
static size_t
evmem_kept(size_t size, size_t n, size_t want)
{
	void	*keep[64];
	size_t	 i, got = 0;

	for (i = 0; i < n; i++)
		keep[i] = evmem_malloc(size);
	for (i = 0; i < n; i++)
		evmem_free(keep[i]);
	for (i = 0; i < want; i++)
		if (evmem_malloc(size) == keep[want - 1 - i])
			got++;
	for (i = 0; i < want; i++)
		free(keep[i]);
	evmem_release();
	return (got);
}

/*
 * evmem: every block holds what was asked; a freed block is handed out
 * again for a request it holds and not for a larger one; the caps hold;
 * libevent moves a megabyte through its buffers with it.
 */
static void
test_evmem(void)
{
	static const size_t	 sizes[] = { 1, 24, 25, 100, 1000, 1016, 1017,
	    1024, 1025, 4096, 5000, 16384, 16385, 40000 };
	struct evbuffer		*a, *b;
	void			*p, *q;
	unsigned char		 chunk[3000], out[3000];
	size_t			 i, n, u, bad = 0, moved = 0;

	for (i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
		p = evmem_malloc(sizes[i]);
		if (p == NULL || malloc_usable_size(p) < sizes[i])
			bad++;
		memset(p, 0xa5, sizes[i]);
		evmem_free(p);
		q = evmem_malloc(sizes[i]);
		if (q == NULL || malloc_usable_size(q) < sizes[i])
			bad++;
		memset(q, 0x5a, sizes[i]);
		evmem_free(q);
	}
	is_int((int)bad, 0, "evmem: every block holds at least what was asked");
	evmem_release();

	/* 104: what glibc's and AddressSanitizer's malloc say it holds. */
	p = malloc(104);
	evmem_free(p);
	q = evmem_malloc(105);
	ok(q != p, "evmem: a kept block is not handed out for more than it "
	    "holds");
	free(q);
	ok(evmem_malloc(104) == p, "evmem: a kept block is handed out again "
	    "for what it holds");
	evmem_free(p);
	evmem_release();

	p = malloc(5000);	/* not a power of two: kept as 4 KiB */
	evmem_free(p);
	q = evmem_malloc(4097);
	ok(q != p, "evmem: a 5000-byte block is not taken for a request over "
	    "4 KiB");
	free(q);
	ok(evmem_malloc(4096) == p, "evmem: it serves a 4 KiB one");
	free(p);	/* as evbuffer_readln's callers do: no error */
	evmem_release();

	is_int((int)evmem_kept(200, 40, 32), 32,
	    "evmem: 32 blocks of a size kept, not 40");
	is_int((int)evmem_kept(16384, 8, 4), 4, "evmem: 64 KiB of a size "
	    "kept (four 16 KiB blocks), not eight");

	/* libevent on it: chains of every size through two buffers. */
	evmem_init();
	a = evbuffer_new();
	b = evbuffer_new();
	for (i = 0; i < sizeof chunk; i++)
		chunk[i] = (unsigned char)(i * 7);
	for (i = 0; i < 350; i++) {
		evbuffer_add(a, chunk, 1 + i * 97 % sizeof chunk);
		if (i % 3 == 2)
			evbuffer_add_buffer(b, a);
	}
	evbuffer_add_buffer(b, a);
	n = evbuffer_get_length(b);
	for (i = 0; i < 350; i++) {
		u = 1 + i * 97 % sizeof chunk;
		if (evbuffer_remove(b, out, u) != (int)u ||
		    memcmp(out, chunk, u) != 0)
			break;
		moved += u;
	}
	ok(i == 350 && moved == n && evbuffer_get_length(b) == 0,
	    "evmem: libevent moves %zu bytes through its buffers intact", n);
	evbuffer_free(a);
	evbuffer_free(b);
	evmem_release();
}

/* num_lld and num_fixed6 write what printf writes. */
static void
test_numbers(void)
{
	static const long long	 ll[] = { 0, 1, -1, 9, 10, 200, 404, 4096,
	    -123456789, 9223372036854775807LL, -9223372036854775807LL - 1 };
	static const double	 d[] = { 0, 0.0000004, 0.0000006, 1.5,
	    123.456789, 0.001234, -2.25, 0.25, 86400.000001, -0.0000001,
	    999999999.999999, 1e9, 1e12 + 0.1, -1e13, 1e300 };
	char			 a[64], b[64];
	size_t			 i, n, bad = 0, near = 0;
	double			 v, x;

	for (i = 0; i < sizeof ll / sizeof ll[0]; i++) {
		n = num_lld(a, ll[i]);
		snprintf(b, sizeof b, "%lld", ll[i]);
		if (strcmp(a, b) != 0 || n != strlen(b))
			bad++;
	}
	is_int((int)bad, 0, "num_lld: as %%lld, LLONG_MIN included");
	for (i = 0, bad = 0; i < sizeof d / sizeof d[0]; i++) {
		n = num_fixed6(a, sizeof a, d[i]);
		snprintf(b, sizeof b, "%.6f", d[i]);
		if (strcmp(a, b) != 0 || n != strlen(b))
			bad++;
	}
	is_int((int)bad, 0, "num_fixed6: as %%.6f, large values included");
	srandom(7);
	for (i = 0, bad = 0; i < 100000; i++) {
		v = (double)random() / 1000.0 + (double)random() / 2147483648.0;
		num_fixed6(a, sizeof a, v);
		snprintf(b, sizeof b, "%.6f", v);
		if (strcmp(a, b) == 0)
			continue;
		/* Only a value halfway between two may round otherwise. */
		x = v * 1e6 - floor(v * 1e6);
		if (x > 0.499 && x < 0.501 && strlen(a) == strlen(b) &&
		    strncmp(a, b, strlen(a) - 1) == 0)
			near++;
		else
			bad++;
	}
	ok(bad == 0 && near < 100, "num_fixed6: 100000 random durations as "
	    "%%.6f (%zu halfway cases rounded otherwise)", near);
	v = (double)NAN;
	num_fixed6(a, sizeof a, v);
	snprintf(b, sizeof b, "%.6f", v);
	is_str(a, b, "num_fixed6: NaN as printf writes it");
}

int
main(void)
{
	struct cidr	 c;
	struct strlist	 l = { NULL, 0 };
	char		*h, *p, *cause = NULL, *s;
	long long	 d;
	char		 g[INET6_ADDRSTRLEN + 4];
	struct sockaddr_in sin;

	is_str(group("198.51.100.7", g, sizeof g), "198.51.100.7",
	    "an IPv4 client is its address");
	is_str(group("::ffff:198.51.100.7", g, sizeof g), "198.51.100.7",
	    "an IPv4-mapped client is the IPv4 address");
	is_str(group("2001:db8:1:2:ffff:ffff:ffff:ffff", g, sizeof g),
	    "2001:db8:1:2::/64", "an IPv6 client is its /64");
	is_str(group("::1", g, sizeof g), "::/64", "loopback: the first /64");
	is_str(group("2001:db8::1", g, 12), "-",
	    "a buffer too small fails rather than cutting the prefix");
	ok(ipv4_as_inet_ntop(), "IPv4 peers written as inet_ntop() writes "
	    "them (all 256 values of each byte, 100,000 at random)");
	memset(&sin, 0, sizeof sin);
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(0xfffefdfc);
	ok(sockaddr_str((struct sockaddr *)&sin, g, 15) == -1 &&
	    strcmp(g, "unknown") == 0, "255.254.253.252 in 15 bytes: refused");
	ok(sockaddr_str((struct sockaddr *)&sin, g, 16) == 0 &&
	    strcmp(g, "255.254.253.252") == 0, "in 16: written");
	ok(cidr_parse("10.0.0.0/8", &c) == 0 && c.bits == 8, "parse v4 cidr");
	ok(cidr_parse("::1/128", &c) == 0 && c.family == AF_INET6, "parse v6");
	ok(cidr_parse("192.168.1.1", &c) == 0 && c.bits == 32, "bare v4");
	ok(cidr_parse("10.0.0.0/33", &c) == -1, "v4 prefix too long");
	ok(cidr_parse("10.0.0.0/", &c) == -1, "empty prefix");
	ok(cidr_parse("10.0.0.0/-1", &c) == -1, "negative prefix");
	ok(cidr_parse("example.com", &c) == -1, "name is not a cidr");
	is_int(match("10.0.0.0/8", "10.1.2.3"), 1, "inside /8");
	is_int(match("10.0.0.0/8", "11.1.2.3"), 0, "outside /8");
	is_int(match("192.168.0.0/23", "192.168.1.255"), 1, "inside /23");
	is_int(match("192.168.0.0/23", "192.168.2.0"), 0, "outside /23");
	is_int(match("0.0.0.0/0", "1.2.3.4"), 1, "/0 matches all v4");
	is_int(match("::1/128", "::1"), 1, "v6 loopback");
	is_int(match("127.0.0.1/32", "::ffff:127.0.0.1"), 1,
	    "v4-mapped v6 matches v4 cidr");
	is_int(match("fd00::/8", "fd12::1"), 1, "v6 /8");
	is_int(match("10.0.0.0/8", "::1"), 0, "v6 address never in v4 cidr");

	ok(hostport_split("127.0.0.1:3000", &h, &p) == 0 &&
	    strcmp(h, "127.0.0.1") == 0 && strcmp(p, "3000") == 0,
	    "split v4 host:port");
	free(h);
	free(p);
	ok(hostport_split("[::1]:8080", &h, &p) == 0 && strcmp(h, "::1") == 0 &&
	    strcmp(p, "8080") == 0, "split [v6]:port");
	free(h);
	free(p);
	ok(hostport_split("::1:8080", &h, &p) == -1, "bare v6 is ambiguous");
	ok(hostport_split("host:99999", &h, &p) == -1, "port out of range");
	ok(hostport_split("host:", &h, &p) == -1, "empty port");
	ok(hostport_split(":80", &h, &p) == -1, "empty host");
	ok(hostport_split("h: 80", &h, &p) == -1, "blank before the port");
	ok(hostport_split("h:+80", &h, &p) == -1, "signed port");
	ok(hostport_split("h:-0", &h, &p) == -1, "negative port");
	ok(hostport_split("[]:80", &h, &p) == -1, "empty brackets");
	ok(hostport_split("[[1]:6", &h, &p) == -1, "not IPv6 in brackets");
	ok(hostport_split("h:123456", &h, &p) == -1, "six digits");

	ok(url_check_outbound("https://accounts.google.com/x", &cause) == 0,
	    "https is fine");
	ok(url_check_outbound("http://127.0.0.1:9000/", &cause) == 0,
	    "http to loopback is fine");
	ok(url_check_outbound("http://localhost/", &cause) == 0,
	    "http to localhost is fine");
	ok(url_check_outbound("http://[::1]:80/", &cause) == 0,
	    "http to ::1 is fine");
	ok(url_check_outbound("http://example.com/", &cause) == -1,
	    "http elsewhere is refused");
	free(cause);
	cause = NULL;
	ok(url_check_outbound("http://127.0.0.1.evil.com/", &cause) == -1,
	    "loopback-looking name is refused");
	free(cause);
	cause = NULL;
	ok(url_check_outbound("https://user:pw@example.com/", &cause) == -1,
	    "userinfo is refused");
	free(cause);
	cause = NULL;
	ok(url_check_outbound("ftp://example.com/", &cause) == -1,
	    "other schemes are refused");
	free(cause);
	cause = NULL;

	ok(glob_match("anthropic.*", "anthropic.claude-v2"), "glob prefix");
	ok(!glob_match("anthropic.*", "us.anthropic.claude"), "glob anchored");
	ok(glob_match("*claude*", "us.anthropic.claude-3"), "glob infix");
	ok(glob_match("a?c", "abc") && !glob_match("a?c", "ac"), "glob ?");
	ok(glob_match("*", ""), "star matches empty");
	ok(!glob_match("*a*a*a*a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"),
	    "pathological pattern terminates");

	ok(parse_duration("30", &d) == 0 && d == 30, "plain seconds");
	ok(parse_duration("10m", &d) == 0 && d == 600, "minutes");
	ok(parse_duration("90d", &d) == 0 && d == 7776000, "days");
	ok(parse_duration("1w", &d) == 0 && d == 604800, "weeks");
	ok(parse_duration("10x", &d) == -1, "bad unit");
	ok(parse_duration("-5", &d) == -1, "negative");
	ok(parse_duration("", &d) == -1, "empty");
	ok(parse_duration("99999999999999999999", &d) == -1, "overflow");

	s = utf8_sanitize("ok caf\xc3\xa9 \xff\x01\xed\xa0\x80");
	is_str(s, "ok caf\xc3\xa9 \xef\xbf\xbd \xef\xbf\xbd\xef\xbf\xbd"
	    "\xef\xbf\xbd", "utf8_sanitize replaces bad bytes and controls");
	free(s);

	strlist_add(&l, "a");
	strlist_add(&l, "B");
	ok(strlist_contains(&l, "a") && !strlist_contains(&l, "b"),
	    "strlist_contains is exact");
	ok(strlist_contains_nocase(&l, "b"), "strlist_contains_nocase");
	s = strlist_join(&l, ",");
	is_str(s, "a,B", "strlist_join");
	free(s);
	strlist_free(&l);
	test_evmem();
	test_numbers();
	return (tap_done());
}
