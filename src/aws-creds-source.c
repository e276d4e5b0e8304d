/*
 * aws-creds-source.c: the sources of the AWS credential chain, in the
 * order of aws-creds.c's table: aws.* keys, the environment, the shared
 * files (static keys, credential_process, web identity), web identity from
 * the environment (STS AssumeRoleWithWebIdentity), the ECS/EKS container
 * endpoint, and EC2 IMDSv2.
 *
 * A source that is not configured says AWSCRED_SKIP at once; one that
 * needs the network or a child process starts the one fetch in flight and
 * says AWSCRED_PENDING, and the answer goes to the chain through the
 * callback given to awscred_fetch_begin(), on a later loop pass.
 */

#include <sys/types.h>
#include <sys/stat.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>

#include "bsp.h"
#include "aws-creds.h"
#include "aws-creds-local.h"
#include "http-client.h"

#define AWSCRED_IMDS_TTL	"21600"
#define AWSCRED_IMDS_ENDPOINT	"http://169.254.169.254"
#define AWSCRED_IMDS_ENDPOINT6	"http://[fd00:ec2::254]"
#define AWSCRED_IMDS_CREDS	"/latest/meta-data/iam/security-credentials/"
#define AWSCRED_ECS_HOST	"http://169.254.170.2"
#define AWSCRED_STS_VERSION	"2011-06-15"
#define AWSCRED_MAX_ROLE	128

enum awscred_phase {
	AWSCRED_PH_NONE,
	AWSCRED_PH_IMDS_TOKEN,
	AWSCRED_PH_IMDS_ROLE,
	AWSCRED_PH_IMDS_CREDS,
	AWSCRED_PH_CONTAINER,
	AWSCRED_PH_STS,
	AWSCRED_PH_PROCESS,
};

/* The fetch in flight. */
static struct {
	enum awscred_phase	 phase;
	char			*label;		/* "imds", "profile dev", ... */
	struct hc_target	*target;
	struct hc_req		*req;
	struct awscred_proc	*proc;
	char			*imds_token;
	void			(*done)(struct aws_creds *, const char *);
} awscred_fetch;

static enum awscred_rc	awscred_sts_start(const char *, const char *,
			    const char *, const char *, char **);
static void	awscred_http_done(struct hc_req *, const struct hc_result *,
		    void *);
static void	awscred_proc_done(struct aws_creds *, const char *, void *);
static void	awscred_set_label(const char *, ...) printflike(1, 2);

/* ------------------------------------------------------------------ */
/* Small helpers. */

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
/* The sources. */

static void
awscred_set_label(const char *fmt, ...)
{
	va_list	ap;

	free(awscred_fetch.label);
	va_start(ap, fmt);
	xvasprintf(&awscred_fetch.label, fmt, ap);
	va_end(ap);
}

enum awscred_rc
awscred_src_config(const struct awscred_settings *set,
    struct aws_creds **out, char **cause)
{
	char	*cause2 = NULL;

	if (set->access_key_id == NULL)
		return (AWSCRED_SKIP);
	*out = awscred_new(set->access_key_id, set->secret_access_key,
	    set->session_token, 0, "config", &cause2);
	if (*out == NULL) {
		xasprintf(cause, "aws.access_key_id: %s", cause2);
		free(cause2);
		return (AWSCRED_FAIL);
	}
	return (AWSCRED_DONE);
}

enum awscred_rc
awscred_src_env(const struct awscred_settings *set,
    struct aws_creds **out, char **cause)
{
	const char	*akid, *secret, *exps;
	time_t		 exp = 0;
	char		*cause2 = NULL;

	/* A profile chosen explicitly wins over the keys (JS SDK). */
	if (set->profile != NULL || awscred_env("AWS_PROFILE") != NULL)
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

enum awscred_rc
awscred_src_profile(const struct awscred_settings *set,
    struct aws_creds **out, char **cause)
{
	struct awscred_profile	 p;
	const char		*name;
	char			*cpath, *fpath, *src, *cause2 = NULL;
	int			 explicit = 1;
	enum awscred_rc		 rc = AWSCRED_FAIL;

