# lib.sh: shared by the bench/*.sh scripts (sourced, not run).
#
# Starts the optimized daemon and nginx with temporary configurations,
# pinned with taskset to SERVER_CPU while wrk runs on CLIENT_CPU, reads
# process counters from /proc, and appends one tab-separated row per wrk run
# to $OUT/runs.tsv.  Everything it starts is stopped by its pid on exit.

SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
HZ=$(getconf CLK_TCK)
BENCH_PIDS=
PERFSTAT=${PERFSTAT:-1}
RUNS_HEADER='round	name	threads	conns	secs	requests	rps	p50_us	p90_us	p99_us	max_us	sock_err	non2xx	srv_us_req	srv_cpu_pct	wrk_cpu_pct	other_cpu_pct	kinst_u_req	kinst_k_req	syscalls_req'

bench_cleanup()
{
	for p in $BENCH_PIDS; do
		kill "$p" 2>/dev/null || true
	done
	for p in $BENCH_PIDS; do
		wait "$p" 2>/dev/null || true
	done
	if [ -n "${WORK:-}" ] && [ -z "${KEEP:-}" ]; then
		rm -rf "$WORK"
	fi
}

# bench_build_spec REV[,configure-option...]: build.sh's optimized build of
# that revision in /tmp/bsp-cg-src-TAG and /tmp/bsp-cg-rel-TAG, where TAG
# is the short hash, with "-je" for --with-jemalloc or a checksum of other
# options; prints TAG<TAB>build directory.  NICE_BUILD (10).
bench_build_spec()
{
	_rev=${1%%,*}
	_opts=
	[ "$_rev" = "$1" ] || _opts=$(echo "${1#*,}" | tr ',' ' ')
	_short=$(git rev-parse --short "$_rev^{commit}")
	_tag=$_short
	case "$_opts" in *jemalloc*) _tag=$_short-je ;; esac
	[ -z "$_opts" ] || [ "$_tag" != "$_short" ] ||
	    _tag=$_short-$(echo "$_opts" | cksum | cut -c1-4)
	echo "building $_tag ($_rev${_opts:+ $_opts})" >&2
	_b=$(BENCH_REV=$_short BENCH_CONFIGURE=$_opts \
	    BSP_SRC=/tmp/bsp-cg-src-$_tag BSP_BUILD=/tmp/bsp-cg-rel-$_tag \
	    nice -n "${NICE_BUILD:-10}" "$TOP/bench/build.sh")
	[ -n "$_b" ] || return 1
	printf '%s\t%s\n' "$_tag" "$_b"
}

# bench_setup name: build, make $WORK (temporary) and $OUT (results).
bench_setup()
{
	BUILD=$("$TOP/bench/build.sh")
	BSP=$BUILD/bedrock-sso-proxy
	bench_dirs "$1"
}

# bench_dirs name: $WORK (temporary, removed at exit with what runs in it)
# and $OUT (results/name-DATE).
bench_dirs()
{
	WORK=$(mktemp -d "/tmp/bsp-bench-$1.XXXXXX")
	OUT=${RESULTS:-$TOP/bench/results}/$1-$(date +%Y%m%d-%H%M%S)
	mkdir -p "$OUT"
	trap bench_cleanup EXIT
	trap 'exit 130' INT TERM
}

# bench_needs tool...: exit 2 naming the first one not on PATH.
bench_needs()
{
	for _bn in "$@"; do
		command -v "$_bn" >/dev/null ||
		    { echo "$(basename "$0"): needs $_bn" >&2; exit 2; }
	done
}

# What was measured, where, with what.
bench_describe()
{
	echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
	echo "build: $(cat "$BUILD/bench-rev") ($BUILD)"
	if [ -n "$(cd "$TOP" && git status --porcelain -- src)" ]; then
		echo "note: the checkout has uncommitted changes in src/;" \
		    "they are benchmarked only with BENCH_REV=worktree"
	fi
	echo "machine: $(uname -sr), $(nproc) CPUs," \
	    "$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)," \
	    "$(awk '/MemTotal/ { printf "%d MiB", $2 / 1024 }' /proc/meminfo)"
	echo "tools: $(wrk --version 2>&1 | head -1 | cut -d' ' -f1-2)," \
	    "$(nginx -v 2>&1 | cut -d' ' -f3), $(gcc --version | head -1)," \
	    "$(openssl version | cut -d' ' -f1-2)," \
	    "libsodium $(pkg-config --modversion libsodium)," \
	    "libevent $(pkg-config --modversion libevent)"
	echo "pinning: servers on CPU $SERVER_CPU, wrk on CPU $CLIENT_CPU" \
	    "(2 cores: the load generator needs one of them)"
}

