/*
 * test-client.c: the laptop client's pure parts: where sessions live on
 * Linux and macOS, profile names, proxy URLs, which Host headers are this
 * machine's, when a token is due, and a session file written and read
 * back (atomic replace, 0600).
 */

#include <sys/stat.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bsp.h"
#include "client.h"
#include "tap.h"

static void
test_dirs(void)
{
	char	*d;

	d = client_dir_default("/home/a", NULL, 0);
	is_str(d, "/home/a/.config/bedrock-sso-proxy", "Linux default");
	free(d);
	d = client_dir_default("/home/a", "/x/cfg", 0);
	is_str(d, "/x/cfg/bedrock-sso-proxy", "XDG_CONFIG_HOME");
	free(d);
	d = client_dir_default("/home/a", "relative/cfg", 0);
	is_str(d, "/home/a/.config/bedrock-sso-proxy",
	    "a relative XDG_CONFIG_HOME is ignored");
	free(d);
	d = client_dir_default("/Users/a", NULL, 1);
	is_str(d, "/Users/a/Library/Application Support/bedrock-sso-proxy",
	    "macOS default");
	free(d);
	d = client_dir_default("/Users/a", "", 1);
	is_str(d, "/Users/a/Library/Application Support/bedrock-sso-proxy",
	    "macOS with an empty XDG_CONFIG_HOME");
	free(d);
	d = client_dir_default("/Users/a", "/Users/a/.cfg", 1);
	is_str(d, "/Users/a/.cfg/bedrock-sso-proxy", "macOS honours XDG");
	free(d);
}

static void
test_profiles(void)
{
	ok(client_profile_ok("default"), "default");
	ok(client_profile_ok("work_2-eu"), "letters, digits, _ and -");
	ok(!client_profile_ok(""), "empty");
	ok(!client_profile_ok("../x"), "a path");
	ok(!client_profile_ok("a.b"), "a dot");
	ok(!client_profile_ok("0123456789012345678901234567890123456789"
	    "012345678901234567890123456"), "too long");
}

static void
test_urls(void)
{
	static const struct {
		const char	*in, *out;
	} t[] = {
		{ "https://proxy.example.com/", "https://proxy.example.com" },
		{ "proxy.example.com", "https://proxy.example.com" },
		{ "https://p.example.com:8443/gw//", "https://p.example.com:8443/gw" },
		{ "http://127.0.0.1:3000", "http://127.0.0.1:3000" },
		{ "http://localhost:3000/", "http://localhost:3000" },
		{ "http://[::1]:3000", "http://[::1]:3000" },
		{ "http://proxy.example.com", NULL },
		{ "http://127.0.0.1.evil.example", NULL },
		{ "ftp://proxy.example.com", NULL },
		{ "https://user@proxy.example.com", NULL },
		{ "https://proxy.example.com/?x=1", NULL },
		{ "https://proxy.example.com/#f", NULL },
		{ "https://", NULL },
		{ "https://a b", NULL },
	};
	size_t	 i;
	char	*out, *cause;

	for (i = 0; i < nitems(t); i++) {
		out = cause = NULL;
		if (client_url_normalize(t[i].in, &out, &cause) == -1)
			out = NULL;
		is_str(out, t[i].out, "url %s", t[i].in);
		if (t[i].out == NULL)
			ok(cause != NULL, "  with a reason");
		free(out);
		free(cause);
	}
}

static void
test_hosts(void)
{
	static const struct {
		const char	*h;
		int		 ok;
	} t[] = {
		{ "127.0.0.1", 1 }, { "127.0.0.1:8377", 1 }, { "127.1.2.3:80", 1 },
		{ "localhost", 1 }, { "LOCALHOST:8377", 1 }, { "[::1]", 1 },
		{ "[::1]:8377", 1 }, { "evil.example:8377", 0 },
		{ "127.0.0.1.nip.io:8377", 0 }, { "localhost.evil.example", 0 },
		{ "10.0.0.1:8377", 0 }, { "[::2]:80", 0 }, { "127.0.0.1:", 0 },
		{ "127.0.0.1:80x", 0 }, { "[::1]x", 0 }, { "", 0 },
		{ "0x7f000001", 0 }, { "2130706433", 0 },
	};
	size_t	i;

	for (i = 0; i < nitems(t); i++)
		is_int(client_host_loopback(t[i].h), t[i].ok, "Host \"%s\"",
		    t[i].h);
	ok(!client_host_loopback(NULL), "no Host");
}

static void
test_margin(void)
{
	struct client_session	s;

	memset(&s, 0, sizeof s);
	s.access_token = (char *)(uintptr_t)"x";
	s.obtained_at = 1000;
	s.expires_at = 1000 + 30 * 86400;
	is_int(client_margin(&s), 300, "five minutes for a long token");
	ok(client_token_fresh(&s, s.expires_at - 301), "fresh until then");
	ok(!client_token_fresh(&s, s.expires_at - 300), "due at five minutes");
	s.expires_at = 1000 + 60;
	is_int(client_margin(&s), 30, "half the life of a short one");
	ok(client_token_fresh(&s, 1029), "fresh for 29 s");
	ok(!client_token_fresh(&s, 1030), "due at 30 s");
	s.expires_at = 1000;
	is_int(client_margin(&s), 0, "no life");
	ok(!client_token_fresh(&s, 999) || s.expires_at - 999 > 0,
	    "nothing odd with no life");
	s.access_token = NULL;
}

