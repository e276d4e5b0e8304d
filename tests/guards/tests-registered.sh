#!/bin/sh
# Every test file in the tree is registered in Makefile.am, so none is
# silently left out of make check.
srcdir=${srcdir:-.}
set -u
mk="$srcdir/Makefile.am"
n=0
fail=0
out=""
for f in "$srcdir"/tests/unit/test-*.c "$srcdir"/tests/unit/test-*.sh \
    "$srcdir"/tests/integration/*.test.mjs \
    "$srcdir"/tests/fuzz/fuzz-*.c; do
	[ -e "$f" ] || continue
	rel=${f#"$srcdir"/}
	case $rel in
	tests/unit/*.sh) want=$rel ;;
	tests/unit/*) want=${rel%.c} ;;
	tests/fuzz/fuzz-*) name=$(basename "$rel" .c); want="tests/fuzz/replay-${name#fuzz-}" ;;
	*) want=$rel ;;
	esac
	n=$((n + 1))
	if grep -qE "(^|[ 	])$want( |\\\\|\$)" "$mk"; then
		out="$out
ok $n - $rel registered"
	else
		out="$out
not ok $n - $rel is not in Makefile.am (want $want)"
		fail=1
	fi
done
if [ $n -eq 0 ]; then
	echo "1..1"
	echo "not ok 1 - no test files found under $srcdir/tests"
	exit 1
fi
echo "1..$n"
echo "$out" | sed '1d'
exit $fail
