/*
 * test-web.c: the HTML pages. Every dynamic field is fed hostile text and
 * must come out escaped; no inline script or style anywhere; the tokens
 * appear only where they should and never in an attribute; the
 * settings.json block parses as JSON; the shell snippets, run by sh,
 * give back the exact token; long text is cut. The device flow's pages:
 * a form that posts back here with its token, keeps same-origin
 * referrers and never submits itself; the page that goes on to the
 * identity provider (its URL escaped, only http or https); and the
 * page that says the device is signed in, without tokens.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>

#include <jansson.h>

#include "bsp.h"
#include "web.h"
#include "tap.h"

#define HOSTILE	"<script>alert(1)</script> \"q\" 'a' & " \
		"<img src=x onerror=alert(2)>"
#define AT	"eyJhbGciOiJFZERTQSIsImtpZCI6ImsxIn0." \
		"eyJzdWIiOiJnOjEifQ.c2lnbmF0dXJl-_"
#define RT	"bsr_0123456789abcdefghijklmnopqrstuvwxyz-_ABCDEF"
#define NOW	((time_t)1700000000)

static const char *const tag_ok[] = {
	"!doctype", "html", "/html", "head", "/head", "meta", "title",
	"/title", "link", "script", "/script", "body", "/body", "header",
	"/header", "main", "/main", "footer", "/footer", "h1", "/h1", "h2",
	"/h2", "h3", "/h3", "p", "/p", "a", "/a", "ul", "/ul", "li", "/li",
	"nav", "/nav", "div", "/div", "span", "/span", "pre", "/pre", "code",
	"/code", "textarea", "/textarea", "button", "/button", "label",
	"/label", "dl", "/dl", "dt", "/dt", "dd", "/dd", "time", "/time",
	"strong", "/strong", "form", "/form", "input",
};

static char *
drain(struct evbuffer *b)
{
	size_t	 len = evbuffer_get_length(b);
	char	*s = xmalloc(len + 1);

	evbuffer_remove(b, s, len);
	s[len] = '\0';
	evbuffer_free(b);
	return (s);
}

static char *
login(const struct web_provider *pv, size_t n, const char *notice)
{
	struct evbuffer	*b = evbuffer_new();

	if (web_render_login(b, pv, n, notice) == -1) {
		evbuffer_free(b);
		return (NULL);
	}
	return (drain(b));
}

static char *
success(const struct web_tokens *t)
{
	struct evbuffer	*b = evbuffer_new();

	if (web_render_success(b, t, NOW) == -1) {
		evbuffer_free(b);
		return (NULL);
	}
	return (drain(b));
}

static char *
error_page(int code, const char *title, const char *what, const char *todo)
{
	struct evbuffer	*b = evbuffer_new();

	web_render_error(b, code, title, what, todo);
	return (drain(b));
}

static int
count(const char *hay, const char *needle)
{
	int	n = 0;

	while ((hay = strstr(hay, needle)) != NULL) {
		n++;
		hay += strlen(needle);
	}
	return (n);
}

/* Undo web.c's escaping (the five entities it emits). */
static char *
unescape(const char *s, size_t len)
{
	static const struct {
		const char	*ent;
		char		 c;
	} ents[] = {
		{ "&amp;", '&' }, { "&lt;", '<' }, { "&gt;", '>' },
		{ "&quot;", '"' }, { "&#x27;", '\'' },
	};
	char	*out = xmalloc(len + 1);
	size_t	 i, j, o = 0;

	for (i = 0; i < len; i++) {
		for (j = 0; j < nitems(ents); j++) {
			if (strncmp(s + i, ents[j].ent,
			    strlen(ents[j].ent)) == 0)
				break;
		}
		if (j < nitems(ents)) {
			out[o++] = ents[j].c;
			i += strlen(ents[j].ent) - 1;
		} else
			out[o++] = s[i];
	}
	out[o] = '\0';
	return (out);
}

