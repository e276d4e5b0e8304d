#!/bin/sh
#
# callgrind-relay.sh: instructions per relayed InvokeModel call, and per
# GET /health, of two revisions, counted by valgrind's callgrind.
#
# Instruction counts from the hardware (perf stat, used by the other
# benchmarks) need performance counters, which a VM may not have.
# Callgrind counts the instructions the daemon executes (user space: the
# daemon, libevent, OpenSSL, SQLite, libc, ...; not the kernel's) by
# simulating the CPU, so the count is the same whatever else the machine
# does; only the wall time grows (~10x here, without cache simulation).
#
# For each revision: the optimized build of bench/build.sh (-O2 -g, no
# sanitizers; BENCH_REV=<rev>, its own BSP_SRC and BSP_BUILD under /tmp),
# then for each kind (relay, health) and each request count (N1, N2) a
# fresh daemon under `valgrind --tool=callgrind`, configured as
# bench/relay.sh does (relay-lib.sh: the fast nginx upstream answering
# InvokeModel on loopback, SigV4 with static fake keys, an EdDSA access
# token from `token mint`) but with the access log on (logging.access:
# true, -d: at info, to a file); usage rows are written to SQLite as in
# production.  A run: start, WARMUP requests, then exactly N requests over
# CONNS keep-alive connections (curl --parallel with a config file of N
# URLs: the count is exact, unlike a timed load generator), a pause for
# the usage timer, SIGTERM, and callgrind's total.  Then
#
#     per call = (Ir(N2 run) - Ir(N1 run)) / (N2 - N1)
#
# start-up, warm-up and shutdown are the same in both runs and cancel.
# The same for every function (callgrind_annotate, inclusive and self),
# which locates a difference between the revisions.  relay runs POST
# /model/<model>/invoke with the bench body and the token; health runs GET
# /health.  Every answer must be 200; relay runs must leave one usage row
# with the upstream's 17/9 tokens per call, and every run one access-log
# line per request.
#
# Usage: bench/callgrind-relay.sh [REV_A [REV_B]]   (default: cc169df main)
# Environment: N1 (1000), N2 (4000), WARMUP (200), CONNS (4), REPEAT (3:
# pairs of runs per revision and kind, averaged; one pair moves by up to
# 0.4 %), KINDS ("relay health"), TOP_ROWS (30:
# rows of the per-function tables), NICE (10), RESULTS, KEEP.
# With the defaults, about 6 minutes on this machine, plus the builds.

set -eu

TOP=$(cd "$(dirname "$0")/.." && pwd)
. "$TOP/bench/lib.sh"
. "$TOP/bench/relay-lib.sh"

REV_A=${1:-cc169df}
REV_B=${2:-main}
N1=${N1:-1000}
N2=${N2:-4000}
WARMUP=${WARMUP:-200}
CONNS=${CONNS:-4}
REPEAT=${REPEAT:-3}
KINDS=${KINDS:-relay health}
NTOP=${TOP_ROWS:-30}
NICE=${NICE:-10}

[ "$N2" -gt "$N1" ] || { echo "callgrind-relay.sh: N2 must exceed N1" >&2; exit 2; }
command -v valgrind >/dev/null && command -v callgrind_annotate >/dev/null ||
    { echo "callgrind-relay.sh: needs valgrind (Debian: valgrind)" >&2; exit 2; }
command -v nginx >/dev/null ||
    { echo "callgrind-relay.sh: needs nginx (Debian: nginx-light)" >&2; exit 2; }

cd "$TOP"
HASH_A=$(git rev-parse "$REV_A^{commit}")
HASH_B=$(git rev-parse "$REV_B^{commit}")
SHORT_A=$(git rev-parse --short "$HASH_A")
SHORT_B=$(git rev-parse --short "$HASH_B")
[ "$HASH_A" != "$HASH_B" ] ||
    echo "callgrind-relay.sh: both revisions are $SHORT_A" >&2

bench_dirs callgrind-relay

# The builds first, one at a time (each in its own directory, so that a
# second run reuses them).
for s in "$SHORT_A" "$SHORT_B"; do
	echo "building $s" >&2
	BENCH_REV=$s BSP_SRC=/tmp/bsp-cg-src-$s BSP_BUILD=/tmp/bsp-cg-rel-$s \
	    nice -n "$NICE" "$TOP/bench/build.sh" >/dev/null
