/*
 * aws-creds-parse.c: AWS credentials from text. The credentials object
 * (every field checked before it is made; secrets wiped when freed), ISO
 * 8601 times, the shared files (INI, as the JS SDK reads them),
 * credential_process output and IMDS and container answers (JSON), and
 * STS answers (XML). Nothing here touches the loop: the fuzzers and the
 * unit tests call these directly (aws-creds.h).
 */

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <jansson.h>

#include "bsp.h"
#include "aws-creds.h"
#include "aws-creds-local.h"

#define AWSCRED_MAX_KEY_ID	128
#define AWSCRED_MAX_SECRET	256

/* ------------------------------------------------------------------ */
/* Credentials objects. */

/* Key ids, secrets and tokens end up in headers: no spaces or controls. */
static int
awscred_field_ok(const char *s, size_t max, int keyid)
{
	size_t	i, len = strlen(s);

	if (len == 0 || len > max)
		return (0);
	for (i = 0; i < len; i++) {
		unsigned char	c = (unsigned char)s[i];

		if (keyid && !isalnum(c) && c != '-' && c != '_' && c != '.')
			return (0);
		if (c <= 0x20 || c >= 0x7f)
			return (0);
	}
	return (1);
}

struct aws_creds *
awscred_new(const char *akid, const char *secret, const char *token,
    time_t expiration, const char *source, char **cause)
{
	struct aws_creds	*c;
	size_t			 slen = strlen(source);

	if (akid == NULL || *akid == '\0') {
		xasprintf(cause, "no access key id");
		return (NULL);
	}
	if (secret == NULL || *secret == '\0') {
		xasprintf(cause, "no secret access key");
		return (NULL);
	}
	if (!awscred_field_ok(akid, AWSCRED_MAX_KEY_ID, 1)) {
		xasprintf(cause, "the access key id is malformed");
		return (NULL);
	}
	if (!awscred_field_ok(secret, AWSCRED_MAX_SECRET, 0)) {
		xasprintf(cause, "the secret access key is malformed");
		return (NULL);
	}
	if (token != NULL && *token == '\0')
		token = NULL;
	if (token != NULL && !awscred_field_ok(token, AWSCRED_MAX_TOKEN, 0)) {
		xasprintf(cause, "the session token is malformed");
		return (NULL);
	}
	if (expiration < 0) {
		xasprintf(cause, "the expiration is malformed");
		return (NULL);
	}
	c = xcalloc(1, sizeof *c + slen + 1);
	c->refcnt = 1;
	c->access_key_id = xstrdup(akid);
	c->secret_access_key = xstrdup(secret);
	c->session_token = token != NULL ? xstrdup(token) : NULL;
	c->expiration = expiration;
	memcpy((char *)(c + 1), source, slen + 1);
	c->source = (const char *)(c + 1);
	return (c);
}

void
aws_creds_unref(struct aws_creds *c)
{
	if (c == NULL || --c->refcnt > 0)
		return;
	free(c->access_key_id);
	freezero_str(c->secret_access_key);
	freezero_str(c->session_token);
	free(c);
}

/* ------------------------------------------------------------------ */
/* Small helpers. */

static int
awscred_digits(const char **pp, int n, int *v)
{
	const char	*p = *pp;
	int		 i;

	*v = 0;
	for (i = 0; i < n; i++) {
		if (!isdigit((unsigned char)p[i]))
			return (-1);
		*v = *v * 10 + (p[i] - '0');
	}
	*pp = p + n;
	return (0);
}

int
awscred_parse_time(const char *s, time_t *out)
{
	static const int mdays[] = {
		31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31
	};
	struct tm	 tm;
	const char	*p = s;
	int		 y, mo, d, h, mi, sec, oh, om, leap;
	long		 off = 0;
	time_t		 t;

	if (awscred_digits(&p, 4, &y) == -1 || *p++ != '-' ||
	    awscred_digits(&p, 2, &mo) == -1 || *p++ != '-' ||
	    awscred_digits(&p, 2, &d) == -1)
		return (-1);
	if (*p != 'T' && *p != 't' && *p != ' ')
		return (-1);
	p++;
	if (awscred_digits(&p, 2, &h) == -1 || *p++ != ':' ||
	    awscred_digits(&p, 2, &mi) == -1 || *p++ != ':' ||
	    awscred_digits(&p, 2, &sec) == -1)
		return (-1);
	if (*p == '.' || *p == ',') {
		p++;
		if (!isdigit((unsigned char)*p))
			return (-1);
		while (isdigit((unsigned char)*p))
			p++;
	}
	if (*p == 'Z' || *p == 'z')
		p++;
	else if (*p == '+' || *p == '-') {
		int	sign = (*p == '-') ? -1 : 1;

		p++;
		if (awscred_digits(&p, 2, &oh) == -1)
			return (-1);
		if (*p == ':')
			p++;
		if (awscred_digits(&p, 2, &om) == -1 || oh > 23 || om > 59)
			return (-1);
		off = sign * (oh * 3600L + om * 60L);
	} else
		return (-1);
	if (*p != '\0')
		return (-1);
	leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
	if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] ||
	    (mo == 2 && d == 29 && !leap) || h > 23 || mi > 59 || sec > 60)
		return (-1);
	memset(&tm, 0, sizeof tm);
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = sec;
	if ((t = timegm(&tm)) == (time_t)-1)
		return (-1);
	t -= off;
	if (t < 0)
		return (-1);
	*out = t;
	return (0);
}

