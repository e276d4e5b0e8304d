/*
 * server-reply.c: answering a request: a whole reply, JSON, text, errors
 * in the shape of the route (RFC 6749, Bedrock's, or the Anthropic and
 * OpenAI APIs' envelopes), and streamed replies
 * with back-pressure. Every reply carries the common headers; once it has
 * been written, the connection goes back to the gate for its next request.
 */

#include <sys/queue.h>

#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/http.h>
#include <event2/http_struct.h>
#include <event2/keyvalq_struct.h>

#include "bsp.h"
#include "anthropic.h"
#include "http-client.h"
#include "server-int.h"

static const char *
reply_reason(int code)
{
	switch (code) {
	case 200:
		return ("OK");
	case 201:
		return ("Created");
	case 204:
		return ("No Content");
	case 302:
		return ("Found");
	case 304:
		return ("Not Modified");
	case 400:
		return ("Bad Request");
	case 401:
		return ("Unauthorized");
	case 403:
		return ("Forbidden");
	case 404:
		return ("Not Found");
	case 405:
		return ("Method Not Allowed");
	case 408:
		return ("Request Timeout");
	case 413:
		return ("Payload Too Large");
	case 431:
		return ("Request Header Fields Too Large");
	case 424:
		return ("Failed Dependency");
	case 429:
		return ("Too Many Requests");
	case 500:
		return ("Internal Server Error");
	case 501:
		return ("Not Implemented");
	case 502:
		return ("Bad Gateway");
	case 503:
		return ("Service Unavailable");
	case 504:
		return ("Gateway Timeout");
	case 505:
		return ("HTTP Version Not Supported");
	default:
		return (NULL);
	}
}

/* Headers every response carries. */
static void
reply_common_headers(struct request *r)
{
	struct evkeyvalq	*h = evhttp_request_get_output_headers(r->http);
	int			 flags = r->route != NULL ? r->route->flags : 0;

	evhttp_add_header(h, "X-Request-Id", r->id);
	evhttp_add_header(h, "X-Content-Type-Options", "nosniff");
	if (flags & RF_HTML) {
		evhttp_add_header(h, "Content-Security-Policy",
		    "default-src 'none'; script-src 'self'; style-src 'self'; "
		    "img-src 'self'; form-action 'self'; base-uri 'none'; "
		    "frame-ancestors 'none'");
		evhttp_add_header(h, "X-Frame-Options", "DENY");
		/* A form's post carries Origin and Referer to be checked. */
		evhttp_add_header(h, "Referrer-Policy",
		    (flags & RF_SAME_ORIGIN) ? "same-origin" : "no-referrer");
	}
	if (flags & RF_NO_STORE) {
		evhttp_add_header(h, "Cache-Control", "no-store");
		evhttp_add_header(h, "Pragma", "no-cache");
	}
	if (r->https)
		evhttp_add_header(h, "Strict-Transport-Security",
		    "max-age=31536000");
	if (server_draining)
		evhttp_add_header(h, "Connection", "close");
}

/* Called by evhttp once the whole reply has been written. */
static void
reply_complete_cb(struct evhttp_request *req, void *arg)
{
	struct request		*r = arg;
	struct server_conn	*conn = r->conn;

	r->http = NULL;		/* evhttp frees it after this returns */
	if (conn != NULL) {
		conn->req = NULL;
		server_conn_hangup_unwatch(conn);
		r->conn = NULL;
		server_gate_next(conn);
	}
	request_unref(r);
}

/* Send a complete reply. The body buffer is drained (may be NULL). */
void
server_reply(struct request *r, int code, const char *ctype,
    struct evbuffer *body)
{
	if (r->replied)
		fatalx("%s: request %s replied twice", __func__, r->id);
	r->status = code;
	if (body != NULL)
		r->bytes_out = evbuffer_get_length(body);
	if (r->client_gone || r->http == NULL) {
		r->replied = 1;
		server_request_finish(r);
		if (body != NULL)
			evbuffer_drain(body, evbuffer_get_length(body));
		return;
	}
	reply_common_headers(r);
	if (ctype != NULL)
		server_set_header(r, "Content-Type", ctype);
	r->replied = 1;
	server_request_finish(r);
	evhttp_request_set_on_complete_cb(r->http, reply_complete_cb, r);
	evhttp_send_reply(r->http, code, reply_reason(code), body);
}

