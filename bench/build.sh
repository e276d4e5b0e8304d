#!/bin/sh
#
# build.sh: the optimized build every benchmark runs (-O2 -g, no ASan).
#
# /work/main is configured in its own directory (--enable-debug
# --enable-asan), and configure refuses a VPATH build from a configured
# source directory, so the sources are exported to $BSP_SRC and built out of
# tree in $BSP_BUILD.  By default the export is the committed tree
# (git archive HEAD) plus the generated configure, Makefile.in and
# build-aux/ from the checkout, so that work in progress in src/ cannot
# break or skew a benchmark; BENCH_REV=worktree builds the checkout as it
# is (tracked and new files), BENCH_REV=<commit> another commit.  When the
# checkout has not been generated, or the revision's Makefile.am or
# configure.ac differ from the checkout's, autoreconf -fi generates them
# in the export instead (a revision that adds or removes source files
# needs its own Makefile.in).  The build
# is redone from scratch when the revision changes.  Prints the build
# directory and writes $BSP_BUILD/bench-rev.
#
# Environment: BENCH_REV (HEAD), BSP_SRC (/tmp/bsp-src),
# BSP_BUILD (/tmp/bsp-rel), BENCH_CFLAGS (-O2 -g), BENCH_CONFIGURE (extra
# configure options, none: soak.sh's ASan build passes --enable-debug
# --enable-asan with BENCH_CFLAGS=-g).

set -eu

TOP=$(cd "$(dirname "$0")/.." && pwd)
REV=${BENCH_REV:-HEAD}
SRC=${BSP_SRC:-/tmp/bsp-src}
BUILD=${BSP_BUILD:-/tmp/bsp-rel}
CFLAGS=${BENCH_CFLAGS:--O2 -g}
CONFIGURE=${BENCH_CONFIGURE:-}

cd "$TOP"
if [ "$REV" = worktree ]; then
	id="worktree $(git rev-parse --short HEAD) $(git status --porcelain \
	    -- src Makefile.am configure.ac | cksum | cut -d' ' -f1)"
else
	id=$(git rev-parse --short "$REV^{commit}")
fi
# The checkout's generated files fit the export only if it was generated
# (autoreconf) and its Makefile.am and configure.ac are those of the
# export; otherwise they are generated again in the export.
regen=
[ -f configure ] && [ -f Makefile.in ] || regen=1
if [ "$REV" != worktree ] &&
    ! git diff --quiet "$REV" -- Makefile.am configure.ac; then
	regen=1
fi
id="$id CFLAGS=$CFLAGS${CONFIGURE:+ $CONFIGURE}"
if [ "$(cat "$BUILD/bench-rev" 2>/dev/null)" != "$id" ]; then
	rm -rf "$SRC" "$BUILD"
	mkdir -p "$SRC" "$BUILD"
	if [ "$REV" = worktree ]; then
		git ls-files -co --exclude-standard | while read -r f; do
			[ -f "$f" ] && printf '%s\n' "$f"
		done | tar cf - -T - | tar xf - -C "$SRC"
	else
		git archive "$REV" | tar xf - -C "$SRC"
	fi
	if [ -n "$regen" ]; then
		(cd "$SRC" && autoreconf -fi) >"$BUILD/bench-autoreconf.log" \
		    2>&1 || {
			echo "build.sh: autoreconf failed," \
			    "see $BUILD/bench-autoreconf.log" >&2
			exit 1
		}
	else
		tar cf - configure Makefile.in config.h.in aclocal.m4 \
		    build-aux | tar xf - -C "$SRC"
	fi
	# shellcheck disable=SC2086 # CONFIGURE is a list of options
	(cd "$BUILD" && "$SRC/configure" $CONFIGURE CFLAGS="$CFLAGS") \
	    >"$BUILD/bench-configure.log" 2>&1 || {
		echo "build.sh: configure failed," \
		    "see $BUILD/bench-configure.log" >&2
		exit 1
	}
fi
make -C "$BUILD" -j2 bedrock-sso-proxy src/libbsp.a \
    >"$BUILD/bench-make.log" 2>&1 || {
	tail -20 "$BUILD/bench-make.log" >&2
	echo "build.sh: make failed, see $BUILD/bench-make.log" >&2
	exit 1
}
printf '%s\n' "$id" >"$BUILD/bench-rev"
echo "$BUILD"