	if ((name = set->profile) == NULL &&
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
		    p.role_session_name, set->region, cause);
	} else if (p.credential_process != NULL) {
		log_trace(TRACE_UPSTREAM, "aws creds: profile %s: running "
		    "credential_process", name);
		awscred_fetch.phase = AWSCRED_PH_PROCESS;
		awscred_fetch.proc = awscred_process_start(p.credential_process,
		    AWSCRED_PROCESS_TIMEOUT, "credential_process",
		    awscred_proc_done, NULL, &cause2);
		if (awscred_fetch.proc == NULL) {
			awscred_fetch.phase = AWSCRED_PH_NONE;
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
	struct hc_timeouts	to;

	to.connect_ms = connect_ms;
	to.first_byte_ms = to.idle_ms = to.total_ms = total_ms;
	hc_request_init(&r, method, path, h, nh, body, len, AWSCRED_BODY_MAX,
	    &to, awscred_http_done, NULL);
	log_trace(TRACE_UPSTREAM, "aws creds: %s: %s %s%s",
	    awscred_fetch.label, method,
	    hc_target_is_tls(awscred_fetch.target) ? "https://" : "http://",
	    hc_target_host(awscred_fetch.target));
	awscred_fetch.req = hc_start(awscred_fetch.target, &r, cause);
	if (awscred_fetch.req == NULL)
		return (AWSCRED_FAIL);
	return (AWSCRED_PENDING);
}

static enum awscred_rc
awscred_target(const char *url, char **cause)
{
	char	*cause2 = NULL;

	hc_target_free(awscred_fetch.target);
	if ((awscred_fetch.target = hc_target_new(url, &cause2)) == NULL) {
		xasprintf(cause, "%s: %s", url, cause2);
		free(cause2);
		return (AWSCRED_FAIL);
	}
	return (AWSCRED_PENDING);
}

/* POST AssumeRoleWithWebIdentity: token file, role, session name. */
static enum awscred_rc
awscred_sts_start(const char *tokfile, const char *arn, const char *session,
    const char *region, char **cause)
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
		xasprintf(&url, "https://sts.%s.%s", region,
		    strncmp(region, "cn-", 3) == 0 ?
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
	awscred_fetch.phase = AWSCRED_PH_STS;
	rc = awscred_http_start("POST", hc_target_path(awscred_fetch.target), h,
	    nitems(h), body, (size_t)(o - body), 5000, 30000, cause);
	freezero(body, len);
	freezero_str(tok);
	free(gen);
	return (rc);
}

enum awscred_rc
awscred_src_webid(const struct awscred_settings *set,
    struct aws_creds **out, char **cause)
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
	    set->region, cause));
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

enum awscred_rc
awscred_src_container(const struct awscred_settings *set,
    struct aws_creds **out, char **cause)
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
	awscred_fetch.phase = AWSCRED_PH_CONTAINER;
	rc = awscred_http_start("GET", hc_target_path(awscred_fetch.target), h,
	    nh, NULL, 0, 2000, 5000, cause);
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

	awscred_fetch.phase = AWSCRED_PH_IMDS_TOKEN;
	return (awscred_http_start("PUT", "/latest/api/token", h, nitems(h),
	    NULL, 0, 1000, 3000, cause));
}

static enum awscred_rc
awscred_imds_get(enum awscred_phase phase, const char *path, char **cause)
{
	struct hc_header	h[1];
	size_t			nh = 0;

	if (awscred_fetch.imds_token != NULL) {
		h[nh].name = "X-aws-ec2-metadata-token";
		h[nh++].value = awscred_fetch.imds_token;
	}
	awscred_fetch.phase = phase;
	return (awscred_http_start("GET", path, h, nh, NULL, 0, 1000, 3000,
	    cause));
}

enum awscred_rc
awscred_src_imds(const struct awscred_settings *set,
    struct aws_creds **out, char **cause)
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
	freezero_str(awscred_fetch.imds_token);
	awscred_fetch.imds_token = NULL;
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
		memzero(p, len);
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

/*
 * IMDS answered the token request: ask for the role with the token, or
 * without one (IMDSv1) where that is allowed. *body is taken as the token.
 */
static enum awscred_rc
awscred_imds_token_done(int status, char **body, size_t len, char **cause)
{
	if (status == 200) {
		if (len == 0 || len > 4096 || !str_is_printable(*body, len)) {
			xasprintf(cause, "IMDS gave a malformed token");
			return (AWSCRED_FAIL);
		}
		awscred_fetch.imds_token = *body;
		*body = NULL;
	} else if ((status == 403 || status == 404 || status == 405) &&
	    !awscred_env_true("AWS_EC2_METADATA_V1_DISABLED")) {
		log_trace(TRACE_UPSTREAM, "aws creds: imds: no token "
		    "(HTTP %d); trying IMDSv1", status);
	} else {
		xasprintf(cause, "IMDS token request answered HTTP %d",
		    status);
		return (AWSCRED_FAIL);
	}
	return (awscred_imds_get(AWSCRED_PH_IMDS_ROLE, AWSCRED_IMDS_CREDS,
	    cause));
}

