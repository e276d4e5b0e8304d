#!/bin/sh
#
# relay-cpu.sh: CPU time per relayed InvokeModel call of the daemon against
# the floor of its shape (bench/bare-relay.c: evhttp in, evhttp_connection
# out, nothing else) and against nginx as a plain reverse proxy, in paired
# rounds.
#
# Every target relays to the same one-process nginx upstream
# (relay-lib.sh: InvokeModel answered with a 255-byte Anthropic message and
# Bedrock's token-count headers), which runs on CLIENT_CPU with wrk; the
# target runs alone on SERVER_CPU (taskset).  Targets:
#   bare      bench/bare-relay.c (built here, -O2 -g, against the same
#             libevent), a pool of up to 64 keep-alive upstream connections
#   nginx     nginx -> upstream (one process, keepalive 32, HTTP/1.1)
#   bsp-REV   the daemon of each revision given (default HEAD), built by
#             build.sh: authenticated InvokeModel from an auth-cache hit
#             (token from `token mint`), SigV4 with static keys, usage rows
#             written to SQLite, the access log on (to a file), metrics on
# The same wrk load for all: -t1 -cCONNS -dDURATION, POST of the 184-byte
# body with the token (bench/relay.lua; the others ignore the token).
# Each round runs every target once, in an order rotated from round to
# round, so that a change of machine load hits all of them alike; CPU per
# call = utime+stime of the target (/proc/PID/stat) over the run / calls.
# Per round, each daemon's ratio to bare and to nginx, and each revision
# against the one before it; then medians with [min, max] over the rounds
# (lib.sh's summarize).
#
# Usage: bench/relay-cpu.sh [REV[,configure-option...] ...]
#   bench/relay-cpu.sh                          # HEAD: ~3 min
#   bench/relay-cpu.sh A B C                    # each optimisation's row
#   bench/relay-cpu.sh HEAD HEAD,--with-jemalloc
# Environment: ROUNDS (5), DURATION (10 s), CONNS (50), WARM (3 s),
# SERVER_CPU (0), CLIENT_CPU (1), RESULTS, KEEP, NICE_BUILD (10).

set -eu

