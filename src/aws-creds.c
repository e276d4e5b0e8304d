/*
 * aws-creds.c: the AWS credential chain, run on the loop.
 *
 * Sources are tried in table order (awscred_sources[]). A source that is not
 * configured is skipped at once; one that is configured but fails adds its
 * reason to the problem text and the chain goes on, as the SDKs do. Sources
 * that need the network (STS, the container endpoint, IMDS) or a child
 * process (credential_process) answer through a callback on a later loop
 * pass; only one fetch is ever in flight.
 *
 * The source that produced the current credentials is asked again before
 * they expire (refresh). A failed refresh is retried with backoff and the
 * old credentials stay in use until they expire; then the whole chain runs
 * again. When the chain finds nothing it is retried with backoff.
 *
 * The state machine (awscred_enter_state):
 *   RESOLVING	walking the chain from the first source
 *   REFRESHING	asking the current source again
 *   WAIT_REFRESH	credentials in hand, timer set before they expire
 *   WAIT_RETRY	timer set after a failure
 *   IDLE		nothing to do (static credentials, aws.bearer_token)
 */

#include <sys/types.h>
#include <sys/queue.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <jansson.h>
#include <sodium.h>

#include "bsp.h"
#include "aws-creds.h"
#include "http-client.h"

#define AWSCRED_WHY_MAX		1024	/* collected failure reasons */
#define AWSCRED_NOOP_SECS	10	/* forced refresh gave the same keys */
#define AWSCRED_IMDS_TTL	"21600"
#define AWSCRED_IMDS_ENDPOINT	"http://169.254.169.254"
#define AWSCRED_IMDS_ENDPOINT6	"http://[fd00:ec2::254]"
#define AWSCRED_IMDS_CREDS	"/latest/meta-data/iam/security-credentials/"
#define AWSCRED_ECS_HOST	"http://169.254.170.2"
#define AWSCRED_STS_VERSION	"2011-06-15"
#define AWSCRED_MAX_KEY_ID	128
#define AWSCRED_MAX_SECRET	256
#define AWSCRED_MAX_TOKEN	(16 * 1024)
#define AWSCRED_MAX_ROLE	128
#define AWSCRED_PROC_ERR	512	/* stderr kept for the message */
#define AWSCRED_REAP_MS_MAX	500

enum awscred_rc {
	AWSCRED_SKIP,		/* not configured */
	AWSCRED_DONE,		/* credentials in *out */
	AWSCRED_FAIL,		/* configured, but failed: *cause */
	AWSCRED_PENDING,	/* answer comes through awscred_source_done */
};

enum awscred_state {
	AWSCRED_S_IDLE,
	AWSCRED_S_RESOLVING,
	AWSCRED_S_REFRESHING,
	AWSCRED_S_WAIT_REFRESH,
	AWSCRED_S_WAIT_RETRY,
};
static const char *const awscred_state_names[] = {
	"idle", "resolving", "refreshing", "wait-refresh", "wait-retry"
};

enum awscred_phase {
	AWSCRED_PH_NONE,
	AWSCRED_PH_IMDS_TOKEN,
	AWSCRED_PH_IMDS_ROLE,
	AWSCRED_PH_IMDS_CREDS,
	AWSCRED_PH_CONTAINER,
	AWSCRED_PH_STS,
	AWSCRED_PH_PROCESS,
};

struct awscred_source {
	const char	*name;
	enum awscred_rc	(*start)(struct aws_creds **, char **);
};

/* The aws.* settings that the chain depends on (copied, secrets wiped). */
struct awscred_settings {
	char	*access_key_id;
	char	*secret_access_key;
	char	*session_token;
	char	*profile;
	char	*region;
	int	 bearer;
};

struct awscred_waiter {
	void			(*cb)(void *, int);
	void			*arg;
	struct aws_creds	*bad;		/* the rejected ones (a ref) */
	int			 done;
	int			 ok;
	TAILQ_ENTRY(awscred_waiter) entry;
};
TAILQ_HEAD(awscred_waiters, awscred_waiter);

struct awscred_proc {
	pid_t		 pid;
	int		 out_fd;
	int		 err_fd;
	struct event	 out_ev;
	struct event	 err_ev;
	struct event	 timeout_ev;
	struct event	 reap_ev;
	long		 timeout_ms;
	long		 reap_ms;
	char		*out;		/* AWSCRED_PROCESS_MAX bytes */
	size_t		 outlen;
	char		 err[AWSCRED_PROC_ERR];
	size_t		 errlen;
	int		 timed_out;
	int		 too_large;
	int		 killed;
	char		*source;
	void		(*cb)(struct aws_creds *, const char *, void *);
	void		*arg;
	LIST_ENTRY(awscred_proc) entry;
};

static enum awscred_rc	awscred_src_config(struct aws_creds **, char **);
static enum awscred_rc	awscred_src_env(struct aws_creds **, char **);
static enum awscred_rc	awscred_src_profile(struct aws_creds **, char **);
static enum awscred_rc	awscred_src_webid(struct aws_creds **, char **);
static enum awscred_rc	awscred_src_container(struct aws_creds **, char **);
static enum awscred_rc	awscred_src_imds(struct aws_creds **, char **);

static const struct awscred_source awscred_sources[] = {
	{ "config", awscred_src_config },
	{ "environment", awscred_src_env },
	{ "shared files", awscred_src_profile },
	{ "web identity", awscred_src_webid },
	{ "container", awscred_src_container },
	{ "imds", awscred_src_imds },
};
#define AWSCRED_NSOURCES	((int)nitems(awscred_sources))

static struct {
	int			 initialized;
	struct awscred_settings	 set;
	enum awscred_state	 state;
	struct aws_creds	*cur;
	int			 cur_src;
	char			*problem;	/* why none, or why refresh fails */
	char			*logged;	/* last problem logged as warning */
	char			*why;		/* reasons collected on this run */
	char			*tried;		/* labels of the sources that failed */
	char			*detail;	/* short form of problem */
	int			 src;		/* source being tried */
	int			 full;		/* whole chain, not a refresh */
	int			 forced;	/* a waiter asked for this run */
	int			 reset_on_fail;	/* settings changed (reload) */
	long			 backoff;
	double			 last_attempt;
	struct aws_creds	*noop_creds;	/* forced refresh changed nothing */
	double			 noop_at;
	struct event		 timer_ev;
	struct event		 kick_ev;
	struct awscred_waiters	 waiters;

	/* The fetch in flight. */
	enum awscred_phase	 phase;
	char			*label;		/* "imds", "profile dev", ... */
	struct hc_target	*target;
	struct hc_req		*req;
	struct awscred_proc	*proc;
	char			*imds_token;
} awscred;

static LIST_HEAD(, awscred_proc) awscred_procs =
    LIST_HEAD_INITIALIZER(awscred_procs);

static void	awscred_enter_state(enum awscred_state);
static void	awscred_run(void);
static void	awscred_source_done(struct aws_creds *, const char *);
static void	awscred_refresh_start(int);
static void	awscred_fetch_cancel(void);
static void	awscred_http_done(struct hc_req *, const struct hc_result *,
		    void *);
static void	awscred_proc_done(struct aws_creds *, const char *, void *);
static void	awscred_proc_free(struct awscred_proc *);
static void	awscred_proc_reap_schedule(struct awscred_proc *, long);
static void	awscred_set_label(const char *, ...) printflike(1, 2);

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

static int
awscred_str_same(const char *a, const char *b)
{
	size_t	la, lb;

	if (a == NULL || b == NULL)
		return (a == b);
	la = strlen(a);
	lb = strlen(b);
	return (la == lb && sodium_memcmp(a, b, la) == 0);
}

/* Same keys (the expiration may differ). */
static int
awscred_same_keys(const struct aws_creds *a, const struct aws_creds *b)
{
	return (strcmp(a->access_key_id, b->access_key_id) == 0 &&
	    awscred_str_same(a->secret_access_key, b->secret_access_key) &&
	    awscred_str_same(a->session_token, b->session_token));
}

