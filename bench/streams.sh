#!/bin/sh
#
# streams.sh: STREAMS (1000) concurrent InvokeModelWithResponseStream calls
# of FRAMES (200) chunks + 1 message_stop each, straight to a fake upstream
# and through the proxy, in the same run.
#
# bench/streams.c is both ends (libevent):
#   upstream  `streams serve`: 200, application/vnd.amazon.eventstream,
#             chunk frames {"bytes": base64 of a content_block_delta whose
#             text is "<seq N>"} and a last message_stop chunk with
#             amazon-bedrock-invocationMetrics (17 in, FRAMES out).  Frame 0
#             goes with the head, each next one INTERVAL ms later (per
#             stream timer); INTERVAL 0 writes the whole stream at once.
#             Pinned to UPSTREAM_CPU (= CLIENT_CPU), accept queue 4096.
#   client    `streams client`: opens STREAMS connections at once, one POST
#             each (token, small body); checks every frame's prelude and
#             message CRC-32, headers and payload, and that the chunks come
#             as seq 0, 1, ..., FRAMES-1, then message_stop, exactly; times
#             head and first frame from the moment each request is queued
#             (connect included: new connections for direct and proxied
#             alike).  Pinned to CLIENT_CPU.
#
# The same streams are also asked for through the Anthropic front end
# (`anthropic`: POST /v1/messages, stream: true, model RELAY_MODEL; the
# daemon re-emits each chunk as a server-sent event, which the client
# checks is the chunk's JSON unchanged) in the same round, so the cost of
# the translation shows against the Bedrock-format relay: daemon CPU per
# frame and RSS per stream, anthropic - bsp.
#
# For each INTERVAL in INTERVALS ("5 50 0": 200 frames over ~1 s, i.e. the
# upstream offers 200 000 frames/s for 1000 streams, more than the proxy
# relays on one core; over ~10 s, 20 000 frames/s; then unpaced), a fresh
# upstream; each round runs `direct`, `bare` (bench/bare-relay.c, the floor
# of the daemon's shape, on SERVER_CPU too), `bsp`, then `anthropic`, each
# relay a fresh process after one check stream.  Per relayed run: the
# relay's CPU (utime+stime) and perf stat instructions for the whole run,
# VmHWM (peak reset with clear_refs before the run) and VmRSS sampled every
# 50 ms, fds and bsp_active_streams after.  At the end the usage table must
# hold one row per stream with the metrics' token counts.
#
# RAMP=MS opens the streams over MS ms (stream i at MS * i / STREAMS)
# instead of all in the same instant (RAMP=0, the default).  With
# FRAMES x INTERVAL well over MS every stream still overlaps every other
# (the summary shows how many were open at once), but a stream's TTFB is
# then that of a request arriving at a relay that carries up to STREAMS
# live streams, not its place in a queue of STREAMS requests that came
# in the same instant: with RAMP=0 the p50 is about half the time the
# relay takes to accept, authenticate and forward all of them (the bare
# relay too, ~75 ms for 1000), which is the burst's cost, not the
# streams'.  Peak RSS counts fewer requests in their setup at once.
#
# With PERF=1, one more bsp run per interval under `perf record` (user and
# kernel instructions, DWARF call graphs): k instructions per frame by
# function.
#
# Usage: bench/streams.sh     (ROUNDS=3: about 5 minutes)
# Environment: ROUNDS (3), STREAMS (1000), FRAMES (200), INTERVALS
# ("5 50 0"), RAMP (0), SETTLE (1.5 s after a relay's check stream),
# PERF (1), PERF_PERIOD (1000000),
# PERFSTAT (1), SERVER_CPU, CLIENT_CPU, UPSTREAM_CPU, RESULTS, KEEP, and
# build.sh's.

set -eu

TOP=$(cd "$(dirname "$0")/.." && pwd)
. "$TOP/bench/lib.sh"
. "$TOP/bench/relay-lib.sh"

