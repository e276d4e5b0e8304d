#!/bin/sh
#
# relay.sh: non-streaming InvokeModel through the proxy, against the same
# request sent straight to the upstream and through nginx as a plain
# reverse proxy, in the same run.
#
#   upstream  nginx (one process) answering POST /model/*/invoke with a
#             fixed Anthropic message and Bedrock's token-count and
#             request-id headers; pinned to UPSTREAM_CPU (= CLIENT_CPU: it
#             shares wrk's core, so that the server under test has CPU 0
#             to itself)
#   direct    wrk -> upstream
#   nginx     wrk -> nginx (one process, `upstream { keepalive 32; }`,
#             proxy_http_version 1.1, Connection "") -> upstream
#   bsp       wrk -> bedrock-sso-proxy (token checked through the auth
#             cache, SigV4 signed with fake static keys, usage row queued
#             and written) -> upstream
#
# The same wrk settings for all three: POST of a ~200-byte Anthropic
# messages body with Authorization: Bearer <token> and Content-Type
# (bench/relay.lua).  Each round runs each target for DURATION seconds at
# CONNS connections and at 1.  Per run, lib.sh's row (req/s, p50/p99, CPU
# per request of the server under test from /proc, perf stat instructions
# and system calls) plus the upstream's CPU per request and the new TCP
# connections opened per 1000 requests (/proc/net/snmp ActiveOpens: wrk
# opens its own only at start, so the rest are the proxy's to the
# upstream).  Every answer is checked once before timing; at the end the
# usage table must hold one row per relayed 200 with the upstream's token
# counts.  With PERF=1 it samples the daemon's instructions (user+kernel)
# with call graphs for PERF_SECONDS under CONNS load and tabulates
# thousands of instructions per request by phase.
#
# Usage: bench/relay.sh      (ROUNDS=3 DURATION=30: about 12 minutes)
# Environment: ROUNDS, DURATION, CONNS (50), PERF (1), PERF_SECONDS (10),
# PERF_PERIOD (1000000), PERFSTAT (1), SERVER_CPU, CLIENT_CPU, UPSTREAM_CPU,
# RESULTS, KEEP, and build.sh's.

set -eu

TOP=$(cd "$(dirname "$0")/.." && pwd)
. "$TOP/bench/lib.sh"
. "$TOP/bench/relay-lib.sh"

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-30}
CONNS=${CONNS:-50}
PERF=${PERF:-1}
PERF_SECONDS=${PERF_SECONDS:-10}
PERF_PERIOD=${PERF_PERIOD:-1000000}

bench_setup relay
mkdir -p "$WORK/up" "$WORK/np" "$WORK/bsp"
UP_PORT=$(free_port)
upstream_start "$WORK/up" "$UP_PORT"
NP_PORT=$(free_port)
nginxproxy_start "$WORK/np" "$NP_PORT" "$UP_PORT"
relay_bsp_config "$WORK/bsp" "$UP_PORT"
TOKEN=$(relay_token "$WORK/bsp")
bsp_start "$WORK/bsp"
export RELAY_BODY
RPATH=/model/$RELAY_MODEL/invoke

# Every target must answer 200 with the upstream's body; the daemon must
# also return the token-count and request-id headers.
check()		# name port
{
	code=$(curl -s -D "$WORK/check.h" -o "$WORK/check.out" \
	    -w '%{http_code}' -X POST -H "Authorization: Bearer $TOKEN" \
	    -H 'Content-Type: application/json' --data "$RELAY_BODY" \
	    "http://127.0.0.1:$2$RPATH")
	if [ "$code" != 200 ] ||
	    [ "$(cat "$WORK/check.out")" != "$RELAY_ANSWER" ]; then
		echo "relay.sh: $1 answered $code: $(cat "$WORK/check.out")" >&2
		exit 1
	fi
	for h in X-Amzn-Bedrock-Input-Token-Count \
	    X-Amzn-Bedrock-Output-Token-Count x-amzn-RequestId; do
		grep -qi "^$h:" "$WORK/check.h" || {
			echo "relay.sh: $1 did not return $h" >&2
			exit 1
		}
	done
}
check direct "$UP_PORT"
check nginx "$NP_PORT"
check bsp "$BSP_PORT"

tcp_active_opens()
{
	awk '$1 == "Tcp:" { if (!n++) { for (i = 2; i <= NF; i++)
	    if ($i == "ActiveOpens") c = i } else print $c }' /proc/net/snmp
}

