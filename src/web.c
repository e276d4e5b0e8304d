/*
 * web.c: the browser-facing HTML pages and their two static assets.
 *
 * Pages are plain HTML built into an evbuffer: no inline script or style
 * (the CSP allows only /static/app.css and /static/app.js from 'self'),
 * no third-party assets, every dynamic value HTML-escaped and bounded.
 * They read and work without JavaScript; app.js only adds copy buttons.
 * Snippet values pass two layers: first quoted for their language (shell,
 * JSON via jansson, JS/Python string), then HTML-escaped. Answering a
 * request with a page is the routes' (route-login.c, route-device.c,
 * route-static.c).
 *
 * The self-service page (/me) shows the signed-in user's usage, budgets,
 * API keys and sessions from what route-self.c gathered, every form with
 * the browser session's token; it too keeps same-origin referrers.
 *
 * The device flow's verification page (RFC 8628) is a form that posts
 * back to /device with a token against cross-site requests; it alone
 * keeps same-origin referrers, which the check of its posts reads. Its
 * answer sends the browser on to the identity provider with a meta
 * refresh and a link, as the policy's form-action 'self' would stop a
 * redirect of the form's post to another origin.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>

#include <jansson.h>

#include "bsp.h"
#include "web.h"

#define PRODUCT		"Bedrock SSO Proxy"
#define DEFAULT_MODEL	"us.anthropic.claude-sonnet-4-20250514-v1:0"
#define DEFAULT_REGION	"us-east-1"
#define DEFAULT_URL	"https://PROXY-HOST"
#define ELLIPSIS	"\xe2\x80\xa6"
#define WEB_URL_MAX	(WEB_FIELD_MAX + 32)	/* public_url + a path */
#define WEB_MAX_SECS	(100LL * 366 * 86400)	/* times beyond are clamped */

enum quote {
	Q_SHELL,	/* 'single quoted' for sh */
	Q_SCRIPT,	/* 'single quoted' for JavaScript and Python */
};

/* The values every section of the success page uses. */
struct web_success {
	const struct web_tokens	*t;
	const char		*at;		/* access token */
	const char		*rt;		/* refresh token or NULL */
	const char		*region;
	const char		*model;
	char			*base;		/* public URL, no slash */
	char			*bedrock;	/* base + /bedrock */
	time_t			 now;
};

static void	web_raw(struct evbuffer *, const char *);
static void	web_esc(struct evbuffer *, const char *, size_t);
static void	web_text(struct evbuffer *, const char *, size_t);
static void	web_quoted(struct evbuffer *, enum quote, const char *, size_t);
static void	web_pathseg(struct evbuffer *, const char *, size_t, int);
static void	web_success_spend(struct evbuffer *, json_t *);
static void	web_head(struct evbuffer *, const char *);
static void	web_head_policy(struct evbuffer *, const char *, const char *,
		    const char *);
static void	web_foot(struct evbuffer *);
static void	web_copy_button(struct evbuffer *, const char *);
static void	web_block(struct evbuffer *, const char *, const char *);
static void	web_block_end(struct evbuffer *);
static void	web_when(struct evbuffer *, time_t, time_t);
static int	web_settings_json(struct evbuffer *, const char *,
		    const char *, const char *, const char *);
static int	web_refresh_body(struct evbuffer *, const char *);
static char	*web_base_url(const char *);
static void	web_success_intro(struct evbuffer *,
		    const struct web_success *);
static void	web_success_tokens(struct evbuffer *,
		    const struct web_success *);
static int	web_success_claude(struct evbuffer *,
		    const struct web_success *);
static void	web_success_curl(struct evbuffer *, const struct web_success *);
static void	web_success_sdk(struct evbuffer *, const struct web_success *);
static int	web_refresh_cmd(struct evbuffer *, const struct web_success *,
		    const char *);
static int	web_success_refresh(struct evbuffer *,
		    const struct web_success *);

/* The stylesheet: system fonts, readable width, dark mode. */
static const char web_css[] =
":root {\n"
"  color-scheme: light dark;\n"
"  --bg: #ffffff; --fg: #1b1f24; --muted: #57606a; --line: #d0d7de;\n"
"  --panel: #f6f8fa; --accent: #0b5cad; --accent-fg: #ffffff;\n"
"  --warn-bg: #fff8c5; --warn-line: #d4a72c; --err-bg: #ffebe9;\n"
"  --err-line: #cf222e; --ok: #1a7f37;\n"
"}\n"
"@media (prefers-color-scheme: dark) {\n"
"  :root {\n"
"    --bg: #0d1117; --fg: #e6edf3; --muted: #9da7b3; --line: #30363d;\n"
"    --panel: #161b22; --accent: #4493f8; --accent-fg: #0d1117;\n"
"    --warn-bg: #2e2610; --warn-line: #9e6a03; --err-bg: #2d1214;\n"
"    --err-line: #f85149; --ok: #3fb950;\n"
"  }\n"
"}\n"
"*, *::before, *::after { box-sizing: border-box; }\n"
"[hidden] { display: none !important; }\n"
"html { -webkit-text-size-adjust: 100%; text-size-adjust: 100%; }\n"
"body {\n"
"  margin: 0; background: var(--bg); color: var(--fg);\n"
"  font: 16px/1.55 system-ui, -apple-system, \"Segoe UI\", Roboto,\n"
"    \"Helvetica Neue\", Arial, sans-serif;\n"
"}\n"
"header.site, main, footer.site {\n"
"  max-width: 52rem; margin: 0 auto; padding: 0 1.25rem;\n"
"}\n"
"header.site { padding-top: 1.25rem; padding-bottom: .75rem;\n"
"  border-bottom: 1px solid var(--line); }\n"
"header.site a { color: var(--fg); font-weight: 600;\n"
"  text-decoration: none; }\n"
"main { padding-top: 1rem; padding-bottom: 2rem; }\n"
"footer.site { color: var(--muted); font-size: .875rem;\n"
"  padding-bottom: 2rem; }\n"
"h1 { font-size: 1.75rem; line-height: 1.25; margin: 1rem 0 .75rem; }\n"
"h2 { font-size: 1.3rem; margin: 2.25rem 0 .5rem;\n"
"  padding-top: .75rem; border-top: 1px solid var(--line); }\n"
"h3 { font-size: 1.05rem; margin: 1.5rem 0 .4rem; }\n"
"a { color: var(--accent); }\n"
"p, ul, ol, dl { margin: .6rem 0; }\n"
"code, pre, textarea, kbd {\n"
"  font-family: ui-monospace, SFMono-Regular, \"SF Mono\", Menlo,\n"
"    Consolas, \"Liberation Mono\", monospace; font-size: .875rem;\n"
"}\n"
"code { background: var(--panel); padding: .1em .3em; border-radius: 4px;\n"
"  overflow-wrap: anywhere; }\n"
"pre code { background: none; padding: 0; }\n"
"pre, textarea {\n"
"  display: block; width: 100%; margin: 0; padding: .75rem .9rem;\n"
"  background: var(--panel); color: var(--fg);\n"
"  border: 1px solid var(--line); border-radius: 6px;\n"
"  white-space: pre-wrap; overflow-wrap: anywhere; line-height: 1.45;\n"
"}\n"
"textarea { resize: vertical; min-height: 5.5rem; }\n"
".block { position: relative; margin: .5rem 0 1rem; }\n"
".block .label { display: flex; justify-content: space-between;\n"
"  align-items: end; gap: 1rem; margin-bottom: .3rem;\n"
"  color: var(--muted); font-size: .875rem; }\n"
"button.copy {\n"
"  font: inherit; font-size: .8125rem; cursor: pointer;\n"
"  padding: .15rem .7rem; border-radius: 6px;\n"
"  border: 1px solid var(--line); background: var(--bg); color: var(--fg);\n"
"}\n"
"button.copy:hover { border-color: var(--accent); }\n"
"button.copy.copied { color: var(--ok); border-color: var(--ok); }\n"
"a.button {\n"
"  display: inline-block; padding: .65rem 1.2rem; border-radius: 6px;\n"
"  background: var(--accent); color: var(--accent-fg); font-weight: 600;\n"
"  text-decoration: none; border: 1px solid transparent;\n"
"}\n"
"a.button:hover, a.button:focus { filter: brightness(1.1);\n"
"  text-decoration: underline; }\n"
"a.button.secondary { background: var(--bg); color: var(--accent);\n"
"  border-color: var(--line); }\n"
"ul.providers { list-style: none; padding: 0; margin: 1.5rem 0;\n"
"  display: grid; gap: .75rem; max-width: 24rem; }\n"
"ul.providers a.button { display: block; text-align: center; }\n"
"button.button {\n"
"  display: block; width: 100%; font: inherit; font-weight: 600;\n"
"  cursor: pointer; padding: .65rem 1.2rem; border-radius: 6px;\n"
"  background: var(--accent); color: var(--accent-fg);\n"
"  border: 1px solid transparent;\n"
"}\n"
"button.button:hover, button.button:focus { filter: brightness(1.1); }\n"
"form.device label { display: block; font-weight: 600;\n"
"  margin: 1rem 0 .3rem; }\n"
"form.device input.code {\n"
"  font-family: ui-monospace, SFMono-Regular, Menlo, Consolas,\n"
"    monospace; font-size: 1.5rem; letter-spacing: .15em;\n"
"  text-transform: uppercase; padding: .4rem .6rem; width: 12rem;\n"
"  background: var(--panel); color: var(--fg);\n"
"  border: 1px solid var(--line); border-radius: 6px;\n"
"}\n"
".notice { padding: .75rem 1rem; border-radius: 6px;\n"
"  border: 1px solid var(--line); background: var(--panel); }\n"
".notice.warn { background: var(--warn-bg); border-color: var(--warn-line); }\n"
".notice.error { background: var(--err-bg); border-color: var(--err-line); }\n"
".notice h2 { border: 0; margin: 0 0 .4rem; padding: 0; font-size: 1.1rem; }\n"
".lead { font-size: 1.1rem; color: var(--muted); }\n"
".muted { color: var(--muted); }\n"
"dl.facts { display: grid; grid-template-columns: max-content 1fr;\n"
"  gap: .3rem 1.25rem; }\n"
"dl.facts dt { color: var(--muted); }\n"
"dl.facts dd { margin: 0; }\n"
"nav.toc ul { padding-left: 1.2rem; }\n"
"table.data { border-collapse: collapse; width: 100%; margin: .6rem 0;\n"
"  font-size: .9375rem; }\n"
"table.data th, table.data td { text-align: left; padding: .35rem .5rem;\n"
"  border-bottom: 1px solid var(--line); vertical-align: top; }\n"
"table.data td.n, table.data th.n { text-align: right;\n"
"  font-variant-numeric: tabular-nums; }\n"
"table.data tfoot td { font-weight: 600; }\n"
".scroll { overflow-x: auto; }\n"
"form.inline { display: inline; margin: 0; }\n"
"button.small {\n"
"  font: inherit; font-size: .875rem; cursor: pointer;\n"
"  padding: .2rem .7rem; border-radius: 6px;\n"
"  border: 1px solid var(--line); background: var(--bg); color: var(--fg);\n"
"}\n"
"button.small.danger { color: var(--err-line);\n"
"  border-color: var(--err-line); }\n"
"form.self label { display: block; font-weight: 600; margin: .8rem 0 .2rem; }\n"
"form.self input, form.self select {\n"
"  font: inherit; padding: .35rem .5rem; width: 100%; max-width: 28rem;\n"
"  background: var(--panel); color: var(--fg);\n"
"  border: 1px solid var(--line); border-radius: 6px;\n"
"}\n"
"form.self button.button { width: auto; margin-top: 1rem; }\n"
".state-ok { color: var(--ok); }\n"
".state-warn { color: var(--warn-line); font-weight: 600; }\n"
".state-over { color: var(--err-line); font-weight: 600; }\n"
"@media (max-width: 36rem) {\n"
"  dl.facts { grid-template-columns: 1fr; }\n"
"  dl.facts dd { margin-bottom: .5rem; }\n"
"}\n"
"@media print { button.copy { display: none; } }\n";

