/*
 * aws-call.c: one SigV4-signed call to an AWS service API on the loop
 * (aws-call.h): the endpoint from the environment or the region, the
 * credentials from the caller or the chain, the signature (sigv4.c), the
 * exchange (http-client.c), and the answer sorted into a class with the
 * service's error code and message.
 *
 * A call is a small state machine: WAIT_CREDS (the chain is resolving)
 * -> SENT -> (WAIT_REFRESH -> SENT, once, when AWS said the chain's
 * credentials expired) -> DONE. Failures found before anything was sent
 * are delivered from a zero timer, so the callback never runs inside
 * aws_call_start().
 */

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <event2/http.h>

#include "bsp.h"
#include "aws-call.h"
#include "aws-creds.h"
#include "http-client.h"
#include "sigv4.h"

enum aws_call_state {
	AWSC_NEW,
	AWSC_WAIT_CREDS,
	AWSC_SENT,
	AWSC_WAIT_REFRESH,
	AWSC_DONE,
};
static const char *const aws_call_state_names[] = {
	"NEW", "WAIT_CREDS", "SENT", "WAIT_REFRESH", "DONE"
};

struct aws_call {
	enum aws_call_state	 state;
	char			*service;
	char			*region;
	char			*target;
	char			*content_type;
	uint8_t			*body;
	size_t			 len;
	long			 timeout_ms;
	struct aws_creds	*creds;		/* a reference */
	int			 chain;		/* creds from the chain */
	int			 attempts;
	struct hc_target	*tgt;
	struct hc_req		*req;
	struct event		 ev;		/* deferred delivery */
	void			(*cb)(const struct aws_call_result *, void *);
	void			*arg;
	/* The answer kept for delivery. */
	enum aws_call_class	 cls;
	int			 status;
	char			*rbody;
	size_t			 rlen;
	char			 code[AWS_CALL_CODE_MAX];
	char			 message[AWS_CALL_MESSAGE_MAX];
};

static void	aws_call_send(struct aws_call *);

static void
aws_call_enter(struct aws_call *ac, enum aws_call_state s)
{
	log_trace(TRACE_UPSTREAM, "aws call %s: %s -> %s", ac->service,
	    aws_call_state_names[ac->state], aws_call_state_names[s]);
	ac->state = s;
}

const char *
aws_call_class_name(enum aws_call_class c)
{
	static const char *const names[] = {
		"ok", "denied", "throttled", "client_error", "server_error",
		"network", "no_credentials",
	};

	if ((size_t)c >= nitems(names))
		return ("unknown");
	return (names[c]);
}

static void
aws_call_free(struct aws_call *ac)
{
	if (ac->req != NULL)
		hc_cancel(ac->req);
	if (ac->state == AWSC_WAIT_CREDS || ac->state == AWSC_WAIT_REFRESH)
		aws_creds_cancel_wait(ac);
	if (event_initialized(&ac->ev))
		event_del(&ac->ev);
	if (ac->creds != NULL)
		aws_creds_unref(ac->creds);
	hc_target_free(ac->tgt);
	free(ac->service);
	free(ac->region);
	free(ac->target);
	free(ac->content_type);
	if (ac->body != NULL)
		freezero(ac->body, ac->len);
	if (ac->rbody != NULL)
		freezero(ac->rbody, ac->rlen + 1);
	free(ac);
}

/* Hand the kept answer to the caller, then free the call. */
static void
aws_call_deliver(struct aws_call *ac)
{
	struct aws_call_result	res;

	aws_call_enter(ac, AWSC_DONE);
	memset(&res, 0, sizeof res);
	res.cls = ac->cls;
	res.status = ac->status;
	res.body = ac->rbody != NULL ? ac->rbody : "";
	res.len = ac->rbody != NULL ? ac->rlen : 0;
	res.code = ac->code;
	res.message = ac->message;
	log_trace(TRACE_UPSTREAM, "aws call %s: %s status %d%s%s",
	    ac->service, aws_call_class_name(ac->cls), ac->status,
	    ac->code[0] != '\0' ? " " : "", ac->code);
	ac->cb(&res, ac->arg);
	aws_call_free(ac);
}

static void
aws_call_deferred_cb(evutil_socket_t fd, short events, void *arg)
{
	aws_call_deliver(arg);
}

