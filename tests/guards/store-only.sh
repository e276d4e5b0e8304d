#!/bin/sh
# The store is the one way to the database (issue 10): no file of src/ but
# the store's backends (store*.c) includes SQLite's or libpq's headers, or
# calls their functions. Every read and write of persistent state goes
# through store.h. (Tests may use them to look at rows behind the store's
# back.) One TAP line per file; offending lines are printed. Comments are
# not stripped: reword a comment that names one.
srcdir=${srcdir:-.}
set -u
files=$(ls "$srcdir"/src/*.c "$srcdir"/src/*.h 2>/dev/null)
if [ -z "$files" ]; then
	echo "1..1"
	echo "not ok 1 - no sources found under $srcdir/src"
	exit 1
fi
hdr='(sqlite3|sqlite3ext|libpq-fe|libpq-events|pg_config|postgres_ext)'
inc="^[[:space:]]*#[[:space:]]*include[[:space:]]*[<\"]$hdr\\.h[>\"]"
use='(^|[^_a-zA-Z0-9])(sqlite3_[a-z0-9_]+|PQ[a-zA-Z]+|pg_[a-z_]+_free)[ ]*\('
n=0
fail=0
echo "1..$(echo "$files" | wc -l)"
for f in $files; do
	n=$((n + 1))
	b=$(basename "$f")
	case $b in
	store*.c) echo "ok $n - $b (the store)"; continue ;;
	esac
	hits=$(grep -nE "$inc|$use" "$f")
	if [ -n "$hits" ]; then
		echo "not ok $n - $b reaches the database outside the store"
		echo "$hits" | sed 's/^/# /'
		fail=1
	else
		echo "ok $n - $b"
	fi
done
exit $fail