/* Copy buttons; the pages are complete without this script. */
static const char web_js[] =
"/* app.js: copy-to-clipboard buttons. The pages work without it. */\n"
"(function () {\n"
"  'use strict';\n"
"\n"
"  function textOf(el) {\n"
"    return el.tagName === 'TEXTAREA' ? el.value : el.textContent;\n"
"  }\n"
"\n"
"  function selectAll(el) {\n"
"    if (typeof el.select === 'function') {\n"
"      el.focus();\n"
"      el.select();\n"
"      return;\n"
"    }\n"
"    var range = document.createRange();\n"
"    range.selectNodeContents(el);\n"
"    var sel = window.getSelection();\n"
"    sel.removeAllRanges();\n"
"    sel.addRange(range);\n"
"  }\n"
"\n"
"  function fallback(el) {\n"
"    selectAll(el);\n"
"    try {\n"
"      return document.execCommand('copy');\n"
"    } catch (e) {\n"
"      return false;\n"
"    }\n"
"  }\n"
"\n"
"  function show(btn, ok) {\n"
"    var label = btn.getAttribute('data-label');\n"
"    btn.textContent = ok ? 'Copied' : 'Press Ctrl+C to copy';\n"
"    btn.classList.toggle('copied', ok);\n"
"    clearTimeout(btn.bspTimer);\n"
"    btn.bspTimer = setTimeout(function () {\n"
"      btn.textContent = label;\n"
"      btn.classList.remove('copied');\n"
"    }, 2000);\n"
"  }\n"
"\n"
"  function copy(btn) {\n"
"    var el = document.getElementById(btn.getAttribute('data-copy'));\n"
"    if (!el)\n"
"      return;\n"
"    if (navigator.clipboard && window.isSecureContext) {\n"
"      navigator.clipboard.writeText(textOf(el)).then(function () {\n"
"        show(btn, true);\n"
"      }, function () {\n"
"        show(btn, fallback(el));\n"
"      });\n"
"    } else\n"
"      show(btn, fallback(el));\n"
"  }\n"
"\n"
"  var buttons = document.querySelectorAll('button[data-copy]');\n"
"  for (var i = 0; i < buttons.length; i++) {\n"
"    var b = buttons[i];\n"
"    b.setAttribute('data-label', b.textContent);\n"
"    b.hidden = false;\n"
"    b.addEventListener('click', function (ev) {\n"
"      copy(ev.currentTarget);\n"
"    });\n"
"  }\n"
"  var areas = document.querySelectorAll('textarea[readonly]');\n"
"  for (var j = 0; j < areas.length; j++)\n"
"    areas[j].addEventListener('focus', function (ev) {\n"
"      ev.currentTarget.select();\n"
"    });\n"
"})();\n";

static struct web_asset {
	const char	*name;
	const char	*ctype;
	const char	*body;
	size_t		 len;
	char		 etag[24];
} web_assets[] = {
	{ "app.css", "text/css; charset=utf-8", web_css, sizeof web_css - 1,
	  "" },
	{ "app.js", "application/javascript; charset=utf-8", web_js,
	  sizeof web_js - 1, "" },
};

static void
web_raw(struct evbuffer *b, const char *s)
{
	evbuffer_add(b, s, strlen(s));
}

/*
 * Append len bytes HTML-escaped, for text and attribute values alike.
 * Control characters other than tab and newline become spaces.
 */
static void
web_esc(struct evbuffer *b, const char *s, size_t len)
{
	const char	*rep;
	size_t		 i, start = 0;
	unsigned char	 c;

	for (i = 0; i < len; i++) {
		c = (unsigned char)s[i];
		switch (c) {
		case '&':
			rep = "&amp;";
			break;
		case '<':
			rep = "&lt;";
			break;
		case '>':
			rep = "&gt;";
			break;
		case '"':
			rep = "&quot;";
			break;
		case '\'':
			rep = "&#x27;";
			break;
		case '\t':
		case '\n':
			rep = NULL;
			break;
		default:
			rep = (c < 0x20 || c == 0x7f) ? " " : NULL;
			break;
		}
		if (rep == NULL)
			continue;
		evbuffer_add(b, s + start, i - start);
		web_raw(b, rep);
		start = i + 1;
	}
	evbuffer_add(b, s + start, len - start);
}

/* web_esc() of a whole string, allocated: for tests and the fuzzer. */
char *
web_escape(const char *s)
{
	struct evbuffer	*b;
	char		*out;
	size_t		 len;

	if ((b = evbuffer_new()) == NULL)
		fatalx("out of memory");
	web_esc(b, s, strlen(s));
	len = evbuffer_get_length(b);
	out = xmalloc(len + 1);
	evbuffer_remove(b, out, len);
	out[len] = '\0';
	evbuffer_free(b);
	return (out);
}

/* Escaped text of at most max bytes, cut on a UTF-8 boundary. */
static void
web_text(struct evbuffer *b, const char *s, size_t max)
{
	size_t	len, cut;

	if (s == NULL)
		return;
	len = strnlen(s, max + 1);
	if (len <= max) {
		web_esc(b, s, len);
		return;
	}
	cut = max;
	while (cut > 0 && ((unsigned char)s[cut] & 0xc0) == 0x80)
		cut--;
	web_esc(b, s, cut);
	web_raw(b, ELLIPSIS);
}

/* A string literal for sh or for JS/Python, then HTML-escaped. */
static void
web_quoted(struct evbuffer *b, enum quote q, const char *s, size_t max)
{
	size_t		 i, len = strnlen(s, max);
	unsigned char	 c;

	web_raw(b, "&#x27;");
	for (i = 0; i < len; i++) {
		c = (unsigned char)s[i];
		if (c < 0x20 || c == 0x7f)
			continue;
		if (c == '\'')
			web_raw(b, q == Q_SHELL ? "&#x27;\\&#x27;&#x27;" :
			    "\\&#x27;");
		else if (c == '\\' && q == Q_SCRIPT)
			web_raw(b, "\\\\");
		else
			web_esc(b, s + i, 1);
	}
	web_raw(b, "&#x27;");
}

/* Percent-encode a path segment: unreserved kept, and ':' if asked. */
static void
web_pathseg(struct evbuffer *b, const char *s, size_t max, int keep_colon)
{
	static const char	 hex[] = "0123456789ABCDEF";
	size_t			 i, len = strnlen(s, max);
	unsigned char		 c;
	char			 pct[3];

	for (i = 0; i < len; i++) {
		c = (unsigned char)s[i];
		if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		    (c >= '0' && c <= '9') || c == '-' || c == '.' ||
		    c == '_' || c == '~' || (c == ':' && keep_colon)) {
			evbuffer_add(b, &s[i], 1);
			continue;
		}
		pct[0] = '%';
		pct[1] = hex[c >> 4];
		pct[2] = hex[c & 0xf];
		evbuffer_add(b, pct, 3);
	}
}

/* Everything up to and including <main>. */
static void
web_head(struct evbuffer *b, const char *title)
{
	web_head_policy(b, title, "no-referrer", NULL);
}

/*
 * The same, with a referrer policy of its own, and a URL the page goes
 * on to by itself (meta refresh), or NULL.
 */
