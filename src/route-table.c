/*
 * route-table.c: the route table, one line per route: its name (for logs
 * and metrics), methods, path pattern, handler and flags (RF_*, bsp.h).
 * The server gets it at start (server_routes) and knows no handler by
 * name.
 *
 * "{}" matches one non-empty path segment; RF_BEDROCK routes are also
 * served under /bedrock. A query string never takes part in matching
 * (Claude Code posts to /v1/messages?beta=true). The metrics route has no pattern: its path comes
 * from metrics.path.
 */

#include <stddef.h>

#include <event2/http.h>

#include "bsp.h"

#define GET	(EVHTTP_REQ_GET | EVHTTP_REQ_HEAD)
#define POST	EVHTTP_REQ_POST
#define DELETE	EVHTTP_REQ_DELETE
static const struct route routes[] = {
	{ "login_page", GET, "/", route_login_page, RF_HTML },
	{ "static", GET, "/static/{}", route_static, 0 },
	{ "auth_providers", GET, "/auth/providers", route_auth_providers, 0 },
	{ "auth_login", GET, "/auth/login/{}", route_auth_login,
	  RF_HTML | RF_NO_STORE },
	{ "auth_authorize", GET, "/auth/authorize/{}", route_auth_authorize,
	  RF_NO_STORE },
	{ "auth_callback", GET, "/auth/callback/{}", route_auth_callback,
	  RF_HTML | RF_NO_STORE },
	{ "auth_login_any", GET, "/auth/login", route_auth_login_any,
	  RF_NO_STORE },
	{ "auth_token", POST, "/auth/token", route_auth_token_any,
	  RF_NO_STORE },
	{ "health", GET, "/health", route_health, 0 },
	{ "health_ready", GET, "/health/ready", route_health_ready, 0 },
	{ "metrics", GET, NULL, route_metrics, RF_METRICS },
	{ "auth_refresh", POST, "/auth/refresh", route_auth_refresh,
	  RF_NO_STORE },
	{ "auth_logout", POST, "/auth/logout", route_auth_logout, RF_NO_STORE },
	{ "auth_revoke", POST, "/auth/revoke", route_auth_revoke, RF_NO_STORE },
	{ "auth_validate", GET, "/auth/validate", route_auth_validate,
	  RF_NO_STORE | RF_AUTH },
	{ "api_keys", GET | POST, "/api/keys", route_api_keys,
	  RF_NO_STORE | RF_AUTH | RF_JWT_ONLY },
	{ "api_key", DELETE, "/api/keys/{}", route_api_key_delete,
	  RF_NO_STORE | RF_AUTH | RF_JWT_ONLY },
	{ "jwks", GET, "/.well-known/jwks.json", route_jwks, 0 },
	{ "oauth_metadata", GET, "/.well-known/oauth-authorization-server",
	  route_oauth_metadata, 0 },
	{ "device_authorization", POST, "/oauth/device_authorization",
	  route_device_authorization, RF_NO_STORE },
	{ "device", GET | POST, "/device", route_device_page,
	  RF_HTML | RF_NO_STORE | RF_SAME_ORIGIN },
	{ "oauth_token", POST, "/oauth/token", route_oauth_token,
	  RF_NO_STORE },
	{ "bedrock_invoke", POST, "/model/{}/invoke", route_bedrock,
	  RF_BEDROCK | RF_AUTH },
	{ "bedrock_invoke_stream", POST, "/model/{}/invoke-with-response-stream",
	  route_bedrock, RF_BEDROCK | RF_AUTH },
	{ "bedrock_converse", POST, "/model/{}/converse", route_bedrock,
	  RF_BEDROCK | RF_AUTH },
	{ "bedrock_converse_stream", POST, "/model/{}/converse-stream",
	  route_bedrock, RF_BEDROCK | RF_AUTH },
	{ "bedrock_count_tokens", POST, "/model/{}/count-tokens", route_bedrock,
	  RF_BEDROCK | RF_AUTH },
	{ "bedrock_guardrail", POST, "/guardrail/{}/version/{}/apply",
	  route_bedrock, RF_BEDROCK | RF_AUTH },
	{ "bidi_stream", POST, "/model/{}/invoke-with-bidirectional-stream",
	  route_bidi_stream, RF_BEDROCK },
	{ "inference_profiles", GET, "/inference-profiles",
	  route_inference_profiles, RF_BEDROCK },
	{ "inference_profile", GET, "/inference-profiles/{}",
	  route_inference_profiles, RF_BEDROCK },
	{ "anthropic_messages", POST, "/v1/messages", route_anthropic_messages,
	  RF_ANTHROPIC | RF_AUTH },
	{ "anthropic_count_tokens", POST, "/v1/messages/count_tokens",
	  route_anthropic_count_tokens, RF_ANTHROPIC | RF_AUTH },
	{ "anthropic_models", GET, "/v1/models", route_anthropic_models,
	  RF_ANTHROPIC | RF_AUTH | RF_NO_STORE },
	{ "anthropic_model", GET, "/v1/models/{}", route_anthropic_model,
	  RF_ANTHROPIC | RF_AUTH | RF_NO_STORE },
	{ "managed_settings", GET, "/managed/settings", route_managed_settings,
	  RF_ANTHROPIC | RF_AUTH | RF_NO_STORE },
	{ "telemetry_metrics", POST, "/v1/metrics", route_telemetry,
	  RF_ANTHROPIC | RF_AUTH },
	{ "telemetry_logs", POST, "/v1/logs", route_telemetry,
	  RF_ANTHROPIC | RF_AUTH },
	{ "telemetry_traces", POST, "/v1/traces", route_telemetry,
	  RF_ANTHROPIC | RF_AUTH },
	{ "openai_chat", POST, "/openai/v1/chat/completions", route_openai,
	  RF_OPENAI | RF_AUTH },
	{ "openai_responses", POST, "/openai/v1/responses", route_openai,
	  RF_OPENAI | RF_AUTH },
};
#undef GET
#undef POST
#undef DELETE

/*
 * The routes layer's start, before server_init(): the readiness checks
 * begin with the database's, and the server gets the table and the answer
 * to a path no route takes.
 */
void
routes_init(void)
{
	health_reset();
	server_routes(routes, nitems(routes), route_not_found);
}
