#!/bin/sh
#
# callgrind-bare.sh: user-space instructions per relayed InvokeModel call,
# the daemon of one revision against bench/bare-relay.c, the floor of its
# shape, both counted by valgrind's callgrind in the same run.
#
# relay-cpu.sh measures CPU time, which is what the issue's goal is
# about, but it moves by ±0.1 of the ratio between runs; the instruction
# count does not move, and the daemon's own functions' inclusive counts
# say where the difference between the two goes.  Kernel work is not in
# it: compare system calls with syscalls-relay.sh (or strace -c).
#
# Each target relays to the same fast nginx upstream (relay-lib.sh); the
# daemon is configured as relay-cpu.sh's (an EdDSA token from `token
# mint`, so an auth-cache hit; SigV4 with static keys; usage rows to
# SQLite; the access log on).  A run: start under callgrind, WARMUP
# calls, a 2 s pause (the usage timer writes their rows, so SQLite's
# statements are prepared), zero the counters (callgrind_control -z), N
# calls over CONNS keep-alive connections (curl --parallel: an exact
# count), a 2 s pause (the usage timer writes the rows), dump.  Per call
# = total / N; the 4 s of idle timers cost a few hundred instructions in
# all.  Every answer
# must be 200.  Prints both totals, the ratio, and the daemon's own
# functions with their inclusive instructions per call.
#
# Usage: bench/callgrind-bare.sh [REV]     (default HEAD; ~2 minutes)
# Environment: N (2000), WARMUP (100), CONNS (4), TOP_ROWS (60), RESULTS,
# KEEP.

set -eu

TOP=$(cd "$(dirname "$0")/.." && pwd)
. "$TOP/bench/lib.sh"
. "$TOP/bench/relay-lib.sh"

REV=${1:-HEAD}
N=${N:-2000}
WARMUP=${WARMUP:-100}
CONNS=${CONNS:-4}
NTOP=${TOP_ROWS:-60}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}

bench_needs valgrind callgrind_annotate callgrind_control nginx curl pkg-config

cd "$TOP"
bench_dirs callgrind-bare

line=$(bench_build_spec "$REV")
SHORT=${line%%	*}
B=${line#*	}
BSP=$B/bedrock-sso-proxy
gcc -O2 -g -Wall -o "$WORK/bare-relay" "$TOP/bench/bare-relay.c" \
    $(pkg-config --cflags --libs libevent)

RPATH=/model/$RELAY_MODEL/invoke
printf '%s' "$RELAY_BODY" >"$WORK/body"
mkdir -p "$WORK/up" "$WORK/bare" "$WORK/bsp"
UP_PORT=$(free_port)
upstream_start "$WORK/up" "$UP_PORT"

# send n port token: n calls; fails unless every answer is 200.
send()
{
	{
		echo 'request = "POST"'
		echo 'header = "Content-Type: application/json"'
		echo "header = \"Authorization: Bearer $3\""
		echo "data-binary = \"@$WORK/body\""
		echo 'write-out = "%{stderr}ANSWER %{http_code}\n"'
		awk -v n="$1" -v u="http://127.0.0.1:$2$RPATH" 'BEGIN {
		    for (i = 0; i < n; i++)
			printf "url = \"%s\"\noutput = \"/dev/null\"\n", u }'
	} >"$WORK/curl.cfg"
	taskset -c "$CLIENT_CPU" curl -s --no-progress-meter --parallel \
	    --parallel-max "$CONNS" -K "$WORK/curl.cfg" 2>"$WORK/curl.status" ||
	    true
	awk -v n="$1" '$1 == "ANSWER" && $2 == 200 { ok++ }
	    END { if (ok != n) { printf "callgrind-bare.sh: %d of %d " \
		"answers 200\n", ok, n > "/dev/stderr"; exit 1 } }' \
	    "$WORK/curl.status"
}