static void
web_head_policy(struct evbuffer *b, const char *title, const char *referrer,
    const char *refresh)
{
	web_raw(b, "<!doctype html>\n"
	    "<html lang=\"en\">\n"
	    "<head>\n"
	    "<meta charset=\"utf-8\">\n"
	    "<meta name=\"viewport\" content=\"width=device-width, "
	    "initial-scale=1\">\n"
	    "<meta name=\"referrer\" content=\"");
	web_raw(b, referrer);
	web_raw(b, "\">\n");
	if (refresh != NULL) {
		web_raw(b, "<meta http-equiv=\"refresh\" content=\"0; url=");
		web_esc(b, refresh, strlen(refresh));
		web_raw(b, "\">\n");
	}
	web_raw(b, "<meta name=\"robots\" content=\"noindex, nofollow\">\n"
	    "<title>");
	web_text(b, title, WEB_TITLE_MAX);
	web_raw(b, " \xe2\x80\x94 " PRODUCT "</title>\n"
	    "<link rel=\"stylesheet\" href=\"/static/app.css\">\n"
	    "<script src=\"/static/app.js\" defer></script>\n"
	    "</head>\n"
	    "<body>\n"
	    "<header class=\"site\"><a href=\"/\">" PRODUCT "</a></header>\n"
	    "<main>\n");
}

static void
web_foot(struct evbuffer *b)
{
	web_raw(b, "</main>\n"
	    "<footer class=\"site\"><p>" PRODUCT ": single sign-on for "
	    "Amazon Bedrock.</p></footer>\n"
	    "</body>\n"
	    "</html>\n");
}

/* A copy button for element id; hidden until app.js shows it. */
static void
web_copy_button(struct evbuffer *b, const char *id)
{
	evbuffer_add_printf(b, "<button type=\"button\" class=\"copy\" "
	    "data-copy=\"%s\" aria-live=\"polite\" hidden>Copy</button>", id);
}

/* "2025-01-01T00:00:00Z (in 30 days)" */
static void
web_when(struct evbuffer *b, time_t t, time_t now)
{
	char	iso[32], rel[64];

	if ((long long)t < 0)
		t = 0;
	if ((long long)t - (long long)now > WEB_MAX_SECS)
		t = now + (time_t)WEB_MAX_SECS;
	time_iso8601(t, iso, sizeof iso);
	web_human_delta((long long)t - (long long)now, rel, sizeof rel);
	evbuffer_add_printf(b, "<time datetime=\"%s\">%s</time> (%s)", iso, iso,
	    rel);
}

/* "in 30 days", "in 5 hours", "in 12 minutes", or "expired". */
void
web_human_delta(long long secs, char *buf, size_t len)
{
	long long	 n;
	const char	*unit;

	if (secs <= 0) {
		bsp_strlcpy(buf, "expired", len);
		return;
	}
	if (secs < 60) {
		bsp_strlcpy(buf, "in less than a minute", len);
		return;
	}
	if (secs < 3600 - 30) {
		n = (secs + 30) / 60;
		unit = "minute";
	} else if (secs < 2 * 86400) {
		n = (secs + 1800) / 3600;
		unit = "hour";
	} else {
		n = (secs + 43200) / 86400;
		unit = "day";
	}
	snprintf(buf, len, "in %lld %s%s", n, unit, n == 1 ? "" : "s");
}

/* public_url without trailing slashes, bounded; a placeholder if unset. */
static char *
web_base_url(const char *u)
{
	size_t	len;

	if (u == NULL || *u == '\0')
		return (xstrdup(DEFAULT_URL));
	len = strnlen(u, WEB_FIELD_MAX);
	while (len > 0 && u[len - 1] == '/')
		len--;
	return (xstrndup(u, len));
}

/* The ~/.claude/settings.json block, built by jansson so it is valid JSON. */
static int
web_settings_json(struct evbuffer *b, const char *bedrock, const char *token,
    const char *region, const char *model)
{
	json_t	*j;
	char	*s;

	j = json_pack("{s:{s:s,s:s,s:s,s:s,s:s,s:s}}", "env",
	    "CLAUDE_CODE_USE_BEDROCK", "1",
	    "ANTHROPIC_BEDROCK_BASE_URL", bedrock,
	    "CLAUDE_CODE_SKIP_BEDROCK_AUTH", "1",
	    "ANTHROPIC_AUTH_TOKEN", token,
	    "AWS_REGION", region,
	    "ANTHROPIC_MODEL", model);
	if (j == NULL)
		return (-1);
	s = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	json_decref(j);
	if (s == NULL)
		return (-1);
	web_esc(b, s, strlen(s));
	freezero_str(s);
	return (0);
}

/* -d '{"refresh_token":"..."}' for the refresh and logout snippets. */
static int
web_refresh_body(struct evbuffer *b, const char *refresh)
{
	json_t	*j;
	char	*s;

	if ((j = json_pack("{s:s}", "refresh_token", refresh)) == NULL)
		return (-1);
	s = json_dumps(j, JSON_COMPACT);
	json_decref(j);
	if (s == NULL)
		return (-1);
	web_raw(b, "  -d ");
	web_quoted(b, Q_SHELL, s, WEB_TOKEN_MAX * 2);
	freezero_str(s);
	return (0);
}

/* GET /: one button per provider, or a note for the operator. */
int
web_render_login(struct evbuffer *out, const struct web_provider *pv,
    size_t npv, const char *notice)
{
	struct evbuffer	*b = evbuffer_new();
	size_t		 i;

	if (b == NULL)
		fatalx("%s: evbuffer_new", __func__);
	web_head(b, "Sign in");
	web_raw(b, "<h1>Sign in to " PRODUCT "</h1>\n"
	    "<p class=\"lead\">Sign in with your company account to get a "
	    "token for Amazon Bedrock. You can use it with Claude Code, the "
	    "AWS SDKs and curl.</p>\n");
	if (notice != NULL && *notice != '\0') {
		web_raw(b, "<p class=\"notice\" role=\"status\">");
		web_text(b, notice, WEB_NOTICE_MAX);
		web_raw(b, "</p>\n");
	}
	if (npv > WEB_PROVIDERS_MAX)
		npv = WEB_PROVIDERS_MAX;
	if (npv == 0) {
		web_raw(b, "<div class=\"notice warn\" role=\"alert\">\n"
		    "<h2>No identity provider is configured</h2>\n"
		    "<p>Nobody can sign in yet. If you run this proxy, add at "
		    "least one provider under <code>oauth.providers</code> in "
		    "the configuration file, check it with "
		    "<code>bedrock-sso-proxy -n</code>, then reload the "
		    "daemon (SIGHUP). For example:</p>\n"
		    "<pre><code>oauth:\n"
		    "  providers:\n"
		    "    google:\n"
		    "      client_id: 1234.apps.googleusercontent.com\n"
		    "      client_secret_file: /etc/bedrock-sso-proxy/"
		    "google.secret</code></pre>\n"
		    "<p>Every key is described in "
		    "<strong>bedrock-sso-proxy.yaml(5)</strong>; run "
		    "<code>man bedrock-sso-proxy.yaml</code>.</p>\n"
		    "<p>If you are a developer, ask the people who run this "
		    "proxy to set up sign-in.</p>\n"
		    "</div>\n");
	} else {
		web_raw(b, "<ul class=\"providers\">\n");
		for (i = 0; i < npv; i++) {
			if (pv[i].name == NULL || *pv[i].name == '\0')
				continue;
			web_raw(b, "<li><a class=\"button\" "
			    "href=\"/auth/login/");
			web_pathseg(b, pv[i].name, WEB_NAME_MAX, 0);
			web_raw(b, "\">Sign in with ");
			web_text(b, pv[i].display_name != NULL &&
			    *pv[i].display_name != '\0' ? pv[i].display_name :
			    pv[i].name, WEB_NAME_MAX);
			web_raw(b, "</a></li>\n");
		}
		web_raw(b, "</ul>\n"
		    "<p class=\"muted\">After you sign in, this site shows "
		    "your token and how to set up your tools. Nothing is "
		    "installed on your computer.</p>\n");
	}
	web_foot(b);
	if (evbuffer_get_length(b) > WEB_PAGE_MAX) {
		evbuffer_free(b);
		return (-1);
	}
	evbuffer_add_buffer(out, b);
	evbuffer_free(b);
	return (0);
}

/* Who signed in, until when, and a table of contents. */
static void
web_success_intro(struct evbuffer *b, const struct web_success *ws)
{
	const struct web_tokens	*t = ws->t;
	time_t			 exp;
	long long		 in;

	in = t->expires_in;
	if (in < 0 || in > WEB_MAX_SECS)
		in = 0;
	exp = t->expires_at != 0 ? t->expires_at : ws->now + (time_t)in;
	web_raw(b, "<h1>You are signed in</h1>\n<p>Signed in as ");
	if (t->name != NULL && *t->name != '\0' &&
	    (t->user == NULL || strcmp(t->name, t->user) != 0)) {
		web_raw(b, "<strong>");
		web_text(b, t->name, WEB_FIELD_MAX);
		web_raw(b, "</strong>");
		if (t->user != NULL && *t->user != '\0') {
			web_raw(b, " (");
			web_text(b, t->user, WEB_FIELD_MAX);
			web_raw(b, ")");
		}
	} else {
		web_raw(b, "<strong>");
		web_text(b, t->user != NULL && *t->user != '\0' ? t->user :
		    "an unnamed user", WEB_FIELD_MAX);
		web_raw(b, "</strong>");
	}
	if (t->provider != NULL && *t->provider != '\0') {
		web_raw(b, " with ");
		web_text(b, t->provider, WEB_NAME_MAX);
	}
	web_raw(b, ".</p>\n<dl class=\"facts\">\n<dt>Access token expires</dt>"
	    "<dd>");
	web_when(b, exp, ws->now);
	web_raw(b, "</dd>\n");
	if (t->session_expires_at != 0) {
		web_raw(b, "<dt>Session ends</dt><dd>");
		web_when(b, t->session_expires_at, ws->now);
		web_raw(b, "</dd>\n");
	}
	web_raw(b, "</dl>\n"
	    "<p class=\"notice warn\"><strong>Keep these tokens secret, like a "
	    "password.</strong> Anyone who has them can use Bedrock as you. "
	    "This page is not cached: copy what you need now. To get a new "
	    "token later, sign in again or use the refresh token.</p>\n"
	    "<nav class=\"toc\"><ul>\n"
	    "<li><a href=\"#tokens\">Your tokens</a></li>\n"
	    "<li><a href=\"#claude-code\">Claude Code</a></li>\n"
	    "<li><a href=\"#curl\">curl</a></li>\n"
	    "<li><a href=\"#sdk\">AWS SDKs (JavaScript, Python)</a></li>\n"
	    "<li><a href=\"#refresh\">Refresh and sign out</a></li>\n"
	    "</ul></nav>\n");
}

