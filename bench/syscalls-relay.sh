#!/bin/sh
#
# syscalls-relay.sh: system calls per relayed InvokeModel call, by name, of
# one or more revisions, counted by strace (no hardware counters needed).
#
# The same setup as callgrind-relay.sh (the fast nginx upstream, SigV4 with
# static keys, a token from `token mint`, usage rows to SQLite, the access
# log on, to a file), the daemon of each revision under `strace -f -c`.
# A run: start, WARMUP requests, exactly N requests over CONNS keep-alive
# connections (curl --parallel), 3 s for the usage timer, SIGTERM; then
#
#     per call = (calls(N2 run) - calls(N1 run)) / (N2 - N1)
#
# for each system call: start-up, warm-up and shutdown cancel.  strace
# stops the daemon at every system call, so it runs slower than it would,
# and how many calls share a loop turn (epoll_wait, the access log's
# write) depends on timing: compare revisions within one run (REPEAT pairs
# each, averaged), not with figures taken under another load.
#
# Usage: bench/syscalls-relay.sh REV [REV ...]     (~1 min per revision)
# Environment: N1 (500), N2 (2500), WARMUP (200), CONNS (4), REPEAT (2),
# RESULTS, KEEP.  Builds are shared with callgrind-relay.sh and
# relay-cpu.sh (/tmp/bsp-cg-rel-REV); REV,--with-jemalloc as in
# relay-cpu.sh.

set -eu

TOP=$(cd "$(dirname "$0")/.." && pwd)
. "$TOP/bench/lib.sh"
. "$TOP/bench/relay-lib.sh"

