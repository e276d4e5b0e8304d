#!/bin/sh
#
# scale.sh: three daemons on one PostgreSQL against one daemon on SQLite,
# in the same run (issue 10).
#
#   upstream  nginx answering InvokeModel (relay-lib.sh), on UPSTREAM_CPU
#   sqlite    one daemon, SQLite file (as relay.sh's bsp)
#   pg1       one of three daemons sharing one PostgreSQL database, alone
#   pg3       all three at once: three wrk processes, CONNS/3 connections
#             each, one per daemon (round robin by connection; requests
#             and CPU summed over the three)
#   postgres  tests/pg/pgctl's throw-away server, with fsync on (as
#             SQLite's synchronous FULL) and pg_stat_statements; not
#             pinned
#
# Every daemon is pinned to SERVER_CPU: three daemons share the one core
# that the SQLite daemon has to itself, so req/s of pg3 is one core's worth
# too, and CPU per call is the figure to compare.  Each round runs, back to
# back (paired: same minute, same other load): relay sqlite, pg1, pg3 for
# DURATION s at CONNS connections (bench/relay.lua, a token through the
# auth cache); then refresh-token rotations (bench/refresh.mjs: CHAINS
# sessions seeded per run, each rotated in a loop for RDURATION s) against
# sqlite, pg1 and pg3 (round robin over the three per request), with the
# daemons' and the PostgreSQL server's CPU per rotation.
#
# Then, on pg1 under relay load for STMT_SECONDS: the statements the
# database executed (pg_stat_statements, every daemon's, reset first)
# against the requests relayed, and a cpu-clock profile (perf record
# --call-graph dwarf, PROF_SECONDS) of the daemon: the samples whose stack
# holds a store or libpq function, and of those, any under a request's
# handling.
#
# Usage: bench/scale.sh     (ROUNDS=3 DURATION=20 RDURATION=10: ~7 min)
# Environment: ROUNDS, DURATION, RDURATION, CONNS (48), CHAINS (16),
# STMT_SECONDS (10), PROF_SECONDS (10), SERVER_CPU, CLIENT_CPU,
# UPSTREAM_CPU, RESULTS, KEEP, and build.sh's (BSP_BUILD defaults to
# /tmp/bsp-rel-scale here: relay.sh's /tmp/bsp-rel may be another
# revision's).

set -eu

TOP=$(cd "$(dirname "$0")/.." && pwd)
export BSP_BUILD=${BSP_BUILD:-/tmp/bsp-rel-scale}
export BSP_SRC=${BSP_SRC:-/tmp/bsp-src-scale}
. "$TOP/bench/lib.sh"
. "$TOP/bench/relay-lib.sh"

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-20}
RDURATION=${RDURATION:-10}
CONNS=${CONNS:-48}
CHAINS=${CHAINS:-16}
STMT_SECONDS=${STMT_SECONDS:-10}
PROF_SECONDS=${PROF_SECONDS:-10}
PERFSTAT=0	# no hardware counters on this VM (README)
PGCTL=$TOP/tests/pg/pgctl
# The tests' node (node:sqlite); make check installs it.
NODE=$TOP/tests/integration/node_modules/.bin/node
[ -x "$NODE" ] || { echo "scale.sh: $NODE: run make check (or npm ci in tests/integration) first" >&2; exit 1; }

bench_setup scale
chmod 755 "$WORK"	# the server runs as "postgres" when we are root
bench_cleanup_scale()
{
	"$PGCTL" stop "$WORK/pg" immediate 2>/dev/null || true
	bench_cleanup
}
trap bench_cleanup_scale EXIT

# PostgreSQL, with pg_stat_statements (a restart loads it).
PGURL=$("$PGCTL" start "$WORK/pg")
# fsync on: SQLite's daemon syncs every commit (synchronous FULL), so the
# PostgreSQL server does too here (pgctl's servers for the tests do not).
printf '%s\n' "shared_preload_libraries = 'pg_stat_statements'" \
    'fsync = on' 'full_page_writes = on' >>"$WORK/pg/data/postgresql.conf"