/* The unescaped text of <pre id="ID"><code>...</code></pre> or a textarea. */
static char *
element(const char *page, const char *id)
{
	char		 open[128];
	const char	*p, *e;

	snprintf(open, sizeof open, "<pre id=\"%s\"><code>", id);
	if ((p = strstr(page, open)) != NULL) {
		p += strlen(open);
		if ((e = strstr(p, "</code></pre>")) == NULL)
			return (NULL);
		return (unescape(p, (size_t)(e - p)));
	}
	snprintf(open, sizeof open, "<textarea id=\"%s\"", id);
	if ((p = strstr(page, open)) == NULL || (p = strchr(p, '>')) == NULL)
		return (NULL);
	p++;
	if ((e = strstr(p, "</textarea>")) == NULL)
		return (NULL);
	return (unescape(p, (size_t)(e - p)));
}

/*
 * Walk every tag: known names only, one script (the static one), no style
 * element or attribute, no on* handler, links only to "/" or "#", and no
 * secret inside a tag. Returns a reason, or NULL if the page is clean.
 */
static const char *
check_tags(const char *page, const char *const *secrets, size_t nsecrets)
{
	static char	 why[256];
	const char	*p = page, *e, *a;
	char		 tag[4096], name[64], attr[64];
	size_t		 len, n, i;
	int		 known, scripts = 0;

	while ((p = strchr(p, '<')) != NULL) {
		if ((e = strchr(p, '>')) == NULL)
			return ("unterminated tag");
		len = (size_t)(e - p) + 1;
		if (len >= sizeof tag)
			return ("tag too long");
		memcpy(tag, p, len);
		tag[len] = '\0';
		p = e + 1;
		n = strcspn(tag + 1, " \t\n>");
		if (n >= sizeof name)
			return ("tag name too long");
		memcpy(name, tag + 1, n);
		name[n] = '\0';
		for (i = 0; name[i] != '\0'; i++)
			if (name[i] >= 'A' && name[i] <= 'Z')
				name[i] += 'a' - 'A';
		known = 0;
		for (i = 0; i < nitems(tag_ok); i++)
			if (strcmp(name, tag_ok[i]) == 0)
				known = 1;
		if (!known) {
			snprintf(why, sizeof why, "unexpected tag %.200s", tag);
			return (why);
		}
		if (strcmp(name, "script") == 0) {
			if (strcmp(tag,
			    "<script src=\"/static/app.js\" defer>") != 0)
				return ("script other than /static/app.js");
			scripts++;
		}
		for (i = 0; i < nsecrets; i++)
			if (strstr(tag, secrets[i]) != NULL)
				return ("secret inside a tag");
		/* attributes */
		a = tag + 1 + n;
		while (*a != '\0' && *a != '>') {
			a += strspn(a, " \t\n");
			n = strcspn(a, " \t\n=>");
			if (n == 0)
				break;
			if (n >= sizeof attr)
				return ("attribute name too long");
			memcpy(attr, a, n);
			attr[n] = '\0';
			a += n;
			if (strncasecmp(attr, "on", 2) == 0 ||
			    strcasecmp(attr, "style") == 0) {
				snprintf(why, sizeof why, "attribute %s", attr);
				return (why);
			}
			if (*a == '=') {
				a++;
				if (*a != '"')
					return ("unquoted attribute value");
				if ((e = strchr(a + 1, '"')) == NULL)
					return ("unterminated attribute value");
				if ((strcmp(attr, "href") == 0 ||
				    strcmp(attr, "src") == 0) &&
				    a[1] != '/' && a[1] != '#')
					return ("link off the site");
				a = e + 1;
			}
		}
	}
	if (scripts != 1)
		return ("not exactly one script element");
	return (NULL);
}

static int
utf8_valid(const char *s)
{
	const unsigned char	*p = (const unsigned char *)s;
	int			 n;

	while (*p != '\0') {
		if (*p < 0x80)
			n = 0;
		else if ((*p & 0xe0) == 0xc0)
			n = 1;
		else if ((*p & 0xf0) == 0xe0)
			n = 2;
		else if ((*p & 0xf8) == 0xf0)
			n = 3;
		else
			return (0);
		p++;
		while (n-- > 0) {
			if ((*p & 0xc0) != 0x80)
				return (0);
			p++;
		}
	}
	return (1);
}

