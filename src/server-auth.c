/*
 * server-auth.c: the credential step of a request. The head gate checked
 * the credential of a protected route before its body was read
 * (auth_check, auth.c); the request gets that verdict here, with
 * revocation checked once more, or is refused in the shape of its route.
 */

#include <sys/queue.h>

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "bsp.h"
#include "server-int.h"

/* Refuse: 401 (or 403) in the shape of the route, and count why. */
void
server_auth_refuse(struct request *r, const struct auth_result *res)
{
	int	code = res->code != 0 ? res->code : 401;
	char	labels[64];

	if (m_auth_failures != NULL) {
		metric_label(labels, sizeof labels, "reason", res->label, NULL);
		metric_add(m_auth_failures, labels, 1);
	}
	log_trace(TRACE_AUTH, "%s %s refused: %s", r->method, r->path,
	    res->why);
	if (code == 503) {
		/* Not a refusal: the state to check against is not in yet. */
		if (r->route != NULL && (r->route->flags & RF_API))
			server_error_api(r, 503, "api_error", "%s", res->why);
		else if (r->route != NULL && (r->route->flags & RF_BEDROCK))
			server_error_bedrock(r, 503,
			    "ServiceUnavailableException", "%s", res->why);
		else
			server_error_oauth(r, 503, "temporarily_unavailable",
			    res->why);
		return;
	}
	if (r->route != NULL && (r->route->flags & RF_API)) {
		server_error_api(r, code, code == 401 ? "authentication_error" :
		    "permission_error", "%s", res->why);
		return;
	}
	if (r->route != NULL && (r->route->flags & RF_BEDROCK)) {
		server_error_bedrock(r, code, code == 401 ?
		    "UnrecognizedClientException" : "AccessDeniedException",
		    "%s", res->why);
		return;
	}
	if (code == 401)
		server_set_header(r, "WWW-Authenticate", "Bearer realm=\""
		    BSP_NAME "\", error=\"invalid_token\"");
	server_error_oauth(r, code, code == 401 ? "invalid_token" :
	    "insufficient_scope", res->why);
}

/*
 * Authenticate a request with the credential its head carried: res as the
 * head gate left it (a verdict, or none: then it is checked now, with a
 * final answer). 0 with r->principal set, or -1 after answering the
 * client.
 */
int
server_auth_request(struct request *r, struct auth_result *res)
{
	int	flags = r->route->flags;

	if (res->p == NULL && res->code == 0)
		(void)auth_check(r->cfg, flags, server_header(r,
		    "Authorization"), server_header(r, "X-Api-Key"), res, NULL,
		    NULL, NULL);
	else if (res->p != NULL)
		(void)auth_still_valid(res, flags);
	if (res->p == NULL) {
		server_auth_refuse(r, res);
		return (-1);
	}
	r->principal = res->p;
	res->p = NULL;
	request_set_user(r, r->principal->email != NULL ?
	    r->principal->email : r->principal->sub);
	return (0);
}

/*
 * For routes that take a bearer token optionally (logout): the raw token
 * if an Authorization: Bearer header is present. 1 with *token set, 0
 * without the header, -1 if it is not a bearer token.
 */
int
server_auth_bearer(struct request *r, const char **token)
{
	const char	*h = server_header(r, "Authorization");

	*token = NULL;
	if (h == NULL)
		return (0);
	if (strncasecmp(h, "Bearer ", 7) != 0)
		return (-1);
	h += 7;
	while (*h == ' ')
		h++;
	*token = h;
	return (*h != '\0' ? 1 : -1);
}
