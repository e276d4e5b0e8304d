/*
 * kms.c: signing keys held in AWS KMS (jwt.kms_key_id). The private half
 * never leaves KMS: its public half comes from GetPublicKey (DER
 * SubjectPublicKeyInfo) and is kept here per key id, read at start-up and
 * on a reload before the configuration is put in place; signatures come
 * from Sign over a SHA-256 digest (MessageType DIGEST), one call per
 * access token, on the loop with jwt.kms_timeout. Both go through
 * aws-call.c with the daemon's credential chain, to the key ARN's region
 * (else aws.region).
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "bsp.h"
#include "aws-call.h"
#include "crypto.h"

#define KMS_KEYS_MAX	8	/* public keys kept (configured, previous) */
#define KMS_DER_MAX	4096	/* an RSA-4096 SPKI is 550 bytes */

struct kms_pub {
	char		*key_id;	/* as configured */
	char		*arn;		/* what KMS answered */
	char		*spec;		/* KeySpec */
	uint8_t		*der;
	size_t		 len;
	unsigned long	 used;
};

static struct {
	struct kms_pub	 keys[KMS_KEYS_MAX];
	unsigned long	 tick;
} kms;

struct kms_fetch {
	char		*key_id;
	struct aws_call	*call;
	void		(*cb)(int, const char *, void *);
	void		*arg;
};

struct kms_sign {
	struct aws_call	*call;
	char		*key_id;
	void		(*cb)(const uint8_t *, size_t, const char *, void *);
	void		*arg;
};

/* The region of a key ARN (arn:aws:kms:REGION:...), else NULL: aws.region. */
static char *
kms_region(const char *key_id)
{
	const char	*p, *q;

	if (strncmp(key_id, "arn:", 4) != 0)
		return (NULL);
	if ((p = strstr(key_id, ":kms:")) == NULL)
		return (NULL);
	p += 5;
	if ((q = strchr(p, ':')) == NULL || q == p || q - p > 64)
		return (NULL);
	return (xstrndup(p, (size_t)(q - p)));
}

/* Start one call to KMS (TrentService.op) with a JSON body. */
static struct aws_call *
kms_call(const char *op, const char *key_id, json_t *body,
    void (*cb)(const struct aws_call_result *, void *), void *arg)
{
	struct aws_call_req	 r;
	struct aws_call		*ac;
	char			 target[64], *s, *region;

	snprintf(target, sizeof target, "TrentService.%s", op);
	s = json_dumps(body, JSON_COMPACT);
	region = kms_region(key_id);
	memset(&r, 0, sizeof r);
	r.service = "kms";
	r.endpoint_env = "KMS";
	r.host_prefix = "kms";
	r.region = region;
	r.target = target;
	r.content_type = "application/x-amz-json-1.1";
	r.body = s;
	r.len = strlen(s);
	r.timeout_ms = (cfg != NULL ? cfg->jwt_kms_timeout : 5) * 1000;
	ac = aws_call_start(&r, cb, arg);
	free(s);
	free(region);
	return (ac);
}

/* Why a call failed, for a log line or a start-up error (no secret). */
static void
kms_why(const struct aws_call_result *res, char *buf, size_t len)
{
	if (res->code[0] != '\0')
		snprintf(buf, len, "%s (%s%s%s)", aws_call_class_name(res->cls),
		    res->code, res->message[0] != '\0' ? ": " : "",
		    res->message);
	else
		snprintf(buf, len, "%s%s%s", aws_call_class_name(res->cls),
		    res->message[0] != '\0' ? ": " : "", res->message);
}

static struct kms_pub *
kms_find(const char *key_id)
{
	size_t	i;

	for (i = 0; i < KMS_KEYS_MAX; i++) {
		if (kms.keys[i].key_id != NULL &&
		    strcmp(kms.keys[i].key_id, key_id) == 0)
			return (&kms.keys[i]);
	}
	return (NULL);
}

static void
kms_pub_clear(struct kms_pub *k)
{
	free(k->key_id);
	free(k->arn);
	free(k->spec);
	free(k->der);
	memset(k, 0, sizeof *k);
}

