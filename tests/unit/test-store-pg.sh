#!/bin/sh
# The storage layer's contract (test-store) against a real PostgreSQL
# server, started for the run by tests/pg/pgctl and stopped after; the
# host is given by name, so that it is resolved on the loop (evdns), and
# the password through the store's own setting.
srcdir=${srcdir:-.}
builddir=${BSP_BUILDDIR:-.}
set -u
dir=$(mktemp -d /tmp/bsp-test-store-pg.XXXXXX) || exit 99
chmod 755 "$dir"
cleanup() { "$srcdir/tests/pg/pgctl" stop "$dir"; rm -rf "$dir"; }
trap cleanup EXIT INT TERM
if ! url=$("$srcdir/tests/pg/pgctl" start "$dir"); then
	echo "1..1"
	echo "not ok 1 - a PostgreSQL server for the test (tests/pg/pgctl)"
	exit 0
fi
url=$(echo "$url" | sed 's/@127\.0\.0\.1:/@localhost:/')
BSP_TEST_PG_PASSWORD=bsp-test-password "$builddir/tests/unit/test-store" "$url"
