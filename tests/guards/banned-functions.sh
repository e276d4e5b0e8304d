#!/bin/sh
# Banned functions (STYLE.md, after curl's checksrc): one TAP line per
# source file. Comments and string literals are not stripped, so a banned
# name in a comment must be reworded.
srcdir=${srcdir:-.}
set -u
files=$(ls "$srcdir"/src/*.c "$srcdir"/src/*.h 2>/dev/null)
if [ -z "$files" ]; then
	echo "1..1"
	echo "not ok 1 - no sources found under $srcdir/src"
	exit 1
fi
pattern='(^|[^_a-zA-Z0-9.>])(strcpy|strcat|sprintf|vsprintf|gets|atoi|atol|strtok|sscanf|strncpy|gmtime|localtime)[ ]*\('
n=0
fail=0
total=$(echo "$files" | wc -l)
echo "1..$total"
for f in $files; do
	n=$((n + 1))
	hits=$(grep -nE "$pattern" "$f" | grep -vE '(gmtime_r|localtime_r)')
	if [ -n "$hits" ]; then
		echo "not ok $n - $(basename "$f") uses a banned function"
		echo "$hits" | sed 's/^/# /'
		fail=1
	else
		echo "ok $n - $(basename "$f")"
	fi
done
exit $fail