/* Fail without an answer from AWS, on a later loop pass. */
static void
aws_call_fail_later(struct aws_call *ac, enum aws_call_class cls,
    const char *fmt, ...)
{
	va_list	ap;

	ac->cls = cls;
	ac->status = 0;
	va_start(ap, fmt);
	vsnprintf(ac->message, sizeof ac->message, fmt, ap);
	va_end(ap);
	aws_call_enter(ac, AWSC_DONE);
	event_active(&ac->ev, EV_TIMEOUT, 1);
}

/* Text from the network made printable and short. */
static void
aws_call_clean(const char *s, size_t len, char *buf, size_t size)
{
	log_escape(s, len, buf, size);
}

size_t
aws_call_code_clean(const char *s, char *buf, size_t size)
{
	const char	*hash;
	size_t		 len;

	len = strcspn(s, ":");
	if ((hash = memchr(s, '#', len)) != NULL) {
		len -= (size_t)(hash + 1 - s);
		s = hash + 1;
	}
	while (len > 0 && isspace((unsigned char)s[len - 1]))
		len--;
	while (len > 0 && isspace((unsigned char)*s)) {
		s++;
		len--;
	}
	aws_call_clean(s, len, buf, size);
	return (strlen(buf));
}

char *
aws_call_endpoint(const char *env, const char *prefix, const char *region)
{
	const char	*ep;
	char		 name[64], *url;

	snprintf(name, sizeof name, "AWS_ENDPOINT_URL_%s", env != NULL ?
	    env : "");
	if (env != NULL && (ep = getenv(name)) != NULL && *ep != '\0')
		return (xstrdup(ep));
	if ((ep = getenv("AWS_ENDPOINT_URL")) != NULL && *ep != '\0')
		return (xstrdup(ep));
	xasprintf(&url, "https://%s.%s.%s", prefix, region,
	    strncmp(region, "cn-", 3) == 0 ? "amazonaws.com.cn" :
	    "amazonaws.com");
	return (url);
}

/* Is this error code AWS saying the credentials expired or are unknown? */
static int
aws_call_code_expired(const char *code)
{
	static const char *const codes[] = {
		"ExpiredToken", "ExpiredTokenException",
		"UnrecognizedClientException", "InvalidClientTokenId",
	};
	size_t	i;

	for (i = 0; i < nitems(codes); i++) {
		if (strcmp(code, codes[i]) == 0)
			return (1);
	}
	return (0);
}

static enum aws_call_class
aws_call_classify(int status, const char *code)
{
	static const char *const denied[] = {
		"AccessDenied", "AccessDeniedException",
		"UnrecognizedClientException", "InvalidClientTokenId",
		"ExpiredToken", "ExpiredTokenException",
		"SignatureDoesNotMatch", "InvalidSignatureException",
		"IncompleteSignature", "MissingAuthenticationToken",
		"NotAuthorized",
	};
	static const char *const throttled[] = {
		"Throttling", "ThrottlingException", "TooManyRequestsException",
		"RequestLimitExceeded", "LimitExceededException",
		"RequestThrottled", "RequestThrottledException",
		"SlowDown",
	};
	size_t	i;

	if (status >= 200 && status < 300)
		return (AWS_CALL_OK);
	for (i = 0; i < nitems(denied); i++) {
		if (strcmp(code, denied[i]) == 0)
			return (AWS_CALL_DENIED);
	}
	for (i = 0; i < nitems(throttled); i++) {
		if (strcmp(code, throttled[i]) == 0)
			return (AWS_CALL_THROTTLED);
	}
	if (status == 429)
		return (AWS_CALL_THROTTLED);
	if (status == 401 || status == 403)
		return (AWS_CALL_DENIED);
	if (status >= 500)
		return (AWS_CALL_SERVER);
	return (AWS_CALL_CLIENT);
}

/*
 * The error code and message of an answer: x-amzn-ErrorType, a JSON
 * body's __type/code and message/Message, or an XML <Code>/<Message>.
 */