ROUNDS=${ROUNDS:-3}
STREAMS=${STREAMS:-1000}
FRAMES=${FRAMES:-200}
INTERVALS=${INTERVALS:-5 50 0}
PERF=${PERF:-1}
PERF_PERIOD=${PERF_PERIOD:-1000000}
RAMP=${RAMP:-0}
SETTLE=${SETTLE:-1.5}
RAMPARG=
[ "$RAMP" = 0 ] || RAMPARG="--ramp $RAMP"

bench_setup streams
# Two descriptors per stream in the daemon, and the client and upstream
# hold STREAMS each: well over the usual 1024.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
STREAMS_BIN=$WORK/streams
cc -O2 -g -Wall -o "$STREAMS_BIN" "$TOP/bench/streams.c" \
    $(pkg-config --cflags --libs libevent) -lz
SPATH=/model/$RELAY_MODEL/invoke-with-response-stream
APATH=/v1/messages
export RELAY_MODEL
ROWS=$OUT/streams.tsv
echo "interval	round	mode	wall_s	first_p50_us	first_p99_us	first_max_us	head_p50_us	head_p99_us	frames	expected	lost	bad	out_of_order	errors	srv_cpu_ms	up_cpu_ms	client_cpu_s	rss_idle_kb	hwm_kb	rss_max_kb	rss_after_kb	fds_before	fds_after	kinst_u	kinst_k	active_after	listen_drops	live_max	live_p50" >"$ROWS"

{
	echo "# streams.sh: $STREAMS concurrent streams of $FRAMES frames," \
	    "direct vs through bedrock-sso-proxy"
	echo
	bench_describe
	echo "upstream and client: bench/streams.c on CPU $UPSTREAM_CPU and" \
	    "$CLIENT_CPU; ulimit -n $(ulimit -n)"
	echo "runs: $ROUNDS rounds x (direct, bare, bsp, anthropic) per interval" \
	    "(INTERVALS=\"$INTERVALS\" ms between frames)"
	if [ "$RAMP" = 0 ]; then
		echo "streams opened: all at once (RAMP=0)"
	else
		echo "streams opened: over $RAMP ms, stream i at $RAMP * i /" \
		    "$STREAMS ms (RAMP=$RAMP)"
	fi
	echo
} >"$OUT/summary.md"

# rss_sampler pid file: the largest VmRSS seen every 50 ms, until killed.
rss_sampler()
{
	_max=0
	while [ -r "/proc/$1/status" ]; do
		_v=$(awk '$1 == "VmRSS:" { print $2 }' "/proc/$1/status")
		[ -n "$_v" ] && [ "$_v" -gt "$_max" ] && {
			_max=$_v
			echo "$_max" >"$2"
		}
		sleep 0.05
	done
}

# SYNs or handshakes dropped because a listen queue was full (machine-wide:
# TcpExt ListenDrops).
listen_drops()
{
	awk '$1 == "TcpExt:" { if (!n++) { for (i = 2; i <= NF; i++)
	    if ($i == "ListenDrops") c = i } else print $c }' /proc/net/netstat
}

active_streams()
{
	curl -sf "http://127.0.0.1:$BSP_PORT/metrics" |
	    awk '$1 == "bsp_active_streams" { printf "%d", $2 }'
}