/* Keep a public key for key_id, in the least recently used place. */
static void
kms_keep(const char *key_id, const char *arn, const char *spec,
    const uint8_t *der, size_t len)
{
	struct kms_pub	*k;
	size_t		 i;

	if ((k = kms_find(key_id)) == NULL) {
		k = &kms.keys[0];
		for (i = 1; i < KMS_KEYS_MAX; i++) {
			if (kms.keys[i].used < k->used)
				k = &kms.keys[i];
		}
	}
	kms_pub_clear(k);
	k->key_id = xstrdup(key_id);
	k->arn = xstrdup(arn);
	k->spec = xstrdup(spec);
	k->der = xmalloc(len);
	memcpy(k->der, der, len);
	k->len = len;
	k->used = ++kms.tick;
}

static void
kms_fetch_end(struct kms_fetch *f, int rc, const char *cause)
{
	f->cb(rc, cause, f->arg);
	free(f->key_id);
	free(f);
}

static void
kms_fetched(const struct aws_call_result *res, void *arg)
{
	struct kms_fetch	*f = arg;
	json_t			*j = NULL;
	const char		*arn, *spec, *b64, *usage;
	uint8_t			*der = NULL;
	size_t			 len;
	char			 why[512];

	f->call = NULL;
	if (res->cls != AWS_CALL_OK) {
		kms_why(res, why, sizeof why);
		kms_fetch_end(f, -1, why);
		return;
	}
	if ((j = json_loadb(res->body, res->len, 0, NULL)) == NULL ||
	    json_unpack(j, "{s:s,s:s,s:s}", "KeyId", &arn, "KeySpec", &spec,
	    "PublicKey", &b64) == -1) {
		kms_fetch_end(f, -1, "GetPublicKey answered no KeyId, KeySpec "
		    "and PublicKey");
		goto out;
	}
	usage = json_string_value(json_object_get(j, "KeyUsage"));
	if (usage != NULL && strcmp(usage, "SIGN_VERIFY") != 0) {
		snprintf(why, sizeof why, "key %s is for %s, not SIGN_VERIFY",
		    arn, usage);
		kms_fetch_end(f, -1, why);
		goto out;
	}
	der = xmalloc(KMS_DER_MAX);
	if (crypto_b64_decode(b64, strlen(b64), der, KMS_DER_MAX,
	    &len) == -1 || len == 0) {
		kms_fetch_end(f, -1, "GetPublicKey's PublicKey is not base64 "
		    "of at most 4096 bytes");
		goto out;
	}
	kms_keep(f->key_id, arn, spec, der, len);
	kms_fetch_end(f, 0, NULL);
out:
	free(der);
	json_decref(j);
}

/*
 * Read the public key of key_id (GetPublicKey) and keep it: cb(0, NULL,
 * arg), or cb(-1, why, arg); always on a later loop pass, unless
 * kms_fetch_cancel() came first.
 */
struct kms_fetch *
kms_fetch(const char *key_id, void (*cb)(int, const char *, void *),
    void *arg)
{
	struct kms_fetch	*f;
	json_t			*body;

	f = xcalloc(1, sizeof *f);
	f->key_id = xstrdup(key_id);
	f->cb = cb;
	f->arg = arg;
	body = json_pack("{s:s}", "KeyId", key_id);
	f->call = kms_call("GetPublicKey", key_id, body, kms_fetched, f);
	json_decref(body);
	return (f);
}

/* Whoever asked went away: its callback will not run. */
void
kms_fetch_cancel(struct kms_fetch *f)
{
	if (f == NULL)
		return;
	aws_call_cancel(f->call);
	free(f->key_id);
	free(f);
}

/*
 * The kept public key of key_id as a verification key for JWS: ES256 for
 * an ECC_NIST_P256 key, RS256 (PS256 if pss) for RSA_2048 and larger.
 * NULL with *cause if it was not read or cannot sign access tokens;
 * *arn (if not NULL) gets the key's ARN.
 */