# measure name pid port token: zero, N calls, dump; the total to $WORK/name.
measure()
{
	send "$WARMUP" "$3" "$4"
	# The usage tick writes the warm-up's rows first: SQLite prepares
	# each multi-row INSERT once, the 64-row one at ~2 million
	# instructions, which counted as 1 k per call when it fell in N.
	sleep 2
	callgrind_control -z "$2" >/dev/null
	send "$N" "$3" "$4"
	sleep 2
	callgrind_control -d "$2" >/dev/null
	sleep 1
	f=$(ls -t "$WORK/$1"/cg.out* | head -1)
	cp "$f" "$OUT/$1.callgrind"
	kill "$2"
	wait "$2" 2>/dev/null || true
	callgrind_annotate "$OUT/$1.callgrind" 2>/dev/null |
	    sed -n 's/^ *\([0-9,]*\) .*PROGRAM TOTALS.*/\1/p' | tr -d , \
	    >"$WORK/$1.total"
}

cg()	# dir: valgrind's command line
{
	echo "valgrind --tool=callgrind --callgrind-out-file=$1/cg.out" \
	    "--log-file=$1/valgrind.log"
}

echo "bare relay" >&2
taskset -c "$SERVER_CPU" $(cg "$WORK/bare") "$WORK/bare-relay" 0 "$UP_PORT" \
    >"$WORK/bare/out" 2>&1 &
P=$!
BENCH_PIDS="$BENCH_PIDS $P"
i=0
until PORT=$(sed -n 's/^listening //p' "$WORK/bare/out") && [ -n "$PORT" ]; do
	i=$((i + 1))
	[ $i -lt 100 ] || { echo "bare-relay did not start" >&2; exit 1; }
	sleep 0.2
done
measure bare "$P" "$PORT" none

echo "daemon $SHORT" >&2
d=$WORK/bsp
relay_bsp_config "$d" "$UP_PORT"
sed 's/access: false/access: true/' "$d/cfg.yaml" >"$d/cfg.tmp" &&
    mv "$d/cfg.tmp" "$d/cfg.yaml"
chmod 600 "$d/cfg.yaml"
TOKEN=$(relay_token "$d")
[ -n "$TOKEN" ] || { cat "$d/cli.log" >&2; exit 1; }
taskset -c "$SERVER_CPU" $(cg "$d") "$BSP" -d -f "$d/cfg.yaml" \
    2>"$d/daemon.log" &
BSP_PID=$!
BENCH_PIDS="$BENCH_PIDS $BSP_PID"
bsp_wait_port "$d" 600
measure bsp "$BSP_PID" "$BSP_PORT" "$TOKEN"

{
	echo "# callgrind-bare.sh: user-space instructions per relayed call," \
	    "the daemon against the bare evhttp relay"
	echo
	echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
	echo "daemon: $(cat "$B/bench-rev") ($B)"
	echo "tools: $(valgrind --version), curl --parallel-max $CONNS," \
	    "$N calls after $WARMUP"
	echo
	awk -v n="$N" -v b="$(cat "$WORK/bare.total")" \
	    -v d="$(cat "$WORK/bsp.total")" 'BEGIN {
		printf "| target | instructions per call |\n|---|---|\n"
		printf "| bare relay | %.1f k |\n", b / n / 1000
		printf "| daemon | %.1f k (%.2fx) |\n", d / n / 1000, d / b }'
	echo
	echo "The daemon's own functions, inclusive, per call (k):"
	echo
	echo '```'
	callgrind_annotate --inclusive=yes --threshold=100 \
	    "$OUT/bsp.callgrind" 2>/dev/null | grep '/src/[a-z0-9-]*\.c:' |
	    sed -E 's/^ *([0-9,]+) \([ 0-9.%]+\) +\*? *([^ ]+).*/\1 \2/' |
	    awk -v n="$N" '{ gsub(",", "", $1); sub(".*/src/", "", $2);
		printf "%8.1f  %s\n", $1 / n / 1000, $2 }' | head -"$NTOP"
	echo '```'
} >"$OUT/summary.md"
cat "$OUT/summary.md"
echo "results: $OUT" >&2