void
server_reply_json(struct request *r, int code, json_t *j)
{
	struct evbuffer	*b = evbuffer_new();
	char		*s;

	if (j == NULL) {
		/* A value jansson refused: never the client's problem. */
		log_warnx("request %s: a reply could not be built", r->id);
		evbuffer_free(b);
		server_reply_text(r, 500, "application/json",
		    "{\"message\":\"internal error\"}\n");
		return;
	}
	s = json_dumps(j, JSON_COMPACT);
	json_decref(j);
	if (s == NULL)
		fatalx("json_dumps");
	evbuffer_add(b, s, strlen(s));
	evbuffer_add(b, "\n", 1);
	free(s);
	server_reply(r, code, "application/json", b);
	evbuffer_free(b);
}

void
server_reply_text(struct request *r, int code, const char *ctype,
    const char *text)
{
	struct evbuffer	*b = evbuffer_new();

	evbuffer_add(b, text, strlen(text));
	server_reply(r, code, ctype, b);
	evbuffer_free(b);
}

/* RFC 6749 error shape, for the auth routes and all that is not Bedrock. */
void
server_error_oauth(struct request *r, int code, const char *error,
    const char *desc)
{
	json_t	*j;

	char	*clean;

	r->log_error = error;
	j = json_pack("{s:s}", "error", error);
	if (desc != NULL) {
		/* May carry an identity provider's words: valid UTF-8 only. */
		clean = utf8_sanitize(desc);
		json_object_set_new(j, "error_description",
		    json_string(clean));
		free(clean);
	}
	server_reply_json(r, code, j);
}

/*
 * The Anthropic API's error envelope, {"type":"error","error":{"type",
 * "message"}}, or on an OpenAI route OpenAI's, {"error":{"message","type",
 * "param","code"}}; type is in Anthropic's vocabulary.
 */
void
server_error_api(struct request *r, int code, const char *type,
    const char *fmt, ...)
{
	va_list	 ap;
	char	*msg, *clean;
	json_t	*j;

	va_start(ap, fmt);
	xvasprintf(&msg, fmt, ap);
	va_end(ap);
	clean = utf8_sanitize(msg);
	r->log_error = type;
	if (r->route != NULL && (r->route->flags & RF_OPENAI))
		j = json_pack("{s:{s:s, s:s, s:n, s:n}}", "error", "message",
		    clean, "type", type, "param", "code");
	else
		j = json_pack("{s:s, s:{s:s, s:s}, s:s}", "type", "error",
		    "error", "type", type, "message", clean, "request_id",
		    r->id);
	server_reply_json(r, code, j);
	free(clean);
	free(msg);
}

/*
 * Bedrock's own error shape, so SDKs raise the right exception; on an
 * Anthropic or OpenAI route, the same error in that API's envelope.
 */
void
server_error_bedrock(struct request *r, int code, const char *type,
    const char *fmt, ...)
{
	va_list	 ap;
	char	*msg;

	char	*clean;

	va_start(ap, fmt);
	xvasprintf(&msg, fmt, ap);
	va_end(ap);
	if (r->route != NULL && (r->route->flags & RF_API)) {
		code = anthropic_error_status(code, type);
		server_error_api(r, code, anthropic_error_type(code, type), "%s",
		    msg);
		free(msg);
		return;
	}
	clean = utf8_sanitize(msg);
	r->log_error = type;
	server_set_header(r, "x-amzn-ErrorType", type);
	server_reply_json(r, code, json_pack("{s:s}", "message", clean));
	free(clean);
	free(msg);
}

