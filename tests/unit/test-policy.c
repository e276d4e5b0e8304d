/*
 * test-policy.c: model ids on the way to the rules and to AWS:
 * relay_id_decode() (route-bedrock.c), sigv4_uri_encode() (sigv4.c) and
 * the model rules and API key patterns of policy_model_allowed().
 */

#include <stdlib.h>
#include <string.h>

#include "bsp.h"
#include "sigv4.h"
#include "tap.h"

#define ARN_PROFILE	"arn:aws:bedrock:us-east-1:123456789012:" \
			"inference-profile/us.anthropic.claude-sonnet-4-v1:0"

static const struct {
	const char	*wire;
	const char	*id;		/* NULL: refused */
} ids[] = {
	{ "us.anthropic.claude-sonnet-4-20250514-v1:0",
	  "us.anthropic.claude-sonnet-4-20250514-v1:0" },
	{ "us.anthropic.claude-sonnet-4-20250514-v1%3A0",
	  "us.anthropic.claude-sonnet-4-20250514-v1:0" },
	{ "us.anthropic.claude-sonnet-4-20250514-v1%3a0",
	  "us.anthropic.claude-sonnet-4-20250514-v1:0" },
	{ "arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Ainference-profile"
	  "%2Fus.anthropic.claude-sonnet-4-v1%3A0", ARN_PROFILE },
	{ "arn:aws:bedrock:us-east-1:123456789012:inference-profile"
	  "%2fus.anthropic.claude-sonnet-4-v1:0", ARN_PROFILE },
	{ "%61nthropic%2Eclaude", "anthropic.claude" },
	{ "gr-1", "gr-1" },
	{ "DRAFT", "DRAFT" },
	{ "a.b_c-d", "a.b_c-d" },
	{ "a/b.c/..d/d..", "a/b.c/..d/d.." },
	/* Dot and empty segments, in every spelling. */
	{ "anthropic.claude-3-haiku%2F..%2F..%2Fmodel%2Fmeta.llama3", NULL },
	{ "anthropic.claude-3-haiku%2f%2e%2e%2fmeta.llama3", NULL },
	{ "anthropic.claude-3-haiku%2F%2E%2E", NULL },
	{ "anthropic.claude-3-haiku%2F.", NULL },
	{ ".%2Fanthropic.claude-3-haiku", NULL },
	{ "a%2F.%2Fb", NULL },
	{ "..", NULL },
	{ ".", NULL },
	{ "%2e", NULL },
	{ "%2E%2e", NULL },
	{ "%2Fa", NULL },
	{ "a%2F", NULL },
	{ "a%2F%2Fb", NULL },
	{ "", NULL },
	/* A second level of encoding, and bad encoding. */
	{ "anthropic.claude-3-haiku%252F..%252Fmeta.llama3", NULL },
	{ "a%252e%252e", NULL },
	{ "a%25", NULL },
	{ "a%", NULL },
	{ "a%2", NULL },
	{ "a%ZZ", NULL },
	/* Backslashes, controls, NUL, non-ASCII and other punctuation. */
	{ "a%5C..%5Cb", NULL },
	{ "a\\b", NULL },
	{ "a%00b", NULL },
	{ "a%0Ab", NULL },
	{ "a%7F", NULL },
	{ "a%C3%A9", NULL },
	{ "a%20b", NULL },
	{ "a%2A", NULL },
	{ "a*", NULL },
	{ "a%3Fx=1", NULL },
	{ "a%23b", NULL },
	{ "a%40b", NULL },
	{ "a~b", NULL },
};

static void
test_decode(void)
{
	const char	*why;
	char		*id, *enc, *again;
	size_t		 i;

	for (i = 0; i < nitems(ids); i++) {
		why = NULL;
		id = relay_id_decode(ids[i].wire, strlen(ids[i].wire), 2048,
		    &why);
		if (ids[i].id == NULL) {
			ok(id == NULL && why != NULL, "refused: \"%s\"",
			    ids[i].wire);
			free(id);
			continue;
		}
		is_str(id, ids[i].id, "decoded: \"%s\"", ids[i].wire);
		if (id == NULL)
			continue;
		/* What goes to AWS decodes back to what was checked. */
		enc = sigv4_uri_encode(id, strlen(id));
		ok(enc != NULL && strchr(enc, '/') == NULL &&
		    strchr(enc, ':') == NULL, "encoded as one label: %s", enc);
		again = relay_id_decode(enc, strlen(enc), 2048, &why);
		is_str(again, id, "the encoding decodes back");
		free(again);
		free(enc);
		free(id);
	}

	/* Length: 2048 decoded bytes, whatever the encoding. */
	{
		char	 raw[3 * 2049 + 1];

		memset(raw, 'a', 2048);
		id = relay_id_decode(raw, 2048, 2048, &why);
		ok(id != NULL && strlen(id) == 2048, "2048 bytes");
		free(id);
		ok(relay_id_decode(raw, 2049, 2048, &why) == NULL,
		    "2049 bytes refused");
		for (i = 0; i < 2049; i++)
			memcpy(raw + 3 * i, "%61", 3);
		id = relay_id_decode(raw, 3 * 2048, 2048, &why);
		ok(id != NULL && strlen(id) == 2048, "2048 encoded bytes");
		free(id);
		ok(relay_id_decode(raw, 3 * 2049, 2048, &why) == NULL,
		    "2049 encoded bytes refused");
	}
}

