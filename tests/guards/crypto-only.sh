#!/bin/sh
# Key bytes live in one file (STYLE.md, issue 15): no file of src/ but
# crypto.c includes libsodium or OpenSSL's digest, MAC, random, KDF or key
# headers, or calls their functions. (TLS, which OpenSSL's ssl.h drives,
# is not key handling of ours.) One TAP line per file; offending lines
# are printed. Comments are not stripped: reword a comment that names one.
srcdir=${srcdir:-.}
set -u
files=$(ls "$srcdir"/src/*.c "$srcdir"/src/*.h 2>/dev/null)
if [ -z "$files" ]; then
	echo "1..1"
	echo "not ok 1 - no sources found under $srcdir/src"
	exit 1
fi
inc='^#include <(sodium\.h|openssl/(evp|hmac|rand|kdf|core_names|param_build|ec|bn|rsa)\.h)>'
use='(^|[^_a-zA-Z0-9])(sodium_[a-z0-9_]+|randombytes[a-z0-9_]*|EVP_[A-Za-z0-9_]+|HMAC[A-Za-z0-9_]*|crypto_(secretbox|aead|sign_ed|box|kdf|auth|hash_sha|generichash|pwhash|scalarmult|stream)[a-z0-9_]*)[ ]*\('
n=0
fail=0
echo "1..$(echo "$files" | wc -l)"
for f in $files; do
	n=$((n + 1))
	b=$(basename "$f")
	case $b in
	crypto.c|crypto.h) echo "ok $n - $b (the one file)"; continue ;;
	esac
	hits=$(grep -nE "$inc|$use" "$f")
	if [ -n "$hits" ]; then
		echo "not ok $n - $b handles key material outside crypto.c"
		echo "$hits" | sed 's/^/# /'
		fail=1
	else
		echo "ok $n - $b"
	fi
done
exit $fail
