#!/bin/sh
#
# soak.sh: STREAMS (1000) InvokeModelWithResponseStream calls kept in flight
# through the daemon for DURATION (1800) seconds, once with an ASan+UBSan
# build (configure --enable-debug --enable-asan) and once with the release
# build (-O2 -g, no sanitizer; bench/build.sh), one after the other.
#
# bench/streams.c is both ends (see streams.sh):
#   upstream  `streams serve --frames-from-body`: each stream answers as
#             many chunk frames as its request's "max_tokens", one every
#             INTERVAL (50) ms, then message_stop with outputTokenCount = N.
#   client    `streams client --duration DURATION --vary --per-conn
#             PER_CONN`: STREAMS slots, each starting its next stream as
#             soon as the last one ended, until DURATION; N drawn uniformly
#             from [FRAMES/2, 3*FRAMES/2] (FRAMES 300: 150-450 chunks,
#             7.5-22.5 s at 50 ms, ~20 000 frames/s in all); PER_CONN (2)
#             streams per connection, then a new one.  Every frame's CRCs,
#             headers, payload and order are checked.
#
# Per build: a fresh daemon (usage rows written as usual to its SQLite
# file), one check stream, then the soak; VmRSS, VmHWM, fds, CPU ticks and
# bsp_active_streams of the daemon (and the RSS of the client and the
# upstream, and the client's progress) every SAMPLE (5) seconds to
# rss-BUILD.csv.  At the end: the usage table must hold one row per stream
# that ended (+1 for the check stream) with status 200, outcome ok and the
# stream's token counts; the daemon is stopped with SIGTERM (so that
# LeakSanitizer runs), must exit 0, and its stderr is searched for
# AddressSanitizer, LeakSanitizer and UBSan reports.
#
# RSS figures: the medians of the samples in the first and the last WINDOW
# (300, at most DURATION/3) seconds of the soak, the maximum, and the
# least-squares slope of VmRSS after the first window.  An ASan process's
# RSS mostly holds ASan's quarantine of freed blocks (256 MB) and its
# allocator's caches, and swings by ~80 MB; so every HEAP_PROBE (60) seconds
# gdb asks the ASan daemon for the bytes its program holds
# (__sanitizer_get_current_allocated_bytes(), and the heap size) into
# heap-asan.csv: that live heap is the ASan build's figure for "flat".
# HEAP_PROBE=0 (or no gdb) turns it off.  Each probe stops the daemon for
# well under a second.
#
# Usage: bench/soak.sh                 (BUILD=both: about 65 minutes)
#        DURATION=120 BUILD=release bench/soak.sh     (a quick look)
# Environment: DURATION (1800), STREAMS (1000), BUILD (asan|release|both),
# FRAMES (300), INTERVAL (50), PER_CONN (2), SAMPLE (5), WINDOW (300),
# HEAP_PROBE (60),
# SERVER_CPU, CLIENT_CPU, UPSTREAM_CPU, RESULTS, KEEP, BENCH_REV.  The
# builds go to /tmp/soak-asan and /tmp/soak-rel (sources exported to
# /tmp/soak-src-*), apart from the other benchmarks' /tmp/bsp-rel.
# Exits 1 if any build fails a criterion.

set -eu

TOP=$(cd "$(dirname "$0")/.." && pwd)
SOAK_BUILDS=${BUILD:-both}
. "$TOP/bench/lib.sh"
. "$TOP/bench/relay-lib.sh"

DURATION=${DURATION:-1800}
STREAMS=${STREAMS:-1000}
FRAMES=${FRAMES:-300}
INTERVAL=${INTERVAL:-50}
PER_CONN=${PER_CONN:-2}
SAMPLE=${SAMPLE:-5}
HEAP_PROBE=${HEAP_PROBE:-60}
command -v gdb >/dev/null || HEAP_PROBE=0
WINDOW=${WINDOW:-300}
[ "$WINDOW" -gt $((DURATION / 3)) ] && WINDOW=$((DURATION / 3))
case $SOAK_BUILDS in
asan | release) ;;
both) SOAK_BUILDS="asan release" ;;
*)
	echo "soak.sh: BUILD must be asan, release or both" >&2
	exit 2
	;;
esac