/* Run a shell snippet with extra lines before and after; its output. */
static char *
run_sh(const char *pre, const char *snippet, const char *post)
{
	char	 path[] = "/tmp/test-web-XXXXXX", *cmd, buf[65536];
	FILE	*f;
	size_t	 n;
	int	 fd;

	if ((fd = mkstemp(path)) == -1 || (f = fdopen(fd, "w")) == NULL)
		return (NULL);
	fprintf(f, "%s\n%s\n%s\n", pre, snippet, post);
	fclose(f);
	xasprintf(&cmd, "env -i PATH=/usr/bin:/bin sh %s", path);
	f = popen(cmd, "r");
	free(cmd);
	if (f == NULL) {
		unlink(path);
		return (NULL);
	}
	n = fread(buf, 1, sizeof buf - 1, f);
	buf[n] = '\0';
	pclose(f);
	unlink(path);
	return (xstrdup(buf));
}

static void
test_login(void)
{
	struct web_provider	 pv[] = {
		{ "google", "Google" },
		{ "corp", HOSTILE },
		{ "a\"b<c d/e", "Odd name" },
		{ "github", NULL },
	};
	struct web_provider	 many[100];
	const char		*why;
	char			*s;
	size_t			 i;

	s = login(pv, nitems(pv), HOSTILE);
	ok(s != NULL, "login page renders");
	ok(strstr(s, "<a class=\"button\" href=\"/auth/login/google\">"
	    "Sign in with Google</a>") != NULL, "google button");
	ok(strstr(s, "Sign in with &lt;script&gt;alert(1)&lt;/script&gt; "
	    "&quot;q&quot; &#x27;a&#x27; &amp; &lt;img src=x "
	    "onerror=alert(2)&gt;</a>") != NULL, "display name escaped");
	ok(strstr(s, "href=\"/auth/login/a%22b%3Cc%20d%2Fe\"") != NULL,
	    "provider name percent-encoded in the URL");
	ok(strstr(s, "href=\"/auth/login/github\">Sign in with github</a>")
	    != NULL, "missing display name falls back to the name");
	ok(strstr(s, "<p class=\"notice\" role=\"status\">&lt;script&gt;") !=
	    NULL, "notice escaped");
	is_int(count(s, "<script"), 1, "one script element on the login page");
	why = check_tags(s, NULL, 0);
	ok(why == NULL, "login page tags are clean%s%s", why ? ": " : "",
	    why ? why : "");
	ok(strstr(s, "<!doctype html>") == s && strstr(s, "<html lang=\"en\">")
	    && strstr(s, "<meta charset=\"utf-8\">") &&
	    strstr(s, "name=\"viewport\"") &&
	    strstr(s, "<link rel=\"stylesheet\" href=\"/static/app.css\">"),
	    "layout: doctype, lang, charset, viewport, stylesheet");
	ok(strstr(s, "<style") == NULL && strstr(s, "style=") == NULL,
	    "no inline style");
	free(s);

	s = login(NULL, 0, NULL);
	ok(strstr(s, "No identity provider is configured") != NULL &&
	    strstr(s, "oauth.providers") != NULL &&
	    strstr(s, "bedrock-sso-proxy.yaml(5)") != NULL,
	    "no providers: a note for the operator");
	ok(strstr(s, "/auth/login/") == NULL, "no providers: no button");
	ok(check_tags(s, NULL, 0) == NULL, "empty login page tags are clean");
	free(s);

	for (i = 0; i < nitems(many); i++) {
		many[i].name = "p";
		many[i].display_name = "P";
	}
	s = login(many, nitems(many), NULL);
	is_int(count(s, "href=\"/auth/login/p\""), WEB_PROVIDERS_MAX,
	    "provider list capped at %d", WEB_PROVIDERS_MAX);
	free(s);
}