# relay_run round name pid conns port: one wrk run (lib.sh's wrk_run) and
# a row of $OUT/upstream.tsv: the upstream's CPU us per request and new
# TCP connections per 1000 requests.
relay_run()
{
	_o0=$(tcp_active_opens)
	_u0=$(proc_ticks "$UP_PID")
	wrk_run "$1" "$2" "$3" 1 "$4" "$DURATION" "http://127.0.0.1:$5$RPATH" \
	    -s "$TOP/bench/relay.lua" -H "Authorization: Bearer $TOKEN" \
	    -H 'Content-Type: application/json'
	_u1=$(proc_ticks "$UP_PID")
	_o1=$(tcp_active_opens)
	_req=$(tail -1 "$OUT/runs.tsv" | cut -f6)
	awk -v r="$1" -v n="$2" -v c="$4" -v u=$((_u1 - _u0)) -v hz="$HZ" \
	    -v o=$((_o1 - _o0 - $4)) -v q="$_req" 'BEGIN {
		printf "%s\t%s\t%s\t%.1f\t%.2f\n", r, n, c,
		    u / hz * 1e6 / q, (o < 0 ? 0 : o) * 1000 / q }' \
	    >>"$OUT/upstream.tsv"
}

{
	echo "# relay.sh: InvokeModel through bedrock-sso-proxy vs direct" \
	    "vs nginx"
	echo
	bench_describe
	echo "upstream: nginx on CPU $UPSTREAM_CPU (with wrk);" \
	    "request body ${#RELAY_BODY} bytes, answer ${#RELAY_ANSWER} bytes," \
	    "token ${#TOKEN} bytes"
	echo "runs: $ROUNDS rounds x (c$CONNS + c1) x ${DURATION}s per target," \
	    "wrk -t1, keep-alive"
	echo
} >"$OUT/summary.md"

before=$(bsp_snapshot "before load")
echo "warming up" >&2
for p in "$UP_PORT" "$NP_PORT" "$BSP_PORT"; do
	taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNS" -d3s \
	    -s "$TOP/bench/relay.lua" -H "Authorization: Bearer $TOKEN" \
	    -H 'Content-Type: application/json' \
	    "http://127.0.0.1:$p$RPATH" >/dev/null
done
sleep 2
afterwarm=$(bsp_snapshot "after warm-up")

r=1
while [ $r -le "$ROUNDS" ]; do
	echo "round $r/$ROUNDS" >&2
	for c in "$CONNS" 1; do
		relay_run $r direct "$UP_PID" "$c" "$UP_PORT"
		relay_run $r nginx "$NP_PID" "$c" "$NP_PORT"
		relay_run $r bsp "$BSP_PID" "$c" "$BSP_PORT"
	done
	r=$((r + 1))
done
sleep 3		# the usage rows are written every second
after=$(bsp_snapshot "after $ROUNDS rounds")