static int
awscred_usable(const struct aws_creds *c)
{
	return (c != NULL && (c->expiration == 0 ||
	    now_wall() < c->expiration));
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

/* getenv, with "" meaning unset. */
static const char *
awscred_env(const char *name)
{
	const char	*v = getenv(name);

	return (v != NULL && *v != '\0' ? v : NULL);
}

/*
 * Read a whole small file. Returns 0, 1 if it does not exist, or -1 with
 * *cause. The buffer is NUL-terminated; wipe it with freezero().
 */
static int
awscred_read_file(const char *path, size_t max, char **buf, size_t *len,
    char **cause)
{
	struct stat	 st;
	ssize_t		 n;
	size_t		 got = 0;
	char		*b;
	int		 fd;

	*buf = NULL;
	*len = 0;
	/* Non-blocking, so that a FIFO cannot hold the loop. */
	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)) == -1) {
		if (errno == ENOENT)
			return (1);
		xasprintf(cause, "cannot open %s: %s", path, strerror(errno));
		return (-1);
	}
	if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode)) {
		xasprintf(cause, "%s is not a regular file", path);
		close(fd);
		return (-1);
	}
	if ((size_t)st.st_size > max) {
		xasprintf(cause, "%s is larger than %zu bytes", path, max);
		close(fd);
		return (-1);
	}
	b = xmalloc(max + 1);
	for (;;) {
		n = read(fd, b + got, max + 1 - got);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1) {
			xasprintf(cause, "cannot read %s: %s", path,
			    strerror(errno));
			close(fd);
			freezero(b, max + 1);
			return (-1);
		}
		if (n == 0)
			break;
		got += (size_t)n;
		if (got > max) {
			xasprintf(cause, "%s is larger than %zu bytes", path,
			    max);
			close(fd);
			freezero(b, max + 1);
			return (-1);
		}
	}
	close(fd);
	b[got] = '\0';
	*buf = xmemdup0(b, got);
	freezero(b, max + 1);
	*len = got;
	return (0);
}

/* A file holding one token: read it, drop surrounding white space. */
static char *
awscred_read_token(const char *path, const char *what, char **cause)
{
	char	*buf, *tok, *cause2 = NULL;
	size_t	 len, s = 0;
	int	 rc;

	rc = awscred_read_file(path, AWSCRED_MAX_TOKEN * 4, &buf, &len,
	    &cause2);
	if (rc == 1) {
		xasprintf(cause, "%s %s does not exist", what, path);
		return (NULL);
	}
	if (rc == -1) {
		xasprintf(cause, "%s: %s", what, cause2);
		free(cause2);
		return (NULL);
	}
	while (len > 0 && isspace((unsigned char)buf[len - 1]))
		buf[--len] = '\0';
	while (s < len && isspace((unsigned char)buf[s]))
		s++;
	if (s == len) {
		xasprintf(cause, "%s %s is empty", what, path);
		freezero(buf, len + 1);
		return (NULL);
	}
	tok = xstrdup(buf + s);
	freezero(buf, len + 1);
	return (tok);
}

/* Text from the network or a child, made safe for a message. */
static void
awscred_clean(const char *s, size_t len, char *buf, size_t size)
{
	log_escape(s, len, buf, size);
}

/* Form encoding (RFC 3986 unreserved kept); dst NULL only counts. */
static size_t
awscred_urlenc(char *dst, const char *s)
{
	static const char	 hex[] = "0123456789ABCDEF";
	size_t			 n = 0;
	unsigned char		 c;

	for (; *s != '\0'; s++) {
		c = (unsigned char)*s;
		if (isalnum(c) || c == '-' || c == '_' || c == '.' ||
		    c == '~') {
			if (dst != NULL)
				dst[n] = (char)c;
			n++;
		} else {
			if (dst != NULL) {
				dst[n] = '%';
				dst[n + 1] = hex[c >> 4];
				dst[n + 2] = hex[c & 15];
			}
			n += 3;
		}
	}
	return (n);
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

/* Element text with entities (and a CDATA section) decoded; NULL if bad. */
static char *
awscred_xml_text(const char *s, size_t len)
{
	static const struct {
		const char	*name;
		char		 c;
	} ents[] = {
		{ "amp", '&' }, { "lt", '<' }, { "gt", '>' },
		{ "quot", '"' }, { "apos", '\'' },
	};
	char		*o, *semi;
	size_t		 i = 0, n = 0, k, elen;
	unsigned long	 cp;
	int		 ok;

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
		if (semi == NULL)
			goto bad;
		elen = (size_t)(semi - (s + i)) - 1;
		ok = 0;
		if (elen >= 2 && s[i + 1] == '#') {
			int	 hex = (s[i + 2] == 'x' || s[i + 2] == 'X');
			size_t	 d = hex ? 3 : 2;

			cp = 0;
			if (i + d >= (size_t)(semi - s))
				goto bad;
			for (k = i + d; s + k < semi; k++) {
				int	dv;

				if (isdigit((unsigned char)s[k]))
					dv = s[k] - '0';
				else if (hex && isxdigit((unsigned char)s[k]))
					dv = (tolower((unsigned char)s[k]) -
					    'a') + 10;
				else
					goto bad;
				cp = cp * (hex ? 16 : 10) + (unsigned long)dv;
				if (cp > 0x10ffff)
					goto bad;
			}
			if (cp == 0 || (cp >= 0xd800 && cp <= 0xdfff))
				goto bad;
			/* A reference never takes more room than it had. */
			n += awscred_utf8(cp, o + n);
			ok = 1;
		} else {
			for (k = 0; k < nitems(ents); k++) {
				if (strlen(ents[k].name) == elen &&
				    memcmp(s + i + 1, ents[k].name, elen) == 0) {
					o[n++] = ents[k].c;
					ok = 1;
					break;
				}
			}
		}
		if (!ok)
			goto bad;
		i = (size_t)(semi - s) + 1;
	}
	o[n] = '\0';
	return (o);
bad:
	freezero(o, len + 1);
	return (NULL);
}

/* The text of <tag> inside [s, s + len), decoded, or NULL. */
static char *
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

/* ------------------------------------------------------------------ */
/* credential_process: a child on a pipe, never waited for on the loop. */

static void
awscred_closefrom(int lowfd)
{
#if defined(__OpenBSD__) || defined(__FreeBSD__) || \
    (defined(__GLIBC__) && (__GLIBC__ > 2 || \
    (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 34)))
	closefrom(lowfd);
#else
	long	max = sysconf(_SC_OPEN_MAX), fd;

	if (max < 0 || max > 65536)
		max = 65536;
	for (fd = lowfd; fd < max; fd++)
		close((int)fd);
#endif
}

/* Kill the child's process group (it may have started others). */
static void
awscred_proc_kill(struct awscred_proc *p)
{
	if (p->killed)
		return;
	p->killed = 1;
	kill(-p->pid, SIGKILL);
	kill(p->pid, SIGKILL);
}

static void
awscred_proc_close(struct awscred_proc *p)
{
	if (p->out_fd != -1) {
		event_del(&p->out_ev);
		close(p->out_fd);
		p->out_fd = -1;
	}
	if (p->err_fd != -1) {
		event_del(&p->err_ev);
		close(p->err_fd);
		p->err_fd = -1;
	}
}

/* Both pipes closed: reap. */
static void
awscred_proc_check_eof(struct awscred_proc *p)
{
	if (p->out_fd == -1 && p->err_fd == -1)
		awscred_proc_reap_schedule(p, 0);
}

static void
awscred_proc_read_cb(evutil_socket_t fd, short events, void *arg)
{
	struct awscred_proc	*p = arg;
	char			 buf[4096];
	ssize_t			 n;
	int			 is_out = (fd == p->out_fd);

	n = read(fd, buf, sizeof buf);
	if (n == -1 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		if (is_out) {
			event_del(&p->out_ev);
			close(p->out_fd);
			p->out_fd = -1;
		} else {
			event_del(&p->err_ev);
			close(p->err_fd);
			p->err_fd = -1;
		}
		awscred_proc_check_eof(p);
		return;
	}
	if (is_out) {
		if (p->outlen + (size_t)n > AWSCRED_PROCESS_MAX) {
			p->too_large = 1;
			awscred_proc_kill(p);
			awscred_proc_close(p);
			awscred_proc_check_eof(p);
		} else {
			memcpy(p->out + p->outlen, buf, (size_t)n);
			p->outlen += (size_t)n;
		}
	} else if (p->errlen < sizeof p->err) {
		if ((size_t)n > sizeof p->err - p->errlen)
			n = (ssize_t)(sizeof p->err - p->errlen);
		memcpy(p->err + p->errlen, buf, (size_t)n);
		p->errlen += (size_t)n;
	}
	sodium_memzero(buf, sizeof buf);
}

static void
awscred_proc_timeout_cb(evutil_socket_t fd, short events, void *arg)
{
	struct awscred_proc	*p = arg;

	log_trace(TRACE_UPSTREAM, "aws creds: credential_process (pid %ld) "
	    "timed out; killing it", (long)p->pid);
	p->timed_out = 1;
	awscred_proc_kill(p);
	awscred_proc_close(p);
	awscred_proc_check_eof(p);
}