done

mkdir -p "$WORK/up"
UP_PORT=$(free_port)
upstream_start "$WORK/up" "$UP_PORT"
RPATH=/model/$RELAY_MODEL/invoke
printf '%s' "$RELAY_BODY" >"$WORK/body"

# curl_cfg file kind n token port: a curl config that sends n requests.
curl_cfg()
{
	{
		if [ "$2" = relay ]; then
			echo 'request = "POST"'
			echo 'header = "Content-Type: application/json"'
			echo "header = \"Authorization: Bearer $4\""
			echo "data-binary = \"@$WORK/body\""
			_url="http://127.0.0.1:$5$RPATH"
		else
			_url="http://127.0.0.1:$5/health"
		fi
		printf '%s\n' \
		    'write-out = "%{stderr}\nANSWER %{http_code} %{num_connects}\n"'
		awk -v n="$3" -v u="$_url" 'BEGIN { for (i = 0; i < n; i++)
		    printf "url = \"%s\"\noutput = \"/dev/null\"\n", u }'
	} >"$1"
}

# send dir name kind n token port: n requests over CONNS connections;
# fails unless every answer is 200.  Prints the connections opened.
send()
{
	curl_cfg "$1/$2.cfg" "$3" "$4" "$5" "$6"
	nice -n "$NICE" curl -s --no-progress-meter --parallel --parallel-max "$CONNS" \
	    -K "$1/$2.cfg" 2>"$1/$2.status" || true
	awk -v n="$4" -v what="$2" '
	    $1 == "ANSWER" && $2 == 200 { ok++ } $1 == "ANSWER" { c += $3 }
	    END { if (ok != n) { printf "callgrind-relay.sh: %s: %d of %d " \
		"answers 200\n", what, ok, n > "/dev/stderr"; exit 1 }
		print c }' "$1/$2.status"
}

