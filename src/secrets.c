/*
 * secrets.c: the values of the KEY_arn configuration keys, read from AWS
 * Secrets Manager (GetSecretValue) through the daemon's credential chain,
 * all at once, to the ARN's region. "ARN#key" takes one string member of
 * a SecretString that is a JSON object. What fails is named by its key
 * and ARN, never by a value; values are wiped when freed.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "bsp.h"
#include "aws-call.h"

#define SECRETS_VALUE_MAX	65536	/* Secrets Manager's own limit */

struct secrets_one {
	struct secrets_read	*rd;
	char			*name;
	char			*arn;		/* as written */
	char			*id;		/* without "#key" */
	char			*member;	/* the "#key", or NULL */
	char			*value;
	char			*why;
	struct aws_call		*call;
};

struct secrets_read {
	struct secrets_one	*v;
	size_t			 n;
	size_t			 left;
	void			(*cb)(struct config_secret *, size_t,
				    const char *, void *);
	void			*arg;
};

/* The region of a secret's ARN (arn:aws:secretsmanager:REGION:...). */
static char *
secrets_region(const char *arn)
{
	const char	*p, *q;

	if ((p = strstr(arn, ":secretsmanager:")) == NULL)
		return (NULL);
	p += 16;
	if ((q = strchr(p, ':')) == NULL || q == p || q - p > 64)
		return (NULL);
	return (xstrndup(p, (size_t)(q - p)));
}

static void
secrets_free(struct secrets_read *rd)
{
	size_t	i;

	for (i = 0; i < rd->n; i++) {
		aws_call_cancel(rd->v[i].call);
		free(rd->v[i].name);
		free(rd->v[i].arn);
		free(rd->v[i].id);
		free(rd->v[i].member);
		if (rd->v[i].value != NULL)
			freezero_str(rd->v[i].value);
		free(rd->v[i].why);
	}
	free(rd->v);
	free(rd);
}

/* Every answer is in: the values, or the first failure. */
static void
secrets_done(struct secrets_read *rd)
{
	struct config_secret	*out;
	size_t			 i;

	for (i = 0; i < rd->n; i++) {
		if (rd->v[i].why != NULL) {
			rd->cb(NULL, 0, rd->v[i].why, rd->arg);
			secrets_free(rd);
			return;
		}
	}
	out = xcalloc(rd->n > 0 ? rd->n : 1, sizeof *out);
	for (i = 0; i < rd->n; i++) {
		out[i].name = rd->v[i].name;
		out[i].arn = rd->v[i].arn;
		out[i].value = rd->v[i].value;
		rd->v[i].name = rd->v[i].arn = rd->v[i].value = NULL;
	}
	rd->cb(out, rd->n, NULL, rd->arg);
	secrets_free(rd);
}

/* The value of one answer, or o->why. */
static void
secrets_take(struct secrets_one *o, const struct aws_call_result *res)
{
	json_t		*j = NULL, *m;
	const char	*s;

	if (res->cls != AWS_CALL_OK) {
		if (res->code[0] != '\0')
			xasprintf(&o->why, "%s: cannot read secret %s: %s (%s%s"
			    "%s)", o->name, o->arn, aws_call_class_name(
			    res->cls), res->code, res->message[0] != '\0' ?
			    ": " : "", res->message);
		else
			xasprintf(&o->why, "%s: cannot read secret %s: %s%s%s",
			    o->name, o->arn, aws_call_class_name(res->cls),
			    res->message[0] != '\0' ? ": " : "", res->message);
		return;
	}
	if ((j = json_loadb(res->body, res->len, 0, NULL)) == NULL) {
		xasprintf(&o->why, "%s: secret %s: the answer is not JSON",
		    o->name, o->arn);
		return;
	}
	if ((s = json_string_value(json_object_get(j, "SecretString"))) ==
	    NULL) {
		xasprintf(&o->why, "%s: secret %s has no SecretString (a "
		    "binary secret cannot be used)", o->name, o->arn);
		goto out;
	}
	if (o->member != NULL) {
		json_t *inner = json_loads(s, 0, NULL);

		if (!json_is_object(inner) || (m = json_object_get(inner,
		    o->member)) == NULL || !json_is_string(m)) {
			xasprintf(&o->why, "%s: secret %s is not a JSON object "
			    "with a string member \"%s\"", o->name, o->arn,
			    o->member);
			json_decref(inner);
			goto out;
		}
		o->value = xstrdup(json_string_value(m));
		json_decref(inner);
	} else
		o->value = xstrdup(s);
	if (*o->value == '\0' || strlen(o->value) > SECRETS_VALUE_MAX) {
		xasprintf(&o->why, "%s: secret %s is empty or too long",
		    o->name, o->arn);
		freezero_str(o->value);
		o->value = NULL;
	}
out:
	json_decref(j);
}