/* The first line of stderr, escaped, for the message. */
static void
awscred_proc_stderr(struct awscred_proc *p, char *buf, size_t size)
{
	const char	*nl;
	size_t		 len = p->errlen;

	if ((nl = memchr(p->err, '\n', len)) != NULL)
		len = (size_t)(nl - p->err);
	if (len == 0) {
		*buf = '\0';
		return;
	}
	bsp_strlcpy(buf, ": ", size);
	awscred_clean(p->err, len, buf + 2, size - 2);
}

static void
awscred_proc_finish(struct awscred_proc *p, int status, int have_status)
{
	struct aws_creds	*c = NULL;
	char			*cause = NULL, *cause2 = NULL, err[200];

	if (p->cb == NULL) {
		awscred_proc_free(p);
		return;
	}
	awscred_proc_stderr(p, err, sizeof err);
	if (p->timed_out)
		xasprintf(&cause, "credential_process timed out after %ld s",
		    (p->timeout_ms + 999) / 1000);
	else if (p->too_large)
		xasprintf(&cause, "credential_process wrote more than %d "
		    "bytes", AWSCRED_PROCESS_MAX);
	else if (have_status && WIFSIGNALED(status))
		xasprintf(&cause, "credential_process was killed by signal "
		    "%d%s", WTERMSIG(status), err);
	else if (have_status && WIFEXITED(status) && WEXITSTATUS(status) != 0)
		xasprintf(&cause, "credential_process exited with status "
		    "%d%s", WEXITSTATUS(status), err);
	else if ((c = awscred_parse_process(p->out, p->outlen, p->source,
	    &cause2)) == NULL) {
		xasprintf(&cause, "credential_process: %s", cause2);
		free(cause2);
	}
	p->cb(c, cause, p->arg);
	free(cause);
	awscred_proc_free(p);
}

static void
awscred_proc_reap_cb(evutil_socket_t fd, short events, void *arg)
{
	struct awscred_proc	*p = arg;
	pid_t			 r;
	int			 status = 0;

	r = waitpid(p->pid, &status, WNOHANG);
	if (r == 0 || (r == -1 && errno == EINTR)) {
		p->reap_ms = p->reap_ms == 0 ? 5 : p->reap_ms * 2;
		if (p->reap_ms > AWSCRED_REAP_MS_MAX)
			p->reap_ms = AWSCRED_REAP_MS_MAX;
		awscred_proc_reap_schedule(p, p->reap_ms);
		return;
	}
	/* ECHILD: someone else reaped it (SIGCHLD ignored); status unknown. */
	event_del(&p->timeout_ev);
	log_trace(TRACE_UPSTREAM, "aws creds: credential_process (pid %ld) "
	    "ended", (long)p->pid);
	awscred_proc_finish(p, status, r == p->pid);
}

static void
awscred_proc_reap_schedule(struct awscred_proc *p, long ms)
{
	struct timeval	tv;

	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	evtimer_add(&p->reap_ev, &tv);
}

static void
awscred_proc_free(struct awscred_proc *p)
{
	awscred_proc_close(p);
	event_del(&p->timeout_ev);
	event_del(&p->reap_ev);
	LIST_REMOVE(p, entry);
	freezero(p->out, AWSCRED_PROCESS_MAX);
	free(p->source);
	free(p);
}

struct awscred_proc *
awscred_process_start(const char *cmd, long timeout_ms, const char *source,
    void (*cb)(struct aws_creds *, const char *, void *), void *arg,
    char **cause)
{
	struct awscred_proc	*p;
	struct timeval		 tv;
	sigset_t		 none;
	int			 out[2], err[2], devnull;
	pid_t			 pid;

	if (bsp_base == NULL) {
		xasprintf(cause, "no event loop");
		return (NULL);
	}
	if ((devnull = open("/dev/null", O_RDWR | O_CLOEXEC)) == -1) {
		xasprintf(cause, "/dev/null: %s", strerror(errno));
		return (NULL);
	}
	/* Only our ends are non-blocking: the child writes as usual. */
	if (pipe2(out, O_CLOEXEC) == -1) {
		xasprintf(cause, "pipe: %s", strerror(errno));
		close(devnull);
		return (NULL);
	}
	if (pipe2(err, O_CLOEXEC) == -1) {
		xasprintf(cause, "pipe: %s", strerror(errno));
		close(out[0]);
		close(out[1]);
		close(devnull);
		return (NULL);
	}
	if (fcntl(out[0], F_SETFL, O_NONBLOCK) == -1 ||
	    fcntl(err[0], F_SETFL, O_NONBLOCK) == -1) {
		xasprintf(cause, "fcntl: %s", strerror(errno));
		close(out[0]);
		close(out[1]);
		close(err[0]);
		close(err[1]);
		close(devnull);
		return (NULL);
	}
	sigemptyset(&none);
	switch (pid = fork()) {
	case -1:
		xasprintf(cause, "fork: %s", strerror(errno));
		close(out[0]);
		close(out[1]);
		close(err[0]);
		close(err[1]);
		close(devnull);
		return (NULL);
	case 0:
		/* Only async-signal-safe calls from here on. */
		setpgid(0, 0);
		signal(SIGPIPE, SIG_DFL);
		sigprocmask(SIG_SETMASK, &none, NULL);
		if (dup2(devnull, 0) == -1 || dup2(out[1], 1) == -1 ||
		    dup2(err[1], 2) == -1)
			_exit(126);
		awscred_closefrom(3);
		execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
		_exit(127);
	default:
		break;
	}
	setpgid(pid, pid);	/* both sides, so kill(-pid) never misses */
	close(out[1]);
	close(err[1]);
	close(devnull);

	p = xcalloc(1, sizeof *p);
	p->pid = pid;
	p->out_fd = out[0];
	p->err_fd = err[0];
	p->out = xmalloc(AWSCRED_PROCESS_MAX);
	p->timeout_ms = timeout_ms;
	p->source = xstrdup(source);
	p->cb = cb;
	p->arg = arg;
	event_assign(&p->out_ev, bsp_base, p->out_fd, EV_READ | EV_PERSIST,
	    awscred_proc_read_cb, p);
	event_assign(&p->err_ev, bsp_base, p->err_fd, EV_READ | EV_PERSIST,
	    awscred_proc_read_cb, p);
	evtimer_assign(&p->timeout_ev, bsp_base, awscred_proc_timeout_cb, p);
	evtimer_assign(&p->reap_ev, bsp_base, awscred_proc_reap_cb, p);
	event_add(&p->out_ev, NULL);
	event_add(&p->err_ev, NULL);
	tv.tv_sec = timeout_ms / 1000;
	tv.tv_usec = (timeout_ms % 1000) * 1000;
	evtimer_add(&p->timeout_ev, &tv);
	LIST_INSERT_HEAD(&awscred_procs, p, entry);
	log_trace(TRACE_UPSTREAM, "aws creds: credential_process started "
	    "(pid %ld)", (long)pid);
	return (p);
}

void
awscred_process_cancel(struct awscred_proc *p)
{
	if (p == NULL)
		return;
	p->cb = NULL;
	p->arg = NULL;
	awscred_proc_kill(p);
	awscred_proc_close(p);
	awscred_proc_check_eof(p);
}

void
awscred_process_reap_all(void)
{
	struct awscred_proc	*p;

	while ((p = LIST_FIRST(&awscred_procs)) != NULL) {
		awscred_proc_kill(p);
		while (waitpid(p->pid, NULL, 0) == -1 && errno == EINTR)
			continue;
		p->cb = NULL;
		awscred_proc_free(p);
	}
}

/* ------------------------------------------------------------------ */
/* The chain's sources. */

static void
awscred_set_label(const char *fmt, ...)
{
	va_list	ap;

	free(awscred.label);
	va_start(ap, fmt);
	xvasprintf(&awscred.label, fmt, ap);
	va_end(ap);
}

static enum awscred_rc
awscred_src_config(struct aws_creds **out, char **cause)
{
	char	*cause2 = NULL;

	if (awscred.set.access_key_id == NULL)
		return (AWSCRED_SKIP);
	*out = awscred_new(awscred.set.access_key_id,
	    awscred.set.secret_access_key, awscred.set.session_token, 0,
	    "config", &cause2);
	if (*out == NULL) {
		xasprintf(cause, "aws.access_key_id: %s", cause2);
		free(cause2);
		return (AWSCRED_FAIL);
	}
	return (AWSCRED_DONE);
}