N1=${N1:-500}
N2=${N2:-2500}
WARMUP=${WARMUP:-200}
CONNS=${CONNS:-4}
REPEAT=${REPEAT:-2}
[ $# -gt 0 ] || set -- HEAD
command -v strace >/dev/null ||
    { echo "syscalls-relay.sh: needs strace" >&2; exit 2; }

cd "$TOP"
bench_dirs syscalls-relay

: >"$WORK/builds"
for spec in "$@"; do
	line=$(bench_build_spec "$spec")
	tag=${line%%	*}
	b=${line#*	}
	printf '%s\t%s\n' "$tag" "$b" >>"$WORK/builds"
done

mkdir -p "$WORK/up"
UP_PORT=$(free_port)
upstream_start "$WORK/up" "$UP_PORT"
RPATH=/model/$RELAY_MODEL/invoke
printf '%s' "$RELAY_BODY" >"$WORK/body"

# send dir name n token port: n relayed calls over CONNS connections.
send()
{
	{
		echo 'request = "POST"'
		echo 'header = "Content-Type: application/json"'
		echo "header = \"Authorization: Bearer $4\""
		echo "data-binary = \"@$WORK/body\""
		printf '%s\n' \
		    'write-out = "%{stderr}\nANSWER %{http_code}\n"'
		awk -v n="$3" -v u="http://127.0.0.1:$5$RPATH" 'BEGIN {
		    for (i = 0; i < n; i++)
			printf "url = \"%s\"\noutput = \"/dev/null\"\n", u }'
	} >"$1/$2.cfg"
	curl -s --no-progress-meter --parallel --parallel-max "$CONNS" \
	    -K "$1/$2.cfg" 2>"$1/$2.status" || true
	awk -v n="$3" '$1 == "ANSWER" && $2 == 200 { ok++ }
	    END { if (ok != n) { printf "syscalls-relay.sh: %d of %d " \
		"answers 200\n", ok, n > "/dev/stderr"; exit 1 } }' \
	    "$1/$2.status"
}

# run tag build n rep: one daemon under strace -f -c; writes
# $d/counts ("name calls" per line).
run()
{
	BSP=$2/bedrock-sso-proxy
	d=$WORK/$1-$3-$4
	mkdir -p "$d"
	relay_bsp_config "$d" "$UP_PORT"
	sed 's/access: false/access: true/' "$d/cfg.yaml" >"$d/cfg.tmp" &&
	    mv "$d/cfg.tmp" "$d/cfg.yaml"
	chmod 600 "$d/cfg.yaml"
	_tok=$(relay_token "$d")
	strace -f -c -o "$d/strace.txt" "$BSP" -d -f "$d/cfg.yaml" \
	    2>>"$d/daemon.log" &
	BSP_PID=$!
	BENCH_PIDS="$BENCH_PIDS $BSP_PID"
	_i=0
	while ! _port=$(sed -n \
	    's/.*msg=listening addr=127\.0\.0\.1:\([0-9]*\).*/\1/p' \
	    "$d/daemon.log" 2>/dev/null | tail -1) || [ -z "$_port" ]; do
		_i=$((_i + 1))
		[ $_i -lt 300 ] && kill -0 "$BSP_PID" 2>/dev/null ||
		    { cat "$d/daemon.log" >&2; exit 1; }
		sleep 0.1
	done
	send "$d" warmup "$WARMUP" "$_tok" "$_port"
	send "$d" measure "$3" "$_tok" "$_port"
	sleep 3
	# strace passes the signal on and exits when the daemon has.
	kill -TERM "$(pgrep -P "$BSP_PID" -x bedrock-sso-pro || echo "$BSP_PID")"
	wait "$BSP_PID" || true
	awk '$1 ~ /^[0-9.]+$/ && NF >= 5 && $NF != "total" { print $NF, $4 }' \
	    "$d/strace.txt" >"$d/counts"
	_acc=$(grep -c 'msg=request ' "$d/daemon.log" || true)
	echo "$1 n=$3: $(awk '{ s += $2 } END { print s }' "$d/counts")" \
	    "system calls, $_acc access lines" >&2
	[ "$_acc" -ge $((WARMUP + $3)) ] || {
		echo "syscalls-relay.sh: $d: $_acc access lines" >&2; exit 1; }
}

while IFS="$(printf '\t')" read -r tag b; do
	r=1
	while [ "$r" -le "$REPEAT" ]; do
		run "$tag" "$b" "$N1" "$r"
		run "$tag" "$b" "$N2" "$r"
		r=$((r + 1))
	done
done <"$WORK/builds"

{
	echo "# syscalls-relay.sh: system calls per relayed call"
	echo
	echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
	echo "runs: strace -f -c; $WARMUP warm-up calls, then N1 = $N1 or" \
	    "N2 = $N2, curl --parallel-max $CONNS; $REPEAT pair(s) per revision"
	echo
	tags=$(cut -f1 "$WORK/builds" | tr '\n' ' ')
	printf '| system call |'
	for t in $tags; do printf ' %s |' "$t"; done
	echo
	printf '|---|'
	for t in $tags; do printf -- '---|'; done
	echo
	for t in $tags; do
		r=1
		while [ "$r" -le "$REPEAT" ]; do
			awk -v t="$t" '{ print t, $1, -$2 }' \
			    "$WORK/$t-$N1-$r/counts"
			awk -v t="$t" '{ print t, $1, $2 }' \
			    "$WORK/$t-$N2-$r/counts"
			r=$((r + 1))
		done
	done | awk -v dn=$((N2 - N1)) -v reps="$REPEAT" -v tags="$tags" '
	    { v[$1, $2] += $3; names[$2] = 1; tot[$1] += $3 }
	    END {
		nt = split(tags, T, " ")
		for (n in names) {
			keep = 0
			for (i = 1; i <= nt; i++)
				if (v[T[i], n] / dn / reps > 0.005 ||
				    v[T[i], n] / dn / reps < -0.005)
					keep = 1
			if (!keep) continue
			line = "| `" n "` |"
			for (i = 1; i <= nt; i++)
				line = line sprintf(" %.2f |", v[T[i], n] / dn / reps)
			print line
		}
		line = "| **all** |"
		for (i = 1; i <= nt; i++)
			line = line sprintf(" **%.2f** |", tot[T[i]] / dn / reps)
		print line
	    }' | sort
	echo
	bench_load_note
} >"$OUT/summary.md"
cat "$OUT/summary.md"
echo "results: $OUT" >&2
