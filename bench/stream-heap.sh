#!/bin/sh
#
# stream-heap.sh: what 1 000 live streams hold, in the daemon and in the
# bare evhttp relay (bench/bare-relay.c), split into the heap in use,
# the free space inside the heap, and the rest of RSS.
#
# streams.sh reports RSS per stream at the peak; this says what it is
# made of.  For each target in turn (a fresh process): bench/streams.c's
# upstream (FRAMES frames INTERVAL ms apart, so the streams outlive the
# measurement), the relay, one check stream, then VmRSS and glibc's
# malloc_stats() (called in the relay through gdb: its "system bytes",
# the heap glibc holds, and "in use bytes", what is allocated) before
# the STREAMS; then STREAMS streams at once, and the same AT seconds in,
# while every stream is live.  Per stream = (during - before) / STREAMS.
# Every client run must end with every frame, in order.  gdb stops the
# relay for a moment twice; nothing is timed.
#
# Usage: bench/stream-heap.sh [REV...]     (default HEAD; ~40 s a target)
# Environment: STREAMS (1000), FRAMES (400), INTERVAL (50), AT (6), RAMP
# (0: all at once; MS: opened over MS ms, as in streams.sh),
# SERVER_CPU (0), CLIENT_CPU (1), RESULTS, KEEP; REV,configure-option as
# in relay-cpu.sh (HEAD,--with-jemalloc: no malloc_stats, RSS only).

set -eu

TOP=$(cd "$(dirname "$0")/.." && pwd)
. "$TOP/bench/lib.sh"
. "$TOP/bench/relay-lib.sh"

STREAMS=${STREAMS:-1000}
FRAMES=${FRAMES:-400}
INTERVAL=${INTERVAL:-50}
AT=${AT:-6}
RAMP=${RAMP:-0}
RAMPARG=
[ "$RAMP" = 0 ] || RAMPARG="--ramp $RAMP"
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
[ $# -gt 0 ] || set -- HEAD
bench_needs gdb taskset pkg-config
cd "$TOP"
bench_dirs stream-heap
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

: >"$WORK/builds"
for spec in "$@"; do
	line=$(bench_build_spec "$spec")
	printf '%s\n' "$line" >>"$WORK/builds"
done
# The bare relay's run needs a configuration and token too (ignored).
BSP=$(head -1 "$WORK/builds" | cut -f2)/bedrock-sso-proxy
SB=$WORK/streams
cc -O2 -g -Wall -o "$SB" "$TOP/bench/streams.c" \
    $(pkg-config --cflags --libs libevent) -lz
SPATH=/model/$RELAY_MODEL/invoke-with-response-stream

# heap pid log: "system in_use" of malloc_stats()'s total, in bytes.
heap()
{
	_n=$(grep -c 'in use bytes' "$2" 2>/dev/null || true)
	gdb -p "$1" -batch -ex 'call (void)malloc_stats()' >/dev/null 2>&1 ||
	    true
	_i=0
	while [ "$(grep -c 'in use bytes' "$2" 2>/dev/null || true)" -le \
	    "${_n:-0}" ] && [ $_i -lt 50 ]; do
		_i=$((_i + 1))
		sleep 0.1
	done
	# The last two lines of each: arena 0, then the total.
	awk '/system bytes/ { s = $NF } /in use bytes/ { u = $NF }
	    END { print s + 0, u + 0 }' "$2"
}

# run name build-dir: one target; a row to $OUT/rows.
run()
{
	d=$WORK/$1
	mkdir -p "$d"
	UP_PORT=$(free_port)
	taskset -c "$CLIENT_CPU" "$SB" serve "$UP_PORT" "$FRAMES" \
	    "$INTERVAL" 2>>"$d/upstream.log" &
	_up=$!
	BENCH_PIDS="$BENCH_PIDS $_up"
	relay_bsp_config "$d" "$UP_PORT"
	TOKEN=$(relay_token "$d")
	if [ "$1" = bare ]; then
		bare_start "$d/bare" "$UP_PORT"
		PID=$BARE_PID PORT=$BARE_PORT LOG=$d/bare/err
	else
		BSP=$2/bedrock-sso-proxy
		bsp_start "$d"
		PID=$BSP_PID PORT=$BSP_PORT LOG=$d/daemon.log
	fi
	"$SB" client 127.0.0.1 "$PORT" "$SPATH" 1 "$FRAMES" "$TOKEN" \
	    >"$d/check.txt" 2>&1 ||
	    { echo "stream-heap.sh: $1: check stream failed" >&2; exit 1; }
	sleep 1
	rss0=$(proc_status "$PID" VmRSS)
	heap "$PID" "$LOG" >"$d/heap0"
	read -r sys0 use0 <"$d/heap0"
	taskset -c "$CLIENT_CPU" "$SB" client $RAMPARG 127.0.0.1 "$PORT" \
	    "$SPATH" "$STREAMS" "$FRAMES" "$TOKEN" >"$d/client.txt" 2>&1 &
	_cp=$!
	sleep "$AT"
	rss1=$(proc_status "$PID" VmRSS)
	heap "$PID" "$LOG" >"$d/heap1"
	read -r sys1 use1 <"$d/heap1"
	wait "$_cp" ||
	    { echo "stream-heap.sh: $1: client failed" >&2; cat "$d/client.txt" >&2; exit 1; }
	grep -q "lost=0 .*out_of_order=0 extra=0 failed=0 errors=0" \
	    "$d/client.txt" ||
	    { echo "stream-heap.sh: $1: frames lost" >&2; cat "$d/client.txt" >&2; exit 1; }
	if [ "$1" = bare ]; then
		kill "$PID"; wait "$PID" 2>/dev/null || true
	else
		bsp_stop
	fi
	kill "$_up"; wait "$_up" 2>/dev/null || true
	awk -v n="$1" -v s="$STREAMS" -v r0="$rss0" -v r1="$rss1" \
	    -v s0="$sys0" -v s1="$sys1" -v u0="$use0" -v u1="$use1" 'BEGIN {
		if (s1 - s0 < 4096)	# not the glibc heap (jemalloc)
			printf "| %s | %.1f | - | - | - |\n", n,
			    (r1 - r0) * 1024 / s / 1000
		else
			printf "| %s | %.1f | %.1f | %.1f | %.1f |\n", n,
			    (r1 - r0) * 1024 / s / 1000,
			    (u1 - u0) / s / 1000,
			    (s1 - s0 - (u1 - u0)) / s / 1000,
			    (s1 - s0) / s / 1000 }' >>"$OUT/rows"
}

: >"$OUT/rows"
echo "bare relay" >&2
run bare ""
while IFS="$(printf '\t')" read -r tag b; do
	echo "daemon $tag" >&2
	run "bsp-$tag" "$b"
done <"$WORK/builds"

{
	echo "# stream-heap.sh: what $STREAMS live streams hold, per stream"
	echo
	echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
	echo "machine: $(uname -sr), $(nproc) CPUs"
	echo "builds: $(tr '\t\n' '= ' <"$WORK/builds")(-O2 -g, build.sh)"
	echo "streams: $STREAMS $([ "$RAMP" = 0 ] && echo "at once" ||
	    echo "opened over $RAMP ms"), $FRAMES frames $INTERVAL ms apart;" \
	    "measured $AT s in, against the same relay before them"
	echo
	echo "| relay | RSS kB | heap in use kB | free inside the heap kB | heap held kB |"
	echo "|---|---|---|---|---|"
	cat "$OUT/rows"
	echo
	bench_load_note
} | tee "$OUT/summary.md"
echo "results: $OUT"
