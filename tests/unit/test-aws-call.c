/*
 * test-aws-call.c: signed calls to AWS service APIs (aws-call.c) against an
 * evhttp server on 127.0.0.1 that plays a JSON 1.1 service, a query
 * service and STS AssumeRoleWithWebIdentity (for the credential chain):
 * the endpoint rules, what is sent and signed, every class of answer
 * (error codes from the header, JSON and XML), the chain's credentials
 * waited for and refreshed once when AWS says they expired, timeouts,
 * cancel. The SDK's own signer checks the signatures in the integration
 * tests (tests/integration/aws-sts.test.mjs).
 */

#include <sys/types.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <netinet/in.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "bsp.h"
#include "aws-call.h"
#include "aws-creds.h"
#include "http-client.h"
#include "tap.h"
#include "loop.h"

static char	tmpdir[256];

static struct {
	struct evhttp	*http;
	int		 port;
	int		 posts;		/* to the service */
	int		 sts_posts;	/* to STS (the chain) */
	int		 sts_n;		/* which keys STS hands out */
	char		 auth[1024];
	char		 target[128];
	char		 ctype[128];
	char		 token[128];
	char		 body[1024];
	char		 akids[4][32];	/* the keys each call was signed with */
	/* The answer. */
	int		 status;
	const char	*errtype;	/* x-amzn-ErrorType */
	const char	*answer;
	int		 stall;
	const char	*expired_akid;	/* answer ExpiredToken for these */
} fk;

static void
fake_cb(struct evhttp_request *req, void *arg)
{
	struct evkeyvalq	*h = evhttp_request_get_input_headers(req);
	struct evkeyvalq	*oh = evhttp_request_get_output_headers(req);
	struct evbuffer		*in = evhttp_request_get_input_buffer(req);
	struct evbuffer		*b;
	const char		*v, *uri = evhttp_request_get_uri(req);
	char			 body[2048], exp[32];
	size_t			 n;

	if (strcmp(uri, "/sts/") == 0) {
		fk.sts_posts++;
		fk.sts_n++;
		time_iso8601(time(NULL) + 3600, exp, sizeof exp);
		snprintf(body, sizeof body, "<AssumeRoleWithWebIdentityResponse>"
		    "<AssumeRoleWithWebIdentityResult><Credentials>"
		    "<AccessKeyId>ASIACHAIN%d</AccessKeyId><SecretAccessKey>"
		    "chain-secret-%d</SecretAccessKey><SessionToken>chain-token"
		    "</SessionToken><Expiration>%s</Expiration></Credentials>"
		    "</AssumeRoleWithWebIdentityResult>"
		    "</AssumeRoleWithWebIdentityResponse>", fk.sts_n,
		    fk.sts_n, exp);
		b = evbuffer_new();
		evbuffer_add(b, body, strlen(body));
		evhttp_send_reply(req, 200, "OK", b);
		evbuffer_free(b);
		return;
	}
	fk.posts++;
	snprintf(fk.auth, sizeof fk.auth, "%s",
	    (v = evhttp_find_header(h, "Authorization")) ? v : "");
	snprintf(fk.target, sizeof fk.target, "%s",
	    (v = evhttp_find_header(h, "X-Amz-Target")) ? v : "");
	snprintf(fk.ctype, sizeof fk.ctype, "%s",
	    (v = evhttp_find_header(h, "Content-Type")) ? v : "");
	snprintf(fk.token, sizeof fk.token, "%s",
	    (v = evhttp_find_header(h, "X-Amz-Security-Token")) ? v : "");
	if (fk.posts <= 4 && (v = strstr(fk.auth, "Credential=")) != NULL)
		snprintf(fk.akids[fk.posts - 1], sizeof fk.akids[0], "%.*s",
		    (int)strcspn(v + 11, "/"), v + 11);
	n = evbuffer_get_length(in);
	if (n >= sizeof fk.body)
		n = sizeof fk.body - 1;
	evbuffer_copyout(in, fk.body, n);
	fk.body[n] = '\0';
	if (fk.stall)
		return;		/* never answered; the client times out */
	if (fk.expired_akid != NULL && fk.posts <= 4 &&
	    (strcmp(fk.expired_akid, "*") == 0 ||
	    strcmp(fk.akids[fk.posts - 1], fk.expired_akid) == 0)) {
		evhttp_add_header(oh, "x-amzn-ErrorType",
		    "ExpiredTokenException:http://internal.amazon.com/coral/");
		b = evbuffer_new();
		evbuffer_add_printf(b, "{\"message\":\"The security token "
		    "included in the request is expired\"}");
		evhttp_send_reply(req, 403, "Forbidden", b);
		evbuffer_free(b);
		return;
	}
	if (fk.errtype != NULL)
		evhttp_add_header(oh, "x-amzn-ErrorType", fk.errtype);
	b = evbuffer_new();
	evbuffer_add(b, fk.answer, strlen(fk.answer));
	evhttp_send_reply(req, fk.status, "x", b);
	evbuffer_free(b);
}