static void
test_file(void)
{
	struct client_session	 s, r;
	struct stat		 st;
	char			 dir[] = "/tmp/test-client-XXXXXX", *cause = NULL;
	json_t			*g;

	if (mkdtemp(dir) == NULL) {
		ok(0, "mkdtemp");
		return;
	}
	setenv("XDG_CONFIG_HOME", dir, 1);
	ok(client_session_paths(&s, "default", 1, &cause) == 0,
	    "paths (the directory made)");
	ok(stat(s.path, &st) == -1, "no session yet");
	memset(&r, 0, sizeof r);
	r.path = s.path;
	is_int(client_session_read(&r, &cause), -2, "read: none");
	r.path = NULL;
	s.proxy = xstrdup("https://proxy.example.com");
	g = json_pack("{s:s,s:i,s:s}", "access_token", "eyJ.a.b", "expires_in",
	    3600, "refresh_token", "bsr_one");
	ok(client_session_from_grant(&s, g, &cause) == 0, "grant");
	json_decref(g);
	is_int(s.expires_at - s.obtained_at, 3600, "expiry from expires_in");
	ok(client_session_write(&s, &cause) == 0, "write");
	ok(stat(s.path, &st) == 0 && (st.st_mode & 0777) == 0600, "0600");
	ok(!client_session_changed(&s), "our own write is not a change");
	memset(&r, 0, sizeof r);
	r.profile = xstrdup("default");
	r.path = xstrdup(s.path);
	ok(client_session_read(&r, &cause) == 0, "read back");
	is_str(r.refresh_token, "bsr_one", "refresh token");
	is_str(r.proxy, "https://proxy.example.com", "proxy");
	g = json_pack("{s:s,s:i}", "access_token", "eyJ.c.d", "expires_in", 60);
	ok(client_session_from_grant(&r, g, &cause) == 0, "grant without a "
	    "refresh token");
	json_decref(g);
	is_str(r.refresh_token, "bsr_one", "keeps the refresh token");
	ok(client_session_write(&r, &cause) == 0, "write again");
	ok(client_session_changed(&s), "another writer is a change");
	g = json_pack("{s:s}", "access_token", "eyJ.c.d");
	ok(client_session_from_grant(&r, g, &cause) == -1 && cause != NULL,
	    "a grant without expires_in is refused");
	json_decref(g);
	free(cause);
	cause = NULL;
	g = json_pack("{s:s,s:I}", "access_token", "eyJ.c.d", "expires_in",
	    (json_int_t)INT64_MAX);
	ok(client_session_from_grant(&r, g, &cause) == 0 &&
	    r.expires_at - r.obtained_at == CLIENT_EXPIRES_IN_MAX,
	    "an expires_in of INT64_MAX is cut to a year (no overflow)");
	json_decref(g);
	ok(client_token_fresh(&r, now_wall()), "and it is fresh");
	{
		FILE	*fp = fopen(s.path, "w");

		fprintf(fp, "{\"version\":1,\"proxy\":\"https://p.example\","
		    "\"access_token\":\"a\",\"expires_at\":%lld,"
		    "\"obtained_at\":-9223372036854775807}\n",
		    (long long)INT64_MAX);
		fclose(fp);
		ok(client_session_read(&r, &cause) == -1 && cause != NULL &&
		    strstr(cause, "wrong type") != NULL,
		    "times out of range in the file are refused");
		free(cause);
		cause = NULL;
		ok(client_session_write(&s, &cause) == 0, "a good one again");
	}
	free(cause);
	cause = NULL;
	chmod(s.path, 0640);
	ok(client_session_read(&r, &cause) == -1 && cause != NULL &&
	    strstr(cause, "logout") != NULL && strstr(cause, "chmod") == NULL,
	    "0640 refused, logout advised (not chmod)");
	free(cause);
	cause = NULL;
	{
		int	leaked;

		ok(client_session_read_any_mode(&r, &leaked, &cause) == 0 &&
		    leaked, "logout reads it all the same, and knows");
	}
	{
		FILE	*fp = fopen(s.path, "w");

		fputs("{\"version\":1,\"access_token\":\"eyJSECRET\",,}", fp);
		fclose(fp);
		chmod(s.path, 0600);
		ok(client_session_read(&r, &cause) == -1 && cause != NULL &&
		    strstr(cause, "line 1, column") != NULL &&
		    strstr(cause, "SECRET") == NULL,
		    "a damaged file: line and column, no text of it");
		free(cause);
		cause = NULL;
	}
	ok(client_session_remove(&s, &cause) == 0, "remove");
	ok(client_session_remove(&s, &cause) == 0, "remove again");
	unlink(s.lock_path);
	{
		char	*d;

		xasprintf(&d, "%s/bedrock-sso-proxy", dir);
		rmdir(d);
		free(d);
	}
	rmdir(dir);
	client_session_clear(&s);
	client_session_clear(&r);
}

