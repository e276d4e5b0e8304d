#!/bin/sh
# The man pages and the code must agree: every configuration key in the
# keyword table is documented in bedrock-sso-proxy.yaml(5) and every key
# documented there exists; the same for commands in bedrock-sso-proxy(8);
# usage() matches the SYNOPSIS; both pages pass mandoc -Tlint.
srcdir=${srcdir:-.}
builddir=${BSP_BUILDDIR:-.}
set -u
man8="$srcdir/man/bedrock-sso-proxy.8.in"
man5="$srcdir/man/bedrock-sso-proxy.yaml.5.in"
dump="$builddir/tests/unit/dump-keys"
bin=${BSP_BIN:-$builddir/bedrock-sso-proxy}
mandoc=${MANDOC:-mandoc}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
n=0
fail=0
check() {
	n=$((n + 1))
	if [ "$1" = 0 ]; then
		echo "ok $n - $2"
	else
		echo "not ok $n - $2"
		fail=1
		[ -s "$tmp/diag" ] && sed 's/^/# /' "$tmp/diag"
	fi
	: > "$tmp/diag"
}
echo "1..6"
: > "$tmp/diag"

for f in "$man8" "$man5" "$dump" "$bin"; do
	if [ ! -e "$f" ]; then
		echo "# missing input: $f" >> "$tmp/diag"
	fi
done
if [ -s "$tmp/diag" ]; then
	check 1 "inputs present"
	for i in 2 3 4 5 6; do check 1 "skipped: inputs missing"; done
	exit 1
fi
check 0 "inputs present"

# Keys: .It Ic key lines; NAME stands for a collection entry's name.
"$dump" keys | sed 's/\.\*\./.NAME./' | sort -u > "$tmp/code-keys"
grep -E '^\.It Ic [a-z]' "$man5" | awk '{print $3}' | sort -u > "$tmp/man-keys"
if [ ! -s "$tmp/code-keys" ] || [ ! -s "$tmp/man-keys" ]; then
	echo "empty key list" >> "$tmp/diag"
	check 1 "configuration keys documented"
else
	comm -3 "$tmp/code-keys" "$tmp/man-keys" | sed \
	    -e 's/^\t\(.*\)/documented but not in the code: \1/' \
	    -e 's/^\([^d].*\)/in the code but not documented: \1/' > "$tmp/diag"
	[ -s "$tmp/diag" ]; check $((1 - $?)) "configuration keys documented ($(wc -l < "$tmp/code-keys") keys)"
fi

# Commands: .It Cm lines inside the COMMANDS section of the 8 page.
"$dump" commands | sort -u > "$tmp/code-cmds"
sed -n '/^\.Sh COMMANDS/,/^\.Sh /p' "$man8" | grep -E '^\.It Cm ' |
    sed -e 's/^\.It Cm //' -e 's/ Op.*//' -e 's/ Oo.*//' -e 's/ Fl.*//' -e 's/ Ar.*//' |
    sort -u > "$tmp/man-cmds"
comm -3 "$tmp/code-cmds" "$tmp/man-cmds" | sed \
    -e 's/^\t\(.*\)/documented but not in the code: \1/' \
    -e 's/^\([^d].*\)/in the code but not documented: \1/' > "$tmp/diag"
[ -s "$tmp/diag" ]; check $((1 - $?)) "commands documented ($(wc -l < "$tmp/code-cmds") commands)"

# usage() against the SYNOPSIS.
"$bin" -h 2> "$tmp/usage" > /dev/null
sed -n 's/^usage: //p' "$tmp/usage" | tr -s ' ' > "$tmp/u1"
"$mandoc" -Tascii "$man8" 2>/dev/null | sed 's/.\x08//g' |
    sed -n '/^SYNOPSIS/,/^DESCRIPTION/p' | sed '1d;$d' | tr -s ' \n' '  ' |
    sed -e 's/^ *//' -e 's/ *$//' > "$tmp/u2"
echo >> "$tmp/u2"
if [ -s "$tmp/u1" ] && cmp -s "$tmp/u1" "$tmp/u2"; then
	check 0 "usage() matches the SYNOPSIS"
else
	{ echo "usage:    $(cat "$tmp/u1")"; echo "synopsis: $(cat "$tmp/u2")"; } > "$tmp/diag"
	check 1 "usage() matches the SYNOPSIS"
fi

# mandoc -Tlint, warnings and worse.
for page in "$man8" "$man5"; do
	"$mandoc" -Tlint -W warning "$page" > "$tmp/diag" 2>&1
	check $? "mandoc -Tlint $(basename "$page")"
done
exit $fail