static void
fake_start(void)
{
	struct evhttp_bound_socket	*bs;
	struct sockaddr_in		 sin;
	socklen_t			 len = sizeof sin;

	fk.http = evhttp_new(bsp_base);
	evhttp_set_allowed_methods(fk.http, EVHTTP_REQ_POST);
	evhttp_set_gencb(fk.http, fake_cb, NULL);
	if ((bs = evhttp_bind_socket_with_handle(fk.http, "127.0.0.1", 0)) ==
	    NULL)
		fatalx("cannot bind the fake server");
	getsockname(evhttp_bound_socket_get_fd(bs), (struct sockaddr *)&sin,
	    &len);
	fk.port = ntohs(sin.sin_port);
}

static void
fake_reset(int status, const char *errtype, const char *answer)
{
	struct evhttp	*h = fk.http;
	int		 port = fk.port, sts_n = fk.sts_n;

	memset(&fk, 0, sizeof fk);
	fk.http = h;
	fk.port = port;
	fk.sts_n = sts_n;
	fk.status = status;
	fk.errtype = errtype;
	fk.answer = answer;
}

/* One call's outcome. */
static struct {
	int			 done;
	int			 calls;
	enum aws_call_class	 cls;
	int			 status;
	char			 code[AWS_CALL_CODE_MAX];
	char			 message[AWS_CALL_MESSAGE_MAX];
	char			 body[1024];
	size_t			 len;
	int			 nul;
} got;

static void
call_cb(const struct aws_call_result *r, void *arg)
{
	got.done = 1;
	got.calls++;
	got.cls = r->cls;
	got.status = r->status;
	snprintf(got.code, sizeof got.code, "%s", r->code);
	snprintf(got.message, sizeof got.message, "%s", r->message);
	snprintf(got.body, sizeof got.body, "%s", r->body);
	got.len = r->len;
	got.nul = r->body[r->len] == '\0';
}

static struct aws_creds *tcreds;

/* A KMS-like JSON 1.1 call with the test's own credentials. */
static int
call_json(const char *region, long timeout_ms, int started_sync_check)
{
	struct aws_call_req	 r;
	struct aws_call		*ac;
	const char		*body = "{\"KeyId\":\"alias/x\"}";

	memset(&r, 0, sizeof r);
	r.service = "kms";
	r.endpoint_env = "KMS";
	r.host_prefix = "kms";
	r.region = region;
	r.target = "TrentService.GetPublicKey";
	r.content_type = "application/x-amz-json-1.1";
	r.body = body;
	r.len = strlen(body);
	r.timeout_ms = timeout_ms;
	r.creds = tcreds;
	memset(&got, 0, sizeof got);
	ac = aws_call_start(&r, call_cb, NULL);
	if (started_sync_check && got.calls != 0)
		return (-1);
	(void)ac;
	return (run_until(&got.done, 10));
}

static void
test_endpoint(void)
{
	char	*u;

	unsetenv("AWS_ENDPOINT_URL");
	unsetenv("AWS_ENDPOINT_URL_STS");
	u = aws_call_endpoint("STS", "sts", "eu-west-1");
	ok(strcmp(u, "https://sts.eu-west-1.amazonaws.com") == 0,
	    "endpoint: regional (%s)", u);
	free(u);
	u = aws_call_endpoint("STS", "sts", "cn-north-1");
	ok(strcmp(u, "https://sts.cn-north-1.amazonaws.com.cn") == 0,
	    "endpoint: China (%s)", u);
	free(u);
	setenv("AWS_ENDPOINT_URL", "https://all.example", 1);
	u = aws_call_endpoint("STS", "sts", "eu-west-1");
	ok(strcmp(u, "https://all.example") == 0, "endpoint: AWS_ENDPOINT_URL");
	free(u);
	setenv("AWS_ENDPOINT_URL_STS", "https://sts.example", 1);
	u = aws_call_endpoint("STS", "sts", "eu-west-1");
	ok(strcmp(u, "https://sts.example") == 0,
	    "endpoint: AWS_ENDPOINT_URL_STS wins");
	free(u);
	unsetenv("AWS_ENDPOINT_URL");
	unsetenv("AWS_ENDPOINT_URL_STS");
}