# Usage rows: one per relayed request, with the upstream's token counts.
metric_200=$(curl -sf "http://127.0.0.1:$BSP_PORT/metrics" | awk '
    index($1, "bsp_http_requests_total{route=\"bedrock_invoke\",code=\"200\"}") == 1 \
	{ n += $2 } END { printf "%d", n }')
usage_rows=$(sqlite3 "$WORK/bsp/proxy.db" "SELECT count(*) || ' rows, ' ||
    sum(status = 200) || ' with status 200, ' ||
    sum(status = 200 AND input_tokens = 17 AND output_tokens = 9) ||
    ' of them with tokens 17/9; others: ' || ifnull((SELECT
    group_concat(status || ' ' || outcome || ' x' || n, ', ') FROM (SELECT
    status, outcome, count(*) AS n FROM usage WHERE status != 200 GROUP BY
    1, 2)), 'none') FROM usage WHERE route = 'InvokeModel'")

# Where the daemon's instructions go: perf record (user and kernel
# instructions, DWARF call graphs) with a concurrent perf stat and the
# daemon's own request counter over the same window.
PHASES="event_base_loop|all of the daemon's work
server_gencb|request dispatched (auth + route + send upstream)
auth_request|  authentication (token through the auth cache)
route_bedrock|  route_bedrock (model check, path, then relay_send)
sigv4_sign|    SigV4 (body SHA-256, canonical request, HMAC)
sigv4_build|      canonical request + string to sign
sigv4_sha256_hex|      SHA-256 hex (body and canonical request)
sigv4_hmac|      HMAC (OpenSSL EVP_Q_mac)
sigv4_signing_key|      signing key (cached derivation)
EVP_MD_fetch|      of SigV4: OpenSSL algorithm fetches
hc_start|    evhttp client: hc_start (pool, request, write)
evhttp_connection_connect_|      of which a new upstream connection
evdns_getaddrinfo|        evdns_getaddrinfo (numeric host) + connect
evhttp_make_request|      evhttp_make_request (request head, send)
req_deliver_done|upstream answer delivered (req_deliver_done)
relay_on_done|  relay_on_done
json_loadb|    jansson: usage parsed from the body
relay_copy_headers|    answer headers copied (allow-list)
server_reply|    our reply (server_reply)
evhttp_send_reply|      evhttp_send_reply
relay_finish|    relay_finish: usage row, metrics, access fields
usage_record|      usage_record (queue the row)
metric_add|      metric_add
metric_observe|      metric_observe
hc_reap|  connection and request freed (hc_reap)
conn_kill|  upstream connection closed (pool full)
request_finish|request_finish (access log off, metrics)
usage_flush|usage rows written to SQLite (1 s timer)
sqlite3_step|  sqlite3_step
evhttp_parse_firstline_|evhttp: request and status lines
evhttp_find_header|evhttp_find_header (all callers)
evbuffer_add_printf|evbuffer_add_printf (all callers)
entry_SYSCALL_64_after_hwframe|kernel: all system calls
__x64_sys_connect|  connect
__x64_sys_socket|  socket
__x64_sys_shutdown|  shutdown
__x64_sys_close|  close
__x64_sys_epoll_ctl|  epoll_ctl
do_writev|  writev
do_readv|  readv
__x64_sys_epoll_wait|  epoll_wait
__GI___libc_malloc|malloc (inclusive, all callers)
__GI___libc_free|free
__libc_calloc|calloc
__vfprintf_internal|printf family"
perf_profile()
{
	taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNS" -d$((PERF_SECONDS + 3))s \
	    -s "$TOP/bench/relay.lua" -H "Authorization: Bearer $TOKEN" \
	    -H 'Content-Type: application/json' \
	    "http://127.0.0.1:$BSP_PORT$RPATH" >/dev/null 2>&1 &
	_wrk=$!
	sleep 1
	_n0=$(bsp_invoke_count)
	perf stat -x, -e instructions:u,instructions:k -p "$BSP_PID" \
	    -o "$WORK/perf.stat" -- sleep "$PERF_SECONDS" &
	_stat=$!
	perf record -q -e instructions -c "$PERF_PERIOD" \
	    --call-graph dwarf,16384 -p "$BSP_PID" -o "$WORK/perf.data" \
	    -- sleep "$PERF_SECONDS" 2>/dev/null
	wait $_stat
	_n1=$(bsp_invoke_count)
	wait $_wrk
	perf report -q -i "$WORK/perf.data" --children --sort symbol \
	    -g none --percent-limit 0.01 2>/dev/null |
	    awk '$3 == "[.]" || $3 == "[k]" { sub("%", "", $1); print $1, $4 }' \
	    >"$OUT/perf-children.txt"
	perf report -q -i "$WORK/perf.data" --no-children --sort dso \
	    -g none 2>/dev/null >"$OUT/perf-dso.txt"
	perf report -q -i "$WORK/perf.data" --no-children \
	    --sort dso,symbol --percent-limit 0.3 -g none \
	    >"$OUT/perf-self.txt" 2>/dev/null
	_iu=$(sed -n 's/^\([0-9]*\),.*instructions:u.*/\1/p' "$WORK/perf.stat")
	_ik=$(sed -n 's/^\([0-9]*\),.*instructions:k.*/\1/p' "$WORK/perf.stat")
	echo "$_iu $_ik $((_n1 - _n0))" >"$OUT/perf-events.txt"
}
bsp_invoke_count()
{
	curl -sf "http://127.0.0.1:$BSP_PORT/metrics" | awk '
	    index($1, "bsp_http_requests_total{route=\"bedrock_invoke\",") == 1 \
		{ n += $2 } END { print n + 0 }'
}
perf_tables()
{
	read -r iu ik n <"$OUT/perf-events.txt"
	echo "k instructions per request (user+kernel, inclusive of callees;" \
	    "$n requests; perf stat: $(awk -v a="$iu" -v n="$n" \
	    'BEGIN { printf "%.1f", a / n / 1000 }') k user +" \
	    "$(awk -v a="$ik" -v n="$n" 'BEGIN { printf "%.1f", a / n / 1000 }')" \
	    "k kernel):"
	echo
	echo "| phase / function | k instr/req | % |"
	echo "|---|---|---|"
	printf '%s\n' "$PHASES" | awk -F'|' -v iu="$iu" -v ik="$ik" -v n="$n" \
	    -v f="$OUT/perf-children.txt" '
	BEGIN {
		while ((getline l < f) > 0) {
			split(l, a, " ")
			if (!(a[2] in pct)) pct[a[2]] = a[1]
		}
		# inlined functions show as "name (inlined)": perf prints
		# the name only; both spellings are looked up
	}
	{
		p = pct[$1]
		if (p == "") { printf "| %s (`%s`) | - | - |\n", $2, $1; next }
		printf "| %s (`%s`) | %.1f | %.1f |\n", $2, $1,
		    p / 100 * (iu + ik) / n / 1000, p
	}'
	echo
	echo "self time by library (% of the daemon's instructions):"
	echo
	grep -v '^$' "$OUT/perf-dso.txt" | sed 's/^/    /' | head -12
}

if [ "${PERF:-1}" = 1 ]; then
	echo "perf trace" >&2
	for t in "bsp $BSP_PID $BSP_PORT" "nginx $NP_PID $NP_PORT" \
	    "direct $UP_PID $UP_PORT"; do
		set -- $t
		trace_syscalls "$1" "$2" "http://127.0.0.1:$3$RPATH" \
		    -s "$TOP/bench/relay.lua" -H "Authorization: Bearer $TOKEN" \
		    -H 'Content-Type: application/json'
	done >"$WORK/syscalls.txt"
	echo "perf record" >&2
	perf_profile
fi
fds_bsp=$(proc_fds "$BSP_PID")
bsp_stop
kill "$NP_PID" "$UP_PID"
wait "$NP_PID" "$UP_PID" || true

{
	summarize "bsp:$CONNS direct:$CONNS nginx:$CONNS direct:$CONNS" \
	    "bsp:$CONNS nginx:$CONNS bsp:1 direct:1 nginx:1 direct:1" \
	    "bsp:1 nginx:1"
	echo
	echo "the upstream's CPU per request, and new TCP connections per" \
	    "1000 requests (the proxy's to the upstream), median [min, max]:"
	echo
	echo "| run | upstream CPU us/req | new connections / 1000 req |"
	echo "|---|---|---|"
	sort -k2,2 -k3,3nr "$OUT/upstream.tsv" | awk -F'\t' '
	function cell(l,   a, n, i, j, x, m) {
		n = split(l, a, " ")
		for (i = 2; i <= n; i++) { x = a[i]
			for (j = i - 1; j >= 1 && a[j] + 0 > x + 0; j--)
				a[j + 1] = a[j]
			a[j + 1] = x }
		m = n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
		return sprintf("%.1f [%.1f, %.1f]", m, a[1], a[n])
	}
	{ k = $2 ":" $3; if (!(k in u)) o[++nk] = k; u[k] = u[k] " " $4
	  c[k] = c[k] " " $5 }
	END { for (i = 1; i <= nk; i++)
		printf "| %s | %s | %s |\n", o[i], cell(u[o[i]]), cell(c[o[i]]) }'
	echo
	echo "usage table after the runs: $usage_rows;" \
	    "bsp_http_requests_total{route=bedrock_invoke,code=200}: $metric_200"
	echo
	echo "bedrock-sso-proxy memory and descriptors:"
	echo
	echo "$BSP_SNAPSHOT_HEADER"
	echo "|---|---|---|---|---|---|"
	echo "$before"
	echo "$afterwarm"
	echo "$after"
	echo "fds at the end (after perf): $fds_bsp"
	echo
	if [ -s "$WORK/syscalls.txt" ]; then
		echo "system calls per request under c$CONNS (perf trace -s, 5s):"
		sed 's/^/    /' "$WORK/syscalls.txt"
		echo
	fi
	echo "daemon exit status after SIGTERM: $BSP_RC; warnings and errors" \
	    "in its log:"
	bsp_log_problems "$WORK/bsp"
	for d in np up; do
		echo "nginx ($d) error log:"
		sed 's/^/    /' "$WORK/$d/logs/error.log" | head -10
		[ -s "$WORK/$d/logs/error.log" ] || echo "    empty"
	done
	if [ "${PERF:-1}" = 1 ]; then
		echo
		perf_tables
	fi
	echo
	bench_load_note
} >>"$OUT/summary.md"
cp "$WORK/bsp/daemon.log" "$OUT/"
cat "$OUT/summary.md"
echo "results: $OUT" >&2
