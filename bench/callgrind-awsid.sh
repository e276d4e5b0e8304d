#!/bin/sh
#
# callgrind-awsid.sh: what telling AWS who the caller is costs per relayed
# call (issue 13), counted by valgrind's callgrind on one build, in the
# same run as the plain relay:
#
#   plain     the relay as bench/relay.sh configures it (static fake keys)
#   metadata  + aws.request_metadata: [user, email, groups, provider]
#             (the X-Amzn-Bedrock-Request-Metadata header built, merged,
#             signed)
#   userrole  + aws.per_user_role (every call signed with the user's
#             cached sts:AssumeRole session: the cache hit)
#   both      both of them
#
# The method is callgrind-relay.sh's: a fresh daemon under callgrind per
# run, WARMUP requests, then exactly N requests (curl --parallel), SIGTERM;
# per call = (Ir(N2 run) - Ir(N1 run)) / (N2 - N1), so start-up, the one
# AssumeRole of the warm-up and shutdown cancel.  The upstream is the fast
# nginx of relay-lib.sh, which also plays STS (AssumeRole answered with a
# session that expires in 2099, so every measured call is a cache hit).
# Every answer must be 200, every run must leave WARMUP + N usage rows, and
# the userrole runs exactly one AssumeRole.
#
# Usage: bench/callgrind-awsid.sh     (the build of bench/build.sh: HEAD)
# Environment: N1 (500), N2 (2000), WARMUP (100), CONNS (4), REPEAT (2),
# KINDS ("plain metadata userrole both"), NICE (10), RESULTS, KEEP.
# About 5 minutes on this machine, plus the build.

set -eu

TOP=$(cd "$(dirname "$0")/.." && pwd)
. "$TOP/bench/lib.sh"
. "$TOP/bench/relay-lib.sh"

N1=${N1:-500}
N2=${N2:-2000}
WARMUP=${WARMUP:-100}
CONNS=${CONNS:-4}
REPEAT=${REPEAT:-2}
KINDS=${KINDS:-plain metadata userrole both}
NICE=${NICE:-10}
ROLE=arn:aws:iam::123456789012:role/bench-users

[ "$N2" -gt "$N1" ] || { echo "callgrind-awsid.sh: N2 must exceed N1" >&2; exit 2; }
command -v valgrind >/dev/null && command -v callgrind_annotate >/dev/null ||
    { echo "callgrind-awsid.sh: needs valgrind (Debian: valgrind)" >&2; exit 2; }
command -v nginx >/dev/null ||
    { echo "callgrind-awsid.sh: needs nginx (Debian: nginx-light)" >&2; exit 2; }

bench_setup callgrind-awsid

# The fast upstream, and STS on the same nginx.
mkdir -p "$WORK/up/logs"
UP_PORT=$(free_port)
STS_XML='<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><AssumeRoleResult><SourceIdentity>bench@example.com</SourceIdentity><AssumedRoleUser><Arn>arn:aws:sts::123456789012:assumed-role/bench-users/bench@example.com</Arn><AssumedRoleId>AROABENCH:bench@example.com</AssumedRoleId></AssumedRoleUser><Credentials><AccessKeyId>ASIABENCHSESSION0001</AccessKeyId><SecretAccessKey>bench-session-secret-not-real</SecretAccessKey><SessionToken>FwoGZXIvYXdzEBENCHSESSIONTOKENNOTREAL0123456789</SessionToken><Expiration>2099-01-01T00:00:00Z</Expiration></Credentials></AssumeRoleResult><ResponseMetadata><RequestId>bench</RequestId></ResponseMetadata></AssumeRoleResponse>'
{
	nginx_conf_head "$WORK/up"
	echo "http {"
	nginx_http_common "$WORK/up"
	cat <<-EOF
	    server {
	        listen 127.0.0.1:$UP_PORT backlog=4096;
	        location ~ ^/model/[^/]+/invoke\$ {
	            default_type application/json;
	            add_header X-Amzn-Bedrock-Input-Token-Count 17;
	            add_header X-Amzn-Bedrock-Output-Token-Count 9;
	            add_header x-amzn-RequestId 8f2b1c3e-0000-4000-8000-00000000b5e7;
	            return 200 '$RELAY_ANSWER';
	        }
	        location = /sts/ {
	            default_type text/xml;
	            access_log $WORK/up/logs/sts.log;
	            return 200 '$STS_XML';
	        }
	        location / { return 404; }
	    }
	}
	EOF
} >"$WORK/up/nginx.conf"
nginx -p "$WORK/up" -c "$WORK/up/nginx.conf" 2>>"$WORK/up/logs/stderr.log" &
UP_PID=$!
BENCH_PIDS="$BENCH_PIDS $UP_PID"
nginx_wait "$UP_PID" "$UP_PORT" "$WORK/up"
RPATH=/model/$RELAY_MODEL/invoke
printf '%s' "$RELAY_BODY" >"$WORK/body"