static enum awscred_rc
awscred_src_env(struct aws_creds **out, char **cause)
{
	const char	*akid, *secret, *exps;
	time_t		 exp = 0;
	char		*cause2 = NULL;

	/* A profile chosen explicitly wins over the keys (JS SDK). */
	if (awscred.set.profile != NULL || awscred_env("AWS_PROFILE") != NULL)
		return (AWSCRED_SKIP);
	akid = awscred_env("AWS_ACCESS_KEY_ID");
	secret = awscred_env("AWS_SECRET_ACCESS_KEY");
	if (akid == NULL && secret == NULL)
		return (AWSCRED_SKIP);
	if (akid == NULL || secret == NULL) {
		xasprintf(cause, "%s is set but %s is not",
		    akid != NULL ? "AWS_ACCESS_KEY_ID" : "AWS_SECRET_ACCESS_KEY",
		    akid != NULL ? "AWS_SECRET_ACCESS_KEY" : "AWS_ACCESS_KEY_ID");
		return (AWSCRED_FAIL);
	}
	if ((exps = awscred_env("AWS_CREDENTIAL_EXPIRATION")) != NULL &&
	    awscred_parse_time(exps, &exp) == -1) {
		xasprintf(cause, "AWS_CREDENTIAL_EXPIRATION is not an ISO 8601 "
		    "time");
		return (AWSCRED_FAIL);
	}
	*out = awscred_new(akid, secret, awscred_env("AWS_SESSION_TOKEN"), exp,
	    "environment", &cause2);
	if (*out == NULL) {
		xasprintf(cause, "AWS_ACCESS_KEY_ID: %s", cause2);
		free(cause2);
		return (AWSCRED_FAIL);
	}
	return (AWSCRED_DONE);
}

/* "~/x" and default paths under $HOME; NULL if there is no $HOME. */
static char *
awscred_shared_path(const char *envname, const char *def)
{
	const char	*v = awscred_env(envname), *home = awscred_env("HOME");
	char		*path;

	if (v != NULL && strncmp(v, "~/", 2) != 0)
		return (xstrdup(v));
	if (home == NULL)
		return (NULL);
	if (v != NULL)
		xasprintf(&path, "%s/%s", home, v + 2);
	else
		xasprintf(&path, "%s/%s", home, def);
	return (path);
}

/* Merge one shared file into p; -1 with *cause if it cannot be read. */
static int
awscred_shared_read(const char *path, int config_file, const char *name,
    struct awscred_profile *p, char **cause)
{
	char	*buf;
	size_t	 len;
	int	 rc;

	if (path == NULL)
		return (0);
	rc = awscred_read_file(path, AWSCRED_FILE_MAX, &buf, &len, cause);
	if (rc == 1)
		return (0);
	if (rc == -1)
		return (-1);
	if (memchr(buf, '\0', len) != NULL) {
		/* A NUL would silently cut a key or a secret short. */
		xasprintf(cause, "%s holds a NUL byte; it is not a text file",
		    path);
		freezero(buf, len + 1);
		return (-1);
	}
	awscred_ini_profile(buf, len, config_file, name, p);
	freezero(buf, len + 1);
	return (0);
}

static enum awscred_rc	awscred_sts_start(const char *, const char *,
			    const char *, char **);

static enum awscred_rc
awscred_src_profile(struct aws_creds **out, char **cause)
{
	struct awscred_profile	 p;
	const char		*name;
	char			*cpath, *fpath, *src, *cause2 = NULL;
	int			 explicit = 1;
	enum awscred_rc		 rc = AWSCRED_FAIL;

	if ((name = awscred.set.profile) == NULL &&
	    (name = awscred_env("AWS_PROFILE")) == NULL) {
		name = "default";
		explicit = 0;
	}
	awscred_set_label("profile %s", name);
	memset(&p, 0, sizeof p);
	cpath = awscred_shared_path("AWS_CONFIG_FILE", ".aws/config");
	fpath = awscred_shared_path("AWS_SHARED_CREDENTIALS_FILE",
	    ".aws/credentials");
	if (cpath == NULL && fpath == NULL) {
		if (!explicit) {
			rc = AWSCRED_SKIP;
			goto out;
		}
		xasprintf(cause, "HOME is not set, so the shared files "
		    "cannot be found");
		goto out;
	}
	/* The credentials file wins over the config file. */
	if (awscred_shared_read(cpath, 1, name, &p, cause) == -1 ||
	    awscred_shared_read(fpath, 0, name, &p, cause) == -1)
		goto out;
	if (!p.found) {
		if (!explicit) {
			rc = AWSCRED_SKIP;
			goto out;
		}
		xasprintf(cause, "not found in %s or %s",
		    fpath != NULL ? fpath : "(no credentials file)",
		    cpath != NULL ? cpath : "(no config file)");
		goto out;
	}
	if (p.access_key_id != NULL || p.secret_access_key != NULL) {
		if (p.access_key_id == NULL || p.secret_access_key == NULL) {
			xasprintf(cause, "has %s but not %s",
			    p.access_key_id != NULL ? "aws_access_key_id" :
			    "aws_secret_access_key",
			    p.access_key_id != NULL ? "aws_secret_access_key" :
			    "aws_access_key_id");
			goto out;
		}
		xasprintf(&src, "profile %s", name);
		*out = awscred_new(p.access_key_id, p.secret_access_key,
		    p.session_token, 0, src, &cause2);
		free(src);
		if (*out == NULL) {
			xasprintf(cause, "aws_access_key_id: %s", cause2);
			free(cause2);
			goto out;
		}
		rc = AWSCRED_DONE;
	} else if (p.role_arn != NULL && p.web_identity_token_file != NULL) {
		rc = awscred_sts_start(p.web_identity_token_file, p.role_arn,
		    p.role_session_name, cause);
	} else if (p.credential_process != NULL) {
		log_trace(TRACE_UPSTREAM, "aws creds: profile %s: running "
		    "credential_process", name);
		awscred.phase = AWSCRED_PH_PROCESS;
		awscred.proc = awscred_process_start(p.credential_process,
		    AWSCRED_PROCESS_TIMEOUT, "credential_process",
		    awscred_proc_done, NULL, &cause2);
		if (awscred.proc == NULL) {
			awscred.phase = AWSCRED_PH_NONE;
			xasprintf(cause, "credential_process: %s", cause2);
			free(cause2);
			goto out;
		}
		rc = AWSCRED_PENDING;
	} else if (p.role_arn != NULL) {
		xasprintf(cause, "role_arn with source_profile or "
		    "credential_source (assume role) is not supported; use "
		    "credential_process");
	} else if (p.sso != NULL) {
		xasprintf(cause, "IAM Identity Center (%s) is not supported; "
		    "use credential_process = aws configure "
		    "export-credentials --profile %s --format process",
		    p.sso, name);
	} else if (!explicit)
		rc = AWSCRED_SKIP;
	else
		xasprintf(cause, "has no credentials (aws_access_key_id, "
		    "credential_process or web_identity_token_file)");
out:
	awscred_profile_clear(&p);
	free(cpath);
	free(fpath);
	return (rc);
}

/* Start an HTTP exchange for the current phase. */
static enum awscred_rc
awscred_http_start(const char *method, const char *path,
    const struct hc_header *h, size_t nh, const void *body, size_t len,
    long connect_ms, long total_ms, char **cause)
{
	struct hc_request	r;
	struct hc_timeouts	to = { connect_ms, total_ms, total_ms, total_ms };

	hc_request_init(&r, method, path, h, nh, body, len, AWSCRED_BODY_MAX,
	    &to, awscred_http_done, NULL);
	log_trace(TRACE_UPSTREAM, "aws creds: %s: %s %s%s", awscred.label,
	    method, hc_target_is_tls(awscred.target) ? "https://" : "http://",
	    hc_target_host(awscred.target));
	if ((awscred.req = hc_start(awscred.target, &r, cause)) == NULL)
		return (AWSCRED_FAIL);
	return (AWSCRED_PENDING);
}

static enum awscred_rc
awscred_target(const char *url, char **cause)
{
	char	*cause2 = NULL;

	hc_target_free(awscred.target);
	if ((awscred.target = hc_target_new(url, &cause2)) == NULL) {
		xasprintf(cause, "%s: %s", url, cause2);
		free(cause2);
		return (AWSCRED_FAIL);
	}
	return (AWSCRED_PENDING);
}