# Other load on the machine: a shared box makes throughput noisy.
bench_load_note()
{
	echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg);" \
	    "busiest processes (average %CPU over each one's lifetime):"
	ps -eo pcpu=,pid=,comm= --sort=-pcpu | awk '$3 != "ps"' | head -4 |
	    sed 's/^/    /'
}

# proc_ticks pid: utime + stime in clock ticks, of the process and of its
# children still running (the daemon's checkpointer, with SQLite).
proc_ticks()
{
	_pt_f="/proc/$1/stat"
	for _pt_c in $(cat "/proc/$1/task/$1/children" 2>/dev/null || true); do
		_pt_f="$_pt_f /proc/$_pt_c/stat"
	done
	# shellcheck disable=SC2086
	cat $_pt_f 2>/dev/null | sed 's/.*) //' |
	    awk '{ t += $12 + $13 } END { print t + 0 }'
}

proc_status()	# pid field (kB)
{
	awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"
}

proc_fds()
{
	ls "/proc/$1/fd" | wc -l
}

# Busy clock ticks of the whole machine (all but idle and iowait).
sys_busy()
{
	awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat
}

# bsp_config dir [yaml]: a temporary configuration for the daemon.  Static
# (fake) AWS keys stop it probing the credential chain (IMDS) in the
# background while it is measured; no request here reaches Bedrock.  All
# load comes from one address (127.0.0.1): no per-client connection limit
# (its default, 256, would refuse most of streams.sh's 1000 connections).
bsp_config()
{
	umask 077
	cat >"$1/cfg.yaml" <<-EOF
	server: { host: 127.0.0.1, port: 0, max_connections_per_client: 0 }
	database: { url: "sqlite://$1/proxy.db" }
	logging: { access: false, level: warn }
	aws: { region: us-east-1, access_key_id: AKIDBENCHNOTREAL, secret_access_key: bench-not-a-real-secret }
	${2:-}
	EOF
	umask 022
}

# bsp_start dir [flags]: start the daemon; sets BSP_PID and BSP_PORT.
bsp_start()
{
	d=$1
	shift
	taskset -c "$SERVER_CPU" "$BSP" -d -f "$d/cfg.yaml" "$@" \
	    2>>"$d/daemon.log" &
	BSP_PID=$!
	BENCH_PIDS="$BENCH_PIDS $BSP_PID"
	bsp_wait_port "$d" 100
}

# bsp_wait_port dir tries: wait (tries x 0.1 s) for the daemon $BSP_PID,
# logging to dir/daemon.log, to listen; sets BSP_PORT.  Exits with its log
# (and valgrind's, if any) when it does not.
bsp_wait_port()
{
	_w=0
	while ! BSP_PORT=$(sed -n \
	    's/.*msg=listening addr=127\.0\.0\.1:\([0-9]*\).*/\1/p' \
	    "$1/daemon.log" 2>/dev/null | tail -1) || [ -z "$BSP_PORT" ]; do
		_w=$((_w + 1))
		if [ $_w -gt "$2" ] || ! kill -0 "$BSP_PID" 2>/dev/null; then
			cat "$1/daemon.log" >&2
			[ ! -f "$1/valgrind.log" ] || cat "$1/valgrind.log" >&2
			echo "bedrock-sso-proxy did not start" >&2
			exit 1
		fi
		sleep 0.1
	done
}

# bsp_stop: SIGTERM, and the exit status in BSP_RC.
bsp_stop()
{
	kill -TERM "$BSP_PID"
	BSP_RC=0
	wait "$BSP_PID" || BSP_RC=$?
}

