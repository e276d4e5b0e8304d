#!/bin/sh
# Every sample configuration the project ships passes "-n". Secrets are read
# from files that exist only on a real host, so each *_file line is replaced
# by an inline placeholder in a private copy (mode 0600) first; a
# key-encryption key file (jwt.kek_file) by a private file of the test's.
srcdir=${srcdir:-.}
builddir=${BSP_BUILDDIR:-.}
bin=${BSP_BIN:-$builddir/bedrock-sso-proxy}
set -u
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
head -c 32 /dev/urandom > "$tmp/kek"
chmod 600 "$tmp/kek"
files="$srcdir/etc/bedrock-sso-proxy.yaml $(ls "$srcdir"/etc/examples/*.yaml 2>/dev/null)"
n=0
fail=0
total=$(echo $files | wc -w)
echo "1..$total"
for f in $files; do
	n=$((n + 1))
	if [ ! -f "$f" ]; then
		echo "not ok $n - $f missing"
		fail=1
		continue
	fi
	c="$tmp/$(basename "$f")"
	sed -e 's/^\( *\)\([a-z_]*secret\)_file: .*/\1\2: sample-placeholder-secret-0123456789abcdef/' \
	    -e 's/^\( *\)password_file: .*/\1password: sample-placeholder-password/' \
	    -e "s|^\( *\)kek_file: .*|\1kek_file: $tmp/kek|" \
	    "$f" > "$c"
	chmod 600 "$c"
	if out=$("$bin" -n -f "$c" 2>&1) && echo "$out" | grep -q "configuration OK"; then
		echo "ok $n - $(basename "$f")"
	else
		echo "not ok $n - $(basename "$f")"
		echo "$out" | sed 's/^/# /'
		fail=1
	fi
done
exit $fail
