#!/bin/sh
#
# loop-turns.sh: what holds the daemon's event loop for long, under relay
# load: the p99 of a saturated single-loop server is set by its longest
# turns, since every connection waits while one runs.
#
# The daemon of one revision (build.sh), configured as relay-cpu.sh's,
# on SERVER_CPU; the fast nginx upstream and wrk (-t1 -cCONNS) on
# CLIENT_CPU; after a warm-up, `perf record -e cpu-clock -F FREQ
# --call-graph dwarf` of the daemon for SECS seconds.  Each sample is
# named by the first function of the daemon's own under
# event_base_loop (the callback that runs: usage_flush_cb,
# server_dispatch_cb, ...; libevent's own frames when none), and runs of
# consecutive samples with the same name, less than two sampling periods
# apart, are taken as one stretch of the loop in that callback.  Prints,
# per name, how many stretches, the longest, their p99, and their total;
# and wrk's latency distribution.  A stretch can join two turns of the
# same callback back to back; it is an upper bound on a turn.
#
# Usage: bench/loop-turns.sh [REV]     (default HEAD; ~1 minute)
# Environment: SECS (6), FREQ (4000), CONNS (50), WARM (3), SERVER_CPU (0),
# CLIENT_CPU (1), RESULTS, KEEP.

set -eu

TOP=$(cd "$(dirname "$0")/.." && pwd)
. "$TOP/bench/lib.sh"
. "$TOP/bench/relay-lib.sh"

REV=${1:-HEAD}
SECS=${SECS:-6}
FREQ=${FREQ:-4000}
CONNS=${CONNS:-50}
WARM=${WARM:-3}

bench_needs perf wrk nginx taskset

cd "$TOP"
bench_dirs loop-turns

line=$(bench_build_spec "$REV")
SHORT=${line%%	*}
B=${line#*	}
BSP=$B/bedrock-sso-proxy

export RELAY_BODY
RPATH=/model/$RELAY_MODEL/invoke
mkdir -p "$WORK/up" "$WORK/bsp"
UP_PORT=$(free_port)
upstream_start "$WORK/up" "$UP_PORT"
d=$WORK/bsp
relay_bsp_config "$d" "$UP_PORT"
sed 's/access: false/access: true/' "$d/cfg.yaml" >"$d/cfg.tmp" &&
    mv "$d/cfg.tmp" "$d/cfg.yaml"
chmod 600 "$d/cfg.yaml"
TOKEN=$(relay_token "$d")
[ -n "$TOKEN" ] || { cat "$d/cli.log" >&2; exit 1; }
bsp_start "$d"

load()	# secs file
{
	taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNS" -d"$1"s --latency \
	    -s "$TOP/bench/relay.lua" -H "Authorization: Bearer $TOKEN" \
	    -H 'Content-Type: application/json' \
	    "http://127.0.0.1:$BSP_PORT$RPATH" >"$2"
}

load "$WARM" "$WORK/warm.txt"
perf record -q -e cpu-clock -F "$FREQ" --call-graph dwarf,8192 \
    -o "$WORK/perf.data" -p "$BSP_PID" -- sleep "$SECS" 2>/dev/null &
PERF_PID=$!
load "$SECS" "$OUT/wrk.txt"
wait "$PERF_PID" || true
bsp_stop

perf script -i "$WORK/perf.data" -F time,ip,sym 2>/dev/null |
awk -v period="$(awk -v f="$FREQ" 'BEGIN { print 1 / f }')" '
	# A sample: "TIME:" then its frames, leaf first; one name per sample.
	function flush() {
		if (t == "")
			return
		name = "libevent"
		for (i = nf; i >= 1; i--)
			if (f[i] == "event_base_loop")
				break
		for (i--; i >= 1; i--)
			if (f[i] !~ /^(0x|\[unknown\]|event_process_active)/) {
				name = f[i]
				break
			}
		if (name == cur && t - last < 2 * period) {
			last = t
		} else {
			if (cur != "")
				end_run()
			cur = name; first = t; last = t
		}
		t = ""; nf = 0
	}
	function end_run(   d) {
		d = (last - first + period) * 1000
		runs[cur] = runs[cur] " " d
		n[cur]++; tot[cur] += d
		if (d > mx[cur]) mx[cur] = d
	}
	/^ *[0-9]+\.[0-9]+: *$/ { flush(); t = $1 + 0; next }
	NF >= 2 { sub(/\+0x[0-9a-f]+$/, "", $2); f[++nf] = $2 }
	END {
		flush(); if (cur != "") end_run()
		for (k in n) {
			c = split(runs[k], v, " ")
			# p99 of the stretches: a simple sort of this name`s runs
			for (i = 2; i <= c; i++)
				for (j = i; j > 1 && v[j - 1] + 0 > v[j] + 0; j--) {
					x = v[j]; v[j] = v[j - 1]; v[j - 1] = x
				}
			p = v[int(c * 0.99) > 0 ? int(c * 0.99) : 1]
			printf "%-40s %7d %9.2f %9.2f %9.0f\n", k, n[k], mx[k], p,
			    tot[k]
		}
	}' | sort -k3 -nr | head -15 >"$WORK/turns.txt"

{
	echo "# loop-turns.sh: the daemon's longest stretches in one callback" \
	    "under relay load"
	echo
	echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
	echo "daemon: $(cat "$B/bench-rev") ($B)"
	echo "load: wrk -t1 -c$CONNS for ${SECS}s, perf cpu-clock at $FREQ Hz"
	echo
	echo "| callback | stretches | longest ms | p99 ms | total ms |"
	echo "|---|---|---|---|---|"
	awk '{ printf "| %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5 }' \
	    "$WORK/turns.txt"
	echo
	echo "wrk:"
	echo
	echo '```'
	sed -n '/Latency Distribution/,/requests in/p' "$OUT/wrk.txt"
	echo '```'
	echo
	bench_load_note
} >"$OUT/summary.md"
cat "$OUT/summary.md"
echo "results: $OUT" >&2