"$PGCTL" stop "$WORK/pg"
"$PGCTL" resume "$WORK/pg"
PGPORT=$(cat "$WORK/pg/port")
PGBIN=$(dirname "$(ls /usr/lib/postgresql/*/bin/psql | tail -1)")
printf 'bsp-test-password\n' >"$WORK/pgpw"
chmod 600 "$WORK/pgpw"
head -c 32 /dev/urandom >"$WORK/kek"
chmod 600 "$WORK/kek"
psql_q()
{
	PGPASSWORD=bsp-test-password "$PGBIN/psql" -X -q -A -t -v \
	    ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PGPORT" -U bsp -d bsp -c "$1"
}
psql_q 'CREATE EXTENSION pg_stat_statements' >/dev/null
# The server's CPU ticks: the postmaster, its reaped children and the
# ones alive (the daemons' connections).
pg_ticks()
{
	_pm=$(head -1 "$WORK/pg/data/postmaster.pid")
	{
		sed 's/.*) //' "/proc/$_pm/stat" |
		    awk '{ print $12 + $13 + $14 + $15 }'
		for _c in $(ps -o pid= --ppid "$_pm"); do
			sed 's/.*) //' "/proc/$_c/stat" 2>/dev/null |
			    awk '{ print $12 + $13 }'
		done
	} | awk '{ n += $1 } END { print n }'
}

mkdir -p "$WORK/up" "$WORK/sqlite" "$WORK/pg1" "$WORK/pg2" "$WORK/pg3"
UP_PORT=$(free_port)
upstream_start "$WORK/up" "$UP_PORT"
relay_bsp_config "$WORK/sqlite" "$UP_PORT"
for n in 1 2 3; do
	d=$WORK/pg$n
	relay_bsp_config "$d" "$UP_PORT"
	sed -e "s|^database: .*|database: { url: \"postgresql://bsp@127.0.0.1:$PGPORT/bsp?sslmode=disable\", password_file: \"$WORK/pgpw\" }|" \
	    -e "s|^jwt: { |jwt: { kek_file: \"$WORK/kek\", |" \
	    "$d/cfg.yaml" >"$d/cfg.tmp" && mv "$d/cfg.tmp" "$d/cfg.yaml"
	chmod 600 "$d/cfg.yaml"
done
# refresh.mjs (tests/integration/lib/tokens.mjs) reads DIR/config.yaml.
for d in sqlite pg1 pg2 pg3; do
	ln -s cfg.yaml "$WORK/$d/config.yaml"
done

# ready port: /health/ready 200 (with PostgreSQL: connected, state loaded).
ready()
{
	i=0
	until curl -sf -o /dev/null "http://127.0.0.1:$1/health/ready"; do
		i=$((i + 1))
		if [ $i -gt 150 ]; then
			curl -s "http://127.0.0.1:$1/health/ready" >&2
			echo "scale.sh: the daemon on $1 is not ready" >&2
			exit 1
		fi
		sleep 0.1
	done
}
bsp_start "$WORK/sqlite"
S_PID=$BSP_PID S_PORT=$BSP_PORT
ready "$S_PORT"
for n in 1 2 3; do
	bsp_start "$WORK/pg$n"
	eval "P${n}_PID=\$BSP_PID P${n}_PORT=\$BSP_PORT"
	ready "$BSP_PORT"
done
S_TOKEN=$(relay_token "$WORK/sqlite")
P_TOKEN=$(relay_token "$WORK/pg1")
export RELAY_BODY
RPATH=/model/$RELAY_MODEL/invoke

check()		# name port token
{
	code=$(curl -s -o "$WORK/check.out" -w '%{http_code}' -X POST \
	    -H "Authorization: Bearer $3" -H 'Content-Type: application/json' \
	    --data "$RELAY_BODY" "http://127.0.0.1:$2$RPATH")
	if [ "$code" != 200 ] ||
	    [ "$(cat "$WORK/check.out")" != "$RELAY_ANSWER" ]; then
		echo "scale.sh: $1 answered $code: $(cat "$WORK/check.out")" >&2
		exit 1
	fi
}
check sqlite "$S_PORT" "$S_TOKEN"
for n in 1 2 3; do
	eval "check pg$n \$P${n}_PORT \$P_TOKEN"