bench_dirs soak
# Two descriptors per stream in the daemon; the client and the upstream
# hold STREAMS each.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
STREAMS_BIN=$WORK/streams
cc -O2 -g -Wall -o "$STREAMS_BIN" "$TOP/bench/streams.c" \
    $(pkg-config --cflags --libs libevent) -lz
SPATH=/model/$RELAY_MODEL/invoke-with-response-stream
SANITIZER_RE='ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:|SUMMARY: [A-Za-z]*Sanitizer|WARNING: [A-Za-z]*Sanitizer'
ROWS=$OUT/soak.tsv
echo "build	rss_idle_kb	rss_first_kb	rss_last_kb	rss_max_kb	slope_kb_min	hwm_end_kb	rss_after_kb	started	ended	ok	frames	expected	lost	bad	out_of_order	errors	inflight_mean	inflight_min	first_p50_ms	first_p99_ms	usage_rows	usage_expected	usage_good	tokens_db	tokens_expected	sanitizer	exit	cpu_s	fds_idle	fds_end	active_end	warnings" >"$ROWS"

# sampler pid csv client_log upstream_pid client_pid: one row every
# SAMPLE seconds until the file $WORK/stop-sampler appears.
sampler()
{
	echo "t_s,vmrss_kb,vmhwm_kb,fds,cpu_ticks,active_streams,client_inflight,client_started,client_ended,client_frames,client_errors,client_rss_kb,upstream_rss_kb" >"$2"
	_t0=$(date +%s.%N)
	while [ ! -e "$WORK/stop-sampler" ] && [ -r "/proc/$1/status" ]; do
		_act=$(curl -sf -m 2 "http://127.0.0.1:$BSP_PORT/metrics" |
		    awk '$1 == "bsp_active_streams" { printf "%d", $2 }') || true
		_p=$(grep '^PROGRESS' "$3" 2>/dev/null | tail -1) || true
		printf '%s,%s,%s,%s,%s,%s,%s,%s,%s\n' \
		    "$(echo "$(date +%s.%N) $_t0" | awk '{ printf "%.1f", $1 - $2 }')" \
		    "$(proc_status "$1" VmRSS)" "$(proc_status "$1" VmHWM)" \
		    "$(proc_fds "$1")" "$(proc_ticks "$1")" "${_act:-}" \
		    "$(echo "$_p" | awk '{ for (i = 2; i <= NF; i++) {
			split($i, kv, "="); v[kv[1]] = kv[2] }
			printf "%s,%s,%s,%s,%s", v["inflight"], v["started"],
			    v["ended"], v["frames"], v["errors"] }')" \
		    "$(proc_status "$5" VmRSS 2>/dev/null || true)" \
		    "$(proc_status "$4" VmRSS 2>/dev/null || true)" >>"$2"
		sleep "$SAMPLE"
	done
}

# heap_probe pid: "allocated_bytes,heap_bytes,sqlite_bytes" of the ASan
# daemon, through gdb (nothing if gdb cannot attach): the bytes the program
# holds, ASan's mapped heap, and of the first those SQLite holds
# (sqlite3_memory_used(): its page cache grows to its 2 MB default bound).
heap_probe()
{
	gdb -p "$1" -batch -nx \
	    -ex 'p (unsigned long)__sanitizer_get_current_allocated_bytes()' \
	    -ex 'p (unsigned long)__sanitizer_get_heap_size()' \
	    -ex 'p (long)sqlite3_memory_used()' 2>/dev/null |
	    awk '/^\$1 = / { a = $3 } /^\$2 = / { h = $3 } /^\$3 = / { q = $3 }
	    END { if (a != "") print a "," h "," q }'
}

# heap_sampler pid csv: the ASan allocator's live bytes and heap size every
# HEAP_PROBE seconds, until $WORK/stop-sampler appears.
heap_sampler()
{
	echo "t_s,allocated_bytes,heap_bytes,sqlite_bytes" >"$2"
	_t0=$(date +%s)
	while [ ! -e "$WORK/stop-sampler" ] && [ -r "/proc/$1/status" ]; do
		_h=$(heap_probe "$1")
		[ -z "$_h" ] || echo "$(($(date +%s) - _t0)),$_h" >>"$2"
		_i=0
		while [ $_i -lt "$HEAP_PROBE" ] && [ ! -e "$WORK/stop-sampler" ]; do
			sleep 1
			_i=$((_i + 1))
		done
	done
}

