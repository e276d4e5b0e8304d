/*
 * test-aws-identity.c: what AWS is told about the caller (aws-identity.c):
 * request metadata pairs, reduced to Bedrock's characters and lengths and
 * merged with a client's (identity keys win in any case, duplicates and
 * too many pairs refused); the Converse body splice (replace, insert,
 * fallback); RoleSessionName/SourceIdentity; the AssumeRole form with its
 * session tags.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bsp.h"
#include "tap.h"

static struct config	c;

static struct principal *
alice(void)
{
	struct principal	*p = principal_new(PRINCIPAL_JWT);

	p->sub = xstrdup("local:alice");
	p->email = xstrdup("alice@example.com");
	p->provider = xstrdup("local");
	strlist_add(&p->groups, "dev");
	strlist_add(&p->groups, "ml \"team\"");
	return (p);
}

static int
pattern_ok(const char *v)
{
	for (; *v != '\0'; v++) {
		if (!(((*v >= 'a' && *v <= 'z') || (*v >= 'A' && *v <= 'Z') ||
		    (*v >= '0' && *v <= '9')) || strchr(" :_@$#=/+,-.", *v)))
			return (0);
	}
	return (1);
}

static void
test_metadata(void)
{
	struct principal	*p = alice();
	json_t			*o, *v;
	const char		*why = NULL, *k;
	char			*h, key[64], big[400];
	int			 f, all = 1;

	ok(awsid_spec_parse("user", key, sizeof key, &f) == 0 &&
	    strcmp(key, "user") == 0 && f == AWSID_USER, "spec: FIELD");
	ok(awsid_spec_parse("who=email", key, sizeof key, &f) == 0 &&
	    strcmp(key, "who") == 0 && f == AWSID_EMAIL, "spec: KEY=FIELD");
	ok(awsid_spec_parse("x=nope", key, sizeof key, &f) == -1 &&
	    awsid_spec_parse("=user", key, sizeof key, &f) == -1,
	    "spec: unknown field, empty key");

	strlist_add(&c.aws_request_metadata, "user");
	strlist_add(&c.aws_request_metadata, "groups");
	strlist_add(&c.aws_request_metadata, "session");
	strlist_add(&c.aws_request_metadata, "api_key");
	memset(big, 'x', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	big[3] = '\xc3';	/* one character outside ASCII: one '_' */
	big[4] = '\xa9';
	o = awsid_metadata(&c, p, big);
	ok(json_object_size(o) == 3 && json_object_get(o, "api_key") == NULL,
	    "metadata: absent fields left out");
	ok(strcmp(json_string_value(json_object_get(o, "groups")),
	    "dev,ml _team_") == 0, "metadata: groups joined, reduced");
	ok(json_string_length(json_object_get(o, "session")) == 256 &&
	    strncmp(json_string_value(json_object_get(o, "session")),
	    "xxx_xx", 6) == 0, "metadata: 256 characters, UTF-8 as one '_'");
	json_object_foreach(o, k, v)
		all &= pattern_ok(json_string_value(v));
	ok(all, "metadata: every value in Bedrock's pattern");

	h = awsid_metadata_header(o, "{\"USER\":\"mallory\",\"team\":\"a\"}",
	    &why);
	ok(h != NULL && strstr(h, "mallory") == NULL &&
	    strstr(h, "\"team\":\"a\"") != NULL &&
	    strstr(h, "\"user\":\"local:alice\"") != NULL,
	    "header: identity keys win in any case (%s)", h ? h : why);
	free(h);
	ok(awsid_metadata_header(o, "{\"a\":\"1\",\"a\":\"2\"}", &why) ==
	    NULL, "header: a repeated key is refused");
	ok(awsid_metadata_header(o, "[1]", &why) == NULL &&
	    awsid_metadata_header(o, "{\"a\":1}", &why) == NULL &&
	    awsid_metadata_header(o, "{\"a\"", &why) == NULL,
	    "header: not an object of strings");
	ok(awsid_metadata_header(o, "{\"a1\":\"\",\"a2\":\"\",\"a3\":\"\","
	    "\"a4\":\"\",\"a5\":\"\",\"a6\":\"\",\"a7\":\"\",\"a8\":\"\","
	    "\"a9\":\"\",\"a10\":\"\",\"a11\":\"\",\"a12\":\"\",\"a13\":\"\","
	    "\"a14\":\"\"}", &why) == NULL && strstr(why, "16") != NULL,
	    "header: more than 16 pairs refused");
	json_decref(o);
	strlist_free(&c.aws_request_metadata);
	principal_unref(p);
}