/* A labelled block: label, copy button, then the opening of the element. */
static void
web_block(struct evbuffer *b, const char *label, const char *id)
{
	web_raw(b, "<div class=\"block\"><div class=\"label\"><span>");
	web_raw(b, label);
	web_raw(b, "</span>");
	web_copy_button(b, id);
	evbuffer_add_printf(b, "</div>\n<pre id=\"%s\"><code>", id);
}

static void
web_block_end(struct evbuffer *b)
{
	web_raw(b, "</code></pre></div>\n");
}

/* The tokens, each in a read-only text area. */
static void
web_success_tokens(struct evbuffer *b, const struct web_success *ws)
{
	web_raw(b, "<h2 id=\"tokens\">Your tokens</h2>\n"
	    "<div class=\"block\"><div class=\"label\">"
	    "<label for=\"access-token\">Access token (send as <code>"
	    "Authorization: Bearer</code>)</label>");
	web_copy_button(b, "access-token");
	web_raw(b, "</div>\n<textarea id=\"access-token\" readonly "
	    "rows=\"5\" spellcheck=\"false\" autocomplete=\"off\" "
	    "autocapitalize=\"off\">");
	web_esc(b, ws->at, strlen(ws->at));
	web_raw(b, "</textarea></div>\n");
	if (ws->rt == NULL)
		return;
	web_raw(b, "<div class=\"block\"><div class=\"label\">"
	    "<label for=\"refresh-token\">Refresh token (only for "
	    "<code>/auth/refresh</code> and <code>/auth/logout</code>)"
	    "</label>");
	web_copy_button(b, "refresh-token");
	web_raw(b, "</div>\n<textarea id=\"refresh-token\" readonly "
	    "rows=\"3\" spellcheck=\"false\" autocomplete=\"off\" "
	    "autocapitalize=\"off\">");
	web_esc(b, ws->rt, strlen(ws->rt));
	web_raw(b, "</textarea></div>\n");
}

/* Claude Code in Bedrock mode through /bedrock (BEDROCK-FACTS 5.2). */
static int
web_success_claude(struct evbuffer *b, const struct web_success *ws)
{
	web_raw(b, "<h2 id=\"claude-code\">Claude Code</h2>\n"
	    "<p>Claude Code talks to Bedrock through this proxy: the proxy "
	    "checks your token and signs the requests to AWS, so you need "
	    "no AWS credentials. Paste this into your shell, then run "
	    "<code>claude</code>:</p>\n");
	web_block(b, "Shell", "cc-shell");
	web_raw(b, "export CLAUDE_CODE_USE_BEDROCK=1\n"
	    "export ANTHROPIC_BEDROCK_BASE_URL=");
	web_quoted(b, Q_SHELL, ws->bedrock, WEB_URL_MAX);
	web_raw(b, "\nexport CLAUDE_CODE_SKIP_BEDROCK_AUTH=1\n"
	    "export ANTHROPIC_AUTH_TOKEN=");
	web_quoted(b, Q_SHELL, ws->at, WEB_TOKEN_MAX);
	web_raw(b, "\nexport AWS_REGION=");
	web_quoted(b, Q_SHELL, ws->region, WEB_FIELD_MAX);
	web_raw(b, "\nexport ANTHROPIC_MODEL=");
	web_quoted(b, Q_SHELL, ws->model, WEB_FIELD_MAX);
	web_raw(b, "\nunset AWS_BEARER_TOKEN_BEDROCK\nclaude");
	web_block_end(b);
	web_raw(b, "<p>Or, to keep it for every session, merge this into "
	    "<code>~/.claude/settings.json</code> (add the keys to your "
	    "<code>\"env\"</code> object if you already have one):</p>\n");
	web_block(b, "~/.claude/settings.json", "cc-settings");
	if (web_settings_json(b, ws->bedrock, ws->at, ws->region,
	    ws->model) == -1)
		return (-1);
	web_block_end(b);
	web_raw(b, "<ul>\n"
	    "<li><code>ANTHROPIC_MODEL</code> picks the model: any Bedrock "
	    "model ID or inference profile your administrator allows, "
	    "for example <code>");
	web_text(b, ws->model, WEB_FIELD_MAX);
	web_raw(b, "</code>. Leave it out to use Claude Code's "
	    "default.</li>\n"
	    "<li><strong>Do not set <code>AWS_BEARER_TOKEN_BEDROCK</code> to "
	    "anything else.</strong> When it is set, Claude Code sends it "
	    "instead of <code>ANTHROPIC_AUTH_TOKEN</code>. Unset it (as "
	    "above) or give it this same token.</li>\n"
	    "<li>When the access token expires, refresh it (below) or sign "
	    "in again, and replace <code>ANTHROPIC_AUTH_TOKEN</code>.</li>\n"
	    "</ul>\n");
	return (0);
}

/* InvokeModel with curl. */
static void
web_success_curl(struct evbuffer *b, const struct web_success *ws)
{
	struct evbuffer	*u;
	char		*url;
	size_t		 len;

	if ((u = evbuffer_new()) == NULL)
		fatalx("%s: evbuffer_new", __func__);
	web_raw(u, ws->bedrock);
	web_raw(u, "/model/");
	web_pathseg(u, ws->model, WEB_FIELD_MAX, 1);
	web_raw(u, "/invoke");
	len = evbuffer_get_length(u);
	url = xmalloc(len + 1);
	evbuffer_remove(u, url, len);
	url[len] = '\0';
	evbuffer_free(u);

	web_raw(b, "<h2 id=\"curl\">curl</h2>\n"
	    "<p>Call a model directly (InvokeModel with an Anthropic "
	    "Messages body):</p>\n");
	web_block(b, "Shell", "curl-invoke");
	web_raw(b, "TOKEN=");
	web_quoted(b, Q_SHELL, ws->at, WEB_TOKEN_MAX);
	web_raw(b, "\ncurl -sS ");
	web_quoted(b, Q_SHELL, url, len);
	free(url);
	web_raw(b, " \\\n"
	    "  -H \"Authorization: Bearer $TOKEN\" \\\n"
	    "  -H &#x27;Content-Type: application/json&#x27; \\\n"
	    "  -d &#x27;{\"anthropic_version\": \"bedrock-2023-05-31\", "
	    "\"max_tokens\": 256,\n"
	    "       \"messages\": [{\"role\": \"user\", \"content\": "
	    "\"Say hello\"}]}&#x27;");
	web_block_end(b);
	web_raw(b, "<p>The other Bedrock Runtime calls work the same way under "
	    "<code>");
	web_text(b, ws->bedrock, WEB_URL_MAX);
	web_raw(b, "</code>: <code>invoke-with-response-stream</code>, "
	    "<code>converse</code>, <code>converse-stream</code> and "
	    "<code>count-tokens</code>.</p>\n");
}