static void
test_code_clean(void)
{
	char	buf[64];

	aws_call_code_clean("ValidationException:http://internal.amazon.com/"
	    "coral/com.amazon.bedrock/", buf, sizeof buf);
	ok(strcmp(buf, "ValidationException") == 0, "code: cut at ':'");
	aws_call_code_clean("com.amazonaws.kms#NotFoundException", buf,
	    sizeof buf);
	ok(strcmp(buf, "NotFoundException") == 0, "code: after '#'");
	aws_call_code_clean("a\nb", buf, sizeof buf);
	ok(strchr(buf, '\n') == NULL, "code: control characters escaped");
}

static void
test_json_service(void)
{
	char	url[128];

	snprintf(url, sizeof url, "http://127.0.0.1:%d", fk.port);
	setenv("AWS_ENDPOINT_URL_KMS", url, 1);

	fake_reset(200, NULL, "{\"KeyId\":\"arn:aws:kms:x\"}");
	ok(call_json("eu-west-3", 0, 1) == 0 && got.calls == 1,
	    "json: answered once, never inside aws_call_start()");
	ok(got.cls == AWS_CALL_OK && got.status == 200 &&
	    strcmp(got.body, "{\"KeyId\":\"arn:aws:kms:x\"}") == 0 &&
	    got.nul && got.code[0] == '\0' && got.message[0] == '\0',
	    "json: ok, body NUL-terminated");
	ok(strcmp(fk.target, "TrentService.GetPublicKey") == 0 &&
	    strcmp(fk.ctype, "application/x-amz-json-1.1") == 0 &&
	    strcmp(fk.body, "{\"KeyId\":\"alias/x\"}") == 0 &&
	    strcmp(fk.token, "test-session-token") == 0,
	    "json: target, type, body and session token sent");
	ok(strncmp(fk.auth, "AWS4-HMAC-SHA256 Credential=AKIATESTCALL/", 41) ==
	    0 && strstr(fk.auth, "/eu-west-3/kms/aws4_request") != NULL &&
	    strstr(fk.auth, "SignedHeaders=content-type;host;x-amz-date;"
	    "x-amz-security-token;x-amz-target,") != NULL,
	    "json: signed for kms in the region, target signed (%s)", fk.auth);

	fake_reset(400, NULL, "{\"__type\":\"com.amazonaws.kms#"
	    "NotFoundException\",\"message\":\"Alias x is not found.\"}");
	call_json(NULL, 0, 0);
	ok(got.cls == AWS_CALL_CLIENT && got.status == 400 &&
	    strcmp(got.code, "NotFoundException") == 0 &&
	    strcmp(got.message, "Alias x is not found.") == 0,
	    "json: __type and message (%s: %s)", got.code, got.message);
	ok(strstr(fk.auth, "/us-east-1/kms/") != NULL,
	    "json: region NULL: aws.region, else us-east-1");

	fake_reset(400, "ThrottlingException:http://x/", "{\"message\":\"Rate "
	    "exceeded\"}");
	call_json(NULL, 0, 0);
	ok(got.cls == AWS_CALL_THROTTLED && strcmp(got.code,
	    "ThrottlingException") == 0, "json: x-amzn-ErrorType, throttled");

	fake_reset(400, NULL, "{\"__type\":\"AccessDeniedException\","
	    "\"Message\":\"User is not authorized\"}");
	call_json(NULL, 0, 0);
	ok(got.cls == AWS_CALL_DENIED && strcmp(got.message,
	    "User is not authorized") == 0, "json: access denied");

	fake_reset(503, NULL, "");
	call_json(NULL, 0, 0);
	ok(got.cls == AWS_CALL_SERVER && got.status == 503 &&
	    strcmp(got.message, "HTTP 503") == 0, "json: 503 is server_error");

	fake_reset(429, NULL, "not json");
	call_json(NULL, 0, 0);
	ok(got.cls == AWS_CALL_THROTTLED, "json: 429 is throttled");

	fake_reset(403, NULL, "");
	call_json(NULL, 0, 0);
	ok(got.cls == AWS_CALL_DENIED, "json: bare 403 is denied");

	/* The caller's own (expired) credentials are not refreshed. */
	fake_reset(400, NULL, "{\"__type\":\"ExpiredTokenException\"}");
	call_json(NULL, 0, 0);
	ok(got.cls == AWS_CALL_DENIED && fk.posts == 1,
	    "json: expired caller credentials: denied, not retried");

	fake_reset(200, NULL, "");
	fk.stall = 1;
	call_json(NULL, 300, 0);
	ok(got.cls == AWS_CALL_NETWORK && strstr(got.message, "timeout") !=
	    NULL, "json: a stall is network (%s)", got.message);

	/* Cancel: the callback never runs. */
	{
		struct aws_call_req	 r;
		struct aws_call		*ac;

		fake_reset(200, NULL, "{}");
		memset(&r, 0, sizeof r);
		r.service = "kms";
		r.endpoint_env = "KMS";
		r.host_prefix = "kms";
		r.content_type = "application/x-amz-json-1.1";
		r.creds = tcreds;
		memset(&got, 0, sizeof got);
		ac = aws_call_start(&r, call_cb, NULL);
		aws_call_cancel(ac);
		run_for(0.2);
		ok(got.calls == 0, "cancel: no callback");
	}

	/* A bad endpoint: a client error, still on a later pass. */
	setenv("AWS_ENDPOINT_URL_KMS", "http://kms.example.com", 1);
	fake_reset(200, NULL, "{}");
	ok(call_json(NULL, 0, 1) == 0 && got.cls == AWS_CALL_CLIENT &&
	    fk.posts == 0 && strstr(got.message, "bad endpoint") != NULL,
	    "endpoint: plain http to a remote host refused (%s)",
	    got.message);
	unsetenv("AWS_ENDPOINT_URL_KMS");
}