/* POST AssumeRoleWithWebIdentity: token file, role, session name. */
static enum awscred_rc
awscred_sts_start(const char *tokfile, const char *arn, const char *session,
    char **cause)
{
	static const struct hc_header h[] = {
		{ "Content-Type", "application/x-www-form-urlencoded" },
		{ "Accept", "text/xml" },
	};
	const char	*ep;
	char		*tok, *url = NULL, *gen = NULL, *body, *o;
	size_t		 len;
	enum awscred_rc	 rc;

	awscred_set_label("web identity");
	if ((tok = awscred_read_token(tokfile, "web identity token file",
	    cause)) == NULL)
		return (AWSCRED_FAIL);
	if ((ep = awscred_env("AWS_ENDPOINT_URL_STS")) == NULL &&
	    (ep = awscred_env("AWS_ENDPOINT_URL")) == NULL) {
		xasprintf(&url, "https://sts.%s.%s", awscred.set.region,
		    strncmp(awscred.set.region, "cn-", 3) == 0 ?
		    "amazonaws.com.cn" : "amazonaws.com");
		ep = url;
	}
	if (awscred_target(ep, cause) == AWSCRED_FAIL) {
		free(url);
		freezero_str(tok);
		return (AWSCRED_FAIL);
	}
	free(url);
	if (session == NULL) {
		xasprintf(&gen, "bedrock-sso-proxy-%lld",
		    (long long)now_wall());
		session = gen;
	}
	len = sizeof "Action=AssumeRoleWithWebIdentity&Version="
	    AWSCRED_STS_VERSION "&RoleArn=&RoleSessionName=&WebIdentityToken="
	    + awscred_urlenc(NULL, arn) + awscred_urlenc(NULL, session) +
	    awscred_urlenc(NULL, tok);
	body = o = xmalloc(len);
	o += bsp_strlcpy(o, "Action=AssumeRoleWithWebIdentity&Version="
	    AWSCRED_STS_VERSION "&RoleArn=", len);
	o += awscred_urlenc(o, arn);
	o += bsp_strlcpy(o, "&RoleSessionName=", len - (size_t)(o - body));
	o += awscred_urlenc(o, session);
	o += bsp_strlcpy(o, "&WebIdentityToken=", len - (size_t)(o - body));
	o += awscred_urlenc(o, tok);
	*o = '\0';
	awscred.phase = AWSCRED_PH_STS;
	rc = awscred_http_start("POST", hc_target_path(awscred.target), h,
	    nitems(h), body, (size_t)(o - body), 5000, 30000, cause);
	freezero(body, len);
	freezero_str(tok);
	free(gen);
	return (rc);
}

static enum awscred_rc
awscred_src_webid(struct aws_creds **out, char **cause)
{
	const char	*tf = awscred_env("AWS_WEB_IDENTITY_TOKEN_FILE");
	const char	*arn = awscred_env("AWS_ROLE_ARN");

	awscred_set_label("web identity");
	if (tf == NULL)
		return (AWSCRED_SKIP);
	if (arn == NULL) {
		xasprintf(cause, "AWS_WEB_IDENTITY_TOKEN_FILE is set but "
		    "AWS_ROLE_ARN is not");
		return (AWSCRED_FAIL);
	}
	return (awscred_sts_start(tf, arn, awscred_env("AWS_ROLE_SESSION_NAME"),
	    cause));
}

/* AWS_CONTAINER_CREDENTIALS_FULL_URI: https, or http to a known host. */
static int
awscred_container_url_ok(const char *url)
{
	static const char *const hosts[] = {
		"169.254.170.2", "169.254.170.23", "[fd00:ec2::23]"
	};
	const char	*h, *e;
	char		 host[256];
	size_t		 i, len;

	if (strncasecmp(url, "https://", 8) == 0)
		return (1);
	if (strncasecmp(url, "http://", 7) != 0)
		return (0);
	h = url + 7;
	len = strcspn(h, "/?#");
	if (*h == '[') {
		if ((e = memchr(h, ']', len)) == NULL)
			return (0);
		len = (size_t)(e - h) + 1;
	} else if ((e = memchr(h, ':', len)) != NULL)
		len = (size_t)(e - h);
	if (len == 0 || len >= sizeof host)
		return (0);
	memcpy(host, h, len);
	host[len] = '\0';
	for (i = 0; i < nitems(hosts); i++) {
		if (strcasecmp(host, hosts[i]) == 0)
			return (1);
	}
	return (url_is_loopback_host(host));
}

static enum awscred_rc
awscred_src_container(struct aws_creds **out, char **cause)
{
	const char	*rel, *full, *tf, *tokenv;
	char		*url = NULL, *tok = NULL;
	struct hc_header h[2];
	size_t		 nh = 0;
	enum awscred_rc	 rc;

	awscred_set_label("container");
	rel = awscred_env("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI");
	full = awscred_env("AWS_CONTAINER_CREDENTIALS_FULL_URI");
	if (rel == NULL && full == NULL)
		return (AWSCRED_SKIP);
	if (rel != NULL) {
		if (*rel != '/') {
			xasprintf(cause, "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI "
			    "must start with /");
			return (AWSCRED_FAIL);
		}
		xasprintf(&url, "%s%s", AWSCRED_ECS_HOST, rel);
	} else {
		if (!awscred_container_url_ok(full)) {
			xasprintf(cause, "AWS_CONTAINER_CREDENTIALS_FULL_URI "
			    "must be https, or http to a loopback address, "
			    "169.254.170.2, 169.254.170.23 or [fd00:ec2::23]");
			return (AWSCRED_FAIL);
		}
		url = xstrdup(full);
	}
	if ((tf = awscred_env("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE")) !=
	    NULL) {
		if ((tok = awscred_read_token(tf, "container authorization "
		    "token file", cause)) == NULL) {
			free(url);
			return (AWSCRED_FAIL);
		}
	} else if ((tokenv = awscred_env("AWS_CONTAINER_AUTHORIZATION_TOKEN")) !=
	    NULL)
		tok = xstrdup(tokenv);
	if (tok != NULL && strpbrk(tok, "\r\n") != NULL) {
		xasprintf(cause, "the container authorization token has a "
		    "line break");
		freezero_str(tok);
		free(url);
		return (AWSCRED_FAIL);
	}
	rc = awscred_target(url, cause);
	free(url);
	if (rc == AWSCRED_FAIL) {
		freezero_str(tok);
		return (rc);
	}
	h[nh].name = "Accept";
	h[nh++].value = "application/json";
	if (tok != NULL) {
		h[nh].name = "Authorization";
		h[nh++].value = tok;
	}
	awscred.phase = AWSCRED_PH_CONTAINER;
	rc = awscred_http_start("GET", hc_target_path(awscred.target), h, nh,
	    NULL, 0, 2000, 5000, cause);
	freezero_str(tok);
	return (rc);
}

static int
awscred_env_true(const char *name)
{
	const char	*v = awscred_env(name);

	return (v != NULL && strcasecmp(v, "true") == 0);
}

static enum awscred_rc
awscred_imds_token(char **cause)
{
	static const struct hc_header h[] = {
		{ "X-aws-ec2-metadata-token-ttl-seconds", AWSCRED_IMDS_TTL },
	};

	awscred.phase = AWSCRED_PH_IMDS_TOKEN;
	return (awscred_http_start("PUT", "/latest/api/token", h, nitems(h),
	    NULL, 0, 1000, 3000, cause));
}

static enum awscred_rc
awscred_imds_get(enum awscred_phase phase, const char *path, char **cause)
{
	struct hc_header	h[1];
	size_t			nh = 0;

	if (awscred.imds_token != NULL) {
		h[nh].name = "X-aws-ec2-metadata-token";
		h[nh++].value = awscred.imds_token;
	}
	awscred.phase = phase;
	return (awscred_http_start("GET", path, h, nh, NULL, 0, 1000, 3000,
	    cause));
}

static enum awscred_rc
awscred_src_imds(struct aws_creds **out, char **cause)
{
	const char	*ep, *mode;
	char		*url;
	size_t		 len;
	enum awscred_rc	 rc;

	awscred_set_label("imds");
	if (awscred_env_true("AWS_EC2_METADATA_DISABLED"))
		return (AWSCRED_SKIP);
	if ((ep = awscred_env("AWS_EC2_METADATA_SERVICE_ENDPOINT")) == NULL) {
		mode = awscred_env("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE");
		ep = (mode != NULL && strcasecmp(mode, "IPv6") == 0) ?
		    AWSCRED_IMDS_ENDPOINT6 : AWSCRED_IMDS_ENDPOINT;
	}
	url = xstrdup(ep);
	len = strlen(url);
	while (len > 0 && url[len - 1] == '/')
		url[--len] = '\0';
	rc = awscred_target(url, cause);
	free(url);
	if (rc == AWSCRED_FAIL)
		return (rc);
	freezero_str(awscred.imds_token);
	awscred.imds_token = NULL;
	return (awscred_imds_token(cause));
}

