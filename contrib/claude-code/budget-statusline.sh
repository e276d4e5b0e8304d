#!/bin/sh
# Claude Code status line: what is left of your bedrock-sso-proxy budget.
#
# In ~/.claude/settings.json (or the managed settings):
#   "statusLine": { "type": "command",
#                   "command": "/path/to/budget-statusline.sh" }
# It asks the proxy's GET /auth/me with the token Claude Code sends
# (ANTHROPIC_AUTH_TOKEN, or BEDROCK_PROXY_TOKEN, or an API key in
# ANTHROPIC_API_KEY) at BEDROCK_PROXY_URL (default: ANTHROPIC_BEDROCK_BASE_URL
# without its /bedrock, or ANTHROPIC_BASE_URL), and prints the tightest cap:
#   daily $7.42 left of $10.00 until 00:00Z | today $2.58
# The answer is kept for BUDGET_STATUS_TTL seconds (default 30) so that
# the proxy is not asked on every redraw. Needs curl and jq.
# Claude Code writes the session as JSON on stdin; it is not needed here.
cat > /dev/null

token=${BEDROCK_PROXY_TOKEN:-${ANTHROPIC_AUTH_TOKEN:-${ANTHROPIC_API_KEY:-}}}
url=${BEDROCK_PROXY_URL:-}
if [ -z "$url" ] && [ -n "${ANTHROPIC_BEDROCK_BASE_URL:-}" ]; then
	url=${ANTHROPIC_BEDROCK_BASE_URL%/}
	url=${url%/bedrock}
fi
url=${url:-${ANTHROPIC_BASE_URL:-}}
url=${url%/}
ttl=${BUDGET_STATUS_TTL:-30}
if [ -z "$token" ] || [ -z "$url" ]; then
	echo "budget: no proxy URL or token"
	exit 0
fi
command -v jq > /dev/null 2>&1 || { echo "budget: jq is needed"; exit 0; }

dir=${XDG_RUNTIME_DIR:-${TMPDIR:-/tmp}}
cache="$dir/bsp-budget-$(id -u).json"
now=$(date +%s)
if [ -f "$cache" ] && [ $((now - $(stat -c %Y "$cache" 2>/dev/null ||
    stat -f %m "$cache" 2>/dev/null || echo 0))) -lt "$ttl" ]; then
	me=$(cat "$cache")
else
	# The token goes in a header read from stdin, not on the command line.
	me=$(printf 'Authorization: Bearer %s\n' "$token" |
	    curl -fsS --max-time 3 -H @- "$url/auth/me" 2>/dev/null) || {
		echo "budget: proxy unreachable"
		exit 0
	}
	umask 077
	printf '%s' "$me" > "$cache.$$" && mv -f "$cache.$$" "$cache"
fi

printf '%s' "$me" | jq -r '
  def usd: tonumber | (. * 100 | round) / 100 | tostring
    | if test("\\.") then (if test("\\.[0-9]$") then . + "0" else . end)
      else . + ".00" end | "$" + .;
  ([.budgets[] | select(.remaining_usd != null)]
    | sort_by(.remaining_usd | tonumber) | first) as $b
  | (if $b == null then "no budget"
     else "\($b.name) \($b.remaining_usd | usd) left of \($b.limit_usd | usd) until \($b.resets_at | .[11:16])Z"
       + (if $b.state == "warn" then " (past soft limit)"
          elif $b.state == "refused" then " (spent)" else "" end)
     end)
  + " | today \(.usage.cost_usd | usd)"'