done

relay_wrk()	# round name pid port token
{
	wrk_run "$1" "$2" "$3" 1 "$CONNS" "$DURATION" \
	    "http://127.0.0.1:$4$RPATH" -s "$TOP/bench/relay.lua" \
	    -H "Authorization: Bearer $5" -H 'Content-Type: application/json'
}

# pg3 round: three wrk at once, one per daemon; one runs.tsv row with the
# requests and CPU summed (p50/p99: the worst of the three).
relay_trio()	# round
{
	_c3=$((CONNS / 3))
	_t0=$(($(proc_ticks "$P1_PID") + $(proc_ticks "$P2_PID") + $(proc_ticks "$P3_PID")))
	_b0=$(sys_busy)
	_w0=$(date +%s.%N)
	_pids=
	for n in 1 2 3; do
		eval "_port=\$P${n}_PORT"
		_log=$OUT/wrk-pg3-$n-c$_c3-r$1.txt
		/usr/bin/time -f 'WRKCPU %U %S' -o "$_log.time" \
		    taskset -c "$CLIENT_CPU" wrk --latency -t1 -c"$_c3" \
		    -d"$DURATION"s --timeout 10s -s "$TOP/bench/relay.lua" \
		    -H "Authorization: Bearer $P_TOKEN" \
		    -H 'Content-Type: application/json' \
		    "http://127.0.0.1:$_port$RPATH" >"$_log" 2>&1 &
		_pids="$_pids $!"
	done
	for p in $_pids; do
		wait "$p"
	done
	_w1=$(date +%s.%N)
	_t1=$(($(proc_ticks "$P1_PID") + $(proc_ticks "$P2_PID") + $(proc_ticks "$P3_PID")))
	_b1=$(sys_busy)
	for n in 1 2 3; do
		_log=$OUT/wrk-pg3-$n-c$_c3-r$1.txt
		cat "$_log.time" >>"$_log"
		rm -f "$_log.time"
	done
	cat "$OUT"/wrk-pg3-[123]-c"$_c3"-r"$1".txt | awk -v round="$1" \
	    -v c="$CONNS" -v s="$DURATION" -v hz="$HZ" -v srv=$((_t1 - _t0)) \
	    -v busy=$((_b1 - _b0)) -v w0="$_w0" -v w1="$_w1" '
	/^WRKRESULT/ {
		for (i = 2; i <= NF; i++) {
			split($i, kv, "=")
			r[kv[1]] = kv[2]
		}
		req += r["requests"]; rps += r["requests"] / (r["duration_us"] / 1e6)
		if (r["p50_us"] > p50) p50 = r["p50_us"]
		if (r["p90_us"] > p90) p90 = r["p90_us"]
		if (r["p99_us"] > p99) p99 = r["p99_us"]
		if (r["max_us"] > mx) mx = r["max_us"]
		err += r["connect"] + r["read"] + r["write"] + r["timeout"]
		st += r["status"]; nres++
	}
	/^WRKCPU/ { wrk += $2 + $3 }
	END {
		if (nres != 3) {
			print "relay_trio: a wrk gave no result" > "/dev/stderr"
			exit 1
		}
		wall = w1 - w0
		srvs = srv / hz
		printf "%s\tpg3\t3\t%d\t%d\t%d\t%.0f\t%d\t%d\t%d\t%d\t%d\t%d\t%.2f\t%.0f\t%.0f\t%.0f\t0.0\t0.0\t0.00\n",
		    round, c, s, req, rps, p50, p90, p99, mx, err, st,
		    srvs * 1e6 / req, 100 * srvs / wall, 100 * wrk / wall,
		    100 * (busy / hz - srvs - wrk) / wall
	}' >>"$OUT/runs.tsv"
	tail -1 "$OUT/runs.tsv" | cut -f2- | sed 's/^/    /' >&2
}