/* The JavaScript and Python SDKs, bearer token from the environment. */
static void
web_success_sdk(struct evbuffer *b, const struct web_success *ws)
{
	web_raw(b, "<h2 id=\"sdk\">AWS SDKs</h2>\n"
	    "<p>Point the Bedrock Runtime client at the proxy and give it "
	    "the access token as a bearer token. First put the token in "
	    "the environment:</p>\n");
	web_block(b, "Shell", "sdk-env");
	web_raw(b, "export AWS_BEARER_TOKEN_BEDROCK=");
	web_quoted(b, Q_SHELL, ws->at, WEB_TOKEN_MAX);
	web_block_end(b);

	web_raw(b, "<h3>JavaScript (<code>@aws-sdk/client-bedrock-runtime"
	    "</code>)</h3>\n");
	web_block(b, "invoke.mjs", "sdk-js");
	web_raw(b, "import { BedrockRuntimeClient, InvokeModelCommand } from "
	    "&#x27;@aws-sdk/client-bedrock-runtime&#x27;;\n\n"
	    "const token = process.env.AWS_BEARER_TOKEN_BEDROCK;\n"
	    "const client = new BedrockRuntimeClient({\n"
	    "  region: ");
	web_quoted(b, Q_SCRIPT, ws->region, WEB_FIELD_MAX);
	web_raw(b, ",\n  endpoint: ");
	web_quoted(b, Q_SCRIPT, ws->bedrock, WEB_URL_MAX);
	web_raw(b, ",\n  token: { token },\n"
	    "  authSchemePreference: [&#x27;httpBearerAuth&#x27;],\n"
	    "});\n"
	    "const res = await client.send(new InvokeModelCommand({\n"
	    "  modelId: ");
	web_quoted(b, Q_SCRIPT, ws->model, WEB_FIELD_MAX);
	web_raw(b, ",\n"
	    "  contentType: &#x27;application/json&#x27;,\n"
	    "  body: JSON.stringify({\n"
	    "    anthropic_version: &#x27;bedrock-2023-05-31&#x27;,\n"
	    "    max_tokens: 256,\n"
	    "    messages: [{ role: &#x27;user&#x27;, content: "
	    "&#x27;Say hello&#x27; }],\n"
	    "  }),\n"
	    "}));\n"
	    "console.log(JSON.parse(new TextDecoder().decode(res.body))"
	    ".content[0].text);");
	web_block_end(b);

	web_raw(b, "<h3>Python (boto3)</h3>\n"
	    "<p>Needs botocore 1.39 or later, which reads "
	    "<code>AWS_BEARER_TOKEN_BEDROCK</code> by itself.</p>\n");
	web_block(b, "invoke.py", "sdk-py");
	web_raw(b, "import json\nimport boto3\n\n"
	    "client = boto3.client(&#x27;bedrock-runtime&#x27;, "
	    "region_name=");
	web_quoted(b, Q_SCRIPT, ws->region, WEB_FIELD_MAX);
	web_raw(b, ",\n                      endpoint_url=");
	web_quoted(b, Q_SCRIPT, ws->bedrock, WEB_URL_MAX);
	web_raw(b, ")\n"
	    "res = client.invoke_model(\n"
	    "    modelId=");
	web_quoted(b, Q_SCRIPT, ws->model, WEB_FIELD_MAX);
	web_raw(b, ",\n"
	    "    body=json.dumps({\n"
	    "        &#x27;anthropic_version&#x27;: "
	    "&#x27;bedrock-2023-05-31&#x27;,\n"
	    "        &#x27;max_tokens&#x27;: 256,\n"
	    "        &#x27;messages&#x27;: [{&#x27;role&#x27;: "
	    "&#x27;user&#x27;, &#x27;content&#x27;: "
	    "&#x27;Say hello&#x27;}],\n"
	    "    }))\n"
	    "print(json.loads(res[&#x27;body&#x27;].read())"
	    "[&#x27;content&#x27;][0][&#x27;text&#x27;])");
	web_block_end(b);
}

/* POST /auth/refresh or /auth/logout with the refresh token in JSON. */
static int
web_refresh_cmd(struct evbuffer *b, const struct web_success *ws,
    const char *path)
{
	char	*u;

	web_raw(b, "curl -sS -X POST ");
	xasprintf(&u, "%s%s", ws->base, path);
	web_quoted(b, Q_SHELL, u, WEB_URL_MAX);
	free(u);
	web_raw(b, " \\\n  -H &#x27;Content-Type: application/json&#x27; "
	    "\\\n");
	return (web_refresh_body(b, ws->rt));
}

/* How to refresh the pair and how to sign out. */
static int
web_success_refresh(struct evbuffer *b, const struct web_success *ws)
{
	web_raw(b, "<h2 id=\"refresh\">Refresh and sign out</h2>\n");
	if (ws->rt == NULL) {
		web_raw(b, "<p>This login has no refresh token: sign in again "
		    "when the access token expires.</p>\n");
		return (0);
	}
	web_raw(b, "<p>Before the access token expires, trade the refresh "
	    "token for a new pair. The answer is JSON with a new "
	    "<code>access_token</code> and <code>refresh_token</code>; the "
	    "old refresh token stops working, so keep the new one.</p>\n");
	web_block(b, "Shell", "refresh-cmd");
	if (web_refresh_cmd(b, ws, "/auth/refresh") == -1)
		return (-1);
	web_block_end(b);
	web_raw(b, "<p>To sign out, which ends this session and stops both "
	    "tokens at once (sending the access token as <code>Authorization: "
	    "Bearer</code> works too):</p>\n");
	web_block(b, "Shell", "logout-cmd");
	if (web_refresh_cmd(b, ws, "/auth/logout") == -1)
		return (-1);
	web_block_end(b);
	return (0);
}

/* After login: who, until when, the tokens and copy-paste setup. */
int
web_render_success(struct evbuffer *out, const struct web_tokens *t,
    time_t now)
{
	struct web_success	 ws;
	struct evbuffer		*b;
	int			 rc = -1;

	memset(&ws, 0, sizeof ws);
	ws.t = t;
	ws.now = now;
	ws.at = t->access_token;
	ws.rt = t->refresh_token != NULL && *t->refresh_token != '\0' ?
	    t->refresh_token : NULL;
	ws.region = t->region != NULL && *t->region != '\0' ? t->region :
	    DEFAULT_REGION;
	ws.model = t->example_model != NULL && *t->example_model != '\0' ?
	    t->example_model : DEFAULT_MODEL;
	if (ws.at == NULL || *ws.at == '\0' ||
	    strnlen(ws.at, WEB_TOKEN_MAX + 1) > WEB_TOKEN_MAX ||
	    (ws.rt != NULL &&
	    strnlen(ws.rt, WEB_TOKEN_MAX + 1) > WEB_TOKEN_MAX))
		return (-1);
	/* Configuration values are not cut: a cut value would not work. */
	if (strnlen(ws.region, WEB_FIELD_MAX + 1) > WEB_FIELD_MAX ||
	    strnlen(ws.model, WEB_FIELD_MAX + 1) > WEB_FIELD_MAX ||
	    (t->public_url != NULL &&
	    strnlen(t->public_url, WEB_FIELD_MAX + 1) > WEB_FIELD_MAX))
		return (-1);
	ws.base = web_base_url(t->public_url);
	xasprintf(&ws.bedrock, "%s/bedrock", ws.base);
	if ((b = evbuffer_new()) == NULL)
		fatalx("%s: evbuffer_new", __func__);

	web_head(b, "Signed in");
	web_success_intro(b, &ws);
	if (t->me != NULL)
		web_success_spend(b, t->me);
	if (t->self_service)
		web_raw(b, "<p><a class=\"button secondary self\" "
		    "href=\"/me\">Your usage, API keys and sessions</a></p>\n");
	web_success_tokens(b, &ws);
	if (web_success_claude(b, &ws) == -1)
		goto out;
	web_success_curl(b, &ws);
	web_success_sdk(b, &ws);
	if (web_success_refresh(b, &ws) == -1)
		goto out;
	web_raw(b, "<p><a class=\"button secondary\" href=\"/\">Back to the "
	    "sign-in page</a></p>\n");
	web_foot(b);
	if (evbuffer_get_length(b) > WEB_PAGE_MAX)
		goto out;
	evbuffer_add_buffer(out, b);
	rc = 0;
out:
	free(ws.base);
	free(ws.bedrock);
	evbuffer_free(b);
	return (rc);
}

/* A refusal or failure: what happened, what to do, a way back. */
int
web_render_error(struct evbuffer *out, int code, const char *title,
    const char *what, const char *todo)
{
	struct evbuffer	*b = evbuffer_new();

	if (b == NULL)
		fatalx("%s: evbuffer_new", __func__);
	if (title == NULL || *title == '\0')
		title = "Something went wrong";
	web_head(b, title);
	web_raw(b, "<h1>");
	web_text(b, title, WEB_TITLE_MAX);
	web_raw(b, "</h1>\n<div class=\"notice error\" role=\"alert\">\n");
	if (what != NULL && *what != '\0') {
		web_raw(b, "<h2>What happened</h2>\n<p>");
		web_text(b, what, WEB_TEXT_MAX);
		web_raw(b, "</p>\n");
	}
	web_raw(b, "<h2>What to do</h2>\n<p>");
	web_text(b, todo != NULL && *todo != '\0' ? todo :
	    "Go back to the sign-in page and try again. If it keeps "
	    "happening, contact the people who run this proxy.", WEB_TEXT_MAX);
	web_raw(b, "</p>\n</div>\n");
	if (code >= 400 && code <= 599)
		evbuffer_add_printf(b,
		    "<p class=\"muted\">HTTP status %d.</p>\n", code);
	web_raw(b, "<p><a class=\"button\" href=\"/\">Back to the sign-in "
	    "page</a></p>\n");
	web_foot(b);
	evbuffer_add_buffer(out, b);
	evbuffer_free(b);
	return (0);
}

/*
 * GET /device: the form that takes (or shows, pre-filled) a user code and
 * sends it back, with the form's token, under one button per provider.
 */