static void
aws_call_parse_error(struct aws_call *ac, const struct evkeyvalq *h)
{
	const char	*t;
	json_t		*j, *v;
	char		*x;

	ac->code[0] = '\0';
	ac->message[0] = '\0';
	if (h != NULL && (t = evhttp_find_header(h, "x-amzn-ErrorType")) !=
	    NULL)
		aws_call_code_clean(t, ac->code, sizeof ac->code);
	if (ac->rbody == NULL || ac->rlen == 0)
		return;
	if ((j = json_loadb(ac->rbody, ac->rlen, 0, NULL)) != NULL) {
		if (json_is_object(j)) {
			if (ac->code[0] == '\0' &&
			    (json_is_string(v = json_object_get(j, "__type")) ||
			    json_is_string(v = json_object_get(j, "code")) ||
			    json_is_string(v = json_object_get(j, "Code"))))
				aws_call_code_clean(json_string_value(v),
				    ac->code, sizeof ac->code);
			if (json_is_string(v = json_object_get(j, "message")) ||
			    json_is_string(v = json_object_get(j, "Message")))
				aws_call_clean(json_string_value(v),
				    json_string_length(v), ac->message,
				    sizeof ac->message);
		}
		json_decref(j);
		return;
	}
	if (ac->code[0] == '\0' &&
	    (x = awscred_xml_get(ac->rbody, ac->rlen, "Code")) != NULL) {
		aws_call_code_clean(x, ac->code, sizeof ac->code);
		free(x);
	}
	if ((x = awscred_xml_get(ac->rbody, ac->rlen, "Message")) != NULL) {
		aws_call_clean(x, strlen(x), ac->message, sizeof ac->message);
		free(x);
	}
}

/* The chain has (or has not) refreshed its credentials. */
static void
aws_call_creds_cb(void *arg, int ok)
{
	struct aws_call	*ac = arg;
	const char	*p;

	if (ac->state == AWSC_WAIT_REFRESH && !ok) {
		/* Deliver AWS's own refusal, kept from the first answer. */
		aws_call_deliver(ac);
		return;
	}
	if (!ok) {
		p = aws_creds_problem();
		ac->cls = AWS_CALL_NO_CREDS;
		snprintf(ac->message, sizeof ac->message, "no AWS "
		    "credentials: %s", p != NULL ? p : "none usable");
		aws_call_deliver(ac);
		return;
	}
	if (ac->rbody != NULL) {
		freezero(ac->rbody, ac->rlen + 1);
		ac->rbody = NULL;
		ac->rlen = 0;
	}
	aws_call_send(ac);
}

static void
aws_call_done(struct hc_req *req, const struct hc_result *res, void *arg)
{
	struct aws_call	*ac = arg;
	size_t		 n;

	ac->req = NULL;
	if (res->error != HC_OK) {
		ac->cls = AWS_CALL_NETWORK;
		ac->status = res->status;
		snprintf(ac->message, sizeof ac->message, "%s: %s",
		    hc_error_name(res->error), res->message);
		aws_call_deliver(ac);
		return;
	}
	ac->status = res->status;
	n = res->body != NULL ? evbuffer_get_length(res->body) : 0;
	ac->rbody = xmalloc(n + 1);
	if (n > 0)
		evbuffer_copyout(res->body, ac->rbody, n);
	ac->rbody[n] = '\0';
	ac->rlen = n;
	if (res->status >= 200 && res->status < 300) {
		ac->cls = AWS_CALL_OK;
		ac->code[0] = '\0';
		ac->message[0] = '\0';
		aws_call_deliver(ac);
		return;
	}
	aws_call_parse_error(ac, res->headers);
	ac->cls = aws_call_classify(res->status, ac->code);
	if (ac->message[0] == '\0')
		snprintf(ac->message, sizeof ac->message, "HTTP %d%s%s",
		    res->status, ac->code[0] != '\0' ? " " : "", ac->code);
	if (ac->chain && ac->attempts == 1 &&
	    aws_call_code_expired(ac->code)) {
		log_info("aws call %s: AWS says the credentials expired (%s); "
		    "refreshing once", ac->service, ac->code);
		aws_call_enter(ac, AWSC_WAIT_REFRESH);
		aws_creds_expired(ac->creds, aws_call_creds_cb, ac);
		return;
	}
	aws_call_deliver(ac);
}