# one_run interval round mode port pid: pid is the relay measured (the
# daemon, or the bare relay for `bare`; the daemon, idle, for `direct`).
one_run()
{
	_iv=$1 _r=$2 _m=$3 _port=$4 _pid=$5
	_path=$SPATH
	[ "$_m" = anthropic ] && _path=$APATH
	_log=$OUT/client-i$_iv-$_m-r$_r.txt
	_b0=$(proc_ticks "$_pid")
	_u0=$(proc_ticks "$UP_PID")
	_idle=$(proc_status "$_pid" VmRSS)
	_fd0=$(proc_fds "$_pid")
	_ld0=$(listen_drops)
	echo 5 >"/proc/$_pid/clear_refs"	# reset VmHWM
	echo 0 >"$WORK/rssmax"
	rss_sampler "$_pid" "$WORK/rssmax" &
	_smp=$!
	_perf=
	if [ "$PERFSTAT" = 1 ] && [ "$_m" != direct ]; then
		perf stat -x, -p "$_pid" -e instructions:u,instructions:k \
		    -o "$WORK/streams.perf" 2>/dev/null &
		_perf=$!
	fi
	_rc=0
	taskset -c "$CLIENT_CPU" "$STREAMS_BIN" client $RAMPARG 127.0.0.1 \
	    "$_port" "$_path" "$STREAMS" "$FRAMES" "$TOKEN" >"$_log" 2>&1 ||
	    _rc=$?
	_b1=$(proc_ticks "$_pid")
	_u1=$(proc_ticks "$UP_PID")
	_ld1=$(listen_drops)
	_iu=0 _ik=0
	if [ -n "$_perf" ]; then
		kill -INT "$_perf"
		wait "$_perf" || true
		_iu=$(sed -n 's/^\([0-9]*\),.*instructions:u.*/\1/p' \
		    "$WORK/streams.perf")
		_ik=$(sed -n 's/^\([0-9]*\),.*instructions:k.*/\1/p' \
		    "$WORK/streams.perf")
	fi
	_hwm=$(proc_status "$_pid" VmHWM)
	sleep 1		# connections wind down
	kill "$_smp" 2>/dev/null || true
	wait "$_smp" 2>/dev/null || true
	_after=$(proc_status "$_pid" VmRSS)
	_fd1=$(proc_fds "$_pid")
	_act=-
	case $_m in bsp|anthropic) _act=$(active_streams) ;; esac
	if [ "$_rc" != 0 ]; then
		echo "streams.sh: client ($_m, interval $_iv, round $_r)" \
		    "exited $_rc:" >&2
		cat "$_log" >&2
		FAILED=1
	fi
	awk -v iv="$_iv" -v r="$_r" -v m="$_m" -v hz="$HZ" \
	    -v b=$((_b1 - _b0)) -v u=$((_u1 - _u0)) -v idle="$_idle" \
	    -v hwm="$_hwm" -v rmax="$(cat "$WORK/rssmax")" -v after="$_after" \
	    -v fd0="$_fd0" -v fd1="$_fd1" -v iu="$_iu" -v ik="$_ik" \
	    -v act="$_act" -v ld=$((_ld1 - _ld0)) '
	/^RESULT/ {
		for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
		bad = v["bad_crc"] + v["bad_headers"] + v["bad_payload"]
		printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%.0f\t%.0f\t%s\t%s\t%s\t%s\n",
		    iv, r, m, v["wall_s"], v["first_p50_us"], v["first_p99_us"],
		    v["first_max_us"], v["head_p50_us"], v["head_p99_us"],
		    v["frames"], v["expected"], v["lost"], bad,
		    v["out_of_order"], v["errors"], b * 1000 / hz,
		    u * 1000 / hz, v["client_cpu_s"], idle, hwm, rmax, after,
		    fd0, fd1, iu / 1000, ik / 1000, act, ld, v["live_max"],
		    v["live_p50"]
	}' "$_log" >>"$ROWS"
	tail -1 "$ROWS" | sed 's/^/    /' >&2
}