static void
test_success(void)
{
	struct web_tokens	 t;
	const char		*secrets[] = { AT, RT }, *why, *p, *ids;
	char			*s, *e, *out, id[64];
	json_t			*j;
	json_error_t		 jerr;
	size_t			 n;

	memset(&t, 0, sizeof t);
	t.access_token = AT;
	t.refresh_token = RT;
	t.expires_in = 2592000;
	t.session_expires_at = NOW + 7776000;
	t.user = "jane@example.com" HOSTILE;
	t.name = "Jane " HOSTILE;
	t.provider = "Corp " HOSTILE;
	t.public_url = "https://bedrock.example.com/";
	t.region = "eu-west-1";
	t.example_model = "eu.anthropic.claude-sonnet-4-20250514-v1:0";

	s = success(&t);
	ok(s != NULL, "success page renders");
	why = check_tags(s, secrets, nitems(secrets));
	ok(why == NULL, "success page tags are clean, no token in a tag%s%s",
	    why ? ": " : "", why ? why : "");
	ok(strstr(s, "<style") == NULL && strstr(s, "style=") == NULL,
	    "no inline style");
	ok(strstr(s, "<strong>Jane &lt;script&gt;alert(1)") != NULL, "name "
	    "escaped");
	ok(strstr(s, "(jane@example.com&lt;script&gt;") != NULL,
	    "user escaped");
	ok(strstr(s, " with Corp &lt;script&gt;") != NULL, "provider escaped");
	ok(count(s, "<script") == 1 && count(s, "<img") == 0,
	    "no injected elements");
	is_int(count(s, AT), 5, "access token: text area, Claude Code shell "
	    "and settings, curl, SDK env");
	is_int(count(s, RT), 3, "refresh token: text area, refresh, logout");
	ok(strstr(s, "<time datetime=\"2023-12-14T22:13:20Z\">"
	    "2023-12-14T22:13:20Z</time> (in 30 days)") != NULL,
	    "expiry: ISO 8601 UTC and in 30 days");
	ok(strstr(s, "2024-02-12T22:13:20Z</time> (in 90 days)") != NULL,
	    "session end shown");
	ok(strstr(s, "https://bedrock.example.com//") == NULL,
	    "trailing slash of public_url dropped");
	ok(strstr(s, "&#x27;https://bedrock.example.com/bedrock/model/"
	    "eu.anthropic.claude-sonnet-4-20250514-v1:0/invoke&#x27;") != NULL,
	    "curl InvokeModel URL");
	ok(strstr(s, "Authorization: Bearer $TOKEN") != NULL &&
	    strstr(s, "bedrock-2023-05-31") != NULL, "curl header and body");
	ok(strstr(s, "authSchemePreference: [&#x27;httpBearerAuth&#x27;]") !=
	    NULL && strstr(s, "token: { token }") != NULL,
	    "JS SDK uses the bearer scheme");
	ok(strstr(s, "endpoint_url=&#x27;https://bedrock.example.com/"
	    "bedrock&#x27;") != NULL, "boto3 endpoint_url");
	ok(strstr(s, "<textarea id=\"access-token\" readonly") != NULL &&
	    strstr(s, "<textarea id=\"refresh-token\" readonly") != NULL,
	    "tokens in read-only text areas");

	/* Every copy button names an element that exists. */
	n = 0;
	for (p = s; (p = strstr(p, "data-copy=\"")) != NULL; p = ids) {
		ids = p + strlen("data-copy=\"");
		snprintf(id, sizeof id, " id=\"%.*s\"", (int)strcspn(ids, "\""),
		    ids);
		if (strstr(s, id) == NULL)
			break;
		n++;
	}
	ok(p == NULL && n == 10, "all %zu copy buttons have a target", n);
	ok(strstr(s, "data-copy=\"access-token\" aria-live=\"polite\" hidden>")
	    != NULL, "copy buttons hidden until app.js shows them");

	/* Token elements hold exactly the tokens. */
	e = element(s, "access-token");
	is_str(e, AT, "access token text area");
	free(e);
	e = element(s, "refresh-token");
	is_str(e, RT, "refresh token text area");
	free(e);

	/* settings.json is JSON once unescaped. */
	e = element(s, "cc-settings");
	j = e != NULL ? json_loads(e, 0, &jerr) : NULL;
	ok(j != NULL, "settings.json block is valid JSON");
	is_str(json_string_value(json_object_get(json_object_get(j, "env"),
	    "ANTHROPIC_AUTH_TOKEN")), AT, "settings: token");
	is_str(json_string_value(json_object_get(json_object_get(j, "env"),
	    "ANTHROPIC_BEDROCK_BASE_URL")),
	    "https://bedrock.example.com/bedrock",
	    "settings: base URL under /bedrock");
	is_str(json_string_value(json_object_get(json_object_get(j, "env"),
	    "CLAUDE_CODE_SKIP_BEDROCK_AUTH")), "1", "settings: skip auth");
	is_str(json_string_value(json_object_get(json_object_get(j, "env"),
	    "CLAUDE_CODE_USE_BEDROCK")), "1", "settings: Bedrock mode");
	is_str(json_string_value(json_object_get(json_object_get(j, "env"),
	    "AWS_REGION")), "eu-west-1", "settings: region");
	is_str(json_string_value(json_object_get(json_object_get(j, "env"),
	    "ANTHROPIC_MODEL")), t.example_model, "settings: model");
	json_decref(j);
	free(e);

	/* The Claude Code shell block, run by sh. */
	e = element(s, "cc-shell");
	ok(e != NULL && strstr(e, "\nclaude") != NULL, "shell block found");
	out = run_sh("claude() { :; }\nAWS_BEARER_TOKEN_BEDROCK=stale", e,
	    "printf '%s|%s|%s|%s|%s|%s|%s\\n' \"$CLAUDE_CODE_USE_BEDROCK\" "
	    "\"$ANTHROPIC_BEDROCK_BASE_URL\" "
	    "\"$CLAUDE_CODE_SKIP_BEDROCK_AUTH\" "
	    "\"$ANTHROPIC_AUTH_TOKEN\" \"$AWS_REGION\" \"$ANTHROPIC_MODEL\" "
	    "\"${AWS_BEARER_TOKEN_BEDROCK-unset}\"");
	is_str(out, "1|https://bedrock.example.com/bedrock|1|" AT "|eu-west-1|"
	    "eu.anthropic.claude-sonnet-4-20250514-v1:0|unset\n",
	    "sh: Claude Code environment as BEDROCK-FACTS 5.2 says");
	free(out);
	free(e);

	/* The refresh command, with curl replaced by an argument printer. */
	e = element(s, "refresh-cmd");
	out = run_sh("curl() { for a; do printf '[%s]' \"$a\"; done; }", e,
	    "");
	is_str(out, "[-sS][-X][POST][https://bedrock.example.com/auth/refresh]"
	    "[-H][Content-Type: application/json][-d][{\"refresh_token\":\""
	    RT "\"}]", "sh: refresh command");
	free(out);
	free(e);
	e = element(s, "logout-cmd");
	ok(e != NULL && strstr(e, "/auth/logout") != NULL &&
	    strstr(e, "{\"refresh_token\":\"" RT "\"}") != NULL,
	    "logout command");
	free(e);
	e = element(s, "curl-invoke");
	out = run_sh("curl() { for a; do printf '[%s]' \"$a\"; done; }", e,
	    "");
	is_str(out, "[-sS][https://bedrock.example.com/bedrock/model/"
	    "eu.anthropic.claude-sonnet-4-20250514-v1:0/invoke]"
	    "[-H][Authorization: Bearer " AT "][-H][Content-Type: "
	    "application/json][-d][{\"anthropic_version\": "
	    "\"bedrock-2023-05-31\", \"max_tokens\": 256,\n       "
	    "\"messages\": [{\"role\": \"user\", "
	    "\"content\": \"Say hello\"}]}]",
	    "sh: curl InvokeModel command");
	free(out);
	free(e);
	free(s);

	/* Hostile token and configuration values survive both layers. */
	t.access_token = "a'b\"c<d>&e\\f$(id)`id`";
	t.refresh_token = "r'\"<&>";
	t.public_url = "https://h.example/x'y\"z&";
	t.region = "r'1";
	t.example_model = "arn:aws:bedrock:us-east-1:1:application-inference"
	    "-profile/abc'd";
	s = success(&t);
	ok(s != NULL, "hostile values render");
	secrets[0] = "a'b";
	secrets[1] = "r'";
	ok(check_tags(s, secrets, 2) == NULL && count(s, "<d>") == 0,
	    "hostile values stay out of the markup");
	e = element(s, "cc-shell");
	out = run_sh("claude() { :; }", e, "printf '%s|%s|%s\\n' "
	    "\"$ANTHROPIC_AUTH_TOKEN\" \"$ANTHROPIC_BEDROCK_BASE_URL\" "
	    "\"$AWS_REGION\"");
	is_str(out, "a'b\"c<d>&e\\f$(id)`id`|https://h.example/x'y\"z&/bedrock|"
	    "r'1\n", "sh: hostile values quoted exactly");
	free(out);
	free(e);
	e = element(s, "cc-settings");
	j = e != NULL ? json_loads(e, 0, &jerr) : NULL;
	is_str(json_string_value(json_object_get(json_object_get(j, "env"),
	    "ANTHROPIC_AUTH_TOKEN")), t.access_token,
	    "settings.json: hostile token round-trips");
	json_decref(j);
	free(e);
	e = element(s, "refresh-cmd");
	out = run_sh("curl() { for a; do printf '[%s]' \"$a\"; done; }", e,
	    "");
	ok(out != NULL && strstr(out, "[{\"refresh_token\":\"r'\\\"<&>\"}]") !=
	    NULL, "sh: hostile refresh token quoted as JSON in shell");
	free(out);
	free(e);
	e = element(s, "curl-invoke");
	ok(e != NULL && strstr(e, "application-inference-profile%2Fabc%27d/"
	    "invoke") != NULL, "model ID percent-encoded in the curl path");
	free(e);
	free(s);

	/* No refresh token; NULL name; defaults. */
	memset(&t, 0, sizeof t);
	t.access_token = AT;
	t.expires_at = NOW + 3600;
	t.user = "sub-123";
	s = success(&t);
	ok(s != NULL && count(s, AT) == 5 && strstr(s, "refresh-token") ==
	    NULL && strstr(s, "has no refresh token") != NULL,
	    "without a refresh token");
	ok(strstr(s, "<strong>sub-123</strong>.") != NULL, "user alone");
	ok(strstr(s, "(in 1 hour)") != NULL, "in 1 hour");
	ok(strstr(s, "us-east-1") != NULL && strstr(s,
	    "us.anthropic.claude-sonnet-4-20250514-v1:0") != NULL,
	    "region and model defaults");
	ok(check_tags(s, secrets, 0) == NULL, "tags clean without refresh");
	free(s);

	/* Refusals: no token, oversized token, oversized config value. */
	t.access_token = NULL;
	ok(success(&t) == NULL, "no access token: refused");
	e = xmalloc(WEB_TOKEN_MAX + 2);
	memset(e, 'A', WEB_TOKEN_MAX + 1);
	e[WEB_TOKEN_MAX + 1] = '\0';
	t.access_token = e;
	ok(success(&t) == NULL, "oversized token: refused, not cut");
	t.access_token = AT;
	t.example_model = e;
	ok(success(&t) == NULL, "oversized model: refused");
	free(e);
}

