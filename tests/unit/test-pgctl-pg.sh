#!/bin/sh
# tests/pg/pgctl itself: two servers started at once from no template
# make one template between them (the loser of the race used to move its
# own inside the winner's, and every later copy carried it); a server
# stopped as if it crashed starts again with its data, on its port.
srcdir=${srcdir:-.}
set -u
pgctl="$srcdir/tests/pg/pgctl"
top=$(mktemp -d /tmp/bsp-test-pgctl.XXXXXX) || exit 99
chmod 755 "$top"
cleanup() {
	for d in "$top/a" "$top/b"; do "$pgctl" stop "$d"; done
	rm -rf "$top"
}
trap cleanup EXIT INT TERM
BSP_PG_TEMPLATE="$top/template"
export BSP_PG_TEMPLATE
mkdir "$top/a" "$top/b"
chmod 755 "$top/a" "$top/b"

n=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
notok() { n=$((n + 1)); echo "not ok $n - $1"; }
check() { if eval "$1"; then ok "$2"; else notok "$2"; fi; }
sql() {	# DIR SQL: one value
	PGPASSWORD=bsp-test-password psql -X -q -A -t \
	    -d "$(cat "$1/url")" -c "$2" 2>&1
}

echo "1..6"
"$pgctl" start "$top/a" > "$top/a/url" 2> "$top/a/err" & pa=$!
"$pgctl" start "$top/b" > "$top/b/url" 2> "$top/b/err" & pb=$!
wait $pa; ra=$?
wait $pb; rb=$?
check '[ $ra -eq 0 ] && [ $rb -eq 0 ]' \
    "two servers started at once ($(cat "$top/a/err" "$top/b/err"))"
extra=$(ls -A "$top/template" | grep -c '^template')
check '[ "$extra" -eq 0 ] && [ -f "$top/template/PG_VERSION" ]' \
    "one template, nothing of the other start inside it ($extra)"
check '[ "$(sql "$top/b" "SELECT 1")" = 1 ]' "the second server answers"

sql "$top/a" "CREATE TABLE t (x int); INSERT INTO t VALUES (42)" >/dev/null
"$pgctl" stop "$top/a" immediate
check '! sql "$top/a" "SELECT 1" >/dev/null' "stop immediate: the server is down"
"$pgctl" resume "$top/a" 2> "$top/a/err"
check '[ "$(sql "$top/a" "SELECT x FROM t")" = 42 ]' \
    "resume: the same data on the same port ($(cat "$top/a/err"))"
check '! "$pgctl" stop "$top/a" sideways 2>/dev/null' "an unknown stop mode is refused"