static void
test_query_service(void)
{
	struct aws_call_req	 r;
	char			 url[128];
	const char		*form = "Action=AssumeRole&Version=2011-06-15";

	snprintf(url, sizeof url, "http://127.0.0.1:%d/", fk.port);
	setenv("AWS_ENDPOINT_URL_STS", url, 1);
	memset(&r, 0, sizeof r);
	r.service = "sts";
	r.endpoint_env = "STS";
	r.host_prefix = "sts";
	r.content_type = "application/x-www-form-urlencoded";
	r.body = form;
	r.len = strlen(form);
	r.creds = tcreds;

	fake_reset(403, NULL, "<ErrorResponse xmlns=\"https://sts.amazonaws."
	    "com/doc/2011-06-15/\"><Error><Type>Sender</Type><Code>"
	    "AccessDenied</Code><Message>User: arn:x is not authorized to "
	    "perform: sts:AssumeRole &amp; more</Message></Error>"
	    "</ErrorResponse>");
	memset(&got, 0, sizeof got);
	aws_call_start(&r, call_cb, NULL);
	run_until(&got.done, 10);
	ok(got.cls == AWS_CALL_DENIED && strcmp(got.code, "AccessDenied") ==
	    0 && strcmp(got.message, "User: arn:x is not authorized to "
	    "perform: sts:AssumeRole & more") == 0,
	    "query: XML Code and Message (%s: %s)", got.code, got.message);
	ok(fk.target[0] == '\0' && strcmp(fk.body, form) == 0 &&
	    strstr(fk.auth, "/sts/aws4_request") != NULL &&
	    strstr(fk.auth, "x-amz-target") == NULL,
	    "query: no X-Amz-Target, signed for sts");
	unsetenv("AWS_ENDPOINT_URL_STS");
}