static void
test_error(void)
{
	char	*s, *big, *u8;
	size_t	 i;

	s = error_page(403, HOSTILE, HOSTILE, HOSTILE);
	ok(strstr(s, "<h1>&lt;script&gt;alert(1)&lt;/script&gt; &quot;q&quot; "
	    "&#x27;a&#x27; &amp; &lt;img") != NULL, "title escaped");
	ok(strstr(s, "<title>&lt;script&gt;") != NULL, "<title> escaped");
	is_int(count(s, "&lt;script&gt;alert(1)"), 4,
	    "title, heading, what, to do: all escaped");
	is_int(count(s, "<script"), 1, "only the static script");
	ok(check_tags(s, NULL, 0) == NULL, "error page tags are clean");
	ok(strstr(s, "<a class=\"button\" href=\"/\">") != NULL,
	    "link back to /");
	ok(strstr(s, "HTTP status 403") != NULL, "status shown");
	free(s);

	big = xmalloc(10241);
	memset(big, 'A', 10240);
	big[10240] = '\0';
	s = error_page(502, big, big, big);
	ok(strlen(s) < 4 * 1024 + 2 * WEB_TEXT_MAX + WEB_TITLE_MAX * 2,
	    "10 KB texts: page stays small (%zu bytes)", strlen(s));
	ok(strstr(s, big + 10240 - WEB_TEXT_MAX - 1) == NULL, "what cut");
	memset(big, 'A', WEB_TEXT_MAX);
	big[WEB_TEXT_MAX] = '\0';
	ok(strstr(s, big) != NULL, "cut at WEB_TEXT_MAX");
	ok(strstr(s, "A\xe2\x80\xa6</p>") != NULL, "cut text ends with an "
	    "ellipsis");
	free(s);
	free(big);

	u8 = xmalloc(3 * 2000 + 1);
	for (i = 0; i < 2000; i++)
		memcpy(u8 + 3 * i, "\xe2\x82\xac", 3);	/* euro sign */
	u8[3 * 2000] = '\0';
	s = error_page(400, u8, u8, "x\x01y\x1b[31mz\x7f");
	ok(utf8_valid(s), "cut on a UTF-8 boundary");
	ok(strstr(s, "x y [31mz ") != NULL, "control characters blanked");
	free(s);
	free(u8);

	s = error_page(500, NULL, NULL, NULL);
	ok(strstr(s, "<h1>Something went wrong</h1>") != NULL &&
	    strstr(s, "What happened") == NULL &&
	    strstr(s, "Go back to the sign-in page") != NULL, "defaults");
	free(s);
}

