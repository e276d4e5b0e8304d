#!/bin/sh
# For ~/.claude/settings.json "apiKeyHelper": print a fresh access token,
# refreshing it with the stored refresh token when it is about to expire.
# Claude Code sends the printed value as Authorization: Bearer and caches
# it for CLAUDE_CODE_API_KEY_HELPER_TTL_MS (5 minutes by default).
#   BEDROCK_PROXY_URL   https://bedrock.example.com
#   state file          ~/.config/bedrock-sso-proxy/tokens.json, mode 0600,
#                       as /auth/refresh answers it
set -eu
url=${BEDROCK_PROXY_URL:?}
state=${XDG_CONFIG_HOME:-$HOME/.config}/bedrock-sso-proxy/tokens.json
umask 077
access=$(sed -n 's/.*"access_token":"\([^"]*\)".*/\1/p' "$state")
refresh=$(sed -n 's/.*"refresh_token":"\([^"]*\)".*/\1/p' "$state")
if ! curl -fsS -o /dev/null -H "Authorization: Bearer $access" \
    "$url/auth/validate"; then
	curl -fsS -X POST "$url/auth/refresh" \
	    -H 'Content-Type: application/json' \
	    -d "{\"refresh_token\":\"$refresh\"}" > "$state.new"
	mv "$state.new" "$state"
	access=$(sed -n 's/.*"access_token":"\([^"]*\)".*/\1/p' "$state")
fi
printf '%s\n' "$access"
