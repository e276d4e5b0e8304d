/*
 * fuzz-awscreds.c: libFuzzer target for the AWS credential parsers.
 *
 * Each input is read as a shared credentials file and as a shared config
 * file (profiles "default" and "dev"), as credential_process output, as an
 * IMDS or container answer, as an STS answer, and as an ISO 8601 time.
 * Oracles that abort: parsing a file twice into the same profile changes
 * nothing (later values win); a found profile is reported as found, a
 * missing one sets nothing; values are trimmed single lines (unless the
 * file holds a NUL, which ends a value early); a parser
 * gives credentials or a cause, never both, and the cause is valid UTF-8
 * (it ends up in a JSON error body, where json_pack() refuses anything
 * else); credentials hold only printable ASCII; a time that parses prints
 * and parses back to the same second.
 */

#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "bsp.h"
#include "aws-creds.h"

int		 LLVMFuzzerTestOneInput(const uint8_t *, size_t);
static int	 fz_same(const char *, const char *);
static void	 fz_value(const char *);
static void	 fz_ini(const char *, size_t, int, const char *);
static void	 fz_field(const char *, int);
static void	 fz_creds(struct aws_creds *, char *, const char *);
static void	 fz_time(const char *);
static char	**fz_slot(struct awscred_profile *, size_t);

#define FZ_NSLOTS	11

static char **
fz_slot(struct awscred_profile *p, size_t i)
{
	char	**slots[FZ_NSLOTS] = {
		&p->access_key_id, &p->secret_access_key, &p->session_token,
		&p->credential_process, &p->role_arn,
		&p->web_identity_token_file, &p->role_session_name,
		&p->source_profile, &p->credential_source, &p->sso, &p->region
	};

	return (slots[i]);
}

static int
fz_same(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return (a == b);
	return (strcmp(a, b) == 0);
}

/* A value is one trimmed, non-empty line. */
static void
fz_value(const char *v)
{
	size_t	len;

	if (v == NULL)
		return;
	len = strlen(v);
	if (len == 0 || isspace((unsigned char)v[0]) ||
	    isspace((unsigned char)v[len - 1]) || strchr(v, '\n') != NULL)
		abort();
}

static void
fz_ini(const char *buf, size_t len, int config_file, const char *name)
{
	struct awscred_profile	 p, q;
	size_t			 i;
	int			 found;

	memset(&p, 0, sizeof p);
	found = awscred_ini_profile(buf, len, config_file, name, &p);
	if ((found != 0 && found != 1) || p.found != found)
		abort();
	for (i = 0; i < FZ_NSLOTS; i++) {
		if (!found && *fz_slot(&p, i) != NULL)
			abort();
		/* A NUL cuts a value short (see the ini-nul-value seed). */
		if (memchr(buf, '\0', len) == NULL)
			fz_value(*fz_slot(&p, i));
	}
	/* Merging the same file again changes nothing. */
	memset(&q, 0, sizeof q);
	for (i = 0; i < FZ_NSLOTS; i++) {
		if (*fz_slot(&p, i) != NULL)
			*fz_slot(&q, i) = xstrdup(*fz_slot(&p, i));
	}
	q.found = p.found;
	if (awscred_ini_profile(buf, len, config_file, name, &q) != found)
		abort();
	for (i = 0; i < FZ_NSLOTS; i++) {
		if (!fz_same(*fz_slot(&p, i), *fz_slot(&q, i)))
			abort();
	}
	awscred_profile_clear(&q);
	awscred_profile_clear(&p);
	for (i = 0; i < FZ_NSLOTS; i++) {
		if (*fz_slot(&p, i) != NULL)
			abort();
	}
}

/* What goes into a header: printable ASCII, no spaces. */
static void
fz_field(const char *s, int may_be_null)
{
	if (s == NULL) {
		if (!may_be_null)
			abort();
		return;
	}
	if (*s == '\0')
		abort();
	for (; *s != '\0'; s++) {
		if ((unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7f)
			abort();
	}
}

static void
fz_creds(struct aws_creds *c, char *cause, const char *source)
{
	json_t	*j;

	if ((c == NULL) == (cause == NULL))
		abort();
	if (c == NULL) {
		/* server_error_bedrock() puts it in JSON via json_pack(). */
		if ((j = json_string(cause)) == NULL)
			abort();
		json_decref(j);
		free(cause);
		return;
	}
	fz_field(c->access_key_id, 0);
	fz_field(c->secret_access_key, 0);
	fz_field(c->session_token, 1);
	if (c->expiration < 0 || c->refcnt != 1 ||
	    strcmp(c->source, source) != 0)
		abort();
	aws_creds_unref(c);
}

static void
fz_time(const char *s)
{
	time_t	t, t2;
	char	buf[64];

	if (awscred_parse_time(s, &t) == -1)
		return;
	if (t < 0)
		abort();
	if (t >= 253402300800LL)	/* year 10000: not four digits */
		return;
	time_iso8601(t, buf, sizeof buf);
	if (awscred_parse_time(buf, &t2) == -1 || t2 != t)
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char		*buf = (const char *)data;
	struct aws_creds	*c;
	char			*cause, *s;

	if (size > AWSCRED_FILE_MAX)
		return (0);
	fz_ini(buf, size, 0, "default");
	fz_ini(buf, size, 0, "dev");
	fz_ini(buf, size, 1, "default");
	fz_ini(buf, size, 1, "dev");

	cause = NULL;
	c = awscred_parse_process(buf, size, "credential_process", &cause);
	fz_creds(c, cause, "credential_process");
	cause = NULL;
	c = awscred_parse_metadata(buf, size, "imds", &cause);
	fz_creds(c, cause, "imds");
	cause = NULL;
	c = awscred_parse_sts(buf, size, "web identity", &cause);
	fz_creds(c, cause, "web identity");

	s = xmemdup0(data, size);
	fz_time(s);
	free(s);
	return (0);
}