static char *
device_page(const struct web_device *d)
{
	struct evbuffer	*b = evbuffer_new();

	if (web_render_device(b, d) == -1) {
		evbuffer_free(b);
		return (NULL);
	}
	return (drain(b));
}

static void
test_device(void)
{
	struct web_provider	 pv[2] = {
		{ "corp", HOSTILE }, { "gh", NULL },
	};
	struct web_device	 d;
	struct evbuffer		*b;
	char			*s;
	const char		*secrets[] = { "sekret-form-token" };

	memset(&d, 0, sizeof d);
	d.user_code = HOSTILE;
	d.csrf = "sekret-form-token\"><script>";
	d.pv = pv;
	d.npv = 2;
	d.notice = HOSTILE;
	s = device_page(&d);
	ok(s != NULL, "device: the form is built");
	ok(check_tags(s, NULL, 0) == NULL, "device: tags are clean (%s)",
	    s != NULL && check_tags(s, NULL, 0) != NULL ?
	    check_tags(s, NULL, 0) : "ok");
	is_int(count(s, "&lt;script&gt;alert(1)"), 3,
	    "device: code, notice and provider name escaped");
	ok(strstr(s, "value=\"sekret-form-token&quot;&gt;&lt;script&gt;\"") !=
	    NULL, "device: the token escaped in its hidden field");
	ok(strstr(s, "<meta name=\"referrer\" content=\"same-origin\">") !=
	    NULL && strstr(s, "no-referrer") == NULL,
	    "device: same-origin referrers (the post's Origin is checked)");
	ok(strstr(s, "<form class=\"device\" method=\"post\" "
	    "action=\"/device\">") != NULL, "device: posts back to /device");
	is_int(count(s, "<button class=\"button\" type=\"submit\" "
	    "name=\"provider\""), 2, "device: one button per provider");
	ok(strstr(s, "value=\"gh\">Continue with gh</button>") != NULL,
	    "device: the name stands in for a missing display name");
	ok(strstr(s, "http-equiv") == NULL && strstr(s, "autofocus") == NULL,
	    "device: the form never goes on by itself");
	free(s);
	d.npv = 0;
	d.user_code = NULL;
	d.notice = NULL;
	d.csrf = "t";
	s = device_page(&d);
	ok(s != NULL && strstr(s, "No identity provider is configured") !=
	    NULL && strstr(s, "<button") == NULL,
	    "device: no provider: a notice, no button");
	ok(s != NULL && check_tags(s, secrets, 1) == NULL,
	    "device: no provider: tags are clean");
	free(s);
	d.csrf = NULL;
	ok(device_page(&d) == NULL, "device: no token, no form");

	b = evbuffer_new();
	is_int(web_render_device_continue(b, "https://idp.example/a?x=1&y=\""
	    "><script>", HOSTILE), 0, "continue: built");
	s = drain(b);
	ok(strstr(s, "<meta http-equiv=\"refresh\" content=\"0; url="
	    "https://idp.example/a?x=1&amp;y=&quot;&gt;&lt;script&gt;\">") !=
	    NULL, "continue: goes on to the URL, escaped");
	ok(strstr(s, "href=\"https://idp.example/a?x=1&amp;y=&quot;&gt;"
	    "&lt;script&gt;\"") != NULL, "continue: and links to it");
	ok(strstr(s, "content=\"no-referrer\"") != NULL,
	    "continue: no referrer to the identity provider");
	is_int(count(s, "<script"), 1, "continue: only the static script");
	free(s);
	b = evbuffer_new();
	is_int(web_render_device_continue(b, "javascript:alert(1)", "x"), -1,
	    "continue: only http and https URLs");
	is_int(evbuffer_get_length(b), 0, "continue: buffer untouched");
	evbuffer_free(b);

	b = evbuffer_new();
	is_int(web_render_device_done(b, HOSTILE, HOSTILE, HOSTILE), 0,
	    "done: built");
	s = drain(b);
	is_int(count(s, "&lt;script&gt;alert(1)"), 3,
	    "done: user, name and provider escaped");
	ok(check_tags(s, NULL, 0) == NULL, "done: tags are clean");
	ok(strstr(s, "Your device is signed in") != NULL &&
	    strstr(s, "textarea") == NULL, "done: says so, with no token");
	free(s);
}

