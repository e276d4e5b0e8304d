/*
 * addr.c: network addresses: CIDR lists (trusted proxies, allow-lists),
 * socket addresses printed or grouped per client, host:port pairs, and
 * the checks on outbound URLs (https, or http to loopback only).
 */

#include <sys/types.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "bsp.h"

/* Parse "10.0.0.0/8", "::1/128" or a bare address (a host route). */
int
cidr_parse(const char *s, struct cidr *c)
{
	char		 buf[INET6_ADDRSTRLEN + 8], *slash, *end;
	long		 bits;
	int		 max;

	memset(c, 0, sizeof *c);
	if (strlen(s) >= sizeof buf)
		return (-1);
	bsp_strlcpy(buf, s, sizeof buf);
	if ((slash = strchr(buf, '/')) != NULL)
		*slash++ = '\0';
	if (inet_pton(AF_INET, buf, c->addr) == 1) {
		c->family = AF_INET;
		max = 32;
	} else if (inet_pton(AF_INET6, buf, c->addr) == 1) {
		c->family = AF_INET6;
		max = 128;
	} else
		return (-1);
	if (slash == NULL) {
		c->bits = max;
		return (0);
	}
	if (*slash == '\0' || !isdigit((unsigned char)*slash))
		return (-1);
	errno = 0;
	bits = strtol(slash, &end, 10);
	if (errno != 0 || *end != '\0' || bits < 0 || bits > max)
		return (-1);
	c->bits = (int)bits;
	return (0);
}

static int
addr_prefix_match(const uint8_t *a, const uint8_t *b, int bits)
{
	int	bytes = bits / 8, rest = bits % 8;
	uint8_t	mask;

	if (bytes > 0 && memcmp(a, b, (size_t)bytes) != 0)
		return (0);
	if (rest == 0)
		return (1);
	mask = (uint8_t)(0xff << (8 - rest));
	return ((a[bytes] & mask) == (b[bytes] & mask));
}

/* Does the socket address fall inside the CIDR? IPv4-mapped v6 counts. */
int
cidr_match(const struct cidr *c, const struct sockaddr *sa)
{
	const struct sockaddr_in	*sin;
	const struct sockaddr_in6	*sin6;
	static const uint8_t		 v4mapped[12] = {
		0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff
	};

	if (sa->sa_family == AF_INET) {
		sin = (const struct sockaddr_in *)sa;
		if (c->family != AF_INET)
			return (0);
		return (addr_prefix_match((const uint8_t *)&sin->sin_addr,
		    c->addr, c->bits));
	}
	if (sa->sa_family != AF_INET6)
		return (0);
	sin6 = (const struct sockaddr_in6 *)sa;
	if (c->family == AF_INET6)
		return (addr_prefix_match((const uint8_t *)&sin6->sin6_addr,
		    c->addr, c->bits));
	if (memcmp(&sin6->sin6_addr, v4mapped, sizeof v4mapped) == 0)
		return (addr_prefix_match(
		    (const uint8_t *)&sin6->sin6_addr + 12, c->addr, c->bits));
	return (0);
}

int
cidrlist_parse(const struct strlist *l, struct cidrlist *out, char **cause)
{
	size_t	i;

	memset(out, 0, sizeof *out);
	if (l->n == 0)
		return (0);
	out->v = xcalloc(l->n, sizeof *out->v);
	for (i = 0; i < l->n; i++) {
		if (cidr_parse(l->v[i], &out->v[i]) == -1) {
			xasprintf(cause, "\"%s\" is not an address or CIDR",
			    l->v[i]);
			cidrlist_free(out);
			return (-1);
		}
	}
	out->n = l->n;
	return (0);
}

int
cidrlist_match(const struct cidrlist *l, const struct sockaddr *sa)
{
	size_t	i;

	for (i = 0; i < l->n; i++) {
		if (cidr_match(&l->v[i], sa))
			return (1);
	}
	return (0);
}

int
cidrlist_match_str(const struct cidrlist *l, const char *addr)
{
	struct sockaddr_storage	ss;

	if (addr_parse(addr, &ss) == -1)
		return (0);
	return (cidrlist_match(l, (struct sockaddr *)&ss));
}