int
web_render_device(struct evbuffer *out, const struct web_device *d)
{
	struct evbuffer	*b = evbuffer_new();
	size_t		 i, npv = d->npv;

	if (b == NULL)
		fatalx("%s: evbuffer_new", __func__);
	if (d->csrf == NULL || strlen(d->csrf) > WEB_FIELD_MAX) {
		evbuffer_free(b);
		return (-1);
	}
	web_head_policy(b, "Sign in on your device", "same-origin", NULL);
	web_raw(b, "<h1>Sign in on your device</h1>\n"
	    "<p class=\"lead\">A program on your computer, such as Claude "
	    "Code, asked to use " PRODUCT " as you. Enter the code it shows, "
	    "or check that the code below is the one it shows, then sign in "
	    "with your company account.</p>\n");
	if (d->notice != NULL && *d->notice != '\0') {
		web_raw(b, "<p class=\"notice error\" role=\"alert\">");
		web_text(b, d->notice, WEB_NOTICE_MAX);
		web_raw(b, "</p>\n");
	}
	if (npv > WEB_PROVIDERS_MAX)
		npv = WEB_PROVIDERS_MAX;
	web_raw(b, "<form class=\"device\" method=\"post\" "
	    "action=\"/device\">\n<input type=\"hidden\" name=\"csrf\" "
	    "value=\"");
	web_text(b, d->csrf, WEB_FIELD_MAX);
	web_raw(b, "\">\n<label for=\"user-code\">Code</label>\n"
	    "<input class=\"code\" id=\"user-code\" name=\"user_code\" "
	    "type=\"text\" maxlength=\"16\" autocomplete=\"off\" "
	    "autocapitalize=\"characters\" spellcheck=\"false\" required "
	    "value=\"");
	if (d->user_code != NULL)
		web_text(b, d->user_code, 16);
	web_raw(b, "\">\n<p class=\"muted\">Only continue if you started "
	    "this sign-in yourself and the code is the one your program "
	    "shows. Nothing is approved until you press a button and sign "
	    "in.</p>\n");
	if (npv == 0)
		web_raw(b, "<div class=\"notice warn\" role=\"alert\">"
		    "<h2>No identity provider is configured</h2><p>Nobody can "
		    "sign in yet: ask the people who run this proxy.</p>"
		    "</div>\n");
	else {
		web_raw(b, "<ul class=\"providers\">\n");
		for (i = 0; i < npv; i++) {
			if (d->pv[i].name == NULL || *d->pv[i].name == '\0')
				continue;
			web_raw(b, "<li><button class=\"button\" "
			    "type=\"submit\" name=\"provider\" value=\"");
			web_text(b, d->pv[i].name, WEB_NAME_MAX);
			web_raw(b, "\">Continue with ");
			web_text(b, d->pv[i].display_name != NULL &&
			    *d->pv[i].display_name != '\0' ?
			    d->pv[i].display_name : d->pv[i].name,
			    WEB_NAME_MAX);
			web_raw(b, "</button></li>\n");
		}
		web_raw(b, "</ul>\n");
	}
	web_raw(b, "</form>\n");
	web_foot(b);
	if (evbuffer_get_length(b) > WEB_PAGE_MAX) {
		evbuffer_free(b);
		return (-1);
	}
	evbuffer_add_buffer(out, b);
	evbuffer_free(b);
	return (0);
}

/*
 * POST /device, the code accepted: on to the identity provider (url) by
 * itself, or by the link.
 */
int
web_render_device_continue(struct evbuffer *out, const char *url,
    const char *provider)
{
	struct evbuffer	*b;

	if (url == NULL || strlen(url) > WEB_TEXT_MAX ||
	    (strncmp(url, "https://", 8) != 0 &&
	    strncmp(url, "http://", 7) != 0))
		return (-1);
	if ((b = evbuffer_new()) == NULL)
		fatalx("%s: evbuffer_new", __func__);
	web_head_policy(b, "Signing in", "no-referrer", url);
	web_raw(b, "<h1>Signing in</h1>\n<p class=\"lead\">Taking you to ");
	web_text(b, provider, WEB_NAME_MAX);
	web_raw(b, " to sign in.</p>\n<p><a class=\"button\" href=\"");
	web_esc(b, url, strlen(url));
	web_raw(b, "\">Continue with ");
	web_text(b, provider, WEB_NAME_MAX);
	web_raw(b, "</a></p>\n");
	web_foot(b);
	evbuffer_add_buffer(out, b);
	evbuffer_free(b);
	return (0);
}

/* The callback of a device sign-in: done, back to the program. */
int
web_render_device_done(struct evbuffer *out, const char *user,
    const char *name, const char *provider)
{
	struct evbuffer	*b = evbuffer_new();

	if (b == NULL)
		fatalx("%s: evbuffer_new", __func__);
	web_head(b, "Your device is signed in");
	web_raw(b, "<h1>Your device is signed in</h1>\n<p class=\"lead\">");
	if (name != NULL && *name != '\0') {
		web_text(b, name, WEB_FIELD_MAX);
		web_raw(b, " (");
		web_text(b, user, WEB_FIELD_MAX);
		web_raw(b, ")");
	} else
		web_text(b, user, WEB_FIELD_MAX);
	web_raw(b, " signed in with ");
	web_text(b, provider, WEB_NAME_MAX);
	web_raw(b, ". Go back to your program: it carries on by itself within "
	    "a few seconds. You can close this page.</p>\n"
	    "<p class=\"muted\">If you did not start this sign-in, tell the "
	    "people who run this proxy.</p>\n");
	web_foot(b);
	evbuffer_add_buffer(out, b);
	evbuffer_free(b);
	return (0);
}

/* "2026-12-07 09:30 UTC", or a dash for none (0). */
static void
web_date(struct evbuffer *b, time_t t, int with_time)
{
	char	iso[32];

	if ((long long)t <= 0) {
		web_raw(b, "\xe2\x80\x94");
		return;
	}
	if ((long long)t > WEB_MAX_SECS * 2)
		t = (time_t)(WEB_MAX_SECS * 2);
	time_iso8601(t, iso, sizeof iso);
	if (with_time)
		evbuffer_add_printf(b, "<time datetime=\"%s\">%.10s %.5s "
		    "UTC</time>", iso, iso, iso + 11);
	else
		evbuffer_add_printf(b, "<time datetime=\"%.10s\">%.10s</time>",
		    iso, iso);
}

/* An integer member of a JSON object, or 0. */
static long long
web_jint(json_t *o, const char *k)
{
	return ((long long)json_integer_value(json_object_get(o, k)));
}

/* A string member of a JSON object, or NULL. */
static const char *
web_jstr(json_t *o, const char *k)
{
	return (json_string_value(json_object_get(o, k)));
}

/* The hidden form token every form of the page carries. */
static void
web_csrf_field(struct evbuffer *b, const char *csrf)
{
	web_raw(b, "<input type=\"hidden\" name=\"csrf\" value=\"");
	web_text(b, csrf, WEB_FIELD_MAX);
	web_raw(b, "\">\n");
}

/* A form of one button posting one named value to action. */
static void
web_button_form(struct evbuffer *b, const char *action, const char *csrf,
    const char *name, const char *value, const char *label, const char *aria)
{
	web_raw(b, "<form class=\"inline\" method=\"post\" action=\"");
	web_raw(b, action);
	web_raw(b, "\">");
	web_csrf_field(b, csrf);
	if (name != NULL) {
		evbuffer_add_printf(b, "<input type=\"hidden\" name=\"%s\" "
		    "value=\"", name);
		web_text(b, value, WEB_FIELD_MAX);
		web_raw(b, "\">");
	}
	web_raw(b, "<button class=\"small danger\" type=\"submit\"");
	if (aria != NULL) {
		web_raw(b, " aria-label=\"");
		web_text(b, aria, WEB_FIELD_MAX);
		web_raw(b, "\"");
	}
	web_raw(b, ">");
	web_raw(b, label);
	web_raw(b, "</button></form>");
}

/* An amount of dollars as text ("0.012345"), or a dash for none. */
static void
web_money(struct evbuffer *b, const char *usd)
{
	if (usd == NULL || *usd == '\0') {
		web_raw(b, "\xe2\x80\x94");
		return;
	}
	web_raw(b, "$");
	web_text(b, usd, 32);
}

/* "2026-12-08T00:00:00Z" as "2026-12-08 00:00 UTC"; other text as it is. */
static void
web_iso(struct evbuffer *b, const char *iso)
{
	if (iso == NULL)
		return;
	if (strlen(iso) != 20 || iso[10] != 'T' || iso[19] != 'Z') {
		web_text(b, iso, 32);
		return;
	}
	web_raw(b, "<time datetime=\"");
	web_esc(b, iso, 20);
	web_raw(b, "\">");
	web_esc(b, iso, 10);
	web_raw(b, " ");
	web_esc(b, iso + 11, 5);
	web_raw(b, " UTC</time>");
}

/*
 * The page after sign-in: what /auth/me says, in short (today's spending,
 * each budget's remainder); the self-service page has the whole of it.
 */
static void
web_success_spend(struct evbuffer *b, json_t *me)
{
	json_t	*u = json_object_get(me, "usage"), *o;
	size_t	 i;

	if (!json_is_object(u))
		return;
	web_raw(b, "<p class=\"spend\">Spent today: <strong>");
	web_money(b, web_jstr(u, "cost_usd"));
	evbuffer_add_printf(b, "</strong> in %lld request%s.",
	    web_jint(u, "requests"), web_jint(u, "requests") == 1 ? "" : "s");
	json_array_foreach(json_object_get(me, "budgets"), i, o) {
		if (web_jstr(o, "remaining_usd") == NULL)
			continue;
		web_raw(b, " Budget ");
		web_text(b, web_jstr(o, "name"), WEB_NAME_MAX);
		web_raw(b, " (");
		web_text(b, web_jstr(o, "window"), 32);
		web_raw(b, "): ");
		web_money(b, web_jstr(o, "remaining_usd"));
		web_raw(b, " left of ");
		web_money(b, web_jstr(o, "limit_usd"));
		web_raw(b, ", until ");
		web_text(b, web_jstr(o, "resets_at"), 32);
		web_raw(b, ".");
	}
	web_raw(b, "</p>\n");
}

