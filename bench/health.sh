#!/bin/sh
#
# health.sh: GET /health under wrk, against nginx answering the same static
# body in the same run.
#
# One optimized daemon and one nginx (one process: no master, no daemon,
# access log off, keep-alive unlimited) run side by side, both pinned to
# SERVER_CPU; wrk runs on CLIENT_CPU.  Each round loads each server twice
# for DURATION seconds: throughput (1 thread, CONNS connections) and latency
# (1 thread, 1 connection).  Per run: requests/s, wrk's p50/p99, server CPU
# (utime+stime from /proc/PID/stat) per request, wrk's own CPU and the rest
# of the machine's.  Before the first and after the last run: the daemon's
# RSS (/proc VmRSS and its bsp_process_resident_memory_bytes), peak RSS and
# open fds, to catch leaks.  With PERF=1 (default), `perf trace -s` then
# counts each server's system calls per request for TRACE_SECONDS (5).
#
# Usage: bench/health.sh          (ROUNDS=3 DURATION=30: about 7 minutes)
# Environment: ROUNDS, DURATION, CONNS (50), PERF (1), PERFSTAT (1),
# TRACE_SECONDS (5), SERVER_CPU (0), CLIENT_CPU (1), RESULTS
# (bench/results), KEEP (keep the temporary directory), and build.sh's.

set -eu

TOP=$(cd "$(dirname "$0")/.." && pwd)
. "$TOP/bench/lib.sh"

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-30}
CONNS=${CONNS:-50}

bench_setup health
mkdir -p "$WORK/bsp" "$WORK/nginx"
bsp_config "$WORK/bsp"
bsp_start "$WORK/bsp"
NGINX_PORT=$(free_port)
nginx_start "$WORK/nginx" "$NGINX_PORT"
BSP_URL=http://127.0.0.1:$BSP_PORT/health
NGINX_URL=http://127.0.0.1:$NGINX_PORT/health

snapshot()
{
	bsp_snapshot "$1" "$(proc_status "$NGINX_PID" VmRSS) kB, $(proc_fds \
	    "$NGINX_PID") fds"
}

{
	echo "# health.sh: GET /health, bedrock-sso-proxy vs nginx"
	echo
	bench_describe
	echo "runs: $ROUNDS rounds x (c$CONNS + c1) x ${DURATION}s per server," \
	    "wrk -t1, keep-alive"
	echo
} >"$OUT/summary.md"

before=$(snapshot "before load")
echo "warming up" >&2
taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNS" -d3s "$BSP_URL" >/dev/null
taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNS" -d3s "$NGINX_URL" >/dev/null
sleep 1
afterwarm=$(snapshot "after warm-up")

r=1
while [ $r -le "$ROUNDS" ]; do
	echo "round $r/$ROUNDS" >&2
	wrk_run $r bsp "$BSP_PID" 1 "$CONNS" "$DURATION" "$BSP_URL"
	wrk_run $r nginx "$NGINX_PID" 1 "$CONNS" "$DURATION" "$NGINX_URL"
	wrk_run $r bsp "$BSP_PID" 1 1 "$DURATION" "$BSP_URL"
	wrk_run $r nginx "$NGINX_PID" 1 1 "$DURATION" "$NGINX_URL"
	r=$((r + 1))
done
sleep 1
after=$(snapshot "after $ROUNDS rounds")
if [ "${PERF:-1}" = 1 ]; then
	echo "perf trace" >&2
	trace_syscalls bsp "$BSP_PID" "$BSP_URL" >"$WORK/syscalls.txt"
	trace_syscalls nginx "$NGINX_PID" "$NGINX_URL" >>"$WORK/syscalls.txt"
fi
bsp_stop
kill "$NGINX_PID"
wait "$NGINX_PID" || true

{
	summarize "bsp:$CONNS nginx:$CONNS bsp:1 nginx:1"
	echo
	echo "bedrock-sso-proxy memory and descriptors (nginx for reference):"
	echo
	echo "$BSP_SNAPSHOT_HEADER nginx |"
	echo "|---|---|---|---|---|---|---|"
	echo "$before"
	echo "$afterwarm"
	echo "$after"
	echo
	if [ -s "$WORK/syscalls.txt" ]; then
		echo "system calls per request under c$CONNS (perf trace -s," \
		    "${TRACE_SECONDS:-5}s):"
		sed 's/^/    /' "$WORK/syscalls.txt"
		echo
	fi
	echo "daemon exit status after SIGTERM: $BSP_RC; warnings and errors" \
	    "in its log:"
	bsp_log_problems "$WORK/bsp"
	echo "nginx error log:"
	sed 's/^/    /' "$WORK/nginx/logs/error.log" | head -20
	[ -s "$WORK/nginx/logs/error.log" ] || echo "    empty"
	echo
	bench_load_note
} >>"$OUT/summary.md"
cp "$WORK/bsp/daemon.log" "$OUT/"
cat "$OUT/summary.md"
echo "results: $OUT" >&2