/* The daemon's chain: waited for while it resolves, refreshed once. */
static void
test_chain(void)
{
	static struct config	 c;
	struct aws_call_req	 r;
	char			 url[128], path[512];
	char			*cause = NULL;
	FILE			*f;

	memset(&r, 0, sizeof r);
	r.service = "kms";
	r.endpoint_env = "KMS";
	r.host_prefix = "kms";
	r.content_type = "application/x-amz-json-1.1";
	r.body = "{}";
	r.len = 2;

	/* No chain at all. */
	fake_reset(200, NULL, "{}");
	snprintf(url, sizeof url, "http://127.0.0.1:%d", fk.port);
	setenv("AWS_ENDPOINT_URL_KMS", url, 1);
	memset(&got, 0, sizeof got);
	aws_call_start(&r, call_cb, NULL);
	ok(got.calls == 0, "chain: no callback inside start");
	run_until(&got.done, 5);
	ok(got.cls == AWS_CALL_NO_CREDS && fk.posts == 0,
	    "chain: not set up: no_credentials (%s)", got.message);

	/* Web identity through the fake STS: resolving when the call starts. */
	snprintf(path, sizeof path, "%s/token", tmpdir);
	if ((f = fopen(path, "w")) == NULL)
		fatal("%s", path);
	fputs("eyJ.token\n", f);
	fclose(f);
	snprintf(path, sizeof path, "%s/nonexistent", tmpdir);
	setenv("AWS_CONFIG_FILE", path, 1);
	setenv("AWS_SHARED_CREDENTIALS_FILE", path, 1);
	setenv("AWS_EC2_METADATA_DISABLED", "true", 1);
	snprintf(path, sizeof path, "%s/token", tmpdir);
	setenv("AWS_WEB_IDENTITY_TOKEN_FILE", path, 1);
	setenv("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/bsp", 1);
	snprintf(url, sizeof url, "http://127.0.0.1:%d/sts/", fk.port);
	setenv("AWS_ENDPOINT_URL_STS", url, 1);
	c.aws_region = xstrdup("us-east-1");
	if (aws_creds_init(&c, &cause) == -1)
		fatalx("aws_creds_init: %s", cause);

	fake_reset(200, NULL, "{\"ok\":1}");
	memset(&got, 0, sizeof got);
	aws_call_start(&r, call_cb, NULL);
	run_until(&got.done, 5);
	ok(got.cls == AWS_CALL_OK && fk.sts_posts == 1 && fk.posts == 1 &&
	    strcmp(fk.akids[0], "ASIACHAIN1") == 0,
	    "chain: waited for while resolving, then signed with its keys "
	    "(%s, %s)", aws_call_class_name(got.cls), got.message);

	/* Expired: refreshed once, signed again with the new keys. */
	fake_reset(200, NULL, "{\"ok\":2}");
	fk.expired_akid = "ASIACHAIN1";
	memset(&got, 0, sizeof got);
	aws_call_start(&r, call_cb, NULL);
	run_until(&got.done, 5);
	ok(got.cls == AWS_CALL_OK && fk.posts == 2 && fk.sts_posts == 1 &&
	    strcmp(fk.akids[0], "ASIACHAIN1") == 0 &&
	    strcmp(fk.akids[1], "ASIACHAIN2") == 0 &&
	    strcmp(got.body, "{\"ok\":2}") == 0,
	    "chain: ExpiredToken refreshes once and retries (%s %s %s)",
	    fk.akids[0], fk.akids[1], got.message);

	/* Still expired after the refresh: AWS's refusal, no third try. */
	fake_reset(200, NULL, "{}");
	fk.expired_akid = "*";
	memset(&got, 0, sizeof got);
	aws_call_start(&r, call_cb, NULL);
	run_until(&got.done, 5);
	ok(got.done && fk.posts == 2 && fk.sts_posts == 1 &&
	    strcmp(fk.akids[1], "ASIACHAIN3") == 0 &&
	    got.cls == AWS_CALL_DENIED &&
	    strcmp(got.code, "ExpiredTokenException") == 0,
	    "chain: a second ExpiredToken is delivered (%d posts, %s)",
	    fk.posts, aws_call_class_name(got.cls));

	aws_creds_free();
	free(c.aws_region);
	unsetenv("AWS_WEB_IDENTITY_TOKEN_FILE");
	unsetenv("AWS_ROLE_ARN");
	unsetenv("AWS_ENDPOINT_URL_STS");
	unsetenv("AWS_ENDPOINT_URL_KMS");
}

int
main(void)
{
	char	*cause = NULL, cmd[300];

	signal(SIGPIPE, SIG_IGN);
	log_init("test-aws-call");
	snprintf(tmpdir, sizeof tmpdir, "%s/bsp-aws-call-XXXXXX",
	    getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/tmp");
	if (mkdtemp(tmpdir) == NULL)
		fatal("mkdtemp");
	bsp_base = event_base_new();
	bsp_dns = evdns_base_new(bsp_base, 0);
	unsetenv("AWS_ENDPOINT_URL");
	if (hc_init(NULL, &cause) == -1)
		fatalx("hc_init: %s", cause);
	fake_start();
	if ((tcreds = awscred_new("AKIATESTCALL", "test-secret",
	    "test-session-token", 0, "test", &cause)) == NULL)
		fatalx("awscred_new: %s", cause);

	test_endpoint();
	test_code_clean();
	test_json_service();
	test_query_service();
	test_chain();

	aws_creds_unref(tcreds);
	hc_shutdown();
	evhttp_free(fk.http);
	run_for(0.05);
	evdns_base_free(bsp_dns, 0);
	event_base_free(bsp_base);
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		diag("could not remove %s", tmpdir);
	return (tap_done());
}