/* Today's spending and every budget that applies, with what is left. */
static void
web_self_budgets(struct evbuffer *b, const struct web_self *s)
{
	json_t		*u, *a, *o;
	size_t		 i;
	const char	*st;

	u = json_object_get(s->me, "usage");
	a = json_object_get(s->me, "budgets");
	web_raw(b, "<h2 id=\"budgets\">Your budgets</h2>\n");
	if (json_is_object(u)) {
		web_raw(b, "<p class=\"today\">Today (since ");
		web_text(b, web_jstr(u, "since"), 32);
		if (web_jstr(u, "time_zone") != NULL) {
			web_raw(b, ", ");
			web_text(b, web_jstr(u, "time_zone"), WEB_NAME_MAX);
		}
		web_raw(b, "): <strong>");
		web_money(b, web_jstr(u, "cost_usd"));
		evbuffer_add_printf(b, "</strong> in %lld request%s.</p>\n",
		    web_jint(u, "requests"), web_jint(u, "requests") == 1 ? "" :
		    "s");
	}
	if (json_array_size(a) == 0) {
		web_raw(b, "<p class=\"empty\">No budget caps your spending."
		    "</p>\n");
		return;
	}
	web_raw(b, "<p class=\"muted\">A call is refused before it reaches "
	    "Bedrock when what it may cost at most does not fit in what is "
	    "left; calls under way hold their worst case (reserved) until "
	    "they end.</p>\n<div class=\"scroll\"><table class=\"data "
	    "budgets\">\n<thead><tr><th>Budget</th><th>For</th>"
	    "<th class=\"n\">Limit</th><th class=\"n\">Spent</th>"
	    "<th class=\"n\">Reserved</th><th class=\"n\">Left</th>"
	    "<th>Resets</th><th>State</th></tr></thead>\n<tbody>\n");
	json_array_foreach(a, i, o) {
		web_raw(b, "<tr><td>");
		web_text(b, web_jstr(o, "name"), WEB_NAME_MAX);
		web_raw(b, "<br><span class=\"muted\">");
		web_text(b, web_jstr(o, "window"), 32);
		web_raw(b, "</span></td><td>");
		web_text(b, web_jstr(o, "scope"), 16);
		if (web_jstr(o, "entity") != NULL &&
		    *web_jstr(o, "entity") != '\0') {
			web_raw(b, " ");
			web_text(b, web_jstr(o, "entity"), WEB_FIELD_MAX);
		}
		web_raw(b, "</td><td class=\"n\">");
		if (web_jstr(o, "limit_usd") != NULL)
			web_money(b, web_jstr(o, "limit_usd"));
		else
			web_raw(b, "no limit");
		if (web_jint(o, "limit_tokens") > 0)
			evbuffer_add_printf(b, "<br>%lld tokens",
			    web_jint(o, "limit_tokens"));
		web_raw(b, "</td><td class=\"n\">");
		web_money(b, web_jstr(o, "spent_usd"));
		if (web_jint(o, "limit_tokens") > 0)
			evbuffer_add_printf(b, "<br>%lld tokens",
			    web_jint(o, "spent_tokens"));
		web_raw(b, "</td><td class=\"n\">");
		web_money(b, web_jstr(o, "reserved_usd"));
		web_raw(b, "</td><td class=\"n\">");
		web_money(b, web_jstr(o, "remaining_usd"));
		web_raw(b, "</td><td>");
		web_iso(b, web_jstr(o, "resets_at"));
		st = web_jstr(o, "state") != NULL ? web_jstr(o, "state") : "";
		if (strcmp(st, "refused") == 0)
			web_raw(b, "</td><td class=\"state-over\">used up");
		else if (strcmp(st, "warn") == 0)
			web_raw(b, "</td><td class=\"state-warn\">past its "
			    "warning");
		else
			web_raw(b, "</td><td class=\"state-ok\">ok");
		web_raw(b, "</td></tr>\n");
	}
	web_raw(b, "</tbody>\n</table></div>\n");
}

/* Usage by day and model, with totals. */
static void
web_self_usage(struct evbuffer *b, const struct web_self *s)
{
	json_t		*row;
	size_t		 i;
	long long	 t[5] = { 0, 0, 0, 0, 0 };
	static const char *const cols[] = { "requests", "input_tokens",
	    "output_tokens", "cache_read_tokens", "cache_write_tokens" };
	int		 c;

	evbuffer_add_printf(b, "<h2 id=\"usage\">Your usage</h2>\n<p class=\""
	    "muted\">Calls relayed for you in the last %lld days, by day (UTC) "
	    "and model. A call shows here a few seconds after it ends.</p>\n",
	    s->usage_days);
	if (s->usage == NULL || json_array_size(s->usage) == 0) {
		web_raw(b, "<p class=\"empty\">No usage in this time.</p>\n");
		return;
	}
	web_raw(b, "<div class=\"scroll\"><table class=\"data usage\">\n"
	    "<thead><tr><th>Day</th><th>Model</th><th class=\"n\">Requests"
	    "</th><th class=\"n\">Input tokens</th><th class=\"n\">Output "
	    "tokens</th><th class=\"n\">Cache read</th><th class=\"n\">Cache "
	    "write</th><th class=\"n\">Cost (USD)</th></tr></thead>\n"
	    "<tbody>\n");
	json_array_foreach(s->usage, i, row) {
		web_raw(b, "<tr><td>");
		web_date(b, (time_t)web_jint(row, "day"), 0);
		web_raw(b, "</td><td>");
		web_text(b, web_jstr(row, "model") != NULL ?
		    web_jstr(row, "model") : "(none)", WEB_FIELD_MAX);
		web_raw(b, "</td>");
		for (c = 0; c < 5; c++) {
			t[c] += web_jint(row, cols[c]);
			evbuffer_add_printf(b, "<td class=\"n\">%lld</td>",
			    web_jint(row, cols[c]));
		}
		web_raw(b, "<td class=\"n\">");
		web_money(b, web_jstr(row, "cost_usd"));
		if (web_jint(row, "unpriced") > 0)
			evbuffer_add_printf(b, " <span class=\"muted\">(%lld "
			    "without a price)</span>",
			    web_jint(row, "unpriced"));
		web_raw(b, "</td></tr>\n");
	}
	web_raw(b, "</tbody>\n<tfoot><tr><td colspan=\"2\">Total</td>");
	for (c = 0; c < 5; c++)
		evbuffer_add_printf(b, "<td class=\"n\">%lld</td>", t[c]);
	web_raw(b, "<td class=\"n\">");
	web_money(b, s->usage_cost);
	web_raw(b, "</td></tr></tfoot>\n</table></div>\n");
}

/* A lifetime choice of the new key form, if the maximum allows it. */
static void
web_ttl_option(struct evbuffer *b, const struct web_self *s, long long secs,
    const char *value, const char *label)
{
	if (s->key_max_ttl > 0 && (secs == 0 || secs > s->key_max_ttl))
		return;
	evbuffer_add_printf(b, "<option value=\"%s\">%s</option>\n", value,
	    label);
}

/* The keys, each with its revoke button, and the form for a new one. */
static void
web_self_keys(struct evbuffer *b, const struct web_self *s)
{
	json_t		*k, *m;
	size_t		 i, j, n = 0;
	char		 def[64];

	web_raw(b, "<h2 id=\"keys\">Your API keys</h2>\n");
	if (s->keys == NULL) {
		web_raw(b, "<p>API keys are turned off on this proxy.</p>\n");
		return;
	}
	web_raw(b, "<p class=\"muted\">An API key works like your token "
	    "(<code>Authorization: Bearer</code> or <code>x-api-key</code>) "
	    "until it expires, you revoke it, or the session it was made in "
	    "ends.</p>\n");
	json_array_foreach(s->keys, i, k) {
		if (json_is_true(json_object_get(k, "revoked")) ||
		    (web_jint(k, "expires_at") != 0 &&
		    web_jint(k, "expires_at") <= (long long)s->now))
			continue;
		if (n++ == 0)
			web_raw(b, "<div class=\"scroll\"><table class=\"data "
			    "keys\">\n<thead><tr><th>Name</th><th>Key</th>"
			    "<th>Models</th><th>Created</th><th>Expires</th>"
			    "<th>Last used</th><th></th></tr></thead>\n"
			    "<tbody>\n");
		web_raw(b, "<tr><td>");
		web_text(b, web_jstr(k, "name") != NULL ? web_jstr(k, "name") :
		    "(no name)", WEB_NAME_MAX);
		web_raw(b, "</td><td><code>");
		web_text(b, web_jstr(k, "hint"), 32);
		web_raw(b, "</code></td><td>");
		m = json_object_get(k, "models");
		if (json_array_size(m) == 0)
			web_raw(b, "any you may use");
		for (j = 0; j < json_array_size(m) && j < 32; j++) {
			if (j > 0)
				web_raw(b, ", ");
			web_raw(b, "<code>");
			web_text(b, json_string_value(json_array_get(m, j)),
			    WEB_FIELD_MAX);
			web_raw(b, "</code>");
		}
		web_raw(b, "</td><td>");
		web_date(b, (time_t)web_jint(k, "created_at"), 0);
		web_raw(b, "</td><td>");
		if (web_jint(k, "expires_at") == 0)
			web_raw(b, "never");
		else
			web_date(b, (time_t)web_jint(k, "expires_at"), 0);
		web_raw(b, "</td><td>");
		if (web_jint(k, "last_used_at") == 0)
			web_raw(b, "never");
		else
			web_date(b, (time_t)web_jint(k, "last_used_at"), 1);
		web_raw(b, "</td><td>");
		web_button_form(b, "/me/keys/revoke", s->csrf, "id",
		    web_jstr(k, "id"), "Revoke", NULL);
		web_raw(b, "</td></tr>\n");
	}
	if (n == 0)
		web_raw(b, "<p class=\"empty\">You have no API key.</p>\n");
	else
		web_raw(b, "</tbody>\n</table></div>\n");

	web_raw(b, "<h3>Make a key</h3>\n<form class=\"self new-key\" "
	    "method=\"post\" action=\"/me/keys\">\n");
	web_csrf_field(b, s->csrf);
	web_raw(b, "<label for=\"key-name\">Name</label>\n"
	    "<input id=\"key-name\" name=\"name\" type=\"text\" "
	    "maxlength=\"64\" autocomplete=\"off\" placeholder=\"laptop, CI job, ...\">\n"
	    "<label for=\"key-models\">Models</label>\n"
	    "<input id=\"key-models\" name=\"models\" type=\"text\" "
	    "maxlength=\"2048\" autocomplete=\"off\" spellcheck=\"false\" "
	    "placeholder=\"*claude-sonnet*, *haiku*\">\n"
	    "<p class=\"muted\">Patterns separated by commas or spaces; empty: "
	    "every model you may use.</p>\n"
	    "<label for=\"key-ttl\">Expires</label>\n"
	    "<select id=\"key-ttl\" name=\"ttl\">\n");
	if (s->key_default_ttl > 0)
		web_human_delta(s->key_default_ttl, def, sizeof def);
	evbuffer_add_printf(b, "<option value=\"\" selected>default (%s)"
	    "</option>\n", s->key_default_ttl > 0 ? def + 3 : "never");
	web_ttl_option(b, s, 86400, "1d", "in 1 day");
	web_ttl_option(b, s, 7 * 86400, "7d", "in 7 days");
	web_ttl_option(b, s, 30 * 86400, "30d", "in 30 days");
	web_ttl_option(b, s, 90 * 86400, "90d", "in 90 days");
	web_ttl_option(b, s, 365 * 86400, "365d", "in 365 days");
	web_ttl_option(b, s, 0, "0", "never");
	web_raw(b, "</select>\n<button class=\"button\" type=\"submit\">Make "
	    "the key</button>\n</form>\n");
}