/* An error in whichever shape the route speaks. */
void
server_error(struct request *r, int code, const char *error,
    const char *desc)
{
	const char	*type;

	if (r->route != NULL && (r->route->flags & RF_API)) {
		server_error_api(r, code, anthropic_error_type(code, NULL), "%s",
		    desc);
		return;
	}
	if (r->route == NULL || !(r->route->flags & RF_BEDROCK)) {
		server_error_oauth(r, code, error, desc);
		return;
	}
	switch (code) {
	case 400:
	case 405:
	case 413:
	case 431:
	case 505:
		type = "ValidationException";
		break;
	case 401:
		type = "UnrecognizedClientException";
		break;
	case 403:
		type = "AccessDeniedException";
		break;
	case 404:
		type = "ResourceNotFoundException";
		break;
	case 429:
		type = "ThrottlingException";
		break;
	case 503:
		type = "ServiceUnavailableException";
		break;
	default:
		type = "InternalServerException";
		break;
	}
	server_error_bedrock(r, code, type, "%s", desc);
}

/* Streaming replies. */
void
server_stream_start(struct request *r, int code)
{
	r->status = code;
	r->streaming = 1;
	if (r->client_gone || r->http == NULL)
		return;
	reply_common_headers(r);
	/*
	 * HTTP/1.0 has no chunked encoding: the stream's body ends with the
	 * connection. For a 1.0 client that asked for keep-alive, evhttp
	 * would answer keep-alive and frame the reply with the length of
	 * what it holds at the start, Content-Length: 0, and the client
	 * would read no body. So such a connection is closed at the end.
	 */
	if (r->http->major == 1 && r->http->minor == 0) {
		while (evhttp_remove_header(
		    evhttp_request_get_input_headers(r->http), "Connection") == 0)
			;
		server_set_header(r, "Connection", "close");
	}
	evhttp_send_reply_start(r->http, code, reply_reason(code));
	/*
	 * The reply's head is written and the request has been read and
	 * handled: a stream (minutes, a thousand at once) holds neither
	 * header list (the client's token among them), only the two headers
	 * evhttp reads when the reply ends to decide on keep-alive. Nothing
	 * asks for a request header once its reply has started.
	 */
	hc_headers_shed(evhttp_request_get_input_headers(r->http));
	hc_headers_shed(evhttp_request_get_output_headers(r->http));
}

static void
reply_stream_drained(struct evhttp_connection *evcon, void *arg)
{
	struct request	*r = arg;

	if (r->on_drained != NULL && !r->client_gone)
		r->on_drained(r);
}

/*
 * Send a chunk. When the connection's output has been written out the
 * drained callback (if any) runs: the caller's cue to read more upstream.
 */
void
server_stream_write(struct request *r, struct evbuffer *buf,
    void (*drained)(struct request *))
{
	size_t	len = evbuffer_get_length(buf);

	r->bytes_out += len;
	r->on_drained = drained;
	if (r->client_gone || r->http == NULL || len == 0) {
		evbuffer_drain(buf, len);
		return;
	}
	evhttp_send_reply_chunk_with_cb(r->http, buf,
	    drained != NULL ? reply_stream_drained : NULL, r);
}

/* Bytes queued to the client but not yet written. */
size_t
server_stream_pending(struct request *r)
{
	struct evhttp_connection	*evcon;
	struct bufferevent		*bev;

	if (r->client_gone || r->http == NULL ||
	    (evcon = evhttp_request_get_connection(r->http)) == NULL)
		return (0);
	bev = evhttp_connection_get_bufferevent(evcon);
	return (evbuffer_get_length(bufferevent_get_output(bev)));
}

void
server_stream_end(struct request *r)
{
	if (r->replied)
		fatalx("%s: request %s ended twice", __func__, r->id);
	r->replied = 1;
	r->on_drained = NULL;
	server_request_finish(r);
	if (r->client_gone || r->http == NULL)
		return;
	evhttp_request_set_on_complete_cb(r->http, reply_complete_cb, r);
	evhttp_send_reply_end(r->http);
}
