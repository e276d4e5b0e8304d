#!/bin/sh
#
# auth.sh: what a fully authenticated request costs compared with /health,
# in the same run and on the same daemon.
#
# An access token (`token mint`) and an API key (`key create`) are made with
# the CLI against the daemon's database before it starts (jwt.issuer is
# fixed, because with server.port 0 the CLI cannot know the issuer the
# daemon will derive from its port).  Each round then runs wrk, 1 thread,
# for DURATION seconds, at CONNS connections and at 1 connection, against:
#
#   health       GET /health                        (the baseline)
#   jwt          GET /auth/validate, Bearer token   (auth cache hit)
#   apikey       GET /auth/validate, Bearer bsk_... (hash + table lookup)
#   jwt-nocache  the same token on a second daemon with
#                cache.max_entries 0: a full signature and claims check
#                on every request
#
# Per run: requests/s, p50/p99, server CPU per request (utime+stime delta /
# requests) and, from `perf stat`, user and kernel instructions per
# request.  Ratios and differences against health are taken within each
# round.  With PERF=1 (default) it then samples the daemon's instructions
# with `perf record --call-graph dwarf` for PERF_SECONDS under each load and
# tabulates thousands of instructions per request by function.
#
# Usage: bench/auth.sh     (ROUNDS=3 DURATION=30: about 14 minutes)
# Environment: ROUNDS, DURATION, CONNS (50), ALG (EdDSA), PERF (1),
# PERF_SECONDS (10), PERF_PERIOD (100000), PERFSTAT (1), SERVER_CPU, CLIENT_CPU, RESULTS, KEEP, and build.sh's.

set -eu

TOP=$(cd "$(dirname "$0")/.." && pwd)
. "$TOP/bench/lib.sh"

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-30}
CONNS=${CONNS:-50}
ALG=${ALG:-EdDSA}
PERF=${PERF:-1}
PERF_SECONDS=${PERF_SECONDS:-10}
USER_EMAIL=bench@example.com

bench_setup auth

# Two daemons: $WORK/main (default cache) and $WORK/nocache.
for d in main nocache; do
	mkdir -p "$WORK/$d"
	extra="jwt: { algorithm: $ALG, issuer: http://bench.invalid }"
	[ $d = nocache ] && extra="$extra
cache: { max_entries: 0 }"
	bsp_config "$WORK/$d" "$extra"
done
TOKEN=$("$BSP" -f "$WORK/main/cfg.yaml" token mint --user "$USER_EMAIL" \
    2>>"$WORK/main/cli.log")
APIKEY=$("$BSP" -f "$WORK/main/cfg.yaml" key create --user "$USER_EMAIL" \
    2>>"$WORK/main/cli.log")
TOKEN2=$("$BSP" -f "$WORK/nocache/cfg.yaml" token mint --user "$USER_EMAIL" \
    2>>"$WORK/nocache/cli.log")

bsp_start "$WORK/nocache"
NC_PID=$BSP_PID
NC_PORT=$BSP_PORT
bsp_start "$WORK/main"
BASE=http://127.0.0.1:$BSP_PORT
NC_BASE=http://127.0.0.1:$NC_PORT

# Every variant must answer 200 before it is timed.
check()
{
	code=$(curl -s -o "$WORK/check.out" -w '%{http_code}' "$@")
	if [ "$code" != 200 ]; then
		echo "auth.sh: $* answered $code: $(cat "$WORK/check.out")" >&2
		exit 1
	fi
}
check "$BASE/health"
check -H "Authorization: Bearer $TOKEN" "$BASE/auth/validate"
check -H "Authorization: Bearer $APIKEY" "$BASE/auth/validate"
check -H "Authorization: Bearer $TOKEN2" "$NC_BASE/auth/validate"