/* The sessions, each with its sign-out button, and sign out everywhere. */
static void
web_self_sessions(struct evbuffer *b, const struct web_self *s)
{
	json_t		*o;
	size_t		 i;
	const char	*id;
	int		 this;

	web_raw(b, "<h2 id=\"sessions\">Your sessions</h2>\n<p class=\"muted\">"
	    "Each sign-in (in a browser, from Claude Code, from a script) is a "
	    "session with its own tokens. Signing one out ends its tokens and "
	    "the API keys made in it at once.</p>\n");
	if (s->sessions == NULL || json_array_size(s->sessions) == 0)
		web_raw(b, "<p class=\"empty\">No session.</p>\n");
	else {
		web_raw(b, "<div class=\"scroll\"><table class=\"data "
		    "sessions\">\n<thead><tr><th>Signed in</th><th>Kind</th>"
		    "<th>Last refreshed</th><th>Ends</th><th></th></tr></thead>"
		    "\n<tbody>\n");
		json_array_foreach(s->sessions, i, o) {
			id = web_jstr(o, "id");
			this = id != NULL && s->sid != NULL &&
			    strcmp(id, s->sid) == 0;
			web_raw(b, this ? "<tr class=\"this\"><td>" :
			    "<tr><td>");
			web_date(b, (time_t)web_jint(o, "created_at"), 1);
			web_raw(b, "</td><td>");
			web_raw(b, json_is_true(json_object_get(o, "device")) ?
			    "device sign-in" : "sign-in");
			if (this)
				web_raw(b, " <strong>(this browser)</strong>");
			web_raw(b, "</td><td>");
			web_date(b, (time_t)web_jint(o, "refreshed_at"), 1);
			web_raw(b, "</td><td>");
			web_date(b, (time_t)web_jint(o, "expires_at"), 0);
			web_raw(b, "</td><td>");
			web_button_form(b, "/me/sessions/revoke", s->csrf,
			    "session", id, "Sign out", NULL);
			web_raw(b, "</td></tr>\n");
		}
		web_raw(b, "</tbody>\n</table></div>\n");
	}
	web_raw(b, "<h3>Sign out everywhere</h3>\n<p>Ends every session of "
	    "yours, this page's too, and revokes every API key of yours.</p>\n"
	    "<form class=\"self\" method=\"post\" "
	    "action=\"/me/sessions/revoke-all\">\n");
	web_csrf_field(b, s->csrf);
	web_raw(b, "<button class=\"button\" type=\"submit\">Sign out "
	    "everywhere</button>\n</form>\n");
}

/*
 * GET /me: who, usage, budgets, API keys and sessions, with forms that
 * post back with the page's token.
 */
int
web_render_self(struct evbuffer *out, const struct web_self *s)
{
	struct evbuffer	*b;
	int		 rc = -1;

	if (s->csrf == NULL || strlen(s->csrf) > WEB_FIELD_MAX ||
	    (s->new_key != NULL && strlen(s->new_key) > WEB_FIELD_MAX))
		return (-1);
	if ((b = evbuffer_new()) == NULL)
		fatalx("%s: evbuffer_new", __func__);
	web_head_policy(b, "Your account", "same-origin", NULL);
	web_raw(b, "<h1>Your account</h1>\n<p>Signed in as <strong>");
	if (s->name != NULL && *s->name != '\0' && (s->user == NULL ||
	    strcmp(s->name, s->user) != 0)) {
		web_text(b, s->name, WEB_FIELD_MAX);
		web_raw(b, "</strong> (");
		web_text(b, s->user, WEB_FIELD_MAX);
		web_raw(b, ")");
	} else {
		web_text(b, s->user, WEB_FIELD_MAX);
		web_raw(b, "</strong>");
	}
	web_raw(b, ". This page signs you out by itself ");
	web_when(b, s->expires, s->now);
	web_raw(b, ".</p>\n");
	if (s->notice != NULL && *s->notice != '\0') {
		web_raw(b, s->notice_error ? "<p class=\"notice error\" "
		    "role=\"alert\">" : "<p class=\"notice\" role=\"status\">");
		web_text(b, s->notice, WEB_NOTICE_MAX);
		web_raw(b, "</p>\n");
	}
	if (s->new_key != NULL) {
		web_raw(b, "<div class=\"notice warn new-key\" role=\"status\">"
		    "<h2>Your new API key</h2>\n<p>Copy it now: it is shown "
		    "this once and cannot be shown again.");
		if (web_jstr(s->new_key_info, "name") != NULL) {
			web_raw(b, " Name: <strong>");
			web_text(b, web_jstr(s->new_key_info, "name"),
			    WEB_NAME_MAX);
			web_raw(b, "</strong>.");
		}
		web_raw(b, "</p>\n");
		web_raw(b, "<div class=\"block\"><div class=\"label\">"
		    "<label for=\"new-key\">API key (send as <code>"
		    "Authorization: Bearer</code> or <code>x-api-key</code>)"
		    "</label>");
		web_copy_button(b, "new-key");
		web_raw(b, "</div>\n<textarea id=\"new-key\" readonly "
		    "rows=\"2\" spellcheck=\"false\" autocomplete=\"off\" "
		    "autocapitalize=\"off\">");
		web_esc(b, s->new_key, strlen(s->new_key));
		web_raw(b, "</textarea></div>\n</div>\n");
	}
	web_raw(b, "<nav class=\"toc\"><ul>\n");
	if (s->me != NULL)
		web_raw(b, "<li><a href=\"#budgets\">Budgets</a></li>\n");
	web_raw(b, "<li><a href=\"#usage\">Usage</a></li>\n"
	    "<li><a href=\"#keys\">API keys</a></li>\n"
	    "<li><a href=\"#sessions\">Sessions</a></li>\n"
	    "</ul></nav>\n");
	if (s->me != NULL)
		web_self_budgets(b, s);
	web_self_usage(b, s);
	web_self_keys(b, s);
	web_self_sessions(b, s);
	web_foot(b);
	if (evbuffer_get_length(b) > WEB_PAGE_MAX)
		goto out;
	evbuffer_add_buffer(out, b);
	rc = 0;
out:
	evbuffer_free(b);
	return (rc);
}

/*
 * The self-service page without a session: never signed in here, its
 * time is up, or signed out (what, and what to do).
 */
int
web_render_self_out(struct evbuffer *out, const char *title, const char *what)
{
	struct evbuffer	*b = evbuffer_new();

	if (b == NULL)
		fatalx("%s: evbuffer_new", __func__);
	web_head(b, title);
	web_raw(b, "<h1>");
	web_text(b, title, WEB_TITLE_MAX);
	web_raw(b, "</h1>\n<p class=\"lead\">");
	web_text(b, what, WEB_TEXT_MAX);
	web_raw(b, "</p>\n<p>Your usage, your API keys and your sessions are "
	    "on this page once you have signed in with your company account."
	    "</p>\n<p><a class=\"button\" href=\"/\">Sign in</a></p>\n");
	web_foot(b);
	evbuffer_add_buffer(out, b);
	evbuffer_free(b);
	return (0);
}

/* A static asset by name: body, content type, length and ETag; or NULL. */
const char *
web_static(const char *name, size_t len, const char **ctype, size_t *blen,
    const char **etag)
{
	struct web_asset	*a;
	uint64_t		 h;
	size_t			 i, j;

	for (i = 0; i < nitems(web_assets); i++) {
		a = &web_assets[i];
		if (strlen(a->name) != len || memcmp(a->name, name, len) != 0)
			continue;
		if (a->etag[0] == '\0') {
			h = 0xcbf29ce484222325ULL;	/* FNV-1a */
			for (j = 0; j < a->len; j++) {
				h ^= (unsigned char)a->body[j];
				h *= 0x100000001b3ULL;
			}
			snprintf(a->etag, sizeof a->etag, "\"%016llx\"",
			    (unsigned long long)h);
		}
		*ctype = a->ctype;
		*blen = a->len;
		*etag = a->etag;
		return (a->body);
	}
	return (NULL);
}