struct crypto_key *
kms_public(const char *key_id, int pss, const char **arn, char **cause)
{
	struct crypto_err	 err;
	struct crypto_key	*key;
	struct kms_pub		*k;
	enum crypto_alg		 alg;

	if ((k = kms_find(key_id)) == NULL) {
		xasprintf(cause, "the public key of KMS key %s was not read",
		    key_id);
		return (NULL);
	}
	k->used = ++kms.tick;
	if (strcmp(k->spec, "ECC_NIST_P256") == 0 && !pss)
		alg = CRYPTO_ALG_ES256;
	else if (strncmp(k->spec, "RSA_", 4) == 0)
		alg = pss ? CRYPTO_ALG_PS256 : CRYPTO_ALG_RS256;
	else {
		xasprintf(cause, "KMS key %s is %s; access tokens need "
		    "ECC_NIST_P256 (ES256) or RSA_2048 or larger (RS256, "
		    "PS256)%s", k->arn, k->spec, pss ? " (PS256: an RSA key)" :
		    "");
		return (NULL);
	}
	if ((key = crypto_key_from_spki(alg, k->der, k->len, &err)) == NULL) {
		xasprintf(cause, "KMS key %s: %s", k->arn, err.msg);
		return (NULL);
	}
	if (arn != NULL)
		*arn = k->arn;
	return (key);
}

static const char *
kms_sign_alg(enum crypto_alg alg)
{
	switch (alg) {
	case CRYPTO_ALG_ES256:
		return ("ECDSA_SHA_256");
	case CRYPTO_ALG_RS256:
		return ("RSASSA_PKCS1_V1_5_SHA_256");
	case CRYPTO_ALG_PS256:
		return ("RSASSA_PSS_SHA_256");
	default:
		return (NULL);
	}
}

static void
kms_sign_end(struct kms_sign *s, const uint8_t *sig, size_t len,
    const char *why)
{
	s->cb(sig, len, why, s->arg);
	free(s->key_id);
	free(s);
}

static void
kms_signed(const struct aws_call_result *res, void *arg)
{
	struct kms_sign	*s = arg;
	json_t		*j = NULL;
	const char	*b64;
	uint8_t		 sig[CRYPTO_SIG_MAX];
	size_t		 len;
	char		 why[512];

	s->call = NULL;
	if (res->cls != AWS_CALL_OK) {
		kms_why(res, why, sizeof why);
		log_warnx("kms: Sign with %s failed: %s", s->key_id, why);
		kms_sign_end(s, NULL, 0, why);
		return;
	}
	if ((j = json_loadb(res->body, res->len, 0, NULL)) == NULL ||
	    json_unpack(j, "{s:s}", "Signature", &b64) == -1 ||
	    crypto_b64_decode(b64, strlen(b64), sig, sizeof sig, &len) == -1) {
		log_warnx("kms: Sign with %s: no usable Signature in the "
		    "answer", s->key_id);
		kms_sign_end(s, NULL, 0, "KMS answered no usable signature");
		goto out;
	}
	kms_sign_end(s, sig, len, NULL);
out:
	json_decref(j);
}

/*
 * Sign a SHA-256 digest with key_id for alg: cb(sig, len, NULL, arg) with
 * what KMS answered (ECDSA: DER), or cb(NULL, 0, why, arg); always on a
 * later loop pass unless kms_sign_cancel() came first.
 */
struct kms_sign *
kms_sign(const char *key_id, int alg, const uint8_t *digest,
    void (*cb)(const uint8_t *, size_t, const char *, void *), void *arg)
{
	struct kms_sign	*s;
	json_t		*body;
	char		*b64;

	s = xcalloc(1, sizeof *s);
	s->key_id = xstrdup(key_id);
	s->cb = cb;
	s->arg = arg;
	b64 = crypto_b64_encode_alloc(digest, CRYPTO_HASH_LEN);
	body = json_pack("{s:s,s:s,s:s,s:s}", "KeyId", key_id, "Message", b64,
	    "MessageType", "DIGEST", "SigningAlgorithm", kms_sign_alg(alg) !=
	    NULL ? kms_sign_alg(alg) : "none");
	s->call = kms_call("Sign", key_id, body, kms_signed, s);
	json_decref(body);
	free(b64);
	return (s);
}

/* The caller went away: its callback will not run. */
void
kms_sign_cancel(struct kms_sign *s)
{
	if (s == NULL)
		return;
	aws_call_cancel(s->call);
	free(s->key_id);
	free(s);
}

void
kms_free(void)
{
	size_t	i;

	for (i = 0; i < KMS_KEYS_MAX; i++)
		kms_pub_clear(&kms.keys[i]);
	kms.tick = 0;
}