# variant name: run wrk for it; remaining args go to wrk_run.
variant()
{
	_v=$1
	shift
	case $_v in
	health)
		wrk_run "$@" "$BASE/health" ;;
	jwt)
		wrk_run "$@" "$BASE/auth/validate" \
		    -H "Authorization: Bearer $TOKEN" ;;
	apikey)
		wrk_run "$@" "$BASE/auth/validate" \
		    -H "Authorization: Bearer $APIKEY" ;;
	esac
}

{
	echo "# auth.sh: authenticated GET /auth/validate vs GET /health"
	echo
	bench_describe
	echo "token: $ALG, ${#TOKEN} bytes; API key ${#APIKEY} bytes"
	echo "runs: $ROUNDS rounds x (c$CONNS + c1) x ${DURATION}s per variant," \
	    "wrk -t1, keep-alive"
	echo
} >"$OUT/summary.md"

before=$(bsp_snapshot "before load")
echo "warming up" >&2
taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNS" -d3s "$BASE/health" >/dev/null
taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNS" -d3s \
    -H "Authorization: Bearer $TOKEN" "$BASE/auth/validate" >/dev/null
sleep 1

r=1
while [ $r -le "$ROUNDS" ]; do
	echo "round $r/$ROUNDS" >&2
	for c in "$CONNS" 1; do
		for v in health jwt apikey; do
			variant $v $r $v "$BSP_PID" 1 "$c" "$DURATION"
		done
		wrk_run $r jwt-nocache "$NC_PID" 1 "$c" "$DURATION" \
		    "$NC_BASE/auth/validate" -H "Authorization: Bearer $TOKEN2"
	done
	r=$((r + 1))
done
sleep 1
after=$(bsp_snapshot "after $ROUNDS rounds")