void
cidrlist_free(struct cidrlist *l)
{
	free(l->v);
	l->v = NULL;
	l->n = 0;
}

/* Parse a bare IPv4 or IPv6 address (no port) into a sockaddr. */
int
addr_parse(const char *s, struct sockaddr_storage *ss)
{
	struct sockaddr_in	*sin = (struct sockaddr_in *)ss;
	struct sockaddr_in6	*sin6 = (struct sockaddr_in6 *)ss;

	memset(ss, 0, sizeof *ss);
	if (inet_pton(AF_INET, s, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		return (0);
	}
	if (inet_pton(AF_INET6, s, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		return (0);
	}
	return (-1);
}

/*
 * An IPv4 address in dotted decimal, as inet_ntop() writes it (which
 * goes through sprintf: 1.7 k instructions, for every request's peer).
 * -1 if it does not fit.
 */
static int
sockaddr_str4(const struct in_addr *in, char *buf, size_t len)
{
	const uint8_t	*b = (const uint8_t *)&in->s_addr;
	char		 t[16], *o = t;
	size_t		 i;

	for (i = 0; i < 4; i++) {
		if (i > 0)
			*o++ = '.';
		if (b[i] >= 100)
			*o++ = (char)('0' + b[i] / 100);
		if (b[i] >= 10)
			*o++ = (char)('0' + b[i] / 10 % 10);
		*o++ = (char)('0' + b[i] % 10);
	}
	*o = '\0';
	if ((size_t)(o - t) >= len)
		return (-1);
	memcpy(buf, t, (size_t)(o - t) + 1);
	return (0);
}

/* Print the address part of a sockaddr. */
int
sockaddr_str(const struct sockaddr *sa, char *buf, size_t len)
{
	const void	*a;

	if (sa->sa_family == AF_INET) {
		if (sockaddr_str4(&((const struct sockaddr_in *)sa)->sin_addr,
		    buf, len) == -1) {
			bsp_strlcpy(buf, "unknown", len);
			return (-1);
		}
		return (0);
	}
	if (sa->sa_family == AF_INET6)
		a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
	else {
		bsp_strlcpy(buf, "unknown", len);
		return (-1);
	}
	if (inet_ntop(sa->sa_family, a, buf, (socklen_t)len) == NULL) {
		bsp_strlcpy(buf, "unknown", len);
		return (-1);
	}
	return (0);
}

/*
 * The address as one client, for per-client limits: an IPv6 host usually
 * has a whole /64 to pick addresses from, so the /64 is the client; an
 * IPv4 address mapped into IPv6 is the IPv4 address.
 */
int
sockaddr_group(const struct sockaddr *sa, char *buf, size_t len)
{
	struct sockaddr_in	sin;
	struct sockaddr_in6	sin6;

	if (sa->sa_family != AF_INET6)
		return (sockaddr_str(sa, buf, len));
	memcpy(&sin6, sa, sizeof sin6);
	if (IN6_IS_ADDR_V4MAPPED(&sin6.sin6_addr)) {
		memset(&sin, 0, sizeof sin);
		sin.sin_family = AF_INET;
		memcpy(&sin.sin_addr, &sin6.sin6_addr.s6_addr[12], 4);
		return (sockaddr_str((struct sockaddr *)&sin, buf, len));
	}
	memset(&sin6.sin6_addr.s6_addr[8], 0, 8);
	if (sockaddr_str((struct sockaddr *)&sin6, buf, len) == -1)
		return (-1);
	if (bsp_strlcat(buf, "/64", len) >= len) {
		bsp_strlcpy(buf, "unknown", len);
		return (-1);
	}
	return (0);
}

/*
 * Split "host:port", "[v6]:port" into allocated parts. A bare "v6" address
 * without brackets is refused: it is ambiguous.
 */
int
hostport_split(const char *s, char **host, char **port)
{
	const char	*colon, *end, *d;
	char		*p;
	long		 n;

	*host = *port = NULL;
	if (*s == '[') {
		struct in6_addr	a6;

		if ((end = strchr(s, ']')) == NULL || end[1] != ':')
			return (-1);
		*host = xstrndup(s + 1, (size_t)(end - s - 1));
		if (inet_pton(AF_INET6, *host, &a6) != 1) {
			free(*host);
			*host = NULL;
			return (-1);
		}
		colon = end + 1;
	} else {
		if ((colon = strrchr(s, ':')) == NULL || colon == s)
			return (-1);
		if (memchr(s, ':', (size_t)(colon - s)) != NULL)
			return (-1);
		*host = xstrndup(s, (size_t)(colon - s));
	}
	/* One to five digits, nothing else (no sign, no blanks). */
	for (d = colon + 1; *d != '\0'; d++) {
		if (!isdigit((unsigned char)*d))
			break;
	}
	if (colon[1] == '\0' || *d != '\0' || d - colon - 1 > 5) {
		free(*host);
		*host = NULL;
		return (-1);
	}
	errno = 0;
	n = strtol(colon + 1, &p, 10);
	if (errno != 0 || n > 65535) {
		free(*host);
		*host = NULL;
		return (-1);
	}
	*port = xstrdup(colon + 1);
	return (0);
}

/* Loopback host names and addresses: 127.0.0.0/8, ::1, localhost. */
int
url_is_loopback_host(const char *host)
{
	struct sockaddr_storage	ss;
	struct sockaddr_in	*sin = (struct sockaddr_in *)&ss;
	struct sockaddr_in6	*sin6 = (struct sockaddr_in6 *)&ss;
	char			 buf[64];
	size_t			 len;

	if (strcasecmp(host, "localhost") == 0)
		return (1);
	len = strlen(host);
	if (len >= 2 && host[0] == '[' && host[len - 1] == ']' &&
	    len - 2 < sizeof buf) {
		memcpy(buf, host + 1, len - 2);
		buf[len - 2] = '\0';
		host = buf;
	}
	if (addr_parse(host, &ss) == -1)
		return (0);
	if (ss.ss_family == AF_INET)
		return ((ntohl(sin->sin_addr.s_addr) >> 24) == 127);
	return (IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr));
}

/*
 * Outbound URLs must be https, or plain http to a loopback address only
 * (development and tests). Userinfo and fragments are refused.
 */
int
url_check_outbound(const char *url, char **cause)
{
	const char	*p, *host, *end;
	char		 hostbuf[256];
	size_t		 len;

	if (strncasecmp(url, "https://", 8) == 0)
		p = url + 8;
	else if (strncasecmp(url, "http://", 7) == 0)
		p = url + 7;
	else {
		xasprintf(cause, "\"%s\" is not an http(s) URL", url);
		return (-1);
	}
	host = p;
	end = host + strcspn(host, "/?#");
	if (memchr(host, '@', (size_t)(end - host)) != NULL) {
		xasprintf(cause, "URL must not contain user information");
		return (-1);
	}
	if (strchr(url, '#') != NULL) {
		xasprintf(cause, "URL must not contain a fragment");
		return (-1);
	}
	if (end == host) {
		xasprintf(cause, "URL \"%s\" has no host", url);
		return (-1);
	}
	/* Strip the port. */
	if (*host == '[') {
		const char *rb = memchr(host, ']', (size_t)(end - host));
		if (rb == NULL) {
			xasprintf(cause, "URL \"%s\" has a bad IPv6 host", url);
			return (-1);
		}
		len = (size_t)(rb - host + 1);
	} else {
		const char *colon = memchr(host, ':', (size_t)(end - host));
		len = (size_t)((colon != NULL ? colon : end) - host);
	}
	if (len == 0 || len >= sizeof hostbuf) {
		xasprintf(cause, "URL \"%s\" has a bad host", url);
		return (-1);
	}
	memcpy(hostbuf, host, len);
	hostbuf[len] = '\0';
	if (p == url + 7 && !url_is_loopback_host(hostbuf)) {
		xasprintf(cause, "\"%s\" must use https (plain http is only "
		    "allowed to loopback addresses)", url);
		return (-1);
	}
	return (0);
}
