#!/bin/sh
#
# verify.sh: verifications per second for EdDSA, ES256, RS256 and HS256
# tokens with the project's own code (bench/verify.c linked against the
# optimized libbsp.a), the cost of the auth cache key (crypto_sha256 of
# the token, as auth.c makes it) and of a uthash lookup, and the daemon's whole tokens.c path
# with a real configuration and database.  `openssl speed` for the same
# signature algorithms is run in the same invocation as the baseline.
#
# Usage: bench/verify.sh            (about 1.5 minutes)
# Environment: SECONDS_PER_LOOP (0.5), REPEATS (5), CPU (0: the core the
# benchmark is pinned to), RESULTS (bench/results), and build.sh's.

set -eu

TOP=$(cd "$(dirname "$0")/.." && pwd)
. "$TOP/bench/lib.sh"

T=${SECONDS_PER_LOOP:-0.5}
R=${REPEATS:-5}
CPU=${CPU:-0}

bench_setup verify
BIN=$WORK/verify

# shellcheck disable=SC2046
gcc -O2 -g -Wall -I"$TOP/src" -I"$BUILD" -o "$BIN" "$TOP/bench/verify.c" \
    "$BUILD/src/libbsp.a" $(pkg-config --libs libevent_openssl libevent \
    openssl sqlite3 libsodium jansson yaml-0.1 libpq) -lm

{
	bench_describe
	echo "loop: ${T}s per repeat, $R repeats; cpu_us = median thread CPU time" \
	    "per call (min, max over repeats), wall_us = median wall time," \
	    "pinned to CPU $CPU"

	echo
	echo "## library: jose.c / crypto.c on keys from crypto_key_generate()"
	taskset -c "$CPU" "$BIN" -t "$T" -r "$R"

	echo
	echo "## tokens.c: tokens_verify_jwt() + principal_revoked() (a cache"
	echo "## miss in auth.c) vs the cache-hit path, real config and database"
	for alg in EdDSA ES256 RS256 HS256; do
		d=$WORK/$alg
		mkdir -p "$d"
		secret=
		[ $alg = HS256 ] && secret=", secret: $(head -c 48 /dev/urandom |
		    base64 | tr -d '/+=\n')"
		bsp_config "$d" "jwt: { algorithm: $alg, issuer: http://bench.invalid$secret }"
		tok=$("$BSP" -f "$d/cfg.yaml" token mint --user bench@example.com \
		    2>>"$d/cli.log")
		taskset -c "$CPU" "$BIN" -t "$T" -r "$R" -f "$d/cfg.yaml" "$tok" |
		    sed "s|$d/cfg.yaml|$alg|"
	done

	echo
	echo "## baseline: openssl speed (same machine, same run, one core)"
	taskset -c "$CPU" openssl speed -seconds 3 ed25519 ecdsap256 rsa2048 \
	    2>/dev/null | grep -E 'verify|bits'
	echo
	bench_load_note
} 2>&1 | tee "$OUT/verify.txt"

# One table: ours against openssl speed, per algorithm.
awk '
/^# tokens.c, / { sec = "tok " $3; next }
/^# [A-Z]/ { sec = "lib " $2; next }
/^jose_verify / { sig[substr(sec, 5)] = $3; sigi[substr(sec, 5)] = $NF }
/^jose_parse/ { parse[substr(sec, 5)] = $2; parsei[substr(sec, 5)] = $NF }
/^parse\+verify/ { full[substr(sec, 5)] = $2 }
/^tokens_verify_jwt/ { tok[substr(sec, 5)] = $2; toki[substr(sec, 5)] = $NF }
/^cache hit/ { hit[substr(sec, 5)] = $4; hiti[substr(sec, 5)] = $NF }
/^crypto_sha256 \(the cache key\)/ { hash = $5; hashi = $NF }
/^uthash/ { find = $6; findi = $NF }
/^rsa 2048 bits/ { ossl["RS256"] = 1e6 / $NF }
/ecdsa \(nistp256\)/ { ossl["ES256"] = 1e6 / $NF }
/EdDSA \(Ed25519\)/ { ossl["EdDSA"] = 1e6 / $NF }
END {
	print ""
	print "CPU us per call (k user instructions per call):"
	print ""
	print "| alg | jose_verify | verifies/s | jose_parse | parse+verify+claims | tokens_verify_jwt (cache miss) | cache hit | openssl speed verify (wall) | jose_verify / openssl |"
	print "|---|---|---|---|---|---|---|---|---|"
	n = split("EdDSA ES256 RS256 HS256", a, " ")
	for (i = 1; i <= n; i++) {
		k = a[i]
		printf "| %s | %.1f (%.0f) | %.0f | %.1f (%.0f) | %.1f | %.1f (%.0f) | %.2f (%.1f) | %s | %s |\n",
		    k, sig[k], sigi[k], 1e6 / sig[k], parse[k], parsei[k], full[k],
		    tok[k], toki[k], hit[k], hiti[k],
		    k in ossl ? sprintf("%.1f", ossl[k]) : "-",
		    k in ossl ? sprintf("%.2f", sig[k] / ossl[k]) : "-"
	}
	printf "\ncrypto_sha256 of the EdDSA token (the cache key): %.2f us" \
	    " (%.1f k instr); uthash HASH_FIND in %d entries: %.3f us" \
	    " (%.2f k instr)\n", hash, hashi, 10000, find, findi
}' "$OUT/verify.txt" | tee -a "$OUT/verify.txt"
echo "results: $OUT/verify.txt"