# med_slope csv column duration window: "first-window median, last-window
# median, max, least-squares slope per minute after the first window" of
# that column.
med_slope()
{
	awk -F, -v c="$2" -v dur="$3" -v w="$4" '
	function med(a, n,   i, j, x) {
		for (i = 2; i <= n; i++) {
			x = a[i]
			for (j = i - 1; j >= 1 && a[j] > x; j--)
				a[j + 1] = a[j]
			a[j + 1] = x
		}
		return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
	}
	NR == 1 || $c == "" { next }
	{
		t = $1; r = $c + 0
		if (r > mx) mx = r
		if (t <= w) f[++nf] = r
		if (t > dur - w && t <= dur) l[++nl] = r
		if (t > w && t <= dur) {
			n++; sx += t; sy += r; sxx += t * t; sxy += t * r
		}
	}
	END {
		slope = n > 1 ? (n * sxy - sx * sy) / (n * sxx - sx * sx) : 0
		printf "%.0f %.0f %d %.1f\n", med(f, nf), med(l, nl), mx,
		    slope * 60
	}' "$1"
}

# soak_build asan|release
soak_build()
{
	_b=$1
	if [ "$_b" = asan ]; then
		BUILD=$(BSP_SRC=/tmp/soak-src-asan BSP_BUILD=/tmp/soak-asan \
		    BENCH_CFLAGS=-g BENCH_CONFIGURE="--enable-debug --enable-asan" \
		    "$TOP/bench/build.sh")
	else
		BUILD=$(BSP_SRC=/tmp/soak-src-rel BSP_BUILD=/tmp/soak-rel \
		    "$TOP/bench/build.sh")
	fi
	BSP=$BUILD/bedrock-sso-proxy
	d=$WORK/$_b
	mkdir -p "$d"
	echo "build $_b: $(cat "$BUILD/bench-rev") ($BUILD)" >>"$WORK/builds.txt"

	UP_PORT=$(free_port)
	taskset -c "$UPSTREAM_CPU" "$STREAMS_BIN" serve --frames-from-body \
	    "$UP_PORT" $((FRAMES * 3 / 2)) "$INTERVAL" 2>>"$d/upstream.log" &
	UP_PID=$!
	BENCH_PIDS="$BENCH_PIDS $UP_PID"
	relay_bsp_config "$d" "$UP_PORT"
	# detect_leaks is LSan's default with ASan on Linux; said anyway.
	# The reports go to the daemon's stderr, daemon.log.
	export ASAN_OPTIONS=detect_leaks=1
	export UBSAN_OPTIONS=print_stacktrace=1
	TOKEN=$(relay_token "$d")
	bsp_start "$d"
	unset ASAN_OPTIONS UBSAN_OPTIONS
	sleep 1
	echo "soak $_b: check stream" >&2
	"$STREAMS_BIN" client --duration 1 127.0.0.1 "$BSP_PORT" "$SPATH" 1 \
	    "$FRAMES" "$TOKEN" >"$d/check.txt" 2>&1 || {
		echo "soak.sh: the check stream failed:" >&2
		cat "$d/check.txt" "$d/daemon.log" >&2
		exit 1
	}
	_idle=$(proc_status "$BSP_PID" VmRSS)
	_heap0=
	[ "$_b" != asan ] || [ "$HEAP_PROBE" -le 0 ] ||
	    _heap0=$(heap_probe "$BSP_PID")
	_fd0=$(proc_fds "$BSP_PID")
	_c0=$(proc_ticks "$BSP_PID")

	echo "soak $_b: $STREAMS streams for $DURATION s" \
	    "(started $(date -u '+%H:%M:%S UTC'))" >&2
	rm -f "$WORK/stop-sampler"
	: >"$d/client.log"
	taskset -c "$CLIENT_CPU" "$STREAMS_BIN" client --duration "$DURATION" \
	    --progress "$SAMPLE" --per-conn "$PER_CONN" --vary 127.0.0.1 \
	    "$BSP_PORT" "$SPATH" "$STREAMS" "$FRAMES" "$TOKEN" \
	    >"$d/client.log" 2>&1 &
	_cl=$!
	sampler "$BSP_PID" "$OUT/rss-$_b.csv" "$d/client.log" "$UP_PID" \
	    "$_cl" &
	_smp=$!
	_hsmp=
	if [ "$_b" = asan ] && [ "$HEAP_PROBE" -gt 0 ]; then
		heap_sampler "$BSP_PID" "$OUT/heap-asan.csv" &
		_hsmp=$!
	fi
	BENCH_PIDS="$BENCH_PIDS $_cl $_smp $_hsmp"
	_rc=0
	wait "$_cl" || _rc=$?
	sleep 2		# usage rows are written every second
	touch "$WORK/stop-sampler"
	wait "$_smp" || true
	[ -z "$_hsmp" ] || wait "$_hsmp" || true
	if [ -n "$_heap0" ]; then
		echo "$_heap0 $(heap_probe "$BSP_PID")" | awk -F'[, ]' -v b="$_b" '
		{ printf "%s: ASan live heap idle after the check stream " \
		    "%.2f MiB (SQLite %.2f), after the soak had drained " \
		    "%.2f MiB (SQLite %.2f; upstream connections still " \
		    "pooled); ASan heap mapped %.0f MiB, %.0f MiB\n", b,
		    $1 / 1048576, $3 / 1048576, $4 / 1048576, $6 / 1048576,
		    $2 / 1048576, $5 / 1048576 }' >>"$WORK/heap.txt"
	fi
	_c1=$(proc_ticks "$BSP_PID")
	_hwm=$(proc_status "$BSP_PID" VmHWM)
	_after=$(proc_status "$BSP_PID" VmRSS)
	_fd1=$(proc_fds "$BSP_PID")
	_act=$(curl -sf -m 5 "http://127.0.0.1:$BSP_PORT/metrics" |
	    awk '$1 == "bsp_active_streams" { printf "%d", $2 }') || true
	cp "$d/client.log" "$OUT/client-$_b.log"
	if [ "$_rc" != 0 ]; then
		echo "soak.sh: client ($_b) exited $_rc:" >&2
		grep -v '^PROGRESS' "$d/client.log" | tail -5 >&2
		FAILED=1
	fi
	# One row per stream that ended, plus the check stream.
	_usage=$(sqlite3 -separator ' ' "$d/proxy.db" "SELECT count(*),
	    coalesce(sum(status = 200 AND outcome = 'ok' AND input_tokens = 17
	    AND output_tokens BETWEEN $((FRAMES / 2)) AND $((FRAMES * 3 / 2))), 0),
	    coalesce(sum(output_tokens), 0)
	    FROM usage WHERE route = 'InvokeModelWithResponseStream'")
	sqlite3 "$d/proxy.db" "SELECT status, outcome, count(*) FROM usage
	    GROUP BY status, outcome" >"$OUT/usage-$_b.txt"
	bsp_stop
	cp "$d/daemon.log" "$OUT/daemon-$_b.log"
	kill "$UP_PID"
	wait "$UP_PID" 2>/dev/null || true
	_san=$(grep -cE "$SANITIZER_RE" "$d/daemon.log") || true
	_warn=$(grep -cE 'level=(warn|error|fatal)' "$d/daemon.log") || true
	[ "$BSP_RC" = 0 ] && [ "$_san" = 0 ] || FAILED=1

	med_slope "$OUT/rss-$_b.csv" 2 "$DURATION" "$WINDOW" \
	    >"$WORK/rss-$_b.txt"
	if [ -s "$OUT/heap-$_b.csv" ]; then
		med_slope "$OUT/heap-$_b.csv" 2 "$DURATION" "$WINDOW" |
		    awk -v b="$_b" '{ printf "%s: ASan live heap (gdb, " \
		    "__sanitizer_get_current_allocated_bytes): median first " \
		    "window %.2f MiB, last window %.2f MiB, max %.2f MiB, " \
		    "slope after the first window %+.1f kB/min\n", b,
		    $1 / 1048576, $2 / 1048576, $3 / 1048576, $4 / 1024 }' \
		    >>"$WORK/heap.txt"
	fi
	read -r _rf _rl _rmax _slope <"$WORK/rss-$_b.txt"
	set -- $_usage
	awk -v b="$_b" -v idle="$_idle" -v rf="$_rf" -v rl="$_rl" \
	    -v rmax="$_rmax" -v slope="$_slope" -v hwm="$_hwm" \
	    -v after="$_after" -v urows="$1" -v ugood="$2" -v utok="$3" \
	    -v san="$_san" -v rc="$BSP_RC" -v cpu=$((_c1 - _c0)) -v hz="$HZ" \
	    -v fd0="$_fd0" -v fd1="$_fd1" -v act="$_act" -v warn="$_warn" \
	    -v frames="$FRAMES" '
	/^RESULT/ {
		for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
		bad = v["bad_crc"] + v["bad_headers"] + v["bad_payload"]
		printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%.0f\t%.0f\t%s\t%d\t%s\t%s\t%d\t%s\t%s\t%.0f\t%s\t%s\t%s\t%s\n",
		    b, idle, rf, rl, rmax, slope, hwm, after, v["started"],
		    v["ended"], v["ok"], v["frames"], v["expected"], v["lost"],
		    bad, v["out_of_order"], v["errors"], v["inflight_mean"],
		    v["inflight_min"], v["first_p50_us"] / 1000,
		    v["first_p99_us"] / 1000, urows, v["ended"] + 1, ugood,
		    utok, v["tokens"] + frames, san, rc, cpu / hz, fd0, fd1,
		    act, warn
	}' "$d/client.log" >>"$ROWS"
	tail -1 "$ROWS" | sed 's/^/    /' >&2
	# The usage table and the criteria.
	awk -F'\t' -v b="$_b" 'END {
		if ($22 != $23 || $24 != $23 || $25 != $26)
			exit 1
	}' "$ROWS" || {
		echo "soak.sh: $_b: usage table does not match the streams" >&2
		FAILED=1
	}
}