# Refresh rotations: CHAINS fresh sessions, rotated for RDURATION s.
REFRESH_HEADER='round	name	rotations	errors	secs	rot_per_s	p50_us	p99_us	daemon_us_rot	db_us_rot'
refresh_run()	# round name seed_dir urls pids
{
	_toks=$WORK/tokens-$2-$1
	"$NODE" "$TOP/bench/refresh.mjs" seed "$3" "$CHAINS" >"$_toks"
	_d0=0
	for p in $5; do _d0=$((_d0 + $(proc_ticks "$p"))); done
	_g0=$(pg_ticks)
	taskset -c "$CLIENT_CPU" "$NODE" "$TOP/bench/refresh.mjs" run \
	    "$RDURATION" "$4" <"$_toks" >"$OUT/refresh-$2-r$1.txt" \
	    2>"$OUT/refresh-$2-r$1.err"
	_d1=0
	for p in $5; do _d1=$((_d1 + $(proc_ticks "$p"))); done
	_g1=$(pg_ticks)
	[ -f "$OUT/refresh.tsv" ] || echo "$REFRESH_HEADER" >"$OUT/refresh.tsv"
	awk -v round="$1" -v name="$2" -v hz="$HZ" -v d=$((_d1 - _d0)) \
	    -v g=$((_g1 - _g0)) -v sq="$2" '
	/^REFRESHRESULT/ {
		for (i = 2; i <= NF; i++) {
			split($i, kv, "=")
			r[kv[1]] = kv[2]
		}
		n = r["rotations"]
		printf "%s\t%s\t%d\t%d\t%.1f\t%.0f\t%d\t%d\t%.1f\t%.1f\n",
		    round, name, n, r["errors"], r["duration_us"] / 1e6,
		    n / (r["duration_us"] / 1e6), r["p50_us"], r["p99_us"],
		    d / hz * 1e6 / n, (sq == "sqlite" ? 0 : g / hz * 1e6 / n)
	}' "$OUT/refresh-$2-r$1.txt" >>"$OUT/refresh.tsv"
	tail -1 "$OUT/refresh.tsv" | cut -f2- | sed 's/^/    /' >&2
}

URL1=http://127.0.0.1:$P1_PORT
URL3=$URL1,http://127.0.0.1:$P2_PORT,http://127.0.0.1:$P3_PORT
r=1
while [ $r -le "$ROUNDS" ]; do
	echo "round $r" >&2
	relay_wrk "$r" sqlite "$S_PID" "$S_PORT" "$S_TOKEN"
	relay_wrk "$r" pg1 "$P1_PID" "$P1_PORT" "$P_TOKEN"
	relay_trio "$r"
	refresh_run "$r" sqlite "$WORK/sqlite" "http://127.0.0.1:$S_PORT" "$S_PID"
	refresh_run "$r" pg1 "$WORK/pg1" "$URL1" "$P1_PID"
	refresh_run "$r" pg3 "$WORK/pg1" "$URL3" "$P1_PID $P2_PID $P3_PID"
	r=$((r + 1))
done

# The relay path and the database: statements during STMT_SECONDS of
# relay load on pg1 (the other two idle, connected), against the requests.
invoke_count()	# port
{
	curl -sf "http://127.0.0.1:$1/metrics" | awk '
	    index($1, "bsp_http_requests_total{route=\"bedrock_invoke\",") == 1 \
		{ n += $2 } END { print n + 0 }'
}
echo "statements" >&2
sleep 2		# the last usage rows written
psql_q 'SELECT pg_stat_statements_reset()' >/dev/null
_u0=$(psql_q 'SELECT count(*) FROM usage')
_n0=$(invoke_count "$P1_PORT")
taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNS" -d"$STMT_SECONDS"s \
    -s "$TOP/bench/relay.lua" -H "Authorization: Bearer $P_TOKEN" \
    -H 'Content-Type: application/json' \
    "http://127.0.0.1:$P1_PORT$RPATH" >"$OUT/stmt-wrk.txt" 2>&1