/* The body as a string (it may hold secrets: wipe it after use). */
static char *
awscred_body(const struct hc_result *res, size_t *len)
{
	unsigned char	*p;

	*len = res->body != NULL ? evbuffer_get_length(res->body) : 0;
	if (*len == 0)
		return (xstrdup(""));
	p = evbuffer_pullup(res->body, -1);
	return (xmemdup0(p, *len));
}

static void
awscred_body_wipe(const struct hc_result *res)
{
	size_t		 len;
	unsigned char	*p;

	if (res->body == NULL || (len = evbuffer_get_length(res->body)) == 0)
		return;
	if ((p = evbuffer_pullup(res->body, -1)) != NULL)
		sodium_memzero(p, len);
}

/* IMDS role list: the first line, checked before it goes in a path. */
static char *
awscred_imds_role(const char *body)
{
	size_t	len = strcspn(body, "\r\n"), i;

	while (len > 0 && isspace((unsigned char)body[len - 1]))
		len--;
	if (len == 0 || len > AWSCRED_MAX_ROLE)
		return (NULL);
	for (i = 0; i < len; i++) {
		if (!isalnum((unsigned char)body[i]) &&
		    strchr("+=,.@_-", body[i]) == NULL)
			return (NULL);
	}
	return (xstrndup(body, len));
}

static void
awscred_http_done(struct hc_req *req, const struct hc_result *res, void *arg)
{
	struct aws_creds	*c = NULL;
	char			*body, *cause = NULL, *cause2 = NULL, *role;
	char			*path;
	size_t			 len;
	enum awscred_phase	 phase = awscred.phase;
	enum awscred_rc		 rc;

	awscred.req = NULL;
	if (res->error != HC_OK) {
		xasprintf(&cause, "%s not reachable: %s%s%s",
		    hc_target_host(awscred.target), hc_error_name(res->error),
		    *res->message != '\0' ? ": " : "", res->message);
		goto fail;
	}
	log_trace(TRACE_UPSTREAM, "aws creds: %s: HTTP %d, %zu bytes",
	    awscred.label, res->status, res->body != NULL ?
	    evbuffer_get_length(res->body) : (size_t)0);
	body = awscred_body(res, &len);
	awscred_body_wipe(res);
	switch (phase) {
	case AWSCRED_PH_IMDS_TOKEN:
		if (res->status == 200) {
			if (len == 0 || len > 4096 || !str_is_printable(body,
			    len)) {
				xasprintf(&cause, "IMDS gave a malformed token");
				break;
			}
			awscred.imds_token = body;
			body = NULL;
		} else if ((res->status == 403 || res->status == 404 ||
		    res->status == 405) &&
		    !awscred_env_true("AWS_EC2_METADATA_V1_DISABLED")) {
			log_trace(TRACE_UPSTREAM, "aws creds: imds: no token "
			    "(HTTP %d); trying IMDSv1", res->status);
		} else {
			xasprintf(&cause, "IMDS token request answered HTTP %d",
			    res->status);
			break;
		}
		if (awscred_imds_get(AWSCRED_PH_IMDS_ROLE, AWSCRED_IMDS_CREDS,
		    &cause) == AWSCRED_FAIL)
			break;
		freezero_str(body);
		return;
	case AWSCRED_PH_IMDS_ROLE:
		if (res->status == 404) {
			xasprintf(&cause, "no IAM role is attached to this "
			    "instance");
			break;
		}
		if (res->status != 200) {
			xasprintf(&cause, "IMDS role list answered HTTP %d",
			    res->status);
			break;
		}
		if ((role = awscred_imds_role(body)) == NULL) {
			xasprintf(&cause, "IMDS gave a malformed role name");
			break;
		}
		log_trace(TRACE_UPSTREAM, "aws creds: imds: role %s", role);
		xasprintf(&path, "%s%s", AWSCRED_IMDS_CREDS, role);
		free(role);
		rc = awscred_imds_get(AWSCRED_PH_IMDS_CREDS, path, &cause);
		free(path);
		if (rc == AWSCRED_FAIL)
			break;
		freezero_str(body);
		return;
	case AWSCRED_PH_IMDS_CREDS:
	case AWSCRED_PH_CONTAINER:
		if (res->status != 200) {
			xasprintf(&cause, "%s answered HTTP %d",
			    phase == AWSCRED_PH_CONTAINER ?
			    "the container endpoint" : "IMDS", res->status);
			break;
		}
		c = awscred_parse_metadata(body, len,
		    phase == AWSCRED_PH_CONTAINER ? "container" : "imds", &cause);
		break;
	case AWSCRED_PH_STS:
		c = awscred_parse_sts(body, len, "web identity", &cause2);
		if (res->status != 200 && c != NULL) {
			aws_creds_unref(c);
			c = NULL;
		}
		if (c == NULL)
			xasprintf(&cause, "%s (HTTP %d)", cause2, res->status);
		free(cause2);
		break;
	default:
		xasprintf(&cause, "internal error: unexpected answer");
		break;
	}
	freezero_str(body);
fail:
	awscred.phase = AWSCRED_PH_NONE;
	awscred_source_done(c, cause);
	free(cause);
}

static void
awscred_proc_done(struct aws_creds *c, const char *cause, void *arg)
{
	awscred.proc = NULL;
	awscred.phase = AWSCRED_PH_NONE;
	awscred_source_done(c, cause);
}

/* ------------------------------------------------------------------ */
/* The chain. */

static void
awscred_enter_state(enum awscred_state s)
{
	if (awscred.state != s)
		log_trace(TRACE_UPSTREAM, "aws creds: %s -> %s",
		    awscred_state_names[awscred.state],
		    awscred_state_names[s]);
	awscred.state = s;
}

static void
awscred_timer_set(long secs)
{
	struct timeval	tv;

	tv.tv_sec = secs;
	tv.tv_usec = 0;
	evtimer_del(&awscred.timer_ev);
	evtimer_add(&awscred.timer_ev, &tv);
}

static void
awscred_fetch_cancel(void)
{
	if (awscred.req != NULL) {
		hc_cancel(awscred.req);
		awscred.req = NULL;
	}
	if (awscred.proc != NULL) {
		awscred_process_cancel(awscred.proc);
		awscred.proc = NULL;
	}
	hc_target_free(awscred.target);
	awscred.target = NULL;
	freezero_str(awscred.imds_token);
	awscred.imds_token = NULL;
	awscred.phase = AWSCRED_PH_NONE;
}

/* Add "label: cause" to the reasons of this run. */
static void
awscred_note(const char *cause)
{
	const char	*label;
	char		*n;

	if (cause == NULL)
		return;
	label = awscred.label != NULL ? awscred.label :
	    awscred_sources[awscred.src].name;
	log_trace(TRACE_UPSTREAM, "aws creds: %s: %s", label, cause);
	if (awscred.why != NULL && strlen(awscred.why) > AWSCRED_WHY_MAX)
		return;
	xasprintf(&n, "%s%s%s", awscred.tried != NULL ? awscred.tried : "",
	    awscred.tried != NULL ? ", " : "", label);
	free(awscred.tried);
	awscred.tried = n;
	xasprintf(&n, "%s%s%s: %s", awscred.why != NULL ? awscred.why : "",
	    awscred.why != NULL ? "; " : "", label, cause);
	free(awscred.why);
	awscred.why = n;
}

/* Run done: settle every waiter, wake them on a later loop pass. */
static void
awscred_wake_waiters(void)
{
	struct awscred_waiter	*w;
	int			 any = 0;

	TAILQ_FOREACH(w, &awscred.waiters, entry) {
		if (w->done)
			continue;
		w->done = 1;
		w->ok = awscred_usable(awscred.cur) && (w->bad == NULL ||
		    !awscred_same_keys(awscred.cur, w->bad));
		any = 1;
	}
	if (any)
		event_active(&awscred.kick_ev, EV_TIMEOUT, 1);
}

static void
awscred_kick_cb(evutil_socket_t fd, short events, void *arg)
{
	struct awscred_waiter	*w;
	void			(*cb)(void *, int);
	void			*cbarg;
	int			 ok;

	for (;;) {
		TAILQ_FOREACH(w, &awscred.waiters, entry) {
			if (w->done)
				break;
		}
		if (w == NULL)
			break;
		TAILQ_REMOVE(&awscred.waiters, w, entry);
		cb = w->cb;
		cbarg = w->arg;
		ok = w->ok;
		aws_creds_unref(w->bad);
		free(w);
		cb(cbarg, ok);
	}
}