/* Text from the network or a child, made safe for a message. */
void
awscred_clean(const char *s, size_t len, char *buf, size_t size)
{
	log_escape(s, len, buf, size);
}

/* ------------------------------------------------------------------ */
/* Shared files (INI). */

static const struct {
	const char	*key;
	size_t		 off;
	int		 secret;
} awscred_ini_keys[] = {
	{ "aws_access_key_id",
	  offsetof(struct awscred_profile, access_key_id), 0 },
	{ "aws_secret_access_key",
	  offsetof(struct awscred_profile, secret_access_key), 1 },
	{ "aws_session_token",
	  offsetof(struct awscred_profile, session_token), 1 },
	{ "credential_process",
	  offsetof(struct awscred_profile, credential_process), 0 },
	{ "role_arn", offsetof(struct awscred_profile, role_arn), 0 },
	{ "web_identity_token_file",
	  offsetof(struct awscred_profile, web_identity_token_file), 0 },
	{ "role_session_name",
	  offsetof(struct awscred_profile, role_session_name), 0 },
	{ "source_profile",
	  offsetof(struct awscred_profile, source_profile), 0 },
	{ "credential_source",
	  offsetof(struct awscred_profile, credential_source), 0 },
	{ "region", offsetof(struct awscred_profile, region), 0 },
};

static void
awscred_trim(const char **s, const char **e)
{
	while (*s < *e && isspace((unsigned char)**s))
		(*s)++;
	while (*e > *s && isspace((unsigned char)(*e)[-1]))
		(*e)--;
}

/* Does a section header name this profile? */
static int
awscred_ini_section(const char *s, size_t len, int config_file,
    const char *name)
{
	size_t	nlen = strlen(name);

	if (!config_file)
		return (len == nlen && memcmp(s, name, len) == 0);
	if (len == 7 && memcmp(s, "default", 7) == 0)
		return (strcmp(name, "default") == 0);
	if (len > 8 && memcmp(s, "profile", 7) == 0 &&
	    (s[7] == ' ' || s[7] == '\t')) {
		s += 8;
		len -= 8;
		while (len > 0 && (*s == ' ' || *s == '\t')) {
			s++;
			len--;
		}
		return (len == nlen && memcmp(s, name, len) == 0);
	}
	return (0);
}

static void
awscred_ini_set(struct awscred_profile *p, const char *k, size_t klen,
    const char *v, size_t vlen)
{
	char	**slot;
	size_t	  i;

	if (klen > 4 && strncasecmp(k, "sso_", 4) == 0) {
		free(p->sso);
		p->sso = xstrndup(k, klen);
		return;
	}
	for (i = 0; i < nitems(awscred_ini_keys); i++) {
		if (strlen(awscred_ini_keys[i].key) != klen ||
		    strncasecmp(awscred_ini_keys[i].key, k, klen) != 0)
			continue;
		slot = (char **)((char *)p + awscred_ini_keys[i].off);
		if (awscred_ini_keys[i].secret)
			freezero_str(*slot);
		else
			free(*slot);
		*slot = xstrndup(v, vlen);
		return;
	}
}

/*
 * The parser follows the JS SDK (parseIni), which Claude Code uses:
 * comments start with ';' or '#' at the start of a line or after white
 * space; keys and values are trimmed; a key with an empty value opens a
 * sub-section whose indented lines are skipped; a section seen twice is
 * merged. Key names are matched without regard to case (botocore).
 */