FAILED=0
for b in $SOAK_BUILDS; do
	soak_build "$b"
done

{
	echo "# soak.sh: $STREAMS streams in flight for $DURATION s through" \
	    "bedrock-sso-proxy"
	echo
	echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC') (end)"
	cat "$WORK/builds.txt"
	echo "machine: $(uname -sr), $(nproc) CPUs," \
	    "$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)"
	echo "daemon on CPU $SERVER_CPU, client and upstream on CPU" \
	    "$CLIENT_CPU; ulimit -n $(ulimit -n)"
	echo "streams: $((FRAMES / 2))-$((FRAMES * 3 / 2)) chunks (uniform," \
	    "mean $FRAMES) every $INTERVAL ms, $PER_CONN per client connection;" \
	    "RSS sampled every $SAMPLE s, windows of $WINDOW s"
	echo
	awk -F'\t' '
	NR == 1 { next }
	{
		printf "| %s | %.1f | %.1f | %.1f | %.1f | %+.1f | %d / %d / %d | %d / %d | %d, %d, %d | %d | %s / %s | %d / %d (%d good) | %d | %d | %.0f |\n",
		    $1, $2 / 1024, $3 / 1024, $4 / 1024, $5 / 1024, $6,
		    $9, $10, $11, $12, $13, $14, $16, $15, $17, $18, $19,
		    $22, $23, $24, $27, $28, $29
	}
	BEGIN {
		print "| build | RSS idle MiB | RSS median, first window MiB | RSS median, last window MiB | RSS max MiB | RSS slope after the first window kB/min | streams started / ended / ok | frames received / expected | lost, out of order, corrupt | errors | in flight mean / min | usage rows / expected | sanitizer reports | exit status | daemon CPU s |"
		print "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
	}' "$ROWS"
	echo
	awk -F'\t' 'NR > 1 {
		printf "%s: TTFB (first frame) p50 %s ms, p99 %s ms; output tokens in usage %s (expected %s); VmHWM at the end %.1f MiB, VmRSS after the drain %.1f MiB; fds idle %s, at the end %s; bsp_active_streams at the end %s; warnings/errors in the log %s\n",
		    $1, $20, $21, $25, $26, $7 / 1024, $8 / 1024, $30, $31,
		    $32, $33 }' "$ROWS"
	[ ! -s "$WORK/heap.txt" ] || cat "$WORK/heap.txt"
	echo
	for b in $SOAK_BUILDS; do
		echo "$b: sanitizer report lines in the daemon's stderr:"
		grep -E "$SANITIZER_RE" "$OUT/daemon-$b.log" | head -5 |
		    sed 's/^/    /'
		echo "$b: warnings and errors in the daemon's log:"
		grep -E 'level=(warn|error|fatal)' "$OUT/daemon-$b.log" |
		    head -10 | sed 's/^/    /'
	done
	echo
	bench_load_note
} >"$OUT/summary.md"
cat "$OUT/summary.md"
echo "results: $OUT" >&2
exit "$FAILED"