/* IMDS answered the role list: ask for the first role's credentials. */
static enum awscred_rc
awscred_imds_role_done(int status, const char *body, char **cause)
{
	char		*role, *path;
	enum awscred_rc	 rc;

	if (status == 404) {
		xasprintf(cause, "no IAM role is attached to this instance");
		return (AWSCRED_FAIL);
	}
	if (status != 200) {
		xasprintf(cause, "IMDS role list answered HTTP %d", status);
		return (AWSCRED_FAIL);
	}
	if ((role = awscred_imds_role(body)) == NULL) {
		xasprintf(cause, "IMDS gave a malformed role name");
		return (AWSCRED_FAIL);
	}
	log_trace(TRACE_UPSTREAM, "aws creds: imds: role %s", role);
	xasprintf(&path, "%s%s", AWSCRED_IMDS_CREDS, role);
	free(role);
	rc = awscred_imds_get(AWSCRED_PH_IMDS_CREDS, path, cause);
	free(path);
	return (rc);
}

/*
 * An HTTP answer for the fetch in flight: the next IMDS step, or the
 * credentials (or why not) to the chain.
 */
static void
awscred_http_done(struct hc_req *req, const struct hc_result *res, void *arg)
{
	struct aws_creds	*c = NULL;
	char			*body = NULL, *cause = NULL, *cause2 = NULL;
	size_t			 len;
	enum awscred_phase	 phase = awscred_fetch.phase;
	enum awscred_rc		 rc = AWSCRED_FAIL;

	awscred_fetch.req = NULL;
	if (res->error != HC_OK) {
		xasprintf(&cause, "%s not reachable: %s%s%s",
		    hc_target_host(awscred_fetch.target),
		    hc_error_name(res->error), *res->message != '\0' ? ": " :
		    "", res->message);
		goto out;
	}
	log_trace(TRACE_UPSTREAM, "aws creds: %s: HTTP %d, %zu bytes",
	    awscred_fetch.label, res->status, res->body != NULL ?
	    evbuffer_get_length(res->body) : (size_t)0);
	body = awscred_body(res, &len);
	awscred_body_wipe(res);
	switch (phase) {
	case AWSCRED_PH_IMDS_TOKEN:
		rc = awscred_imds_token_done(res->status, &body, len, &cause);
		break;
	case AWSCRED_PH_IMDS_ROLE:
		rc = awscred_imds_role_done(res->status, body, &cause);
		break;
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
out:
	freezero_str(body);
	if (rc == AWSCRED_PENDING)
		return;		/* the next IMDS step is on its way */
	awscred_fetch.phase = AWSCRED_PH_NONE;
	awscred_fetch.done(c, cause);
	free(cause);
}

static void
awscred_proc_done(struct aws_creds *c, const char *cause, void *arg)
{
	awscred_fetch.proc = NULL;
	awscred_fetch.phase = AWSCRED_PH_NONE;
	awscred_fetch.done(c, cause);
}

/* ------------------------------------------------------------------ */
/* The fetch in flight. */

void
awscred_fetch_begin(void (*done)(struct aws_creds *, const char *))
{
	free(awscred_fetch.label);
	awscred_fetch.label = NULL;
	awscred_fetch.done = done;
}

const char *
awscred_fetch_label(void)
{
	return (awscred_fetch.label);
}

void
awscred_fetch_cancel(void)
{
	if (awscred_fetch.req != NULL) {
		hc_cancel(awscred_fetch.req);
		awscred_fetch.req = NULL;
	}
	if (awscred_fetch.proc != NULL) {
		awscred_process_cancel(awscred_fetch.proc);
		awscred_fetch.proc = NULL;
	}
	hc_target_free(awscred_fetch.target);
	awscred_fetch.target = NULL;
	freezero_str(awscred_fetch.imds_token);
	awscred_fetch.imds_token = NULL;
	awscred_fetch.phase = AWSCRED_PH_NONE;
}


void
awscred_fetch_free(void)
{
	awscred_fetch_cancel();
	free(awscred_fetch.label);
	memset(&awscred_fetch, 0, sizeof awscred_fetch);
}