int
awscred_ini_profile(const char *buf, size_t len, int config_file,
    const char *name, struct awscred_profile *p)
{
	const char	*line = buf, *end = buf + len, *eol, *s, *e, *q, *eq;
	const char	*ks, *ke, *vs, *ve;
	int		 in = 0, found = 0, sub = 0, indented;

	if (len >= 3 && memcmp(buf, "\xef\xbb\xbf", 3) == 0)
		line += 3;
	for (; line < end; line = eol + 1) {
		if ((eol = memchr(line, '\n', (size_t)(end - line))) == NULL)
			eol = end;
		indented = (line < eol && (*line == ' ' || *line == '\t'));
		s = line;
		e = eol;
		/* Cut the comment. */
		for (q = s; q < e; q++) {
			if ((*q == ';' || *q == '#') && (q == s ||
			    isspace((unsigned char)q[-1]))) {
				e = q;
				break;
			}
		}
		awscred_trim(&s, &e);
		if (s == e)
			continue;
		if (*s == '[' && e[-1] == ']' && e - s >= 2) {
			ks = s + 1;
			ke = e - 1;
			awscred_trim(&ks, &ke);
			in = awscred_ini_section(ks, (size_t)(ke - ks),
			    config_file, name);
			found |= in;
			sub = 0;
			continue;
		}
		if (!in)
			continue;
		if ((eq = memchr(s, '=', (size_t)(e - s))) == NULL || eq == s)
			continue;
		ks = s;
		ke = eq;
		vs = eq + 1;
		ve = e;
		awscred_trim(&ks, &ke);
		awscred_trim(&vs, &ve);
		if (vs == ve) {
			sub = 1;
			continue;
		}
		if (sub && indented)
			continue;
		sub = 0;
		awscred_ini_set(p, ks, (size_t)(ke - ks), vs, (size_t)(ve - vs));
	}
	if (found)
		p->found = 1;
	return (found);
}

void
awscred_profile_clear(struct awscred_profile *p)
{
	size_t	i;
	char	**slot;

	for (i = 0; i < nitems(awscred_ini_keys); i++) {
		slot = (char **)((char *)p + awscred_ini_keys[i].off);
		if (awscred_ini_keys[i].secret)
			freezero_str(*slot);
		else
			free(*slot);
	}
	free(p->sso);
	memset(p, 0, sizeof *p);
}

/* ------------------------------------------------------------------ */
/* JSON answers. */

static struct aws_creds *
awscred_json_creds(json_t *o, const char *tokkey, const char *source,
    char **cause)
{
	json_t		*v;
	const char	*akid, *secret, *token = NULL;
	time_t		 exp = 0;
	char		*cause2 = NULL;
	struct aws_creds *c;

	if (!json_is_string(v = json_object_get(o, "AccessKeyId"))) {
		xasprintf(cause, "no AccessKeyId in the answer");
		return (NULL);
	}
	akid = json_string_value(v);
	if (!json_is_string(v = json_object_get(o, "SecretAccessKey"))) {
		xasprintf(cause, "no SecretAccessKey in the answer");
		return (NULL);
	}
	secret = json_string_value(v);
	if ((v = json_object_get(o, tokkey)) != NULL && !json_is_null(v)) {
		if (!json_is_string(v)) {
			xasprintf(cause, "%s is not a string", tokkey);
			return (NULL);
		}
		token = json_string_value(v);
	}
	if ((v = json_object_get(o, "Expiration")) != NULL &&
	    !json_is_null(v)) {
		if (!json_is_string(v) ||
		    awscred_parse_time(json_string_value(v), &exp) == -1) {
			xasprintf(cause, "Expiration is not an ISO 8601 time");
			return (NULL);
		}
	}
	if ((c = awscred_new(akid, secret, token, exp, source,
	    &cause2)) == NULL) {
		xasprintf(cause, "%s", cause2);
		free(cause2);
	}
	return (c);
}

static json_t *
awscred_json_load(const char *buf, size_t len, char **cause)
{
	json_error_t	 err;
	json_t		*o;

	if ((o = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &err)) == NULL) {
		char	clean[sizeof err.text * 4];

		/* jansson quotes the input: escape it, whole characters only. */
		awscred_clean(err.text, strlen(err.text), clean, sizeof clean);
		xasprintf(cause, "the answer is not JSON (line %d: %s)",
		    err.line, clean);
		return (NULL);
	}
	if (!json_is_object(o)) {
		json_decref(o);
		xasprintf(cause, "the answer is not a JSON object");
		return (NULL);
	}
	return (o);
}

