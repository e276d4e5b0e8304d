#!/bin/sh
# test-device against a PostgreSQL server of its own (tests/pg/with-pg).
srcdir=${srcdir:-.}
exec sh "$srcdir/tests/pg/with-pg" "${BSP_BUILDDIR:-.}/tests/unit/test-device"