# cg_run short kind n rep: one daemon under callgrind; writes
# $d/result (total Ir, connections, usage rows, access lines, exit status)
# and the annotations.
cg_run()
{
	_s=$1 _k=$2 _n=$3 _r=$4
	BSP=/tmp/bsp-cg-rel-$_s/bedrock-sso-proxy
	d=$WORK/$_s-$_k-$_n-$_r
	mkdir -p "$d"
	relay_bsp_config "$d" "$UP_PORT"
	sed 's/access: false/access: true/' "$d/cfg.yaml" >"$d/cfg.tmp" &&
	    mv "$d/cfg.tmp" "$d/cfg.yaml"
	chmod 600 "$d/cfg.yaml"
	_tok=$(relay_token "$d")
	[ -n "$_tok" ] || { cat "$d/cli.log" >&2; exit 1; }
	nice -n "$NICE" valgrind --tool=callgrind \
	    --callgrind-out-file="$d/callgrind.out" --log-file="$d/valgrind.log" \
	    "$BSP" -d -f "$d/cfg.yaml" 2>>"$d/daemon.log" &
	BSP_PID=$!
	BENCH_PIDS="$BENCH_PIDS $BSP_PID"
	bsp_wait_port "$d" 1200
	_port=$BSP_PORT
	_t0=$(date +%s)
	send "$d" warmup "$_k" "$WARMUP" "$_tok" "$_port" >/dev/null
	_c=$(send "$d" measure "$_k" "$_n" "$_tok" "$_port")
	_t1=$(date +%s)
	sleep 3		# the usage rows left are written every second
	kill -TERM "$BSP_PID"
	_rc=0
	wait "$BSP_PID" || _rc=$?
	BENCH_PIDS=$(echo "$BENCH_PIDS" | sed "s/ $BSP_PID\$//")
	[ "$_rc" = 0 ] || { echo "callgrind-relay.sh: $d: exit $_rc" >&2;
	    tail "$d/daemon.log" >&2; exit 1; }
	_ir=$(sed -n 's/^totals: *\([0-9]*\).*/\1/p' "$d/callgrind.out")
	[ -n "$_ir" ] || _ir=$(sed -n 's/^summary: *\([0-9]*\).*/\1/p' \
	    "$d/callgrind.out")
	_rows=$(sqlite3 "$d/proxy.db" "SELECT count(*) FROM usage WHERE
	    route = 'InvokeModel' AND status = 200 AND input_tokens = 17 AND
	    output_tokens = 9")
	_acc=$(grep -c 'msg=request ' "$d/daemon.log" || true)
	echo "$_ir $_c $_rows $_acc $((_t1 - _t0))" >"$d/result"
	# Per function: inclusive and self Ir, as "file:function [object]"
	# (our sources relative to the export, objects by base name).
	for _m in yes no; do
		callgrind_annotate --inclusive=$_m --threshold=100 \
		    --auto=no --show-percs=no "$d/callgrind.out" | awk '
		    /file:function/ { on = 1; next }
		    on && $1 ~ /^[0-9,]+$/ {
			ir = $1; gsub(",", "", ir)
			name = $2; obj = ""
			for (j = 3; j <= NF; j++)
				if ($j ~ /^\[/) obj = $j
				else name = name " " $j
			sub("^" src "/", "", name)
			sub(/^\[.*\//, "[", obj)
			fn = name; sub(/^[^:]*:/, "", fn)
			if (obj != "")
				fobj[fn] = obj
			n++; irs[n] = ir; names[n] = name; objs[n] = obj
			fns[n] = fn }
		    # code inlined from another file is shown without its
		    # object: the object of the same function elsewhere
		    END { for (i = 1; i <= n; i++) {
			o = objs[i] != "" ? objs[i] : fobj[fns[i]]
			print irs[i] "\t" names[i] " " (o != "" ? o : "[?]") } }' \
		    src="/tmp/bsp-cg-src-$_s" >"$d/fn-$_m.tsv"
	done
	printf '%s %s n=%s: %s Ir, %s s, %s connections, %s usage rows,' \
	    "$_s" "$_k" "$_n" "$_ir" "$((_t1 - _t0))" "$_c" "$_rows" >&2
	printf ' %s access lines\n' "$_acc" >&2
	[ "$_k" != relay ] || [ "$_rows" = $((WARMUP + _n)) ] || {
		echo "callgrind-relay.sh: $d: $_rows usage rows," \
		    "expected $((WARMUP + _n))" >&2; exit 1; }
	_want=$((WARMUP + _n))
	[ "$_acc" -ge "$_want" ] || {
		echo "callgrind-relay.sh: $d: $_acc access lines," \
		    "expected $_want or more" >&2; exit 1; }
}

# per_fn short kind mode: per-call Ir of every function ((N2 run - N1
# run) / (N2 - N1), the mean over the pairs), "function<TAB>Ir/call",
# largest first.
per_fn()
{
	_f=
	_r=1
	while [ "$_r" -le "$REPEAT" ]; do
		_f="$_f $WORK/$1-$2-$N1-$_r/fn-$3.tsv $WORK/$1-$2-$N2-$_r/fn-$3.tsv"
		_r=$((_r + 1))
	done
	awk -F'\t' -v dn=$((N2 - N1)) -v reps="$REPEAT" '
	    FNR == 1 { k++ }
	    { v[$2] += (k % 2 ? -$1 : $1) }
	    END { for (f in v) printf "%s\t%.1f\n", f, v[f] / dn / reps }' \
	    $_f | sort -t"$(printf '\t')" -k2,2gr
}

# compare file_a file_b: per_fn's figures of A and B by function name and
# object (the file left out: the refactor moved functions between files;
# static functions of the same name in two files are summed; callgrind
# may attribute a libc function such as strdup to ld.so in one build and
# to libc in the other, which shows as a - and a + of the same size).
# A function of B whose name is
# one of A's (in one file only) behind a new "prefix_" is taken for that
# function renamed.  "function<TAB>A<TAB>B<TAB>B-A<TAB>|B-A|".
compare()
{
	awk -F'\t' '
	    function fname(k,   n) { n = k; sub(/^[^:]*:/, "", n); return n }
	    function file(k,   f) { f = k; sub(/:.*/, "", f); return f }
	    FNR == NR { n = fname($1); a[n] += $2
		if (n in la && file(la[n]) != file($1)) dup[n] = 1
		la[n] = $1; next }
	    { n = fname($1); b[n] += $2; lb[n] = $1 }
	    END {
		for (n in b) {
			if (n in a)
				continue
			m = n
			if (sub(/^[a-z0-9]+_/, "", m) && (m in a) && !(m in b) &&
			    !(m in dup)) {
				a[n] = a[m]; was[n] = fname(la[m])
				delete a[m]
			}
		}
		for (n in a) all[n] = 1
		for (n in b) all[n] = 1
		for (n in all) {
			d = b[n] - a[n]
			l = n in lb ? lb[n] : la[n]
			if (n in was) {
				w = was[n]; sub(/ \[.*/, "", w)
				l = l " (was " w ")"
			}
			printf "%s\t%.0f\t%.0f\t%+.0f\t%.0f\n", l, a[n], b[n], d,
			    d < 0 ? -d : d
		}
	    }' "$1" "$2"
}

{
	echo "# callgrind-relay.sh: instructions per relayed call," \
	    "$SHORT_A vs $SHORT_B"
	echo
	echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
	echo "revisions: A = $REV_A = $HASH_A, B = $REV_B = $HASH_B"
	echo "machine: $(uname -sr), $(nproc) CPUs," \
	    "$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)"
	echo "tools: $(valgrind --version), $(curl --version | head -1 |
	    cut -d' ' -f1-2), $(nginx -v 2>&1 | cut -d' ' -f3)," \
	    "$(gcc --version | head -1), $(openssl version | cut -d' ' -f1-2)," \
	    "libevent $(pkg-config --modversion libevent)"
	echo "runs: per revision and kind, $REPEAT pair(s) of daemons under" \
	    "callgrind: $WARMUP warm-up requests then N1 = $N1 or N2 = $N2," \
	    "curl --parallel-max $CONNS, keep-alive; request body" \
	    "${#RELAY_BODY} bytes, answer ${#RELAY_ANSWER} bytes"
	echo
} >"$OUT/summary.md"

# One build at a time: all of A's runs, then all of B's.
for s in "$SHORT_A" "$SHORT_B"; do
	for k in $KINDS; do
		r=1
		while [ "$r" -le "$REPEAT" ]; do
			cg_run "$s" "$k" "$N1" "$r"
			cg_run "$s" "$k" "$N2" "$r"
			r=$((r + 1))
		done
	done
done
kill "$UP_PID"
wait "$UP_PID" || true

# ir short kind: per-call Ir of each pair, "v1 v2 ..."
ir()
{
	r=1
	while [ "$r" -le "$REPEAT" ]; do
		read -r a _ <"$WORK/$1-$2-$N1-$r/result"
		read -r b _ <"$WORK/$1-$2-$N2-$r/result"
		awk -v a="$a" -v b="$b" -v dn=$((N2 - N1)) \
		    'BEGIN { printf "%.1f ", (b - a) / dn }'
		r=$((r + 1))
	done
}
mean()
{
	echo "$1" | awk '{ for (i = 1; i <= NF; i++) s += $i
	    printf "%.1f", s / NF }'
}

{
	echo "instructions per call (user space, callgrind Ir; (Ir(N2) -" \
	    "Ir(N1)) / (N2 - N1)); each pair's figure, then the mean:"
	echo
	echo "| kind | $SHORT_A | $SHORT_B | B / A | B - A |"
	echo "|---|---|---|---|---|"
	for k in $KINDS; do
		a=$(ir "$SHORT_A" "$k")
		b=$(ir "$SHORT_B" "$k")
		ma=$(mean "$a")
		mb=$(mean "$b")
		awk -v k="$k" -v a="$a" -v b="$b" -v ma="$ma" -v mb="$mb" \
		    'BEGIN { printf "| %s | %.0f (%s) | %.0f (%s) | %.4f | %+.0f |\n",
		    k, ma, a, mb, b, mb / ma, mb - ma }' | sed 's/ )/)/g'
	done
	if echo "$KINDS" | grep -q relay && echo "$KINDS" | grep -q health; then
		ma=$(mean "$(ir "$SHORT_A" relay)")
		mb=$(mean "$(ir "$SHORT_B" relay)")
		ha=$(mean "$(ir "$SHORT_A" health)")
		hb=$(mean "$(ir "$SHORT_B" health)")
		awk -v a=$ma -v b=$mb -v ha=$ha -v hb=$hb 'BEGIN {
		    printf "| relay - health | %.0f | %.0f | %.4f | %+.0f |\n",
		    a - ha, b - hb, (b - hb) / (a - ha), (b - hb) - (a - ha) }'
	fi
	echo
	echo "each run: total Ir, seconds for warm-up + N requests, client" \
	    "connections opened (N requests), usage rows with 17/9 tokens," \
	    "access-log lines:"
	echo
	echo "| run | total Ir | s | connections | usage rows | access lines |"
	echo "|---|---|---|---|---|---|"
	for f in "$WORK"/*/result; do
		read -r i c u a t <"$f"
		printf '| %s | %s | %s | %s | %s | %s |\n' \
		    "$(basename "$(dirname "$f")")" "$i" "$t" "$c" "$u" "$a"
	done
	for k in $KINDS; do
		for s in "$SHORT_A" "$SHORT_B"; do
			per_fn "$s" "$k" yes >"$OUT/per-call-$k-$s-inclusive.tsv"
			per_fn "$s" "$k" no >"$OUT/per-call-$k-$s-self.tsv"
		done
		ia=$OUT/per-call-$k-$SHORT_A-inclusive.tsv
		ib=$OUT/per-call-$k-$SHORT_B-inclusive.tsv
		sa=$OUT/per-call-$k-$SHORT_A-self.tsv
		sb=$OUT/per-call-$k-$SHORT_B-self.tsv
		echo
		echo "## $k: self Ir per call by object"
		echo
		echo "| object | $SHORT_A | $SHORT_B | B - A |"
		echo "|---|---|---|---|"
		awk -F'\t' '
		    { o = $1; sub(/.* \[/, "", o); sub(/\]$/, "", o) }
		    FNR == NR { a[o] += $2; s[o] = 1; next }
		    { b[o] += $2; s[o] = 1; tb += $2 }
		    END { for (o in s) if (a[o] > 0.5 || b[o] > 0.5 ||
			a[o] < -0.5 || b[o] < -0.5)
			printf "%.0f\t| %s | %.0f | %.0f | %+.0f |\n", b[o], o,
			    a[o], b[o], b[o] - a[o] }' "$sa" "$sb" |
		    sort -k1,1gr | cut -f2-
		echo
		echo "## $k: the daemon's own functions, inclusive Ir per call" \
		    "(the $NTOP largest in $SHORT_B)"
		echo
		echo "| function | $SHORT_A | $SHORT_B | B - A |"
		echo "|---|---|---|---|"
		compare "$ia" "$ib" | grep '\[bedrock-sso-proxy\]' |
		    sort -t"$(printf '\t')" -k3,3gr | head -"$NTOP" |
		    awk -F'\t' '{ printf "| `%s` | %s | %s | %s |\n",
			$1, $2, $3, $4 }'
		echo
		echo "## $k: largest differences, self Ir per call," \
		    "$SHORT_B - $SHORT_A"
		echo
		echo "| function | $SHORT_A | $SHORT_B | B - A |"
		echo "|---|---|---|---|"
		compare "$sa" "$sb" | sort -t"$(printf '\t')" -k5,5gr |
		    head -"$NTOP" | awk -F'\t' '{
			printf "| `%s` | %s | %s | %s |\n", $1, $2, $3, $4 }'
		echo
		echo "## $k: largest differences, inclusive Ir per call," \
		    "$SHORT_B - $SHORT_A"
		echo
		echo "| function | $SHORT_A | $SHORT_B | B - A |"
		echo "|---|---|---|---|"
		compare "$ia" "$ib" | sort -t"$(printf '\t')" -k5,5gr |
		    head -"$NTOP" | awk -F'\t' '{
			printf "| `%s` | %s | %s | %s |\n", $1, $2, $3, $4 }'
		for s in "$SHORT_A" "$SHORT_B"; do
			echo
			echo "## $k: top $NTOP functions, inclusive Ir per call," \
			    "$s"
			echo
			echo "| Ir/call | function |"
			echo "|---|---|"
			head -"$NTOP" "$OUT/per-call-$k-$s-inclusive.tsv" |
			    awk -F'\t' '{ printf "| %.0f | `%s` |\n", $2, $1 }'
		done
	done
	echo
	echo "valgrind's CPU model hides the SHA, AVX-512 and other" \
	    "extensions from the program: OpenSSL and libsodium take their" \
	    "AVX2 or plain paths under callgrind, on both revisions."
	echo
	bench_load_note
} >>"$OUT/summary.md"
for d in "$WORK"/*-*-*-*; do
	b=$(basename "$d")
	cp "$d/result" "$OUT/result-$b"
	gzip -c "$d/callgrind.out" >"$OUT/callgrind-$b.out.gz"
done
cat "$OUT/summary.md"
echo "results: $OUT" >&2