/* The full text (logs, 503 answers) and a short one (/health/ready). */
static void
awscred_set_problem(char *p, char *detail)
{
	free(awscred.problem);
	awscred.problem = p;
	free(awscred.detail);
	awscred.detail = detail;
	free(awscred.why);
	awscred.why = NULL;
	free(awscred.tried);
	awscred.tried = NULL;
}

/* Log a failure as a warning once, then quietly while it stays the same. */
static void
awscred_log_problem(long retry)
{
	if (awscred.logged != NULL &&
	    strcmp(awscred.logged, awscred.problem) == 0) {
		log_debug("%s; retrying in %ld s", awscred.problem, retry);
		return;
	}
	log_warnx("%s; retrying in %ld s", awscred.problem, retry);
	free(awscred.logged);
	awscred.logged = xstrdup(awscred.problem);
}

static long
awscred_next_backoff(void)
{
	if (awscred.backoff == 0)
		awscred.backoff = AWSCRED_BACKOFF_MIN;
	else if ((awscred.backoff *= 2) > AWSCRED_BACKOFF_MAX)
		awscred.backoff = AWSCRED_BACKOFF_MAX;
	return (awscred.backoff);
}

static void
awscred_publish(struct aws_creds *c)
{
	struct aws_creds	*old = awscred.cur;
	char			 mask[64], exp[32], *cause;
	time_t			 now = now_wall(), rem;
	long			 delay;
	int			 same;

	if (c->expiration != 0 && c->expiration <= now) {
		time_iso8601(c->expiration, exp, sizeof exp);
		aws_creds_unref(c);
		xasprintf(&cause, "the credentials had already expired (%s)",
		    exp);
		awscred_source_done(NULL, cause);
		free(cause);
		return;
	}
	same = (old != NULL && awscred_same_keys(old, c));
	if (same && old->expiration == c->expiration &&
	    strcmp(old->source, c->source) == 0)
		aws_creds_unref(c);
	else {
		awscred.cur = c;
		aws_creds_unref(old);
	}
	if (!same)
		awscred.noop_creds = NULL;
	else if (awscred.forced) {
		awscred.noop_creds = awscred.cur;
		awscred.noop_at = now_mono();
	}
	awscred.cur_src = awscred.src;
	awscred.backoff = 0;
	awscred.reset_on_fail = 0;
	awscred.forced = 0;
	awscred_set_problem(NULL, NULL);
	free(awscred.logged);
	awscred.logged = NULL;
	c = awscred.cur;
	if (c->expiration != 0)
		time_iso8601(c->expiration, exp, sizeof exp);
	else
		bsp_strlcpy(exp, "never", sizeof exp);
	if (!same)
		log_info("AWS credentials from %s: access key %s, expires %s",
		    c->source, log_mask(c->access_key_id, mask, sizeof mask),
		    exp);
	else
		log_debug("AWS credentials from %s unchanged, expire %s",
		    c->source, exp);
	awscred_wake_waiters();
	if (c->expiration == 0) {
		awscred_enter_state(AWSCRED_S_IDLE);
		return;
	}
	rem = c->expiration - now;
	delay = rem > 2 * AWSCRED_REFRESH_BEFORE ?
	    (long)(rem - AWSCRED_REFRESH_BEFORE) : (long)(rem / 2);
	if (delay < 1)
		delay = 1;
	log_trace(TRACE_UPSTREAM, "aws creds: refresh in %ld s", delay);
	awscred_enter_state(AWSCRED_S_WAIT_REFRESH);
	awscred_timer_set(delay);
}

/* The whole chain found nothing. */
static void
awscred_chain_failed(void)
{
	char	*p, *d;
	long	 retry;

	if (awscred.reset_on_fail && awscred.cur != NULL) {
		log_warnx("AWS credentials from %s dropped: the aws settings "
		    "changed", awscred.cur->source);
		aws_creds_unref(awscred.cur);
		awscred.cur = NULL;
		awscred.noop_creds = NULL;
	}
	awscred.reset_on_fail = 0;
	awscred.forced = 0;
	xasprintf(&p, "no usable AWS credentials (%s); set aws.access_key_id "
	    "and aws.secret_access_key, AWS_ACCESS_KEY_ID and "
	    "AWS_SECRET_ACCESS_KEY, or aws.profile, or run with an IAM role "
	    "(web identity, ECS/EKS container, EC2 instance profile)",
	    awscred.why != NULL ? awscred.why : "no source is configured");
	if (awscred.tried != NULL)
		xasprintf(&d, "no usable AWS credentials (failed: %s)",
		    awscred.tried);
	else
		d = xstrdup("no AWS credentials configured");
	awscred_set_problem(p, d);
	awscred_wake_waiters();
	retry = awscred_next_backoff();
	awscred_log_problem(retry);
	awscred_enter_state(AWSCRED_S_WAIT_RETRY);
	awscred_timer_set(retry);
}

/* Asking the current source again failed. */
static void
awscred_refresh_failed(void)
{
	char	*p, *d, exp[32];
	long	 retry, left;

	awscred.forced = 0;
	time_iso8601(awscred.cur->expiration, exp, sizeof exp);
	xasprintf(&p, "refreshing AWS credentials from %s failed (%s); they "
	    "expire %s", awscred.cur->source, awscred.why != NULL ?
	    awscred.why : "?", awscred.cur->expiration != 0 ? exp : "never");
	xasprintf(&d, "refreshing AWS credentials from %s fails",
	    awscred.cur->source);
	awscred_set_problem(p, d);
	awscred_wake_waiters();
	retry = awscred_next_backoff();
	if (awscred.cur->expiration != 0) {
		left = (long)(awscred.cur->expiration - now_wall());
		if (left < retry)
			retry = left < 1 ? 1 : left;
	}
	awscred_log_problem(retry);
	awscred_enter_state(AWSCRED_S_WAIT_RETRY);
	awscred_timer_set(retry);
}

/* Try sources from awscred.src on until one answers or all are done. */
static void
awscred_run(void)
{
	struct aws_creds	*c;
	char			*cause;
	enum awscred_rc		 rc;

	for (;;) {
		if (awscred.src >= AWSCRED_NSOURCES) {
			awscred_chain_failed();
			return;
		}
		c = NULL;
		cause = NULL;
		free(awscred.label);
		awscred.label = NULL;
		rc = awscred_sources[awscred.src].start(&c, &cause);
		switch (rc) {
		case AWSCRED_PENDING:
			return;
		case AWSCRED_DONE:
			awscred_fetch_cancel();
			awscred_publish(c);
			return;
		case AWSCRED_SKIP:
			log_trace(TRACE_UPSTREAM, "aws creds: %s: not "
			    "configured", awscred_sources[awscred.src].name);
			if (!awscred.full)
				awscred_note("no longer configured");
			break;
		case AWSCRED_FAIL:
			awscred_fetch_cancel();
			awscred_note(cause);
			free(cause);
			break;
		}
		if (!awscred.full) {
			awscred_refresh_failed();
			return;
		}
		awscred.src++;
	}
}

/* An asynchronous source answered: credentials, or why not. */
static void
awscred_source_done(struct aws_creds *c, const char *cause)
{
	awscred_fetch_cancel();
	if (c != NULL) {
		awscred_publish(c);
		return;
	}
	awscred_note(cause != NULL ? cause : "failed");
	if (!awscred.full) {
		awscred_refresh_failed();
		return;
	}
	awscred.src++;
	awscred_run();
}

/* Ask the current source again, or walk the chain if there is none. */
static void
awscred_refresh_start(int forced)
{
	evtimer_del(&awscred.timer_ev);
	awscred_fetch_cancel();
	free(awscred.why);
	awscred.why = NULL;
	free(awscred.tried);
	awscred.tried = NULL;
	awscred.forced = forced;
	awscred.last_attempt = now_mono();
	if (awscred.cur != NULL && !awscred.reset_on_fail) {
		awscred.full = 0;
		awscred.src = awscred.cur_src;
		awscred_enter_state(AWSCRED_S_REFRESHING);
	} else {
		awscred.full = 1;
		awscred.src = 0;
		awscred_enter_state(AWSCRED_S_RESOLVING);
	}
	awscred_run();
}

