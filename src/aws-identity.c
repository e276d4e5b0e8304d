/*
 * aws-identity.c: what AWS is told about the caller (GATEWAY-FACTS D).
 *
 * Bedrock request metadata (aws.request_metadata): pairs from the
 * identity, values reduced to the characters Bedrock accepts
 * ([a-zA-Z0-9\s:_@$#=/+,-.], at most 256), merged with the client's own
 * pairs, which may not name an identity key (in any letter case); at most
 * 16 pairs, the header at most 8500 characters. On InvokeModel it is the
 * X-Amzn-Bedrock-Request-Metadata header; on Converse the body's
 * requestMetadata member, spliced into the client's bytes (the rest of the
 * body is sent as it came).
 *
 * STS AssumeRole for a user (aws.per_user_role, aws.credential_roles):
 * RoleSessionName and SourceIdentity from the user's email (else the user
 * id), reduced to [\w+=,.@-] and 2..64 characters (a longer one keeps 55
 * characters and a hash of the whole), session tags from the identity
 * (aws.per_user_role.session_tags) with values reduced to
 * [A-Za-z0-9 _.:/=+-@] and 256 characters, in the query protocol's form.
 */

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "bsp.h"
#include "crypto.h"

#define AWSID_META_PAIRS	16
#define AWSID_META_VALUE	256
#define AWSID_META_HEADER	8500
#define AWSID_TAGS_MAX		50
#define AWSID_TAG_KEY		128
#define AWSID_TAG_VALUE		256
#define AWSID_FIELD_MAX		2048

static const char *const awsid_field_names[] = {
	"user", "email", "provider", "groups", "api_key", "session",
};

/* "KEY=FIELD" or "FIELD": the key and the field's index; -1 if unknown. */
int
awsid_spec_parse(const char *spec, char *key, size_t size, int *field)
{
	const char	*eq = strchr(spec, '=');
	const char	*f = eq != NULL ? eq + 1 : spec;
	size_t		 i, klen = eq != NULL ? (size_t)(eq - spec) :
			    strlen(spec);

	*field = -1;
	for (i = 0; i < nitems(awsid_field_names); i++) {
		if (strcmp(f, awsid_field_names[i]) == 0)
			*field = (int)i;
	}
	if (*field == -1 || klen == 0 || klen >= size)
		return (-1);
	memcpy(key, spec, klen);
	key[klen] = '\0';
	return (0);
}

/* The identity's raw value of a field, or NULL if it has none. */
static const char *
awsid_field_raw(const struct principal *p, int field, const char *session,
    char *buf, size_t size, char sep)
{
	size_t	i, n = 0;

	switch (field) {
	case AWSID_USER:
		return (p->sub);
	case AWSID_EMAIL:
		return (p->email);
	case AWSID_PROVIDER:
		return (p->provider);
	case AWSID_GROUPS:
		if (p->groups.n == 0)
			return (NULL);
		buf[0] = '\0';
		for (i = 0; i < p->groups.n && n + 1 < size; i++) {
			if (i > 0)
				buf[n++] = sep;
			n += bsp_strlcpy(buf + n, p->groups.v[i], size - n);
			if (n >= size)
				n = size - 1;
		}
		buf[n] = '\0';
		return (buf);
	case AWSID_API_KEY:
		return (p->kind == PRINCIPAL_API_KEY ? p->key_name != NULL ?
		    p->key_name : p->key_id : NULL);
	case AWSID_SESSION:
		return (session);
	}
	return (NULL);
}

static int
awsid_meta_char(int c)
{
	return (isalnum(c) || isspace(c) || strchr(":_@$#=/+,-.", c) != NULL);
}

static int
awsid_tag_char(int c)
{
	return (isalnum(c) || c == ' ' || strchr("_.:/=+-@", c) != NULL);
}

static int
awsid_name_char(int c)
{
	return (isalnum(c) || strchr("_+=,.@-", c) != NULL);
}

