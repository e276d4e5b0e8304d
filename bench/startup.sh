#!/bin/sh
#
# startup.sh: start-up to ready and idle RSS of the daemon.
#
# The daemon of each revision given (default HEAD; build.sh, -O2 -g) with
# bench/lib.sh's configuration (SQLite, static fake AWS keys, access log
# off, level warn) plus the relay's (relay-lib.sh: EdDSA tokens, a local
# endpoint_url), pinned to SERVER_CPU.  bench/ready.c starts it with a
# NOTIFY_SOCKET of its own and returns when READY=1 arrives (sent once
# the listeners are bound and the loop is about to run), then SIGKILLs it;
# hyperfine times that RUNS times after WARMUP runs (the database exists
# after the first: this is a restart, not a first install).  Idle RSS:
# ready -r IDLE_WAIT prints VmRSS IDLE_WAIT seconds after READY=1, IDLE_RUNS
# times; median [min, max].
#
# Usage: bench/startup.sh [REV[,configure-option...] ...]   (~1 min)
# Environment: RUNS (30), WARMUP (3), IDLE_RUNS (5), IDLE_WAIT (2),
# SERVER_CPU (0), RESULTS, KEEP.

set -eu

TOP=$(cd "$(dirname "$0")/.." && pwd)
. "$TOP/bench/lib.sh"
. "$TOP/bench/relay-lib.sh"

RUNS=${RUNS:-30}
WARMUP=${WARMUP:-3}
IDLE_RUNS=${IDLE_RUNS:-5}
IDLE_WAIT=${IDLE_WAIT:-2}
[ $# -gt 0 ] || set -- HEAD
command -v hyperfine >/dev/null ||
    { echo "startup.sh: needs hyperfine (Debian: hyperfine)" >&2; exit 2; }

cd "$TOP"
bench_dirs startup

gcc -O2 -Wall -o "$WORK/ready" "$TOP/bench/ready.c"
{
	echo "# startup.sh: start-up to ready and idle RSS"
	echo
	echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
	echo "machine: $(uname -sr), $(nproc) CPUs; $(hyperfine --version)"
	echo "runs: hyperfine --warmup $WARMUP --runs $RUNS; idle RSS" \
	    "$IDLE_WAIT s after READY=1, $IDLE_RUNS runs"
	echo
	echo "| daemon | start-up to ready, mean ± σ ms | min ms | max ms |" \
	    "idle VmRSS kB, median [min, max] |"
	echo "|---|---|---|---|---|"
} >"$OUT/summary.md"

for spec in "$@"; do
	line=$(bench_build_spec "$spec")
	tag=${line%%	*}
	b=${line#*	}
	BSP=$b/bedrock-sso-proxy
	d=$WORK/$tag
	mkdir -p "$d"
	relay_bsp_config "$d" 9
	"$BSP" -f "$d/cfg.yaml" token mint --user "$RELAY_USER" \
	    >/dev/null 2>>"$d/cli.log"	# creates the database
	cmd="taskset -c $SERVER_CPU $WORK/ready $BSP -d -f $d/cfg.yaml"
	hyperfine -N --warmup "$WARMUP" --runs "$RUNS" \
	    --export-json "$OUT/hyperfine-$tag.json" "$cmd" \
	    >"$OUT/hyperfine-$tag.txt" 2>&1 </dev/null
	rss=
	i=0
	while [ $i -lt "$IDLE_RUNS" ]; do
		rss="$rss $(taskset -c "$SERVER_CPU" "$WORK/ready" \
		    -r "$IDLE_WAIT" "$BSP" -d -f "$d/cfg.yaml" 2>>"$d/daemon.log")"
		i=$((i + 1))
	done
	python3 - "$OUT/hyperfine-$tag.json" "$tag" "$rss" \
	    >>"$OUT/summary.md" <<-'EOF'
	import json, statistics, sys
	r = json.load(open(sys.argv[1]))["results"][0]
	rss = sorted(int(x) for x in sys.argv[3].split())
	print("| %s | %.1f ± %.1f | %.1f | %.1f | %d [%d, %d] |" % (
	    sys.argv[2], r["mean"] * 1e3, r["stddev"] * 1e3, r["min"] * 1e3,
	    r["max"] * 1e3, statistics.median(rss), rss[0], rss[-1]))
	EOF
done
{
	echo
	echo "Start-up to ready includes ready.c's fork and exec and the" \
	    "SIGKILL after READY=1 (~1 ms)."
	echo
	bench_load_note
} >>"$OUT/summary.md"
cat "$OUT/summary.md"
echo "results: $OUT" >&2