/* The relay's secret file and the paths the relay carries. */
static void
test_relay(void)
{
	char		 dir[] = "/tmp/test-client-XXXXXX", *cause = NULL, *a, *b;
	char		*u, *f, *d;
	const char	*rest;

	if (mkdtemp(dir) == NULL) {
		ok(0, "mkdtemp");
		return;
	}
	setenv("XDG_CONFIG_HOME", dir, 1);
	is_int(client_relay_secret(&a, 0, &cause), -2, "no secret yet");
	free(cause);
	cause = NULL;
	ok(client_relay_secret(&a, 1, &cause) == 0 && strlen(a) == 43,
	    "a secret made: 43 characters");
	ok(client_relay_secret(&b, 0, &cause) == 0 && strcmp(a, b) == 0,
	    "read back, the same");
	free(b);
	xasprintf(&f, "%s/bedrock-sso-proxy/relay-secret", dir);
	chmod(f, 0644);
	ok(client_relay_secret(&b, 0, &cause) == -1 && cause != NULL,
	    "a secret open to others is refused");
	free(cause);
	cause = NULL;
	unlink(f);

	xasprintf(&u, "/%s/model/anthropic.claude-x-v1%%3A0/invoke", a);
	ok(client_relay_route(u, a, &rest) == 1 && strcmp(rest,
	    "/model/anthropic.claude-x-v1%3A0/invoke") == 0, "invoke");
	free(u);
	xasprintf(&u, "/%s/model/m/converse-stream?X-Amz-Signature=1", a);
	ok(client_relay_route(u, a, &rest) == 1, "converse-stream, a query");
	free(u);
	xasprintf(&u, "/%s/guardrail/g/version/1/apply", a);
	ok(client_relay_route(u, a, &rest) == 1, "guardrail apply");
	free(u);
	ok(client_relay_route("/model/m/invoke", a, &rest) == 0,
	    "no secret");
	xasprintf(&u, "/%.42s/model/m/invoke", a);
	ok(client_relay_route(u, a, &rest) == 0, "a secret cut short");
	free(u);
	xasprintf(&u, "/%sA/model/m/invoke", a);
	ok(client_relay_route(u, a, &rest) == 0, "a secret too long");
	free(u);
	d = xstrdup(a);
	d[0] = d[0] == 'A' ? 'B' : 'A';
	xasprintf(&u, "/%s/model/m/invoke", d);
	ok(client_relay_route(u, a, &rest) == 0, "another secret");
	free(u);
	free(d);
	{
		static const char *const no[] = {
			"", "/", "/aws/credentials", "/auth/logout",
			"/v1/models", "/model/m", "/model/m/", "/model//invoke",
			"/model/m/invoke/", "/model/m/invoke/x", "/model/m/list",
			"/model/../invoke", "/model/./invoke",
			"/guardrail/g/version/1", "/inference-profiles",
			"/model/m/invoke-with-bidirectional-stream",
		};
		size_t	i;

		for (i = 0; i < nitems(no); i++) {
			xasprintf(&u, "/%s%s", a, no[i]);
			ok(client_relay_route(u, a, &rest) == -1,
			    "not relayed: \"%s\"", no[i]);
			free(u);
		}
	}
	{
		uint8_t	pin[32];

		ok(client_pin_parse("sha256//47DEQpj8HBSa+/TImW+5JCeuQeRkm5NM"
		    "pJWZG3hSuFU=", pin) == 0 && pin[0] == 0xe3 &&
		    pin[31] == 0x55, "a pin: sha256//BASE64 (32 bytes)");
		ok(client_pin_parse("sha256//47DEQpj8HBSa+/TImW+5JCeuQeRkm5NM"
		    "pJWZG3hSuF", pin) == -1, "a pin cut short");
		ok(client_pin_parse("sha1//47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJ"
		    "WZG3hSuFU=", pin) == -1, "not sha256");
		ok(client_pin_parse("sha256//47DEQpj8HBSa-_TImW-5JCeuQeRkm5NM"
		    "pJWZG3hSuFU=", pin) == -1, "base64url is not base64");
	}
	u = client_relay_url("127.0.0.1", 8377, "S");
	is_str(u, "http://127.0.0.1:8377/S", "the URL");
	free(u);
	u = client_relay_url("::1", 8377, "S");
	is_str(u, "http://[::1]:8377/S", "the URL, IPv6");
	free(u);
	free(a);
	free(f);
	xasprintf(&d, "%s/bedrock-sso-proxy", dir);
	rmdir(d);
	free(d);
	rmdir(dir);
}

int
main(void)
{
	test_dirs();
	test_profiles();
	test_urls();
	test_hosts();
	test_margin();
	test_file();
	test_relay();
	return (tap_done());
}