/* Copy s into buf keeping what ok() accepts, the rest as '_'; max chars. */
static void
awsid_reduce(const char *s, int (*ok)(int), size_t max, char *buf,
    size_t size)
{
	size_t	n = 0;

	for (; *s != '\0' && n < max && n + 1 < size; s++) {
		/* Outside ASCII: one '_' per character, not per byte. */
		if (((unsigned char)*s & 0xc0) == 0x80)
			continue;
		buf[n++] = (unsigned char)*s < 0x80 && ok((unsigned char)*s) ?
		    *s : '_';
	}
	buf[n] = '\0';
}

int
awsid_meta_key_ok(const char *k)
{
	size_t	len = strlen(k), i;

	if (len == 0 || len > 256)
		return (0);
	for (i = 0; i < len; i++) {
		if ((unsigned char)k[i] >= 0x80 ||
		    !awsid_meta_char((unsigned char)k[i]))
			return (0);
	}
	return (1);
}

json_t *
awsid_metadata(const struct config *c, const struct principal *p,
    const char *session)
{
	json_t		*o;
	const char	*raw;
	char		 key[257], buf[AWSID_FIELD_MAX];
	char		 val[AWSID_META_VALUE + 1];
	size_t		 i;
	int		 field;

	o = json_object();
	for (i = 0; i < c->aws_request_metadata.n; i++) {
		if (awsid_spec_parse(c->aws_request_metadata.v[i], key,
		    sizeof key, &field) == -1)
			continue;	/* refused by the configuration check */
		if ((raw = awsid_field_raw(p, field, session, buf, sizeof buf,
		    ',')) == NULL)
			continue;
		awsid_reduce(raw, awsid_meta_char, AWSID_META_VALUE, val,
		    sizeof val);
		json_object_set_new(o, key, json_string(val));
	}
	return (o);
}

/*
 * Merge the client's pairs (a JSON object of strings, or NULL) into ours:
 * a client key equal to one of ours in any case is dropped. Returns the
 * merged object (a new reference), or NULL with *why.
 */
static json_t *
awsid_merge(json_t *ours, json_t *theirs, const char **why)
{
	json_t		*m, *v, *w;
	const char	*k, *k2;

	m = json_deep_copy(ours);
	if (theirs == NULL)
		return (m);
	if (!json_is_object(theirs)) {
		*why = "request metadata must be a JSON object of strings";
		json_decref(m);
		return (NULL);
	}
	json_object_foreach(theirs, k, v) {
		if (!json_is_string(v)) {
			*why = "request metadata values must be strings";
			json_decref(m);
			return (NULL);
		}
		json_object_foreach(ours, k2, w) {
			if (strcasecmp(k, k2) == 0)
				break;
		}
		if (k2 != NULL)
			continue;	/* an identity key: ours stands */
		json_object_set(m, k, v);
	}
	if (json_object_size(m) > AWSID_META_PAIRS) {
		*why = "request metadata has more than 16 pairs with the "
		    "proxy's own";
		json_decref(m);
		return (NULL);
	}
	return (m);
}