# bsp_metric name: a value from the daemon's own /metrics.
bsp_metric()
{
	curl -sf "http://127.0.0.1:$BSP_PORT/metrics" |
	    awk -v m="$1" '$1 == m { print $2 }'
}

# bsp_snapshot label [extra]: a table row of the daemon's memory and fds,
# from /proc and from its own /metrics.
bsp_snapshot()
{
	_mrss=$(bsp_metric bsp_process_resident_memory_bytes)
	printf '| %s | %s | %s | %s | %s | %s |%s\n' "$1" \
	    "$(proc_status "$BSP_PID" VmRSS)" "$(proc_status "$BSP_PID" VmHWM)" \
	    "$((${_mrss%.*} / 1024))" "$(proc_fds "$BSP_PID")" \
	    "$(bsp_metric bsp_process_open_fds)" "${2:+ $2 |}"
}
BSP_SNAPSHOT_HEADER='| when | VmRSS kB | VmHWM kB | metrics RSS kB | fds (/proc) | fds (metrics) |'

# bsp_log_problems dir: the daemon's warnings and errors, or "none".
bsp_log_problems()
{
	if grep -qE 'level=(warn|error|fatal)' "$1/daemon.log"; then
		grep -E 'level=(warn|error|fatal)' "$1/daemon.log" | head -20
	else
		echo "    none"
	fi
}

# nginx_start dir port: one nginx process (no master, no daemon) answering
# the same static body as /health; sets NGINX_PID.
nginx_start()
{
	d=$1
	mkdir -p "$d/logs"
	cat >"$d/nginx.conf" <<-EOF
	daemon off;
	master_process off;
	worker_processes 1;
	pid $d/nginx.pid;
	error_log $d/logs/error.log warn;
	events { worker_connections 4096; }
	http {
	    access_log off;
	    client_body_temp_path $d/cb;
	    proxy_temp_path $d/px;
	    fastcgi_temp_path $d/fc;
	    uwsgi_temp_path $d/uw;
	    scgi_temp_path $d/sc;
	    keepalive_requests 1000000000;
	    keepalive_timeout 120s;
	    server {
	        listen 127.0.0.1:$2;
	        location / {
	            default_type application/json;
	            add_header X-Content-Type-Options nosniff;
	            return 200 '{"status":"ok"}\n';
	        }
	    }
	}
	EOF
	taskset -c "$SERVER_CPU" nginx -p "$d" -c "$d/nginx.conf" \
	    2>>"$d/logs/stderr.log" &
	NGINX_PID=$!
	BENCH_PIDS="$BENCH_PIDS $NGINX_PID"
	i=0
	until curl -sf "http://127.0.0.1:$2/health" >/dev/null; do
		i=$((i + 1))
		if [ $i -gt 50 ] || ! kill -0 "$NGINX_PID" 2>/dev/null; then
			cat "$d/logs/error.log" "$d/logs/stderr.log" >&2
			echo "nginx did not start" >&2
			exit 1
		fi
		sleep 0.1
	done
}