static void
secrets_answer(const struct aws_call_result *res, void *arg)
{
	struct secrets_one	*o = arg;
	struct secrets_read	*rd = o->rd;

	o->call = NULL;
	secrets_take(o, res);
	if (--rd->left == 0)
		secrets_done(rd);
}

/*
 * Read the secrets of c's KEY_arn keys (it has some): cb(values, n, NULL,
 * arg) (the callback owns them: secrets_values_free), or cb(NULL, 0, why,
 * arg) with the first that failed; always on a later loop pass, unless
 * secrets_cancel() came first. timeout_ms bounds each call.
 */
struct secrets_read *
secrets_read(const struct config *c, long timeout_ms,
    void (*cb)(struct config_secret *, size_t, const char *, void *),
    void *arg)
{
	struct secrets_read	*rd;
	struct secrets_one	*o;
	struct aws_call_req	 r;
	json_t			*body;
	char			*s, *hash, *region;
	size_t			 i;

	if (c->narns == 0)
		fatalx("%s: no KEY_arn keys to read", __func__);
	if (c->narns == 0)
		fatalx("%s: no KEY_arn keys to read", __func__);
	rd = xcalloc(1, sizeof *rd);
	rd->cb = cb;
	rd->arg = arg;
	rd->n = rd->left = c->narns;
	rd->v = xcalloc(rd->n > 0 ? rd->n : 1, sizeof *rd->v);
	for (i = 0; i < rd->n; i++) {
		o = &rd->v[i];
		o->rd = rd;
		o->name = xstrdup(c->arns[i].name);
		o->arn = xstrdup(c->arns[i].arn);
		o->id = xstrdup(o->arn);
		if ((hash = strchr(o->id, '#')) != NULL) {
			*hash = '\0';
			o->member = xstrdup(hash + 1);
		}
	}
	for (i = 0; i < rd->n; i++) {
		o = &rd->v[i];
		body = json_pack("{s:s}", "SecretId", o->id);
		s = json_dumps(body, JSON_COMPACT);
		json_decref(body);
		region = secrets_region(o->id);
		memset(&r, 0, sizeof r);
		r.service = "secretsmanager";
		r.endpoint_env = "SECRETS_MANAGER";
		r.host_prefix = "secretsmanager";
		r.region = region;
		r.target = "secretsmanager.GetSecretValue";
		r.content_type = "application/x-amz-json-1.1";
		r.body = s;
		r.len = strlen(s);
		r.timeout_ms = timeout_ms;
		o->call = aws_call_start(&r, secrets_answer, o);
		free(s);
		free(region);
	}
	return (rd);
}

/* Whoever asked went away: the calls end, the callback will not run. */
void
secrets_cancel(struct secrets_read *rd)
{
	if (rd != NULL)
		secrets_free(rd);
}

void
secrets_values_free(struct config_secret *v, size_t n)
{
	size_t	i;

	for (i = 0; v != NULL && i < n; i++) {
		free(v[i].name);
		free(v[i].arn);
		if (v[i].value != NULL)
			freezero_str(v[i].value);
	}
	free(v);
}