# perf_run interval: one more bsp run under perf record; a table of k
# instructions per frame by function (inclusive) in $WORK/perf-i$iv.md.
STREAM_SYMS="event_base_loop|all of the daemon's work
server_gencb|requests accepted, authenticated, signed, sent
sigv4_sign|  SigV4
hc_start|  hc_start (incl. new upstream connections)
req_deliver_data|upstream bytes delivered to the relay (req_deliver_data)
ev_chunk|upstream chunk read by the client (ev_chunk)
relay_on_data|  relay_on_data
relay_feed|    side decoder (relay_feed)
es_decoder_feed|      es_decoder_feed (framing, CRC)
relay_frame|      relay_frame (per frame: headers, JSON, base64)
json_loadb|        json_loadb (the {\"bytes\"} payload)
sodium_base642bin|        sodium_base642bin
server_stream_write|    server_stream_write (to the client)
evhttp_send_reply_chunk|      evhttp_send_reply_chunk
evhttp_read_cb|evhttp_read_cb (both sides)
evhttp_write_cb|evhttp_write_cb
relay_finish|relay_finish (usage row, metrics)
usage_flush|usage rows written to SQLite
entry_SYSCALL_64_after_hwframe|kernel: all system calls
do_readv|  readv
do_writev|  writev
__x64_sys_epoll_ctl|  epoll_ctl
__x64_sys_epoll_wait|  epoll_wait
__x64_sys_connect|  connect
__GI___libc_malloc|malloc
__GI___libc_free|free"
perf_run()
{
	perf stat -x, -e instructions -p "$BSP_PID" -o "$WORK/perf.stat" \
	    2>/dev/null &
	_st=$!
	perf record -q -e instructions -c "$PERF_PERIOD" \
	    --call-graph dwarf,16384 -p "$BSP_PID" -o "$WORK/perf.data" \
	    2>/dev/null &
	_rec=$!
	sleep 0.5
	taskset -c "$CLIENT_CPU" "$STREAMS_BIN" client $RAMPARG 127.0.0.1 \
	    "$BSP_PORT" "$SPATH" "$STREAMS" "$FRAMES" "$TOKEN" \
	    >"$OUT/client-i$1-perf.txt" 2>&1 || true
	kill -INT "$_rec" "$_st"
	wait "$_rec" || true
	wait "$_st" || true
	perf report -q -i "$WORK/perf.data" --children --sort symbol \
	    -g none --percent-limit 0.01 2>/dev/null |
	    awk '$3 == "[.]" || $3 == "[k]" { sub("%", "", $1); print $1, $4 }' \
	    >"$OUT/perf-children-i$1.txt"
	_total=$(sed -n 's/^\([0-9]*\),.*instructions.*/\1/p' "$WORK/perf.stat")
	rm -f "$WORK/perf.data"
	printf '%s\n' "$STREAM_SYMS" | awk -F'|' -v f="$OUT/perf-children-i$1.txt" \
	    -v t="$_total" -v fr=$((STREAMS * (FRAMES + 1))) \
	    -v iv="$1" '
	BEGIN {
		while ((getline l < f) > 0) {
			split(l, a, " ")
			if (!(a[2] in pct)) pct[a[2]] = a[1]
		}
		printf "interval %s ms: k instructions per frame relayed " \
		    "(user+kernel, inclusive; shares from perf record, the " \
		    "total from perf stat over the whole run: %.1f k per " \
		    "frame, %d frames):\n\n| function | k instr/frame " \
		    "| %% |\n|---|---|---|\n", iv, t / fr / 1000, fr
	}
	{
		if (pct[$1] == "") { printf "| %s (`%s`) | - | - |\n", $2, $1; next }
		printf "| %s (`%s`) | %.2f | %.1f |\n", $2, $1,
		    pct[$1] / 100 * t / fr / 1000, pct[$1]
	}' >"$WORK/perf-i$1.md"
}

# check_stream port path: one stream through, checked, before timing.
check_stream()
{
	"$STREAMS_BIN" client 127.0.0.1 "$1" "$2" 1 "$FRAMES" "$TOKEN" \
	    >"$d/check.txt" 2>&1 || {
		echo "streams.sh: check stream on port $1 ($2) failed:" >&2
		cat "$d/check.txt" >&2
		exit 1
	}
}

# relay_fresh mode: a new process for each run (the bare relay for `bare`,
# the daemon, on the interval's database, for `bsp` and `anthropic`), so
# that every run's peak RSS is a fresh heap's: glibc keeps the heap a peak
# took, and a second run in the same process shows ~0.  One check stream
# through it; sets RPID and RPORT.
relay_fresh()
{
	if [ "$1" = bare ]; then
		bare_start "$d/bare" "$UP_PORT"
		RPID=$BARE_PID RPORT=$BARE_PORT
	else
		# bsp_wait_port reads the last "listening" line of the log.
		[ ! -f "$d/daemon.log" ] ||
		    cat "$d/daemon.log" >>"$d/daemon-all.log"
		: >"$d/daemon.log"
		bsp_start "$d"
		RPID=$BSP_PID RPORT=$BSP_PORT
	fi
	_p=$SPATH
	[ "$1" = anthropic ] && _p=$APATH
	check_stream "$RPORT" "$_p"
	# Let the relay settle before its idle RSS is taken: the daemon's
	# first usage row is written at the next 1 s tick, and SQLite's
	# statements and pages for it (~1 MB, once a process) had been
	# counted as ~1 KiB a stream of the run after.
	sleep "$SETTLE"
	_fdi=$(proc_fds "$RPID")
}

# relay_stop mode: the process of relay_fresh, stopped (the daemon by
# SIGTERM: its exit status and fds are noted).
relay_stop()
{
	if [ "$1" = bare ]; then
		kill "$BARE_PID"
		wait "$BARE_PID" 2>/dev/null || true
	else
		FDS="$FDS $_fdi->$(proc_fds "$BSP_PID")"
		bsp_stop
		BSP_RCS="$BSP_RCS $BSP_RC"
		[ "$BSP_RC" = 0 ] || FAILED=1
	fi
}

FAILED=0
n=0
for iv in $INTERVALS; do
	n=$((n + 1))
	d=$WORK/i$iv
	mkdir -p "$d"
	UP_PORT=$(free_port)
	taskset -c "$UPSTREAM_CPU" "$STREAMS_BIN" serve "$UP_PORT" "$FRAMES" \
	    "$iv" 2>>"$d/upstream.log" &
	UP_PID=$!
	BENCH_PIDS="$BENCH_PIDS $UP_PID"
	relay_bsp_config "$d" "$UP_PORT"
	TOKEN=$(relay_token "$d")
	check_stream "$UP_PORT" "$SPATH"
	BSP_RCS= FDS=
	r=1
	while [ $r -le "$ROUNDS" ]; do
		echo "interval $iv ms, round $r/$ROUNDS" >&2
		one_run "$iv" $r direct "$UP_PORT" "$UP_PID"
		for m in bare bsp anthropic; do
			relay_fresh "$m"
			one_run "$iv" $r "$m" "$RPORT" "$RPID"
			relay_stop "$m"
		done
		r=$((r + 1))
	done
	if [ "$PERF" = 1 ]; then
		echo "interval $iv ms, perf record" >&2
		relay_fresh bsp
		perf_run "$iv"
		relay_stop bsp
	fi
	rows=$(sqlite3 "$d/proxy.db" "SELECT count(*) || ' rows; ' ||
	    sum(status = 200 AND outcome = 'ok' AND input_tokens = 17 AND
	    output_tokens = $FRAMES) || ' with 200, ok, tokens 17/$FRAMES'
	    FROM usage WHERE route IN ('InvokeModelWithResponseStream',
	    'Messages')")
	echo "interval $iv ms: usage table $rows (expected" \
	    "$((2 * ROUNDS * (STREAMS + 1) + (PERF == 1 ? STREAMS + 1 : 0)))" \
	    "including a check stream per daemon started);" \
	    "the daemon's fds idle -> at the end of each run:$FDS;" \
	    "exit status after SIGTERM:$BSP_RCS; warnings and errors:" \
	    >>"$WORK/notes.txt"
	cat "$d/daemon.log" >>"$d/daemon-all.log"
	mv "$d/daemon-all.log" "$d/daemon.log"
	bsp_log_problems "$d" >>"$WORK/notes.txt"
	cp "$d/daemon.log" "$OUT/daemon-i$iv.log"
	kill "$UP_PID"
	wait "$UP_PID" 2>/dev/null || true
done

{
	awk -F'\t' -v n="$STREAMS" '
	function med(l,   a, k, i, j, x) {
		k = split(l, a, " ")
		for (i = 2; i <= k; i++) { x = a[i]
			for (j = i - 1; j >= 1 && a[j] + 0 > x + 0; j--)
				a[j + 1] = a[j]
			a[j + 1] = x }
		lo = a[1]; hi = a[k]
		return k % 2 ? a[(k + 1) / 2] : (a[k / 2] + a[k / 2 + 1]) / 2
	}
	function cell(l, f,   m) {
		m = med(l)
		return sprintf(f " [" f ", " f "]", m, lo, hi)
	}
	NR == 1 { next }
	{
		k = $1 SUBSEP $3
		if (!(k in seen)) { seen[k] = 1; ord[++nk] = k }
		wall[k] = wall[k] " " $4; f50[k] = f50[k] " " $5 / 1000
		f99[k] = f99[k] " " $6 / 1000; fmax[k] = fmax[k] " " $7 / 1000
		frames[k] += $10; exp_[k] += $11; lost[k] += $12
		bad[k] += $13; ooo[k] += $14; err[k] += $15
		cpu[k] = cpu[k] " " $16; upc[k] = upc[k] " " $17
		hwm[k] = hwm[k] " " $20 / 1024; rmax[k] = rmax[k] " " $21 / 1024
		per[k] = per[k] " " ($20 - $19) / n
		after[k] = after[k] " " $22 / 1024
		fd[k] = fd[k] " " $23 "->" $24
		ld[k] = ld[k] (ld[k] == "" ? "" : ", ") $28
		ins[k] = ins[k] " " ($25 + $26) / (n * ($11 / n))
		lmax[k] = lmax[k] " " $29; lp50[k] = lp50[k] " " $30
		F50[$1, $2, $3] = $5; F99[$1, $2, $3] = $6
		W[$1, $2, $3] = $4; rounds[$1, $2] = 1
		CPU[$1, $2, $3] = $16; PER[$1, $2, $3] = ($20 - $19) / n
		NF_[$1, $2, $3] = $11
	}
	END {
		print "| interval, target | total s | TTFB p50 ms | TTFB p99 ms | TTFB max ms | frames received / expected | lost, corrupt, out of order, errors | relay CPU ms (whole run) | upstream CPU ms | listen queue drops per run |"
		print "|---|---|---|---|---|---|---|---|---|---|"
		for (i = 1; i <= nk; i++) {
			split(ord[i], kk, SUBSEP)
			printf "| %s ms, %s | %s | %s | %s | %s | %d / %d | %d, %d, %d, %d | %s | %s | %s |\n",
			    kk[1], kk[2], cell(wall[ord[i]], "%.2f"),
			    cell(f50[ord[i]], "%.1f"), cell(f99[ord[i]], "%.1f"),
			    cell(fmax[ord[i]], "%.1f"), frames[ord[i]],
			    exp_[ord[i]], lost[ord[i]], bad[ord[i]], ooo[ord[i]],
			    err[ord[i]],
			    kk[2] != "direct" ? cell(cpu[ord[i]], "%.0f") : "-",
			    cell(upc[ord[i]], "%.0f"), ld[ord[i]]
		}
		print ""
		print "the relay (the bare one, or the daemon) during its runs (VmHWM reset before each run):"
		print ""
		print "| interval, target | peak RSS VmHWM MiB | VmRSS sampled max MiB | RSS per stream kB ((VmHWM - idle) / streams) | VmRSS after MiB | fds before->after | k instr per frame (user+kernel) | streams open at once: most, at a first frame (p50) |"
		print "|---|---|---|---|---|---|---|---|"
		for (i = 1; i <= nk; i++) {
			split(ord[i], kk, SUBSEP)
			if (kk[2] == "direct") continue
			printf "| %s ms, %s | %s | %s | %s | %s | %s | %s | %s, %s |\n", kk[1], kk[2],
			    cell(hwm[ord[i]], "%.1f"), cell(rmax[ord[i]], "%.1f"),
			    cell(per[ord[i]], "%.1f"), cell(after[ord[i]], "%.1f"),
			    fd[ord[i]], cell(ins[ord[i]], "%.2f"),
			    cell(lmax[ord[i]], "%.0f"), cell(lp50[ord[i]], "%.0f")
		}
		print ""
		print "added by the proxy (bsp - direct) and by the bare evhttp relay (bare - direct), within each round:"
		print ""
		print "| interval | TTFB p50 ms, bsp | TTFB p99 ms, bsp | total s, bsp | TTFB p50 ms, bare | TTFB p99 ms, bare | RSS per stream kB, bsp - bare |"
		print "|---|---|---|---|---|---|---|"
		for (k in rounds) {
			split(k, kk, SUBSEP)
			a50[kk[1]] = a50[kk[1]] " " (F50[kk[1], kk[2], "bsp"] - F50[kk[1], kk[2], "direct"]) / 1000
			a99[kk[1]] = a99[kk[1]] " " (F99[kk[1], kk[2], "bsp"] - F99[kk[1], kk[2], "direct"]) / 1000
			aw[kk[1]] = aw[kk[1]] " " (W[kk[1], kk[2], "bsp"] - W[kk[1], kk[2], "direct"])
			b50[kk[1]] = b50[kk[1]] " " (F50[kk[1], kk[2], "bare"] - F50[kk[1], kk[2], "direct"]) / 1000
			b99[kk[1]] = b99[kk[1]] " " (F99[kk[1], kk[2], "bare"] - F99[kk[1], kk[2], "direct"]) / 1000
			dr[kk[1]] = dr[kk[1]] " " (PER[kk[1], kk[2], "bsp"] - PER[kk[1], kk[2], "bare"])
			ivs[kk[1]] = 1
		}
		for (iv in ivs)
			printf "| %s ms | %s | %s | %s | %s | %s | %s |\n", iv,
			    cell(a50[iv], "%.1f"), cell(a99[iv], "%.1f"),
			    cell(aw[iv], "%.2f"), cell(b50[iv], "%.1f"),
			    cell(b99[iv], "%.1f"), cell(dr[iv], "%.1f")
		# Issue 16: RSS per stream <= 10 KiB, added TTFB p50 <=
		# 10 ms, no frame lost, reordered or corrupt (medians over
		# the rounds; every run is a fresh process, see relay_fresh).
		print ""
		print "issue 16 goals, bsp (medians over the rounds; each run a fresh process), and the bare evhttp relay measured the same way:"
		print ""
		print "| interval | RSS per stream kB (goal <= 10) | added TTFB p50 ms (goal <= 10) | lost, out of order, corrupt (goal 0) | the bare relay: RSS per stream kB, added TTFB p50 ms |"
		print "|---|---|---|---|---|"
		for (iv in ivs) {
			k = iv SUBSEP "bsp"
			r = med(per[k]); t = med(a50[iv])
			gr = r <= 10 ? "(met)" : "(not met)"
			gt = t <= 10 ? "(met)" : "(not met)"
			gf = lost[k] + ooo[k] + bad[k] == 0 ? "(met)" : "(not met)"
			printf "| %s ms | %.1f %s | %.1f %s | %d, %d, %d %s | %.1f, %.1f |\n",
			    iv, r, gr, t, gt, lost[k], ooo[k], bad[k], gf,
			    med(per[iv SUBSEP "bare"]), med(b50[iv])
		}
		print ""
		print "added by /v1/messages (event stream re-emitted as SSE) over the Bedrock-format relay, within each round (anthropic - bsp):"
		print ""
		print "| interval | daemon CPU us per frame | RSS per stream kB | TTFB p50 ms |"
		print "|---|---|---|---|"
		for (k in rounds) {
			split(k, kk, SUBSEP)
			if (!((kk[1], kk[2], "anthropic") in CPU)) continue
			xc[kk[1]] = xc[kk[1]] " " (CPU[kk[1], kk[2], "anthropic"] - CPU[kk[1], kk[2], "bsp"]) * 1000 / NF_[kk[1], kk[2], "bsp"]
			xr[kk[1]] = xr[kk[1]] " " (PER[kk[1], kk[2], "anthropic"] - PER[kk[1], kk[2], "bsp"])
			xf[kk[1]] = xf[kk[1]] " " (F50[kk[1], kk[2], "anthropic"] - F50[kk[1], kk[2], "bsp"]) / 1000
		}
		for (iv in xc)
			printf "| %s ms | %s | %s | %s |\n", iv,
			    cell(xc[iv], "%.2f"), cell(xr[iv], "%.1f"),
			    cell(xf[iv], "%.1f")
	}' "$ROWS"
	echo
	echo "TTFB: from the request being queued (connect included) to the" \
	    "first frame's bytes; median [min, max] of $ROUNDS rounds."
	echo
	cat "$WORK/notes.txt"
	for f in "$WORK"/perf-i*.md; do
		[ -f "$f" ] || continue
		echo
		cat "$f"
	done
	echo
	bench_load_note
} >>"$OUT/summary.md"
cat "$OUT/summary.md"
echo "results: $OUT" >&2
exit "$FAILED"