static void
awscred_timer_cb(evutil_socket_t fd, short events, void *arg)
{
	char	exp[32];

	if (awscred.cur != NULL && !awscred_usable(awscred.cur)) {
		time_iso8601(awscred.cur->expiration, exp, sizeof exp);
		log_warnx("AWS credentials from %s expired at %s",
		    awscred.cur->source, exp);
		aws_creds_unref(awscred.cur);
		awscred.cur = NULL;
		awscred.noop_creds = NULL;
	}
	awscred_refresh_start(0);
}

static void
awscred_settings_clear(struct awscred_settings *s)
{
	free(s->access_key_id);
	freezero_str(s->secret_access_key);
	freezero_str(s->session_token);
	free(s->profile);
	free(s->region);
	memset(s, 0, sizeof *s);
}

static void
awscred_settings_from(struct config *c, struct awscred_settings *s)
{
	memset(s, 0, sizeof *s);
	if (c->aws_access_key_id != NULL)
		s->access_key_id = xstrdup(c->aws_access_key_id);
	if (c->aws_secret_access_key != NULL)
		s->secret_access_key = xstrdup(c->aws_secret_access_key);
	if (c->aws_session_token != NULL)
		s->session_token = xstrdup(c->aws_session_token);
	if (c->aws_profile != NULL && *c->aws_profile != '\0')
		s->profile = xstrdup(c->aws_profile);
	s->region = xstrdup(c->aws_region != NULL ? c->aws_region :
	    "us-east-1");
	s->bearer = (c->aws_bearer_token != NULL);
}

static int
awscred_settings_same(const struct awscred_settings *a,
    const struct awscred_settings *b)
{
	return (awscred_str_same(a->access_key_id, b->access_key_id) &&
	    awscred_str_same(a->secret_access_key, b->secret_access_key) &&
	    awscred_str_same(a->session_token, b->session_token) &&
	    awscred_str_same(a->profile, b->profile) &&
	    awscred_str_same(a->region, b->region) && a->bearer == b->bearer);
}

/* ------------------------------------------------------------------ */
/* Public interface. */

int
aws_creds_init(struct config *c, char **cause)
{
	if (awscred.initialized)
		aws_creds_free();
	memset(&awscred, 0, sizeof awscred);
	TAILQ_INIT(&awscred.waiters);
	evtimer_assign(&awscred.timer_ev, bsp_base, awscred_timer_cb, NULL);
	event_assign(&awscred.kick_ev, bsp_base, -1, 0, awscred_kick_cb,
	    NULL);
	awscred_settings_from(c, &awscred.set);
	awscred.initialized = 1;
	if (awscred.set.bearer) {
		log_debug("aws.bearer_token is set: no SigV4 credentials "
		    "needed");
		return (0);
	}
	awscred_refresh_start(0);
	return (0);
}

int
aws_creds_reload(struct config *c, char **cause)
{
	struct awscred_settings	s;

	if (!awscred.initialized)
		return (aws_creds_init(c, cause));
	awscred_settings_from(c, &s);
	if (awscred_settings_same(&awscred.set, &s)) {
		awscred_settings_clear(&s);
		/* A reload is a good moment to try again. */
		if (awscred.state == AWSCRED_S_WAIT_RETRY)
			awscred_refresh_start(0);
		return (0);
	}
	awscred_settings_clear(&awscred.set);
	awscred.set = s;
	awscred_fetch_cancel();
	evtimer_del(&awscred.timer_ev);
	awscred.backoff = 0;
	if (awscred.set.bearer) {
		aws_creds_unref(awscred.cur);
		awscred.cur = NULL;
		awscred.noop_creds = NULL;
		awscred_set_problem(NULL, NULL);
		awscred_wake_waiters();
		awscred_enter_state(AWSCRED_S_IDLE);
		return (0);
	}
	log_info("aws settings changed: resolving AWS credentials again");
	awscred.reset_on_fail = 1;
	awscred_refresh_start(0);
	return (0);
}

void
aws_creds_free(void)
{
	struct awscred_waiter	*w;

	if (!awscred.initialized)
		return;
	awscred_fetch_cancel();
	awscred_process_reap_all();
	evtimer_del(&awscred.timer_ev);
	event_del(&awscred.kick_ev);
	while ((w = TAILQ_FIRST(&awscred.waiters)) != NULL) {
		TAILQ_REMOVE(&awscred.waiters, w, entry);
		aws_creds_unref(w->bad);
		free(w);
	}
	aws_creds_unref(awscred.cur);
	awscred_settings_clear(&awscred.set);
	free(awscred.problem);
	free(awscred.detail);
	free(awscred.logged);
	free(awscred.why);
	free(awscred.tried);
	free(awscred.label);
	memset(&awscred, 0, sizeof awscred);
}

struct aws_creds *
aws_creds_get(void)
{
	if (!awscred.initialized)
		return (NULL);
	if (!awscred_usable(awscred.cur)) {
		/* Someone needs them now: do not sit out a long backoff. */
		if (awscred.state == AWSCRED_S_WAIT_RETRY &&
		    now_mono() - awscred.last_attempt >= AWSCRED_BACKOFF_MIN)
			awscred_timer_set(0);
		return (NULL);
	}
	awscred.cur->refcnt++;
	return (awscred.cur);
}

/* The detail is short: the reasons (paths, STS messages) go to the log. */
int
aws_creds_ready(const char **detail)
{
	static char	buf[128];

	if (!awscred.initialized) {
		*detail = "AWS credentials are not set up";
		return (0);
	}
	if (awscred.set.bearer || awscred_usable(awscred.cur))
		return (1);
	if (awscred.cur != NULL) {
		snprintf(buf, sizeof buf, "AWS credentials from %s expired",
		    awscred.cur->source);
		*detail = buf;
	} else if (awscred.detail != NULL)
		*detail = awscred.detail;
	else
		*detail = "resolving AWS credentials";
	return (0);
}

const char *
aws_creds_problem(void)
{
	static char	 buf[1536];
	char		 exp[32];

	if (!awscred.initialized)
		return ("AWS credentials are not set up");
	if (awscred.set.bearer)
		return ("aws.bearer_token is used instead of AWS credentials");
	if (awscred.cur != NULL && !awscred_usable(awscred.cur)) {
		time_iso8601(awscred.cur->expiration, exp, sizeof exp);
		snprintf(buf, sizeof buf, "AWS credentials from %s expired at "
		    "%s%s%s", awscred.cur->source, exp,
		    awscred.problem != NULL ? "; " : "",
		    awscred.problem != NULL ? awscred.problem : "");
		return (buf);
	}
	if (awscred.problem != NULL)
		return (awscred.problem);
	if (awscred.cur == NULL)
		return ("AWS credentials are being resolved");
	return (NULL);
}

void
aws_creds_expired(struct aws_creds *c, void (*cb)(void *, int), void *arg)
{
	struct awscred_waiter	*w;

	if (!awscred.initialized)
		return;		/* nothing to wait for; nobody will be called */
	w = xcalloc(1, sizeof *w);
	w->cb = cb;
	w->arg = arg;
	if ((w->bad = c) != NULL)
		c->refcnt++;
	TAILQ_INSERT_TAIL(&awscred.waiters, w, entry);
	if (awscred.set.bearer) {
		w->done = 1;
		event_active(&awscred.kick_ev, EV_TIMEOUT, 1);
		return;
	}
	/* Already replaced: retry with the new ones. */
	if (awscred_usable(awscred.cur) && (c == NULL ||
	    !awscred_same_keys(awscred.cur, c))) {
		w->done = 1;
		w->ok = 1;
		event_active(&awscred.kick_ev, EV_TIMEOUT, 1);
		return;
	}
	if (awscred.state == AWSCRED_S_RESOLVING ||
	    awscred.state == AWSCRED_S_REFRESHING)
		return;		/* joins the run in flight */
	if (awscred.cur != NULL && awscred.noop_creds == awscred.cur &&
	    now_mono() - awscred.noop_at < AWSCRED_NOOP_SECS) {
		w->done = 1;
		event_active(&awscred.kick_ev, EV_TIMEOUT, 1);
		return;
	}
	log_trace(TRACE_UPSTREAM, "aws creds: rejected upstream; refreshing");
	awscred_refresh_start(1);
}

void
aws_creds_cancel_wait(void *arg)
{
	struct awscred_waiter	*w, *next;

	if (!awscred.initialized)
		return;
	for (w = TAILQ_FIRST(&awscred.waiters); w != NULL; w = next) {
		next = TAILQ_NEXT(w, entry);
		if (w->arg != arg)
			continue;
		TAILQ_REMOVE(&awscred.waiters, w, entry);
		aws_creds_unref(w->bad);
		free(w);
	}
}