/* Sign with the current credentials and send. */
static void
aws_call_send(struct aws_call *ac)
{
	struct sigv4_request	 sreq;
	struct sigv4_creds	 sc;
	struct sigv4_result	 sres;
	struct sigv4_header	 sh[2];
	struct hc_header	 hdr[8];
	struct hc_request	 hreq;
	struct hc_timeouts	 to;
	const char		*err;
	char			*cause = NULL;
	size_t			 ns = 0, nh = 0, i;

	if (ac->chain) {
		if (ac->creds != NULL)
			aws_creds_unref(ac->creds);
		if ((ac->creds = aws_creds_get()) == NULL) {
			aws_call_fail_later(ac, AWS_CALL_NO_CREDS, "no AWS "
			    "credentials: %s", aws_creds_problem() != NULL ?
			    aws_creds_problem() : "none usable");
			return;
		}
	}
	sh[ns++] = (struct sigv4_header){ "Content-Type", ac->content_type };
	if (ac->target != NULL)
		sh[ns++] = (struct sigv4_header){ "X-Amz-Target", ac->target };
	memset(&sreq, 0, sizeof sreq);
	sreq.method = "POST";
	sreq.host = hc_target_host(ac->tgt);
	sreq.path = hc_target_path(ac->tgt);
	sreq.headers = sh;
	sreq.nheaders = ns;
	sreq.payload = ac->body;
	sreq.payload_len = ac->len;
	sreq.region = ac->region;
	sreq.service = ac->service;
	sreq.when = now_wall();
	sc.access_key_id = ac->creds->access_key_id;
	sc.secret_access_key = ac->creds->secret_access_key;
	sc.session_token = ac->creds->session_token;
	if (sigv4_sign(&sreq, &sc, &sres, &err) == -1) {
		aws_call_fail_later(ac, AWS_CALL_CLIENT, "cannot sign the "
		    "request: %s", err);
		return;
	}
	for (i = 0; i < ns; i++)
		hdr[nh++] = (struct hc_header){ sh[i].name, sh[i].value };
	for (i = 0; i < sres.nout; i++)
		hdr[nh++] = (struct hc_header){ sres.out[i].name,
		    sres.out[i].value };
	hdr[nh++] = (struct hc_header){ "User-Agent",
	    BSP_NAME "/" PACKAGE_VERSION };
	to.connect_ms = ac->timeout_ms < 10000 ? ac->timeout_ms : 10000;
	to.first_byte_ms = ac->timeout_ms;
	to.idle_ms = ac->timeout_ms;
	to.total_ms = ac->timeout_ms;
	hc_request_init(&hreq, "POST", hc_target_path(ac->tgt), hdr, nh,
	    ac->body, ac->len, AWS_CALL_BODY_MAX, &to, aws_call_done, ac);
	ac->attempts++;
	if ((ac->req = hc_start(ac->tgt, &hreq, &cause)) == NULL) {
		aws_call_fail_later(ac, AWS_CALL_CLIENT, "cannot send: %s",
		    cause);
		free(cause);
		return;
	}
	aws_call_enter(ac, AWSC_SENT);
}

struct aws_call *
aws_call_start(const struct aws_call_req *r,
    void (*cb)(const struct aws_call_result *, void *), void *arg)
{
	struct aws_call	*ac;
	const char	*region;
	char		*url, *cause = NULL;
	int		 w;

	ac = xcalloc(1, sizeof *ac);
	ac->cb = cb;
	ac->arg = arg;
	event_assign(&ac->ev, bsp_base, -1, 0, aws_call_deferred_cb, ac);
	region = r->region;
	if (region == NULL && cfg != NULL)
		region = cfg->aws_region;
	if (region == NULL)
		region = "us-east-1";
	ac->service = xstrdup(r->service);
	ac->region = xstrdup(region);
	ac->target = r->target != NULL ? xstrdup(r->target) : NULL;
	ac->content_type = xstrdup(r->content_type != NULL ?
	    r->content_type : "application/x-www-form-urlencoded");
	ac->body = xmalloc(r->len + 1);
	if (r->len > 0)
		memcpy(ac->body, r->body, r->len);
	ac->len = r->len;
	ac->timeout_ms = r->timeout_ms > 0 ? r->timeout_ms : AWS_CALL_TIMEOUT;

	url = aws_call_endpoint(r->endpoint_env, r->host_prefix, region);
	if ((ac->tgt = hc_target_new(url, &cause)) == NULL) {
		aws_call_fail_later(ac, AWS_CALL_CLIENT, "bad endpoint for "
		    "%s: %s", ac->service, cause);
		free(cause);
		free(url);
		return (ac);
	}
	free(url);
	if (r->creds != NULL) {
		ac->creds = r->creds;
		ac->creds->refcnt++;
		aws_call_send(ac);
		return (ac);
	}
	ac->chain = 1;
	if ((w = aws_creds_wait(aws_call_creds_cb, ac)) == 1)
		aws_call_send(ac);
	else if (w == 0)
		aws_call_enter(ac, AWSC_WAIT_CREDS);
	else
		aws_call_fail_later(ac, AWS_CALL_NO_CREDS, "no AWS "
		    "credentials: %s", aws_creds_problem() != NULL ?
		    aws_creds_problem() : "none usable");
	return (ac);
}

void
aws_call_cancel(struct aws_call *ac)
{
	if (ac == NULL)
		return;
	aws_call_free(ac);
}