char *
awsid_metadata_header(json_t *ours, const char *client, const char **why)
{
	json_t		*theirs = NULL, *m;
	char		*s;

	if (client != NULL && (theirs = json_loads(client,
	    JSON_REJECT_DUPLICATES, NULL)) == NULL) {
		*why = "X-Amzn-Bedrock-Request-Metadata is not a JSON object "
		    "(or repeats a key)";
		return (NULL);
	}
	m = awsid_merge(ours, theirs, why);
	json_decref(theirs);
	if (m == NULL)
		return (NULL);
	s = json_dumps(m, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(m);
	if (s == NULL || strlen(s) > AWSID_META_HEADER) {
		free(s);
		*why = "request metadata is longer than 8500 characters";
		return (NULL);
	}
	return (s);
}

/* Does [s, s+len) hold only whitespace? */
static int
awsid_blank(const char *s, size_t len)
{
	while (len > 0 && isspace((unsigned char)*s)) {
		s++;
		len--;
	}
	return (len == 0);
}

int
awsid_metadata_body(json_t *ours, const uint8_t *body, size_t len,
    uint8_t **out, size_t *outlen, const char **why)
{
	json_t		*doc, *m;
	const char	*b = (const char *)body, *v;
	char		*mtext, *all;
	size_t		 vlen, open, mlen, n;
	int		 rc;

	/* The whole body, once, so that no second member hides. */
	if ((doc = json_loadb(b, len, JSON_REJECT_DUPLICATES, NULL)) ==
	    NULL || !json_is_object(doc)) {
		json_decref(doc);
		*why = "the body is not a JSON object (or repeats a key)";
		return (-1);
	}
	if ((m = awsid_merge(ours, json_object_get(doc, "requestMetadata"),
	    why)) == NULL) {
		json_decref(doc);
		return (-1);
	}
	if ((rc = json_member(b, len, "requestMetadata", &v, &vlen)) == -1) {
		/* Too deep for the splicer: jansson writes the whole body. */
		json_object_set_new(doc, "requestMetadata", m);
		if ((all = json_dumps(doc, JSON_COMPACT | JSON_PRESERVE_ORDER)) ==
		    NULL)
			fatalx("%s: json_dumps", __func__);
		json_decref(doc);
		*outlen = strlen(all);
		*out = (uint8_t *)all;
		return (0);
	}
	json_decref(doc);
	mtext = json_dumps(m, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(m);
	if (mtext == NULL)
		fatalx("%s: json_dumps", __func__);
	mlen = strlen(mtext);
	if (rc == 1) {
		/* Replace the member's value in place. */
		n = (size_t)(v - b);
		*outlen = n + mlen + (len - n - vlen);
		*out = xmalloc(*outlen);
		memcpy(*out, b, n);
		memcpy(*out + n, mtext, mlen);
		memcpy(*out + n + mlen, v + vlen, len - n - vlen);
	} else {
		/* Insert it first, after the opening brace. */
		for (open = 0; open < len && b[open] != '{'; open++)
			;
		open++;
		n = awsid_blank(b + open, len - open - 1) ? 0 : 1;
		*outlen = len + sizeof "\"requestMetadata\":" - 1 + mlen + n;
		*out = xmalloc(*outlen);
		memcpy(*out, b, open);
		memcpy(*out + open, "\"requestMetadata\":",
		    sizeof "\"requestMetadata\":" - 1);
		memcpy(*out + open + sizeof "\"requestMetadata\":" - 1, mtext,
		    mlen);
		if (n)
			(*out)[open + sizeof "\"requestMetadata\":" - 1 +
			    mlen] = ',';
		memcpy(*out + open + sizeof "\"requestMetadata\":" - 1 + mlen +
		    n, b + open, len - open);
	}
	free(mtext);
	return (0);
}

void
awsid_session_name(const struct principal *p, char out[AWSID_NAME_MAX + 1])
{
	const char	*src = p->email != NULL && *p->email != '\0' ?
			    p->email : p->sub != NULL ? p->sub : "";
	uint8_t		 h[CRYPTO_HASH_LEN];
	char		 full[AWSID_FIELD_MAX];

	awsid_reduce(src, awsid_name_char, sizeof full - 1, full,
	    sizeof full);
	if (strlen(full) > AWSID_NAME_MAX) {
		/* Two long names that share a beginning stay apart. */
		crypto_sha256(src, strlen(src), h);
		snprintf(out, AWSID_NAME_MAX + 1, "%.55s-%02x%02x%02x%02x",
		    full, h[0], h[1], h[2], h[3]);
	} else
		bsp_strlcpy(out, full, AWSID_NAME_MAX + 1);
	while (strlen(out) < 2)
		bsp_strlcat(out, "_", AWSID_NAME_MAX + 1);
}

/* Append "&name=value" (value form-encoded) to the buffer. */
static void
awsid_form_add(char **form, const char *name, const char *value)
{
	static const char	 hexd[] = "0123456789ABCDEF";
	char			*enc, *o, *n;
	const unsigned char	*s;

	enc = o = xmalloc(strlen(value) * 3 + 1);
	for (s = (const unsigned char *)value; *s != '\0'; s++) {
		if (isalnum(*s) || *s == '-' || *s == '_' || *s == '.' ||
		    *s == '~')
			*o++ = (char)*s;
		else {
			*o++ = '%';
			*o++ = hexd[*s >> 4];
			*o++ = hexd[*s & 15];
		}
	}
	*o = '\0';
	xasprintf(&n, "%s&%s=%s", *form, name, enc);
	free(enc);
	free(*form);
	*form = n;
}

char *
awsid_assume_form(const struct config *c, const struct principal *p,
    const char *role_arn, long long duration, const char *policy)
{
	char		*form, name[AWSID_NAME_MAX + 1], key[AWSID_TAG_KEY + 1];
	char		 buf[AWSID_FIELD_MAX], val[AWSID_TAG_VALUE + 1];
	char		 pname[64], dur[32];
	const char	*raw;
	size_t		 i, ntags = 0;
	int		 field;

	form = xstrdup("Action=AssumeRole&Version=2011-06-15");
	awsid_form_add(&form, "RoleArn", role_arn);
	awsid_session_name(p, name);
	awsid_form_add(&form, "RoleSessionName", name);
	awsid_form_add(&form, "SourceIdentity", name);
	snprintf(dur, sizeof dur, "%lld", duration);
	awsid_form_add(&form, "DurationSeconds", dur);
	if (c->aws_user_role_external_id != NULL)
		awsid_form_add(&form, "ExternalId",
		    c->aws_user_role_external_id);
	if (policy != NULL)
		awsid_form_add(&form, "Policy", policy);
	for (i = 0; i < c->aws_user_role_tags.n && ntags < AWSID_TAGS_MAX;
	    i++) {
		if (awsid_spec_parse(c->aws_user_role_tags.v[i], key,
		    sizeof key, &field) == -1)
			continue;
		if ((raw = awsid_field_raw(p, field, NULL, buf, sizeof buf,
		    ':')) == NULL)
			continue;
		awsid_reduce(raw, awsid_tag_char, AWSID_TAG_VALUE, val,
		    sizeof val);
		ntags++;
		snprintf(pname, sizeof pname, "Tags.member.%zu.Key", ntags);
		awsid_form_add(&form, pname, key);
		snprintf(pname, sizeof pname, "Tags.member.%zu.Value", ntags);
		awsid_form_add(&form, pname, val);
	}
	return (form);
}

static int
awsid_role_arn_ok(const char *arn)
{
	return (arn != NULL && strncmp(arn, "arn:", 4) == 0 &&
	    strstr(arn, ":iam::") != NULL && strstr(arn, ":role/") != NULL &&
	    strlen(arn) >= 20 && strlen(arn) <= 2048 &&
	    str_is_printable(arn, strlen(arn)) && strchr(arn, ' ') == NULL);
}

/* A list of FIELD / KEY=FIELD entries: known fields, good, distinct keys. */
static void
awsid_check_specs(struct config *c, struct config_errors *errs,
    const char *name, const struct strlist *l, size_t max,
    int (*key_ok)(const char *))
{
	char	key[257], key2[257];
	size_t	i, j;
	int	field;

	if (l->n > max)
		config_add_error(errs, c, name, "%s: at most %zu entries",
		    name, max);
	for (i = 0; i < l->n; i++) {
		if (awsid_spec_parse(l->v[i], key, sizeof key, &field) == -1) {
			config_add_error(errs, c, name, "%s: \"%s\" is not "
			    "FIELD or KEY=FIELD with FIELD one of user, email, "
			    "provider, groups, api_key, session", name,
			    l->v[i]);
			continue;
		}
		if (!key_ok(key))
			config_add_error(errs, c, name, "%s: \"%s\" is not a "
			    "key AWS accepts", name, key);
		for (j = 0; j < i; j++) {
			if (awsid_spec_parse(l->v[j], key2, sizeof key2,
			    &field) == 0 && strcasecmp(key, key2) == 0)
				config_add_error(errs, c, name, "%s: the key "
				    "\"%s\" is given twice", name, key);
		}
	}
}

static int
awsid_tag_key_ok(const char *k)
{
	size_t	len = strlen(k), i;

	if (len == 0 || len > AWSID_TAG_KEY || strncasecmp(k, "aws:", 4) == 0)
		return (0);
	for (i = 0; i < len; i++) {
		if ((unsigned char)k[i] >= 0x80 ||
		    !awsid_tag_char((unsigned char)k[i]))
			return (0);
	}
	return (1);
}

void
awsid_config_check(struct config *c, struct config_errors *errs)
{
	struct aws_credential_role	*cr;
	json_t				*j;
	size_t				 i, k;
	int				 field;
	char				 key[257], *where = NULL;

	awsid_check_specs(c, errs, "aws.request_metadata",
	    &c->aws_request_metadata, AWSID_META_PAIRS, awsid_meta_key_ok);
	awsid_check_specs(c, errs, "aws.per_user_role.session_tags",
	    &c->aws_user_role_tags, AWSID_TAGS_MAX, awsid_tag_key_ok);
	for (i = 0; i < c->aws_user_role_tags.n; i++) {
		if (awsid_spec_parse(c->aws_user_role_tags.v[i], key,
		    sizeof key, &field) == 0 && field == AWSID_SESSION)
			config_add_error(errs, c,
			    "aws.per_user_role.session_tags", "aws.per_user_"
			    "role.session_tags: session is per request, not "
			    "per user");
	}
	if (c->aws_user_role_arn != NULL &&
	    !awsid_role_arn_ok(c->aws_user_role_arn))
		config_add_error(errs, c, "aws.per_user_role.role_arn",
		    "aws.per_user_role.role_arn: \"%s\" is not an IAM role ARN "
		    "(arn:aws:iam::ACCOUNT:role/NAME)", c->aws_user_role_arn);
	if (c->aws_user_role_external_id != NULL &&
	    (strlen(c->aws_user_role_external_id) < 2 ||
	    strlen(c->aws_user_role_external_id) > 1224))
		config_add_error(errs, c, "aws.per_user_role.external_id",
		    "aws.per_user_role.external_id: 2 to 1224 characters");
	if ((c->aws_user_role_arn != NULL || c->naws_credential_roles > 0) &&
	    c->aws_bearer_token != NULL)
		config_add_error(errs, c, "aws.bearer_token", "aws.bearer_token "
		    "cannot assume roles: aws.per_user_role and "
		    "aws.credential_roles need AWS credentials");
	for (i = 0; i < c->naws_credential_roles; i++) {
		cr = &c->aws_credential_roles[i];
		free(where);
		xasprintf(&where, "aws.credential_roles.%zu", i);
		if (cr->name == NULL || !config_name_ok(cr->name))
			config_add_error(errs, c, where, "aws.credential_"
			    "roles entry %zu: name is missing or not a name "
			    "(letters, digits, -_.)", i);
		for (k = 0; cr->name != NULL && k < i; k++) {
			if (c->aws_credential_roles[k].name != NULL &&
			    strcmp(c->aws_credential_roles[k].name, cr->name) ==
			    0)
				config_add_error(errs, c, where, "aws."
				    "credential_roles: the name \"%s\" is given "
				    "twice", cr->name);
		}
		if (!awsid_role_arn_ok(cr->role_arn))
			config_add_error(errs, c, where, "aws.credential_"
			    "roles entry %zu: role_arn is missing or not an IAM "
			    "role ARN", i);
		if (cr->groups.n == 0 && cr->emails.n == 0 &&
		    cr->domains.n == 0)
			config_add_error(errs, c, where, "aws.credential_"
			    "roles entry %zu: allow names no groups, emails or "
			    "domains; it would be given to no one", i);
		if (cr->session_policy != NULL) {
			j = json_loads(cr->session_policy, 0, NULL);
			if (!json_is_object(j) ||
			    strlen(cr->session_policy) > 2048)
				config_add_error(errs, c, where, "aws."
				    "credential_roles entry %zu: session_policy "
				    "must be a JSON object of at most 2048 "
				    "characters", i);
			json_decref(j);
		}
	}
	free(where);
}
