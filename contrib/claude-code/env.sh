# Claude Code through bedrock-sso-proxy: source this file, then run claude.
# The token comes from the proxy's sign-in page (or an API key, bsk_...).
export CLAUDE_CODE_USE_BEDROCK=1
export ANTHROPIC_BEDROCK_BASE_URL=https://bedrock.example.com/bedrock
export CLAUDE_CODE_SKIP_BEDROCK_AUTH=1
export ANTHROPIC_AUTH_TOKEN="${BEDROCK_PROXY_TOKEN:?set BEDROCK_PROXY_TOKEN to your token}"
export AWS_REGION=us-east-1
# AWS_BEARER_TOKEN_BEDROCK would win the Authorization header: keep it unset.
unset AWS_BEARER_TOKEN_BEDROCK