struct aws_creds *
awscred_parse_process(const char *buf, size_t len, const char *source,
    char **cause)
{
	json_t			*o, *v;
	struct aws_creds	*c;

	if ((o = awscred_json_load(buf, len, cause)) == NULL)
		return (NULL);
	v = json_object_get(o, "Version");
	if (!json_is_integer(v) || json_integer_value(v) != 1) {
		json_decref(o);
		xasprintf(cause, "the output must have \"Version\": 1");
		return (NULL);
	}
	c = awscred_json_creds(o, "SessionToken", source, cause);
	json_decref(o);
	return (c);
}

struct aws_creds *
awscred_parse_metadata(const char *buf, size_t len, const char *source,
    char **cause)
{
	json_t			*o, *v;
	struct aws_creds	*c;
	char			 esc[128];

	if ((o = awscred_json_load(buf, len, cause)) == NULL)
		return (NULL);
	v = json_object_get(o, "Code");
	if (v != NULL && (!json_is_string(v) ||
	    strcmp(json_string_value(v), "Success") != 0)) {
		if (json_is_string(v))
			awscred_clean(json_string_value(v),
			    strlen(json_string_value(v)), esc, sizeof esc);
		else
			bsp_strlcpy(esc, "?", sizeof esc);
		json_decref(o);
		xasprintf(cause, "the answer has Code \"%s\"", esc);
		return (NULL);
	}
	c = awscred_json_creds(o, "Token", source, cause);
	json_decref(o);
	return (c);
}

/* ------------------------------------------------------------------ */
/* STS XML answers: a small, tolerant extractor. */

/* Find <tag ...>content</tag> in [s, s + len): the content bounds. */
static int
awscred_xml_find(const char *s, size_t len, const char *tag,
    const char **out, size_t *outlen)
{
	size_t		 tl = strlen(tag), i, j, start;
	const char	*gt;
	char		 c;

	for (i = 0; i + tl + 2 <= len; i++) {
		if (s[i] != '<' || memcmp(s + i + 1, tag, tl) != 0)
			continue;
		c = s[i + 1 + tl];
		if (c != '>' && c != '/' && !isspace((unsigned char)c))
			continue;
		gt = memchr(s + i + 1 + tl, '>', len - (i + 1 + tl));
		if (gt == NULL)
			return (-1);
		start = (size_t)(gt - s) + 1;
		if (gt[-1] == '/') {
			*out = s + start;
			*outlen = 0;
			return (0);
		}
		for (j = start; j + tl + 3 <= len; j++) {
			if (s[j] != '<' || s[j + 1] != '/' ||
			    memcmp(s + j + 2, tag, tl) != 0)
				continue;
			c = s[j + 2 + tl];
			if (c != '>' && !isspace((unsigned char)c))
				continue;
			*out = s + start;
			*outlen = j - start;
			return (0);
		}
		return (-1);
	}
	return (-1);
}