# perf: where the instructions go.  perf record samples the daemon's user
# instructions (every PERF_PERIOD) with DWARF call graphs under CONNS load;
# a concurrent `perf stat` count of the same event and the daemon's own
# request counter over the same window turn each function's inclusive share
# of the samples into instructions per request.
PERF_PERIOD=${PERF_PERIOD:-500000}
PERF_SYMS="event_base_loop auth_request crypto_hash_token principal_revoked
tokens_verify_jwt jose_parse jose_verify crypto_sign_verify_detached
jose_claims_check route_health route_auth_validate json_pack json_dumps
server_reply_json evhttp_send_reply evhttp_parse_firstline_
evhttp_parse_headers_ request_finish metric_observe __GI___libc_malloc
__GI___libc_free __vfprintf_internal __GI_epoll_ctl __GI___writev
__GI___readv"
perf_requests()		# port route
{
	curl -sf "http://127.0.0.1:$1/metrics" | awk -v r="$2" '
	    index($1, "bsp_http_requests_total{route=\"" r "\",code=\"200\"}") == 1 \
		{ n += $2 } END { print n + 0 }'
}
perf_one()		# name pid port route wrk-args...
{
	_name=$1 _pid=$2 _port=$3 _route=$4
	shift 4
	taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNS" -d$((PERF_SECONDS + 3))s \
	    "$@" >/dev/null 2>&1 &
	_wrk=$!
	sleep 1
	_n0=$(perf_requests "$_port" "$_route")
	perf stat -x, -e instructions:u -p "$_pid" -o "$WORK/perf-$_name.stat" \
	    -- sleep "$PERF_SECONDS" &
	_stat=$!
	perf record -q -e instructions:u -c "$PERF_PERIOD" \
	    --call-graph dwarf,8192 -p "$_pid" -o "$WORK/perf-$_name.data" \
	    -- sleep "$PERF_SECONDS" 2>/dev/null
	wait $_stat
	_n1=$(perf_requests "$_port" "$_route")
	wait $_wrk
	perf report -q -i "$WORK/perf-$_name.data" --children --sort symbol \
	    -g none --percent-limit 0.05 2>/dev/null |
	    awk '$3 == "[.]" { sub("%", "", $1); print $1, $4 }' \
	    >"$OUT/perf-$_name.txt"
	perf report -q -i "$WORK/perf-$_name.data" --no-children \
	    --sort dso,symbol --percent-limit 0.5 -g none \
	    >"$OUT/perf-self-$_name.txt" 2>/dev/null
	_ev=$(sed -n 's/^\([0-9]*\),.*instructions:u.*/\1/p' \
	    "$WORK/perf-$_name.stat")
	echo "$_name $_ev $((_n1 - _n0))" >>"$OUT/perf-events.txt"
}
# perf_table: k instructions per request in each function (inclusive).
perf_table()
{
	awk -v syms="$PERF_SYMS" -v out="$OUT" '
	BEGIN {
		ns = split(syms, sym, /[ \n]+/)
		while ((getline l < (out "/perf-events.txt")) > 0) {
			split(l, f, " ")
			nv++; v[nv] = f[1]; per[f[1]] = f[2] / f[3] / 1000
			while ((getline m < (out "/perf-" f[1] ".txt")) > 0) {
				split(m, g, " ")
				if (!((f[1], g[2]) in pct))
					pct[f[1], g[2]] = g[1]
			}
		}
		printf "| function (inclusive) |"
		for (i = 1; i <= nv; i++) printf " %s |", v[i]
		printf "\n|---|"
		for (i = 1; i <= nv; i++) printf "---|"
		printf "\n"
		for (j = 1; j <= ns; j++) {
			line = ""; any = 0
			for (i = 1; i <= nv; i++) {
				p = pct[v[i], sym[j]]
				if (p != "") any = 1
				c = "-"
				if (p != "")
					c = sprintf("%.1f", p * per[v[i]] / 100)
				line = line " " c " |"
			}
			if (any)
				printf "| %s |%s\n", sym[j], line
		}
	}'
}
if [ "$PERF" = 1 ]; then
	echo "perf" >&2
	: >"$OUT/perf-events.txt"
	perf_one health "$BSP_PID" "$BSP_PORT" health "$BASE/health"
	perf_one jwt "$BSP_PID" "$BSP_PORT" auth_validate \
	    -H "Authorization: Bearer $TOKEN" "$BASE/auth/validate"
	perf_one apikey "$BSP_PID" "$BSP_PORT" auth_validate \
	    -H "Authorization: Bearer $APIKEY" "$BASE/auth/validate"
	perf_one jwt-nocache "$NC_PID" "$NC_PORT" auth_validate \
	    -H "Authorization: Bearer $TOKEN2" "$NC_BASE/auth/validate"
fi

bsp_stop
MAIN_RC=$BSP_RC
BSP_PID=$NC_PID
bsp_stop

{
	summarize "jwt:$CONNS health:$CONNS apikey:$CONNS health:$CONNS" \
	    "jwt-nocache:$CONNS health:$CONNS jwt:1 health:1 apikey:1 health:1" \
	    "jwt-nocache:1 health:1"
	echo
	echo "main daemon memory and descriptors:"
	echo
	echo "$BSP_SNAPSHOT_HEADER"
	echo "|---|---|---|---|---|---|"
	echo "$before"
	echo "$after"
	echo
	echo "exit status after SIGTERM: main $MAIN_RC, nocache $BSP_RC;" \
	    "warnings and errors in the logs:"
	bsp_log_problems "$WORK/main"
	bsp_log_problems "$WORK/nocache"
	if [ "$PERF" = 1 ]; then
		echo
		echo "where the user-space instructions go: thousands of" \
		    "instructions per request spent in each function and its" \
		    "callees (perf record -e instructions:u, ${PERF_SECONDS}s" \
		    "under c$CONNS; '-': below 0.05% of samples):"
		echo
		perf_table
	fi
	echo
	bench_load_note
} >>"$OUT/summary.md"
cp "$WORK/main/daemon.log" "$OUT/daemon-main.log"
cp "$WORK/nocache/daemon.log" "$OUT/daemon-nocache.log"
cat "$OUT/summary.md"
echo "results: $OUT" >&2