_n1=$(invoke_count "$P1_PORT")
sleep 2		# the usage rows of the last second written
psql_q "SELECT calls, rows, regexp_replace(left(query, 90), '[[:space:]]+', ' ', 'g')
    FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database
    WHERE datname = 'bsp') AND query NOT LIKE '%pg_stat_statements%'
    ORDER BY calls DESC" | grep -v 'count(\*) FROM usage' >"$OUT/statements.txt"
_u1=$(psql_q 'SELECT count(*) FROM usage')
STMT_REQ=$((_n1 - _n0))
STMT_CALLS=$(awk -F'|' '{ n += $1 } END { print n + 0 }' "$OUT/statements.txt")
STMT_ROWS=$((_u1 - _u0))

# Where pg1's CPU goes under relay load, and whether any of it is the
# store or libpq on a request's path.
echo "perf record" >&2
taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNS" -d$((PROF_SECONDS + 3))s \
    -s "$TOP/bench/relay.lua" -H "Authorization: Bearer $P_TOKEN" \
    -H 'Content-Type: application/json' \
    "http://127.0.0.1:$P1_PORT$RPATH" >/dev/null 2>&1 &
_wrk=$!
sleep 1
_pn0=$(invoke_count "$P1_PORT")
perf record -q -e cpu-clock -F 997 --call-graph dwarf,16384 -p "$P1_PID" \
    -o "$WORK/perf.data" -- sleep "$PROF_SECONDS" 2>/dev/null
_pn1=$(invoke_count "$P1_PORT")
wait $_wrk
perf script -i "$WORK/perf.data" -F comm,tid,ip,sym 2>/dev/null | awk '
# One sample: a line naming the thread, then its frames (a tab, the
# address, the symbol), innermost first.
function flush() {
	if (!n) return
	total++
	if (req) reqs++
	if (db) {
		dbs++
		if (req) both++
		root[top == "" ? "(other)" : top]++
	}
	n = req = db = 0; top = ""
}
!/^\t/ { flush(); next }
{
	f = $2; n++
	if (f ~ /^(server_dispatch_cb|server_auth_request|route_bedrock|relay_on_done|server_reply|usage_record)$/)
		req = 1
	if (f ~ /^(store_|pg_|pgc_|pgt_|PQ|pq|usage_write_batch|usage_step|sqlite3_)/)
		db = 1
	# The callback the loop ran: the outermost frame of the daemon
	# (libevent has no symbols of its own in the Debian package).
	if (f ~ /^(usage_|pgc_|pg_|server_|relay_|hc_|counters_|modules_|store_|route_|tokens_|apikeys_|users_)/)
		top = f
}
END {
	flush()
	printf "samples %d\nsamples on a request path %d\nsamples in the store, libpq or SQLite %d\nof which on a request path %d\n", total, reqs, dbs, both
	for (t in root) printf "store samples under the callback %s: %d\n", t, root[t]
}' >"$OUT/profile.txt"
PROF_REQ=$((_pn1 - _pn0))

fds_s=$(proc_fds "$S_PID")
problems=$( { bsp_log_problems "$WORK/sqlite"; for n in 1 2 3; do bsp_log_problems "$WORK/pg$n"; done; } | grep -v '^    none$' || true)
for pid in "$P3_PID" "$P2_PID" "$P1_PID" "$S_PID"; do
	BSP_PID=$pid
	bsp_stop
	[ "$BSP_RC" = 0 ] || echo "scale.sh: a daemon exited $BSP_RC" >&2
done
kill "$UP_PID"
wait "$UP_PID" || true