# extra kind: the aws.* keys a kind adds.
extra()
{
	case $1 in
	plain)		echo "" ;;
	metadata)	echo ", request_metadata: [user, email, groups, provider]" ;;
	userrole)	echo ", per_user_role: { role_arn: \"$ROLE\" }" ;;
	both)		echo ", request_metadata: [user, email, groups, provider], per_user_role: { role_arn: \"$ROLE\" }" ;;
	esac
}

# send dir name n token port: n requests over CONNS connections; fails
# unless every answer is 200.
send()
{
	{
		echo 'request = "POST"'
		echo 'header = "Content-Type: application/json"'
		echo "header = \"Authorization: Bearer $4\""
		echo "data-binary = \"@$WORK/body\""
		printf '%s\n' 'write-out = "%{stderr}\nANSWER %{http_code}\n"'
		awk -v n="$3" -v u="http://127.0.0.1:$5$RPATH" 'BEGIN {
		    for (i = 0; i < n; i++)
			printf "url = \"%s\"\noutput = \"/dev/null\"\n", u }'
	} >"$1/$2.cfg"
	nice -n "$NICE" curl -s --no-progress-meter --parallel \
	    --parallel-max "$CONNS" -K "$1/$2.cfg" 2>"$1/$2.status" || true
	awk -v n="$3" -v what="$2" '$1 == "ANSWER" && $2 == 200 { ok++ }
	    END { if (ok != n) { printf "callgrind-awsid.sh: %s: %d of %d " \
		"answers 200\n", what, ok, n > "/dev/stderr"; exit 1 } }' \
	    "$1/$2.status"
}

# cg_run kind n rep: one daemon under callgrind; writes $d/result.
cg_run()
{
	_k=$1 _n=$2 _r=$3
	d=$WORK/$_k-$_n-$_r
	mkdir -p "$d"
	relay_bsp_config "$d" "$UP_PORT"
	sed "s|^\(aws: {.*\) }\$|\1$(extra "$_k") }|" "$d/cfg.yaml" \
	    >"$d/cfg.tmp" && mv "$d/cfg.tmp" "$d/cfg.yaml"
	chmod 600 "$d/cfg.yaml"
	_tok=$(relay_token "$d")
	[ -n "$_tok" ] || { cat "$d/cli.log" >&2; exit 1; }
	_sts0=$(wc -l <"$WORK/up/logs/sts.log" 2>/dev/null || echo 0)
	AWS_ENDPOINT_URL_STS=http://127.0.0.1:$UP_PORT/sts/ \
	    nice -n "$NICE" valgrind --tool=callgrind \
	    --callgrind-out-file="$d/callgrind.out" --log-file="$d/valgrind.log" \
	    "$BSP" -d -f "$d/cfg.yaml" 2>>"$d/daemon.log" &
	BSP_PID=$!
	BENCH_PIDS="$BENCH_PIDS $BSP_PID"
	bsp_wait_port "$d" 1200
	_port=$BSP_PORT
	send "$d" warmup "$WARMUP" "$_tok" "$_port"
	send "$d" measure "$_n" "$_tok" "$_port"
	sleep 3		# the usage rows left are written every second
	kill -TERM "$BSP_PID"
	_rc=0
	wait "$BSP_PID" || _rc=$?
	BENCH_PIDS=$(echo "$BENCH_PIDS" | sed "s/ $BSP_PID\$//")
	[ "$_rc" = 0 ] || { echo "callgrind-awsid.sh: $d: exit $_rc" >&2;
	    tail "$d/daemon.log" >&2; exit 1; }
	_ir=$(sed -n 's/^totals: *\([0-9]*\).*/\1/p' "$d/callgrind.out")
	[ -n "$_ir" ] || _ir=$(sed -n 's/^summary: *\([0-9]*\).*/\1/p' \
	    "$d/callgrind.out")
	_rows=$(sqlite3 "$d/proxy.db" "SELECT count(*) FROM usage WHERE
	    status = 200 AND input_tokens = 17 AND output_tokens = 9")
	_sts=$(($(wc -l <"$WORK/up/logs/sts.log" 2>/dev/null || echo 0) - _sts0))
	echo "$_ir $_rows $_sts" >"$d/result"
	callgrind_annotate --inclusive=yes --threshold=100 --auto=no \
	    --show-percs=no "$d/callgrind.out" | awk '
	    /file:function/ { on = 1; next }
	    on && $1 ~ /^[0-9,]+$/ { ir = $1; gsub(",", "", ir)
		fn = $2; sub(/^.*:/, "", fn); print ir "\t" fn }' \
	    >"$d/fn.tsv"
	printf '%s n=%s: %s Ir, %s usage rows, %s AssumeRole\n' \
	    "$_k" "$_n" "$_ir" "$_rows" "$_sts" >&2
	[ "$_rows" = $((WARMUP + _n)) ] || {
		echo "callgrind-awsid.sh: $d: $_rows usage rows," \
		    "expected $((WARMUP + _n))" >&2; exit 1; }
	case $_k in
	userrole|both)
		[ "$_sts" = 1 ] || { echo "callgrind-awsid.sh: $d: $_sts" \
		    "AssumeRole calls, expected 1" >&2; exit 1; } ;;
	*)
		[ "$_sts" = 0 ] || { echo "callgrind-awsid.sh: $d: $_sts" \
		    "AssumeRole calls, expected 0" >&2; exit 1; } ;;
	esac
}