static void
test_static(void)
{
	const char	*body, *ctype, *etag, *etag2;
	size_t		 len;

	body = web_static("app.css", 7, &ctype, &len, &etag);
	ok(body != NULL && strncmp(ctype, "text/css", 8) == 0 &&
	    len == strlen(body), "app.css");
	ok(strstr(body, "prefers-color-scheme: dark") != NULL &&
	    strstr(body, "system-ui") != NULL, "css: dark mode, system fonts");
	ok(strstr(body, "http") == NULL && strstr(body, "url(") == NULL &&
	    strstr(body, "@import") == NULL, "css: nothing external");
	ok(etag[0] == '"' && etag[strlen(etag) - 1] == '"' &&
	    strlen(etag) == 18, "etag is a quoted hash");
	web_static("app.css", 7, &ctype, &len, &etag2);
	ok(etag == etag2, "etag is stable");
	body = web_static("app.js", 6, &ctype, &len, &etag2);
	ok(body != NULL && strncmp(ctype, "application/javascript", 22) == 0 &&
	    strcmp(etag, etag2) != 0, "app.js, its own etag");
	ok(strstr(body, "navigator.clipboard.writeText") != NULL &&
	    strstr(body, "execCommand('copy')") != NULL &&
	    strstr(body, "'Copied'") != NULL && strstr(body, "data-copy") !=
	    NULL, "js: clipboard, fallback, Copied");
	ok(strstr(body, "http") == NULL && strstr(body, "eval") == NULL &&
	    strstr(body, "innerHTML") == NULL, "js: nothing external, no eval");
	ok(web_static("app.cs", 6, &ctype, &len, &etag) == NULL &&
	    web_static("app.css.map", 11, &ctype, &len, &etag) == NULL &&
	    web_static("../app.css", 10, &ctype, &len, &etag) == NULL &&
	    web_static("", 0, &ctype, &len, &etag) == NULL, "others: 404");
}