# free_port: a loopback port nobody listens on (for nginx).
free_port()
{
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wrk_run round name pid threads conns secs url [wrk args]: one wrk run
# against the server with that pid; appends a row to $OUT/runs.tsv and
# keeps wrk's own report in $OUT/wrk-<name>-<conns>-<round>.txt.  With
# PERFSTAT=1 `perf stat` counts the server's user and kernel instructions
# and system calls over the run: per request they hardly move when other
# work shares the machine, unlike time.
wrk_run()
{
	_round=$1 _name=$2 _pid=$3 _t=$4 _c=$5 _s=$6 _url=$7
	shift 7
	_log=$OUT/wrk-$_name-c$_c-r$_round.txt
	[ -f "$OUT/runs.tsv" ] || echo "$RUNS_HEADER" >"$OUT/runs.tsv"
	_t0=$(proc_ticks "$_pid")
	_b0=$(sys_busy)
	_perf=
	if [ "$PERFSTAT" = 1 ]; then
		perf stat -x, -p "$_pid" \
		    -e instructions:u,instructions:k,raw_syscalls:sys_enter \
		    -o "$_log.perf" 2>/dev/null &
		_perf=$!
	fi
	_w0=$(date +%s.%N)
	/usr/bin/time -f 'WRKCPU %U %S' -o "$_log.time" \
	    taskset -c "$CLIENT_CPU" wrk --latency -t"$_t" -c"$_c" -d"$_s"s \
	    --timeout 10s -s "$TOP/bench/report.lua" "$@" "$_url" >"$_log" 2>&1
	_w1=$(date +%s.%N)
	_t1=$(proc_ticks "$_pid")
	_b1=$(sys_busy)
	if [ -n "$_perf" ]; then
		kill -INT "$_perf"
		wait "$_perf" || true
		sed -n -e 's/^\([0-9]*\),[^,]*,instructions:\([uk]\),.*/PERF \2 \1/p' \
		    -e 's/^\([0-9]*\),[^,]*,raw_syscalls:sys_enter,.*/PERF s \1/p' \
		    "$_log.perf" >>"$_log"
		rm -f "$_log.perf"
	fi
	cat "$_log.time" >>"$_log"
	rm -f "$_log.time"
	awk -v round="$_round" -v name="$_name" -v t="$_t" -v c="$_c" \
	    -v s="$_s" -v hz="$HZ" -v srv=$((_t1 - _t0)) \
	    -v busy=$((_b1 - _b0)) -v w0="$_w0" -v w1="$_w1" '
	/^WRKRESULT/ {
		for (i = 2; i <= NF; i++) {
			split($i, kv, "=")
			r[kv[1]] = kv[2]
		}
	}
	/^WRKCPU/ { wrk = $2 + $3 }
	/^PERF/ { ins[$2] = $3 }
	END {
		if (r["requests"] == "") {
			print "wrk_run: no result from wrk" > "/dev/stderr"
			exit 1
		}
		wall = w1 - w0
		srvs = srv / hz
		printf "%s\t%s\t%d\t%d\t%d\t%d\t%.0f\t%d\t%d\t%d\t%d\t%d\t%d\t%.2f\t%.0f\t%.0f\t%.0f\t%.1f\t%.1f\t%.2f\n",
		    round, name, t, c, s, r["requests"],
		    r["requests"] / (r["duration_us"] / 1e6),
		    r["p50_us"], r["p90_us"], r["p99_us"], r["max_us"],
		    r["connect"] + r["read"] + r["write"] + r["timeout"],
		    r["status"], srvs * 1e6 / r["requests"],
		    100 * srvs / wall, 100 * wrk / wall,
		    100 * (busy / hz - srvs - wrk) / wall,
		    ins["u"] / 1000 / r["requests"], ins["k"] / 1000 / r["requests"],
		    ins["s"] / r["requests"]
	}' "$_log" >>"$OUT/runs.tsv"
	tail -1 "$OUT/runs.tsv" | cut -f2- | sed 's/^/    /' >&2
}

# trace_syscalls name pid url [wrk options]: `perf trace -s` on the server
# for SECS seconds under wrk -c CONNS; system calls per request by name.
# The options come after ours (a later -s replaces report.lua).
trace_syscalls()
{
	_name=$1 _url=$3
	perf trace -s -p "$2" -o "$OUT/trace-$1.txt" 2>/dev/null &
	_tr=$!
	shift 3
	sleep 1
	taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNS" -d"${TRACE_SECONDS:-5}"s \
	    -s "$TOP/bench/report.lua" "$@" "$_url" \
	    >"$OUT/trace-$_name.wrk.txt" 2>&1
	kill -INT "$_tr"
	wait "$_tr" || true
	awk -v name="$_name" '
	/^WRKRESULT/ { split($2, kv, "="); req = kv[2] }
	$1 ~ /^[a-z_0-9]+$/ && $2 ~ /^[0-9]+$/ && NF >= 8 { calls[$1] += $2; n[++k] = $1 }
	END {
		printf "%s:", name
		for (i = 1; i <= k; i++)
			if (!(n[i] in done)) {
				done[n[i]] = 1
				printf " %s %.2f", n[i], calls[n[i]] / req
			}
		printf "\n"
	}' "$OUT/trace-$_name.txt" "$OUT/trace-$_name.wrk.txt"
}

# summarize: median [min, max] per name and connection count over rounds,
# then base/name ratios computed within each round.  Args: pairs of
# "name:conns base:conns" for the ratio table.
summarize()
{
	awk -F'\t' -v pairs="$*" '
	function med(list,   a, n, i, j, x) {
		n = split(list, a, " ")
		for (i = 2; i <= n; i++) {
			x = a[i]
			for (j = i - 1; j >= 1 && a[j] + 0 > x + 0; j--)
				a[j + 1] = a[j]
			a[j + 1] = x
		}
		if (n % 2)
			return a[(n + 1) / 2]
		return (a[n / 2] + a[n / 2 + 1]) / 2
	}
	function lo(list,   a, n, i, m) {
		n = split(list, a, " "); m = a[1]
		for (i = 2; i <= n; i++) if (a[i] + 0 < m + 0) m = a[i]
		return m
	}
	function hi(list,   a, n, i, m) {
		n = split(list, a, " "); m = a[1]
		for (i = 2; i <= n; i++) if (a[i] + 0 > m + 0) m = a[i]
		return m
	}
	function cell(list, fmt) {
		return sprintf(fmt " [" fmt ", " fmt "]", med(list), lo(list),
		    hi(list))
	}
	NR == 1 { next }
	{
		k = $2 ":" $4
		if (!(k in seen)) { seen[k] = 1; order[++nk] = k }
		rps[k] = rps[k] " " $7; p50[k] = p50[k] " " $8
		p99[k] = p99[k] " " $10; cpu[k] = cpu[k] " " $14
		err[k] += $12; bad[k] += $13; nr[k]++
		other[k] = other[k] " " $17
		iu[k] = iu[k] " " $18; ik[k] = ik[k] " " $19
		sc[k] = sc[k] " " $20
		IU[k, $1] = $18; IK[k, $1] = $19
		R[k, $1] = $7; P50[k, $1] = $8; P99[k, $1] = $10
		C[k, $1] = $14; rounds[$1] = 1
	}
	END {
		printf "| run | rounds | req/s | p50 us | p99 us | server CPU us/req | k instr/req user | k instr/req kernel | syscalls/req | sock err | non-2xx | other load %% |\n"
		printf "|---|---|---|---|---|---|---|---|---|---|---|---|\n"
		for (i = 1; i <= nk; i++) {
			k = order[i]
			printf "| %s | %d | %s | %s | %s | %s | %s | %s | %s | %d | %d | %s |\n",
			    k, nr[k], cell(rps[k], "%.0f"), cell(p50[k], "%.0f"),
			    cell(p99[k], "%.0f"), cell(cpu[k], "%.1f"),
			    cell(iu[k], "%.1f"), cell(ik[k], "%.1f"),
			    cell(sc[k], "%.2f"), err[k],
			    bad[k], cell(other[k], "%.0f")
		}
		np = split(pairs, pp, " ")
		if (np < 2)
			exit
		printf "\nratios and differences, computed within each round, median [min, max]:\n\n"
		printf "| run vs baseline | req/s ratio | CPU/req ratio | added CPU us/req | added k instr/req (user+kernel) | added p50 us | added p99 us |\n"
		printf "|---|---|---|---|---|---|---|\n"
		for (i = 1; i + 1 <= np; i += 2) {
			a = pp[i]; b = pp[i + 1]
			lr = lc = ld = l5 = l9 = li = ""
			for (r in rounds) {
				if (!((a, r) in R) || !((b, r) in R))
					continue
				lr = lr " " R[a, r] / R[b, r]
				lc = lc " " C[a, r] / C[b, r]
				ld = ld " " C[a, r] - C[b, r]
				l5 = l5 " " P50[a, r] - P50[b, r]
				l9 = l9 " " P99[a, r] - P99[b, r]
				li = li " " IU[a, r] + IK[a, r] - IU[b, r] - IK[b, r]
			}
			if (lr == "")
				continue
			printf "| %s vs %s | %s | %s | %s | %s | %s | %s |\n", a, b,
			    cell(lr, "%.2f"), cell(lc, "%.2f"), cell(ld, "%.1f"),
			    cell(li, "%.1f"), cell(l5, "%.0f"), cell(l9, "%.0f")
		}
	}' "$OUT/runs.tsv"
}