for k in $KINDS; do
	r=1
	while [ "$r" -le "$REPEAT" ]; do
		cg_run "$k" "$N1" "$r"
		cg_run "$k" "$N2" "$r"
		r=$((r + 1))
	done
done

# percall kind: per-call Ir of each pair, then the mean.
percall()
{
	r=1
	s=
	while [ "$r" -le "$REPEAT" ]; do
		read -r a _ <"$WORK/$1-$N1-$r/result"
		read -r b _ <"$WORK/$1-$N2-$r/result"
		s="$s $(awk -v a="$a" -v b="$b" -v dn=$((N2 - N1)) \
		    'BEGIN { printf "%.1f", (b - a) / dn }')"
		r=$((r + 1))
	done
	echo "$s" | awk '{ for (i = 1; i <= NF; i++) t += $i
	    printf "%.0f (%s)", t / NF, $0 }' | sed 's/( /(/'
}
# fnpercall kind fn: inclusive Ir per call of one function (mean).
fnpercall()
{
	r=1
	t=0
	while [ "$r" -le "$REPEAT" ]; do
		a=$(awk -F'\t' -v f="$2" '$2 == f { s += $1 } END { print s + 0 }' \
		    "$WORK/$1-$N1-$r/fn.tsv")
		b=$(awk -F'\t' -v f="$2" '$2 == f { s += $1 } END { print s + 0 }' \
		    "$WORK/$1-$N2-$r/fn.tsv")
		t=$(awk -v t="$t" -v a="$a" -v b="$b" -v dn=$((N2 - N1)) \
		    'BEGIN { print t + (b - a) / dn }')
		r=$((r + 1))
	done
	awk -v t="$t" -v n="$REPEAT" 'BEGIN { printf "%.0f", t / n }'
}

{
	echo "# callgrind-awsid.sh: instructions per relayed call with" \
	    "request metadata and per-user roles"
	echo
	bench_describe | grep -v '^pinning'
	echo "runs: per kind, $REPEAT pair(s) of daemons under callgrind:" \
	    "$WARMUP warm-up requests then N1 = $N1 or N2 = $N2, curl" \
	    "--parallel-max $CONNS, keep-alive"
	echo
	echo "| kind | Ir per call (each pair) | - plain | awsid_metadata + awsid_metadata_header | awsrole_user_get | sigv4_sign |"
	echo "|---|---|---|---|---|---|"
	base=$(percall plain | cut -d' ' -f1)
	for k in $KINDS; do
		p=$(percall "$k")
		printf '| %s | %s | %+d | %s | %s | %s |\n' "$k" "$p" \
		    $(( $(echo "$p" | cut -d' ' -f1) - base )) \
		    "$(( $(fnpercall "$k" awsid_metadata) + \
		    $(fnpercall "$k" awsid_metadata_header) ))" \
		    "$(fnpercall "$k" awsrole_user_get)" \
		    "$(fnpercall "$k" sigv4_sign)"
	done
	echo
	echo "each run: total Ir, usage rows, AssumeRole calls:"
	echo
	for f in "$WORK"/*-*-*/result; do
		echo "    $(basename "$(dirname "$f")"): $(cat "$f")"
	done
	echo
	bench_load_note
} >"$OUT/summary.md"
for d in "$WORK"/*-*-*; do
	[ -f "$d/callgrind.out" ] || continue
	gzip -c "$d/callgrind.out" >"$OUT/callgrind-$(basename "$d").out.gz"
done
cat "$OUT/summary.md"
echo "results: $OUT" >&2