static void
test_delta(void)
{
	char	buf[64];

	web_human_delta(2592000, buf, sizeof buf);
	is_str(buf, "in 30 days", "30 days");
	web_human_delta(3600, buf, sizeof buf);
	is_str(buf, "in 1 hour", "1 hour");
	web_human_delta(90000, buf, sizeof buf);
	is_str(buf, "in 25 hours", "25 hours");
	web_human_delta(600, buf, sizeof buf);
	is_str(buf, "in 10 minutes", "10 minutes");
	web_human_delta(60, buf, sizeof buf);
	is_str(buf, "in 1 minute", "1 minute");
	web_human_delta(5, buf, sizeof buf);
	is_str(buf, "in less than a minute", "seconds");
	web_human_delta(0, buf, sizeof buf);
	is_str(buf, "expired", "expired");
	web_human_delta(-5, buf, sizeof buf);
	is_str(buf, "expired", "past");
}

static void
test_escape(void)
{
	char	*s;

	s = web_escape("<script>alert('x')&\"</script>");
	is_str(s, "&lt;script&gt;alert(&#x27;x&#x27;)&amp;&quot;&lt;/script&gt;",
	    "markup and quotes escaped");
	free(s);
	s = web_escape("a\tb\nc\rd\x1b[31me\x7f\xc3\xa9");
	is_str(s, "a\tb\nc d [31me \xc3\xa9",
	    "tab and newline kept, other controls become spaces, UTF-8 kept");
	free(s);
	s = web_escape("");
	is_str(s, "", "empty");
	free(s);
}

int
main(void)
{
	test_escape();
	test_login();
	test_success();
	test_error();
	test_device();
	test_static();
	test_delta();
	return (tap_done());
}