TOP=$(cd "$(dirname "$0")/.." && pwd)
. "$TOP/bench/lib.sh"
. "$TOP/bench/relay-lib.sh"

ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-10}
CONNS=${CONNS:-50}
WARM=${WARM:-3}
PERFSTAT=0	# no hardware counters on this VM (see bench/README.md)
[ $# -gt 0 ] || set -- HEAD

bench_needs wrk nginx curl taskset sqlite3 pkg-config

cd "$TOP"
bench_dirs relay-cpu

# The builds, one at a time: name<TAB>build dir, one line per revision.
: >"$WORK/builds"
for spec in "$@"; do
	line=$(bench_build_spec "$spec")
	tag=${line%%	*}
	b=${line#*	}
	printf 'bsp-%s\t%s\n' "$tag" "$b" >>"$WORK/builds"
done
export RELAY_BODY
RPATH=/model/$RELAY_MODEL/invoke
mkdir -p "$WORK/up" "$WORK/np"
UP_PORT=$(free_port)
upstream_start "$WORK/up" "$UP_PORT"
NP_PORT=$(free_port)
nginxproxy_start "$WORK/np" "$NP_PORT" "$UP_PORT"
bare_start "$WORK/bare" "$UP_PORT"

# Targets: name pid port, one line each.
printf 'bare %s %s\nnginx %s %s\n' "$BARE_PID" "$BARE_PORT" "$NP_PID" \
    "$NP_PORT" >"$WORK/targets"
TOKEN=
while IFS="$(printf '\t')" read -r name b; do
	BSP=$b/bedrock-sso-proxy
	d=$WORK/$name
	mkdir -p "$d"
	relay_bsp_config "$d" "$UP_PORT"
	sed 's/access: false/access: true/' "$d/cfg.yaml" >"$d/cfg.tmp" &&
	    mv "$d/cfg.tmp" "$d/cfg.yaml"
	chmod 600 "$d/cfg.yaml"
	tok=$(relay_token "$d")
	[ -n "$tok" ] || { cat "$d/cli.log" >&2; exit 1; }
	echo "$tok" >"$d/token"
	[ -n "$TOKEN" ] || TOKEN=$tok
	bsp_start "$d"
	echo "$name $BSP_PID $BSP_PORT" >>"$WORK/targets"
done <"$WORK/builds"

# Every target must answer 200 with the upstream's body.
while read -r name pid port; do
	tok=$TOKEN
	[ ! -f "$WORK/$name/token" ] || tok=$(cat "$WORK/$name/token")
	code=$(curl -s -o "$WORK/check.out" -w '%{http_code}' -X POST \
	    -H "Authorization: Bearer $tok" -H 'Content-Type: application/json' \
	    --data "$RELAY_BODY" "http://127.0.0.1:$port$RPATH")
	if [ "$code" != 200 ] ||
	    [ "$(cat "$WORK/check.out")" != "$RELAY_ANSWER" ]; then
		echo "relay-cpu.sh: $name answered $code:" \
		    "$(cat "$WORK/check.out")" >&2
		exit 1
	fi
done <"$WORK/targets"

wrk_target()	# round name pid port secs
{
	_tok=$TOKEN
	[ ! -f "$WORK/$2/token" ] || _tok=$(cat "$WORK/$2/token")
	if [ "$1" = warm ]; then
		taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNS" -d"$5"s \
		    -s "$TOP/bench/relay.lua" -H "Authorization: Bearer $_tok" \
		    -H 'Content-Type: application/json' \
		    "http://127.0.0.1:$4$RPATH" >"$OUT/warm-$2.txt" 2>&1
		return
	fi
	wrk_run "$1" "$2" "$3" 1 "$CONNS" "$5" "http://127.0.0.1:$4$RPATH" \
	    -s "$TOP/bench/relay.lua" -H "Authorization: Bearer $_tok" \
	    -H 'Content-Type: application/json'
}

{
	echo "# relay-cpu.sh: CPU per relayed InvokeModel call: the daemon" \
	    "vs a bare evhttp relay vs nginx"
	echo
	echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
	while IFS="$(printf '\t')" read -r name b; do
		echo "$name: $(cat "$b/bench-rev") ($b)"
	done <"$WORK/builds"
	echo "machine: $(uname -sr), $(nproc) CPUs," \
	    "$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)"
	echo "tools: $(wrk --version 2>&1 | head -1 | cut -d' ' -f1-2)," \
	    "$(nginx -v 2>&1 | cut -d' ' -f3), $(gcc --version | head -1)," \
	    "libevent $(pkg-config --modversion libevent)"
	echo "pinning: targets on CPU $SERVER_CPU; wrk and the nginx" \
	    "upstream on CPU $CLIENT_CPU"
	echo "runs: $ROUNDS rounds x ${DURATION}s per target, wrk -t1" \
	    "-c$CONNS, keep-alive, body ${#RELAY_BODY} bytes, answer" \
	    "${#RELAY_ANSWER} bytes"
	echo
} >"$OUT/summary.md"

echo "warming up" >&2
while read -r name pid port; do
	wrk_target warm "$name" "$pid" "$port" "$WARM"
done <"$WORK/targets"

ntargets=$(wc -l <"$WORK/targets")
r=1
while [ "$r" -le "$ROUNDS" ]; do
	echo "round $r/$ROUNDS" >&2
	# Rotate the order by one target per round.
	k=$(( (r - 1) % ntargets ))
	{ tail -n +$((k + 1)) "$WORK/targets"; head -n "$k" "$WORK/targets"; } \
	    >"$WORK/order"
	while read -r name pid port; do
		wrk_target "$r" "$name" "$pid" "$port" "$DURATION" </dev/null
	done <"$WORK/order"
	r=$((r + 1))
done

# Pairs for the ratio table: each daemon vs bare and vs nginx, each
# revision vs the one before it, nginx vs bare.
pairs="nginx:$CONNS bare:$CONNS"
prev=
while IFS="$(printf '\t')" read -r name b; do
	pairs="$pairs $name:$CONNS bare:$CONNS $name:$CONNS nginx:$CONNS"
	[ -z "$prev" ] || pairs="$pairs $name:$CONNS $prev:$CONNS"
	prev=$name
done <"$WORK/builds"

# The daemons' bookkeeping: a usage row with the upstream's tokens and an
# access-log line per relayed call (wrk's warm-up and timed runs, and the
# check).
checks=
while IFS="$(printf '\t')" read -r name b; do
	read -r _ pid port <<-EOF
	$(grep "^$name " "$WORK/targets")
	EOF
	sent=$(cat "$OUT"/wrk-"$name"-c*.txt "$OUT/warm-$name.txt" |
	    sed -n 's/^WRKRESULT requests=\([0-9]*\).*/\1/p' |
	    awk '{ s += $1 } END { print s + 1 }')
	BSP_PID=$pid
	bsp_stop
	rows=$(sqlite3 "$WORK/$name/proxy.db" "SELECT count(*) FROM usage
	    WHERE route = 'InvokeModel' AND input_tokens = 17 AND
	    output_tokens = 9")
	lines=$(grep -c 'msg=request ' "$WORK/$name/daemon.log" || true)
	checks="$checks
| $name | $sent | $rows | $lines | $BSP_RC |"
done <"$WORK/builds"

{
	echo "CPU us per call = target's utime+stime over the run / calls" \
	    "completed by wrk; p50/p99 from wrk"
	echo
	summarize $pairs
	echo
	echo "Bookkeeping (calls sent include wrk's warm-up, whose last" \
	    "answers may still be in flight when wrk stops; usage rows" \
	    "and access-log lines should equal them):"
	echo
	echo "| daemon | calls sent (about) | usage rows 17/9 | access lines |" \
	    "exit |"
	echo "|---|---|---|---|---|"
	echo "$checks" | sed '/^$/d'
	echo
	bench_load_note
} >>"$OUT/summary.md"
cat "$OUT/summary.md"
echo "results: $OUT" >&2
