/*
 * aws-call.h: one SigV4-signed call to an AWS service API (STS, KMS,
 * Secrets Manager) on the loop, for the parts of the daemon that talk to
 * AWS besides the Bedrock relay.
 *
 * The endpoint is AWS_ENDPOINT_URL_<endpoint_env>, else AWS_ENDPOINT_URL,
 * else https://<host_prefix>.<region>.amazonaws.com (".com.cn" for cn-*
 * regions), as the SDKs and the web identity source do. Plain http is
 * allowed only to loopback hosts (the HTTP client's rule).
 *
 * Credentials: the caller's, or (creds NULL) the daemon's chain
 * (aws_creds_get()); a chain that is still resolving is waited for. When
 * AWS says the chain's credentials expired (ExpiredToken, ExpiredToken-
 * Exception, UnrecognizedClientException, InvalidClientTokenId) they are
 * refreshed once and the call is signed and sent again, as the relay does.
 *
 * The callback runs exactly once, always on a later loop pass (never
 * inside aws_call_start()), unless aws_call_cancel() came first. The
 * handle is valid until the callback starts or aws_call_cancel() returns;
 * the result is valid only during the callback. Nothing here logs a
 * secret: the message is the service's own text, or ours, cleaned.
 */

#ifndef AWS_CALL_H
#define AWS_CALL_H

#include <stddef.h>

struct aws_creds;
struct aws_call;

#define AWS_CALL_BODY_MAX	(256 * 1024)	/* answer ceiling */
#define AWS_CALL_TIMEOUT	10000		/* ms, when 0 is given */
#define AWS_CALL_CODE_MAX	128
#define AWS_CALL_MESSAGE_MAX	320

/* What became of a call; stable (aws_call_class_name() gives labels). */
enum aws_call_class {
	AWS_CALL_OK,		/* 2xx */
	AWS_CALL_DENIED,	/* 401/403, AccessDenied, bad or expired
				   credentials, a refused signature */
	AWS_CALL_THROTTLED,	/* 429, Throttling*, TooManyRequests*,
				   RequestLimitExceeded, LimitExceeded* */
	AWS_CALL_CLIENT,	/* other 4xx; a request we could not build */
	AWS_CALL_SERVER,	/* 5xx */
	AWS_CALL_NETWORK,	/* DNS, connect, TLS, timeout, truncation */
	AWS_CALL_NO_CREDS,	/* the chain has no usable credentials */
};

/*
 * The request; everything is copied by aws_call_start().
 *   service	SigV4 signing name: "sts", "kms", "secretsmanager"
 *   endpoint_env	"STS", "KMS", "SECRETS_MANAGER" (AWS_ENDPOINT_URL_X)
 *   host_prefix	"sts", "kms", "secretsmanager"
 *   region	NULL: aws.region
 *   target	X-Amz-Target ("TrentService.Sign") for the JSON 1.1
 *		protocol, NULL for the query protocol
 *   content_type	"application/x-amz-json-1.1",
 *		"application/x-www-form-urlencoded"
 *   timeout_ms	whole exchange (0: AWS_CALL_TIMEOUT)
 *   creds	NULL: the daemon's credential chain
 */
struct aws_call_req {
	const char		*service;
	const char		*endpoint_env;
	const char		*host_prefix;
	const char		*region;
	const char		*target;
	const char		*content_type;
	const void		*body;
	size_t			 len;
	long			 timeout_ms;
	struct aws_creds	*creds;		/* a reference is taken */
};

/*
 *   status	the HTTP status, 0 if no answer arrived
 *   body, len	the answer's body (NUL-terminated; len without the NUL)
 *   code	the AWS error code (from x-amzn-ErrorType, a JSON __type or
 *		code, or an XML <Code>, without namespace or ":..."), "" if
 *		none
 *   message	short, printable, never a secret: the service's message,
 *		or what went wrong here; "" on success
 */
struct aws_call_result {
	enum aws_call_class	 cls;
	int			 status;
	const char		*body;
	size_t			 len;
	const char		*code;
	const char		*message;
};

struct aws_call	*aws_call_start(const struct aws_call_req *,
		     void (*)(const struct aws_call_result *, void *), void *);
void		 aws_call_cancel(struct aws_call *);
const char	*aws_call_class_name(enum aws_call_class);
/* The endpoint URL a call would use (allocated), for messages and tests. */
char		*aws_call_endpoint(const char *, const char *, const char *);
/* The bare error code of x-amzn-ErrorType / __type ("a#B:c" -> "B"). */
size_t		 aws_call_code_clean(const char *, char *, size_t);

#endif /* AWS_CALL_H */