{
	bench_describe
	echo "PostgreSQL: $("$PGBIN/postgres" --version), tests/pg/pgctl with fsync on, synchronous_commit on, not pinned; SQLite: WAL, synchronous FULL"
	echo "rounds: $ROUNDS; relay ${DURATION} s at c$CONNS (pg3: 3 x c$((CONNS / 3)));" \
	    "refresh ${RDURATION} s, $CHAINS chains"
	echo
	summarize "pg1:$CONNS sqlite:$CONNS pg3:$CONNS sqlite:$CONNS pg3:$CONNS pg1:$CONNS"
	echo
	echo "refresh-token rotations, median [min, max] over rounds:"
	echo
	awk -F'\t' '
	function med(list,   a, n, i, j, x) {
		n = split(list, a, " ")
		for (i = 2; i <= n; i++) {
			x = a[i]
			for (j = i - 1; j >= 1 && a[j] + 0 > x + 0; j--)
				a[j + 1] = a[j]
			a[j + 1] = x
		}
		return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
	}
	function lo(l,   a, n, i, m) { n = split(l, a, " "); m = a[1]; for (i = 2; i <= n; i++) if (a[i] + 0 < m + 0) m = a[i]; return m }
	function hi(l,   a, n, i, m) { n = split(l, a, " "); m = a[1]; for (i = 2; i <= n; i++) if (a[i] + 0 > m + 0) m = a[i]; return m }
	function cell(l, fmt) { return sprintf(fmt " [" fmt ", " fmt "]", med(l), lo(l), hi(l)) }
	NR == 1 { next }
	{
		k = $2
		if (!(k in seen)) { seen[k] = 1; order[++nk] = k }
		rot[k] = rot[k] " " $6; p50[k] = p50[k] " " $7; p99[k] = p99[k] " " $8
		dcpu[k] = dcpu[k] " " $9; gcpu[k] = gcpu[k] " " $10
		tot[k] = tot[k] " " ($9 + $10); err[k] += $4
		R[k, $1] = $6; T[k, $1] = $9 + $10; rounds[$1] = 1
	}
	END {
		print "| run | rotations/s | p50 us | p99 us | daemon CPU us/rotation | PostgreSQL CPU us/rotation | total CPU us/rotation | errors |"
		print "|---|---|---|---|---|---|---|---|"
		for (i = 1; i <= nk; i++) {
			k = order[i]
			printf "| %s | %s | %s | %s | %s | %s | %s | %d |\n", k,
			    cell(rot[k], "%.0f"), cell(p50[k], "%.0f"),
			    cell(p99[k], "%.0f"), cell(dcpu[k], "%.0f"),
			    cell(gcpu[k], "%.0f"), cell(tot[k], "%.0f"), err[k]
		}
		print ""
		print "| per round | rotations/s ratio | total CPU/rotation ratio |"
		print "|---|---|---|"
		split("pg1 sqlite pg3 sqlite pg3 pg1", pp, " ")
		for (i = 1; i <= 5; i += 2) {
			a = pp[i]; b = pp[i + 1]; lr = lc = ""
			for (r in rounds) {
				if (!((a, r) in R) || !((b, r) in R)) continue
				lr = lr " " R[a, r] / R[b, r]
				lc = lc " " T[a, r] / T[b, r]
			}
			if (lr != "")
				printf "| %s vs %s | %s | %s |\n", a, b, cell(lr, "%.2f"), cell(lc, "%.2f")
		}
	}' "$OUT/refresh.tsv"
	echo
	echo "the database during $STMT_SECONDS s of relay load on pg1:" \
	    "$STMT_REQ requests relayed, $STMT_CALLS statements executed" \
	    "by the three daemons, $STMT_ROWS usage rows written" \
	    "($(awk -v c="$STMT_CALLS" -v n="$STMT_REQ" 'BEGIN { printf "%.4f", c / n }') statements per request):"
	echo
	sed 's/^/    /' "$OUT/statements.txt"
	echo
	echo "cpu-clock profile of pg1, $PROF_SECONDS s, $PROF_REQ requests:"
	sed 's/^/    /' "$OUT/profile.txt"
	echo
	echo "daemon warnings and errors: ${problems:-none}; sqlite fds at end: $fds_s"
	bench_load_note
} | tee "$OUT/summary.md"