static size_t
awscred_utf8(unsigned long cp, char *o)
{
	if (cp < 0x80) {
		o[0] = (char)cp;
		return (1);
	}
	if (cp < 0x800) {
		o[0] = (char)(0xc0 | (cp >> 6));
		o[1] = (char)(0x80 | (cp & 0x3f));
		return (2);
	}
	if (cp < 0x10000) {
		o[0] = (char)(0xe0 | (cp >> 12));
		o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		o[2] = (char)(0x80 | (cp & 0x3f));
		return (3);
	}
	o[0] = (char)(0xf0 | (cp >> 18));
	o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
	o[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
	o[3] = (char)(0x80 | (cp & 0x3f));
	return (4);
}

/*
 * The character of one reference, r[0..len) between '&' and ';' ("amp",
 * "#233", "#xE9"), into o: its length in bytes, or 0 if it is not one.
 * A reference never takes more room than it had.
 */
static size_t
awscred_xml_ref(const char *r, size_t len, char *o)
{
	static const struct {
		const char	*name;
		char		 c;
	} ents[] = {
		{ "amp", '&' }, { "lt", '<' }, { "gt", '>' },
		{ "quot", '"' }, { "apos", '\'' },
	};
	unsigned long	 cp = 0;
	size_t		 k, d;
	int		 hex, dv;

	if (len >= 2 && r[0] == '#') {
		hex = (r[1] == 'x' || r[1] == 'X');
		d = hex ? 2 : 1;
		if (d >= len)
			return (0);
		for (k = d; k < len; k++) {
			if (isdigit((unsigned char)r[k]))
				dv = r[k] - '0';
			else if (hex && isxdigit((unsigned char)r[k]))
				dv = (tolower((unsigned char)r[k]) - 'a') + 10;
			else
				return (0);
			cp = cp * (hex ? 16 : 10) + (unsigned long)dv;
			if (cp > 0x10ffff)
				return (0);
		}
		if (cp == 0 || (cp >= 0xd800 && cp <= 0xdfff))
			return (0);
		return (awscred_utf8(cp, o));
	}
	for (k = 0; k < nitems(ents); k++) {
		if (strlen(ents[k].name) == len &&
		    memcmp(r, ents[k].name, len) == 0) {
			o[0] = ents[k].c;
			return (1);
		}
	}
	return (0);
}

/* Element text with entities (and a CDATA section) decoded; NULL if bad. */
static char *
awscred_xml_text(const char *s, size_t len)
{
	const char	*semi;
	char		*o;
	size_t		 i = 0, n = 0, k;

	while (len > 0 && isspace((unsigned char)*s)) {
		s++;
		len--;
	}
	while (len > 0 && isspace((unsigned char)s[len - 1]))
		len--;
	if (len >= 12 && memcmp(s, "<![CDATA[", 9) == 0 &&
	    memcmp(s + len - 3, "]]>", 3) == 0)
		return (xmemdup0(s + 9, len - 12));
	o = xmalloc(len + 1);
	while (i < len) {
		if (s[i] == '<') {
			freezero(o, len + 1);
			return (NULL);
		}
		if (s[i] != '&') {
			o[n++] = s[i++];
			continue;
		}
		semi = memchr(s + i, ';', len - i < 12 ? len - i : 12);
		if (semi == NULL || (k = awscred_xml_ref(s + i + 1,
		    (size_t)(semi - (s + i)) - 1, o + n)) == 0) {
			freezero(o, len + 1);
			return (NULL);
		}
		n += k;
		i = (size_t)(semi - s) + 1;
	}
	o[n] = '\0';
	return (o);
}

/* The text of <tag> inside [s, s + len), decoded, or NULL. */
char *
awscred_xml_get(const char *s, size_t len, const char *tag)
{
	const char	*v;
	size_t		 vlen;

	if (awscred_xml_find(s, len, tag, &v, &vlen) == -1)
		return (NULL);
	return (awscred_xml_text(v, vlen));
}

struct aws_creds *
awscred_parse_sts(const char *buf, size_t len, const char *source,
    char **cause)
{
	const char		*cr, *er;
	size_t			 crlen, erlen;
	char			*akid = NULL, *secret = NULL, *token = NULL;
	char			*exps = NULL, *code, *msg, *cause2 = NULL;
	char			 ecode[96], emsg[320];
	time_t			 exp = 0;
	struct aws_creds	*c = NULL;

	if (awscred_xml_find(buf, len, "Credentials", &cr, &crlen) == -1) {
		if (awscred_xml_find(buf, len, "Error", &er, &erlen) == -1) {
			xasprintf(cause, "the STS answer has neither "
			    "Credentials nor an Error");
			return (NULL);
		}
		code = awscred_xml_get(er, erlen, "Code");
		msg = awscred_xml_get(er, erlen, "Message");
		awscred_clean(code != NULL ? code : "unknown error",
		    strlen(code != NULL ? code : "unknown error"), ecode,
		    sizeof ecode);
		if (msg != NULL)
			awscred_clean(msg, strlen(msg), emsg, sizeof emsg);
		xasprintf(cause, "STS refused AssumeRoleWithWebIdentity: "
		    "%s%s%s", ecode, msg != NULL ? ": " : "",
		    msg != NULL ? emsg : "");
		free(code);
		free(msg);
		return (NULL);
	}
	akid = awscred_xml_get(cr, crlen, "AccessKeyId");
	secret = awscred_xml_get(cr, crlen, "SecretAccessKey");
	token = awscred_xml_get(cr, crlen, "SessionToken");
	exps = awscred_xml_get(cr, crlen, "Expiration");
	if (akid == NULL || secret == NULL || token == NULL) {
		xasprintf(cause, "the STS answer lacks %s",
		    akid == NULL ? "AccessKeyId" : secret == NULL ?
		    "SecretAccessKey" : "SessionToken");
		goto out;
	}
	if (exps != NULL && awscred_parse_time(exps, &exp) == -1) {
		xasprintf(cause, "the STS answer has a malformed Expiration");
		goto out;
	}
	if ((c = awscred_new(akid, secret, token, exp, source,
	    &cause2)) == NULL) {
		xasprintf(cause, "STS: %s", cause2);
		free(cause2);
	}
out:
	free(akid);
	freezero_str(secret);
	freezero_str(token);
	free(exps);
	return (c);
}