static void
test_body(void)
{
	struct principal	*p = alice();
	json_t			*o;
	uint8_t			*out = NULL;
	size_t			 olen;
	const char		*why, *b;
	char			*s, deep[2048];
	size_t			 i;

	strlist_add(&c.aws_request_metadata, "user");
	o = awsid_metadata(&c, p, NULL);

	b = "{\"a\":1.50,\"requestMetadata\":{\"user\":\"x\",\"k\":\"v\"},"
	    "\"z\":[ 1 , 2 ]}";
	ok(awsid_metadata_body(o, (const uint8_t *)b, strlen(b), &out, &olen,
	    &why) == 0, "body: replaced");
	s = xmemdup0(out, olen);
	ok(strcmp(s, "{\"a\":1.50,\"requestMetadata\":{\"k\":\"v\",\"user\":"
	    "\"local:alice\"},\"z\":[ 1 , 2 ]}") == 0,
	    "body: the rest byte for byte (%s)", s);
	free(s);
	free(out);

	b = " { \"messages\" : [] } ";
	ok(awsid_metadata_body(o, (const uint8_t *)b, strlen(b), &out, &olen,
	    &why) == 0, "body: inserted");
	s = xmemdup0(out, olen);
	ok(strcmp(s, " {\"requestMetadata\":{\"user\":\"local:alice\"}, "
	    "\"messages\" : [] } ") == 0, "body: inserted first (%s)", s);
	free(s);
	free(out);

	b = "{}";
	ok(awsid_metadata_body(o, (const uint8_t *)b, strlen(b), &out, &olen,
	    &why) == 0 && olen == strlen("{\"requestMetadata\":{\"user\":"
	    "\"local:alice\"}}") && memcmp(out, "{\"requestMetadata\":{\"user\":"
	    "\"local:alice\"}}", olen) == 0, "body: into an empty object");
	free(out);

	b = "{\"requestMetadata\":{},\"requestMetadata\":{\"user\":\"m\"}}";
	ok(awsid_metadata_body(o, (const uint8_t *)b, strlen(b), &out, &olen,
	    &why) == -1, "body: a second member is refused");
	b = "[1]";
	ok(awsid_metadata_body(o, (const uint8_t *)b, strlen(b), &out, &olen,
	    &why) == -1, "body: not an object");
	b = "{\"requestMetadata\":\"x\"}";
	ok(awsid_metadata_body(o, (const uint8_t *)b, strlen(b), &out, &olen,
	    &why) == -1, "body: requestMetadata not an object");

	/* Deeper than the splicer reads: jansson writes it whole. */
	s = deep + bsp_strlcpy(deep, "{\"x\":", sizeof deep);
	for (i = 0; i < 300; i++)
		*s++ = '[';
	for (i = 0; i < 300; i++)
		*s++ = ']';
	*s = '\0';
	bsp_strlcat(deep, ",\"requestMetadata\":{\"user\":\"m\"}}",
	    sizeof deep);
	if (awsid_metadata_body(o, (const uint8_t *)deep, strlen(deep), &out,
	    &olen, &why) == 0) {
		s = xmemdup0(out, olen);
		ok(strstr(s, "\"user\":\"local:alice\"") != NULL &&
		    strstr(s, "\"m\"") == NULL, "body: deep, still merged");
		free(s);
		free(out);
	} else
		ok(1, "body: deep, refused by jansson (%s)", why);
	json_decref(o);
	strlist_free(&c.aws_request_metadata);
	principal_unref(p);
}

static void
test_session_name(void)
{
	struct principal	*p = alice();
	char			 n[AWSID_NAME_MAX + 1], n2[AWSID_NAME_MAX + 1];

	awsid_session_name(p, n);
	ok(strcmp(n, "alice@example.com") == 0, "name: the email");
	free(p->email);
	p->email = NULL;
	awsid_session_name(p, n);
	ok(strcmp(n, "local_alice") == 0, "name: else the id, reduced (%s)",
	    n);
	p->email = xstrdup("a-very-long-address-of-someone-who-works-at@"
	    "a-company-with-a-long-domain.example.com");
	awsid_session_name(p, n);
	free(p->email);
	p->email = xstrdup("a-very-long-address-of-someone-who-works-at@"
	    "a-company-with-a-long-domain.example.org");
	awsid_session_name(p, n2);
	ok(strlen(n) == 64 && strlen(n2) == 64 && strcmp(n, n2) != 0 &&
	    strncmp(n, n2, 55) == 0, "name: long ones cut, kept apart (%s)",
	    n);
	free(p->email);
	p->email = xstrdup("j\xc3\xa9r\xc3\xb4me aws:x");
	awsid_session_name(p, n);
	ok(strcmp(n, "j_r_me_aws_x") == 0, "name: [\\w+=,.@-] only (%s)", n);
	free(p->email);
	p->email = xstrdup("x");
	awsid_session_name(p, n);
	ok(strcmp(n, "x_") == 0, "name: at least 2 characters");
	principal_unref(p);
}

static void
test_form(void)
{
	struct principal	*p = alice();
	char			*f;

	strlist_add(&c.aws_user_role_tags, "user");
	strlist_add(&c.aws_user_role_tags, "team=groups");
	strlist_add(&c.aws_user_role_tags, "api_key");
	f = awsid_assume_form(&c, p, "arn:aws:iam::123456789012:role/r", 900,
	    "{\"V\":1}");
	ok(strcmp(f, "Action=AssumeRole&Version=2011-06-15&RoleArn=arn%3Aaws"
	    "%3Aiam%3A%3A123456789012%3Arole%2Fr&RoleSessionName=alice%40"
	    "example.com&SourceIdentity=alice%40example.com&DurationSeconds=900"
	    "&Policy=%7B%22V%22%3A1%7D&Tags.member.1.Key=user&Tags.member.1."
	    "Value=local%3Aalice&Tags.member.2.Key=team&Tags.member.2.Value="
	    "dev%3Aml%20_team_") == 0, "form: %s", f);
	free(f);
	c.aws_user_role_external_id = xstrdup("ext-1");
	f = awsid_assume_form(&c, p, "arn:aws:iam::123456789012:role/r", 3600,
	    NULL);
	ok(strstr(f, "&ExternalId=ext-1") != NULL &&
	    strstr(f, "Policy") == NULL, "form: external id, no policy");
	free(f);
	free(c.aws_user_role_external_id);
	c.aws_user_role_external_id = NULL;
	strlist_free(&c.aws_user_role_tags);
	principal_unref(p);
}

int
main(void)
{
	log_init("test-aws-identity");
	test_metadata();
	test_body();
	test_session_name();
	test_form();
	return (tap_done());
}