static void
test_encode(void)
{
	char	*s;

	s = sigv4_uri_encode("us.anthropic.claude-sonnet-4-20250514-v1:0", 42);
	is_str(s, "us.anthropic.claude-sonnet-4-20250514-v1%3A0",
	    "':' as %%3A, as the JS SDK sends it");
	free(s);
	s = sigv4_uri_encode(ARN_PROFILE, strlen(ARN_PROFILE));
	is_str(s, "arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3A"
	    "inference-profile%2Fus.anthropic.claude-sonnet-4-v1%3A0",
	    "an ARN's '/' as %%2F");
	free(s);
	s = sigv4_uri_encode("a~b_c-d.e", 9);
	is_str(s, "a~b_c-d.e", "unreserved bytes stay");
	free(s);
	s = sigv4_uri_encode("", 0);
	is_str(s, "", "empty");
	free(s);
	/* The signer encodes the wire path once more (BEDROCK-FACTS 3.2). */
	s = sigv4_canonical_uri("/model/us.anthropic.claude-sonnet-4-20250514-"
	    "v1%3A0/invoke");
	is_str(s, "/model/us.anthropic.claude-sonnet-4-20250514-v1%253A0/"
	    "invoke", "canonical URI of the encoded id");
	free(s);
}

static int
allowed(const struct config *c, const struct principal *p, const char *id)
{
	const char	*why = NULL;
	int		 r;

	r = policy_model_allowed(c, p, id, &why);
	if (!r && why == NULL)
		return (-1);
	return (r);
}

static void
test_rules(void)
{
	struct config		 c;
	struct model_rule	 mr;
	struct principal	 p;

	memset(&c, 0, sizeof c);
	memset(&mr, 0, sizeof mr);
	memset(&p, 0, sizeof p);
	strlist_add(&mr.deny, "*opus*");
	strlist_add(&mr.deny, "meta.*");
	strlist_add(&mr.allow, "us.anthropic.*");
	strlist_add(&mr.allow, "anthropic.claude-3-haiku*");
	c.model_rules = &mr;
	c.nmodel_rules = 1;
	c.models_default = 1;		/* deny */

	is_int(allowed(&c, &p, "us.anthropic.claude-sonnet-4-v1:0"), 1,
	    "allowed");
	is_int(allowed(&c, &p, "us.anthropic.claude-opus-4-v1:0"), 0,
	    "denied");
	is_int(allowed(&c, &p, "us.anthropic.claude-OPUS-4-v1:0"), 0,
	    "denied whatever the case of the id");
	is_int(allowed(&c, &p, "US.ANTHROPIC.CLAUDE-SONNET-4-V1:0"), 1,
	    "allowed whatever the case of the id");
	is_int(allowed(&c, &p, "META.llama3-70b"), 0, "default deny, any case");
	is_int(allowed(&c, &p, "amazon.nova-pro-v1:0"), 0, "default deny");
	is_int(allowed(&c, &p, "anthropic.claude-3-haiku-20240307-v1:0"), 1,
	    "allowed by prefix");

	/* An API key's patterns: the same matching. */
	strlist_add(&p.key_models, "Anthropic.Claude-3-Haiku*");
	is_int(allowed(&c, &p, "anthropic.claude-3-haiku-20240307-v1:0"), 1,
	    "key pattern, any case");
	is_int(allowed(&c, &p, "us.anthropic.claude-sonnet-4-v1:0"), 0,
	    "outside the key's patterns");
	strlist_free(&p.key_models);
	strlist_free(&mr.deny);
	strlist_free(&mr.allow);
}

int
main(void)
{
	test_decode();
	test_encode();
	test_rules();
	return (tap_done());
}
