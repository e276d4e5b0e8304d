#!/bin/sh
# Layers (issue 15): every file of src/ is in one layer of the table in
# src/README; a file may call, use a variable of, or include the header of
# a file in its own layer or a lower one, never a higher one. Within a
# layer, no circle of calls may join more than two files, and a pair that
# calls each other must be listed in src/README as sharing one concern.
# One TAP line per check; the offending calls are printed.
#
# What counts: a file's external functions are the definitions whose name
# starts a line ("name(", the return type on the line before, which is
# not "static"); its external variables, the non-static file-scope
# definitions. Comments and string literals are stripped before the names
# are looked for. A guard that cannot find its input fails.
srcdir=${srcdir:-.}
set -u
readme="$srcdir/src/README"
if [ ! -f "$readme" ] || ! ls "$srcdir"/src/*.c >/dev/null 2>&1; then
	echo "1..1"
	echo "not ok 1 - no src/README or no sources under $srcdir/src"
	exit 1
fi

awk -v srcdir="$srcdir" '
function strip(s,    out, i, c, ch) {
	# One line of C, with the comment state carried in "incomment".
	out = ""
	while (s != "") {
		if (incomment) {
			i = index(s, "*/")
			if (i == 0)
				return out
			s = substr(s, i + 2)
			incomment = 0
			continue
		}
		if (match(s, /\/\*|"|\047/) == 0)
			return out s
		out = out substr(s, 1, RSTART - 1)
		c = substr(s, RSTART, RLENGTH)
		s = substr(s, RSTART + RLENGTH)
		if (c == "/*") {
			incomment = 1
			continue
		}
		# A string or character literal: skip to its unescaped end.
		while (s != "") {
			ch = substr(s, 1, 1)
			s = substr(s, 2)
			if (ch == "\\") {
				s = substr(s, 2)
				continue
			}
			if (ch == c)
				break
		}
		out = out " "
	}
	return out
}
function glob2re(g) {
	gsub(/\./, "\\.", g)
	gsub(/\*/, ".*", g)
	return "^" g "$"
}
function layer_of(f,    i) {
	# A header is in the layer of its .c; bsp.h declares them all.
	if (f == "bsp.h")
		return 0
	if (f ~ /\.h$/)
		sub(/\.h$/, ".c", f)
	for (i = 1; i <= npat; i++)
		if (f ~ pat[i])
			return patlayer[i]
	return -1
}
BEGIN {
	readme = srcdir "/src/README"
	# The table: lines "N name  file file ..." inside the block that
	# starts with a line "layers:" and ends with an empty line.
	inside = 0
	while ((getline line < readme) > 0) {
		if (line ~ /^layers:/) { inside = 1; continue }
		if (line ~ /^pairs:/) { inpairs = 1; inside = 0; continue }
		if (line ~ /^[ \t]*$/) { inside = 0; inpairs = 0; continue }
		if (inside && line ~ /^[ \t]*[0-9]+[ \t]/) {
			n = split(line, w, /[ \t]+/)
			k = (w[1] == "") ? 2 : 1
			lay = w[k] + 0
			lname[lay] = w[k + 1]
			for (j = k + 2; j <= n; j++) {
				npat++
				pat[npat] = glob2re(w[j])
				patlayer[npat] = lay
			}
		}
		if (inpairs && line ~ /^[ \t]*[a-z0-9-]+\.c[ \t]+[a-z0-9-]+\.c/) {
			n = split(line, w, /[ \t]+/)
			k = (w[1] == "") ? 2 : 1
			pair[w[k] " " w[k + 1]] = 1
			pair[w[k + 1] " " w[k]] = 1
		}
	}
	close(readme)
	cmd = "cd \"" srcdir "/src\" && ls *.c *.h"
	while ((cmd | getline f) > 0) {
		nf++
		file[nf] = f
	}
	close(cmd)
	tests = 0
	# Pass 1: definitions.
	for (i = 1; i <= nf; i++) {
		f = file[i]
		if (f !~ /\.c$/)
			continue
		incomment = 0
		prev = ""
		depth = 0
		path = srcdir "/src/" f
		while ((getline line < path) > 0) {
			s = strip(line)
			if (depth == 0 && match(s, /^[a-z_][a-z0-9_]*\(/) &&
			    prev !~ /(^|[ \t])static([ \t]|$)/ && prev !~ /^#/) {
				name = substr(s, 1, RLENGTH - 1)
				if (!(name in def))
					def[name] = f
			}
			if (depth == 0 && s !~ /^(static|extern|typedef|#)/ &&
			    s !~ /\(/ && match(s, /[a-z_][a-z0-9_]*(\[\])?[ \t]*(=.*)?;/) &&
			    s ~ /^(const |struct |int |char |time_t |size_t |double |long |unsigned |uint)/) {
				v = substr(s, RSTART, RLENGTH)
				sub(/(\[\])?[ \t]*(=.*)?;.*$/, "", v)
				if (!(v in def))
					def[v] = f
			}
			t = s
			depth += gsub(/\{/, "{", t) - gsub(/\}/, "}", t)
			if (s !~ /^[ \t]*$/)
				prev = s
		}
		close(path)
	}
	# Pass 2: uses and includes.
	bad = 0
	for (i = 1; i <= nf; i++) {
		f = file[i]
		lf = layer_of(f)
		if (lf < 0) {
			unplaced = unplaced " " f
			continue
		}
		incomment = 0
		path = srcdir "/src/" f
		while ((getline line < path) > 0) {
			if (match(line, /^#include "[a-z0-9-]+\.h"/)) {
				h = substr(line, 11, RLENGTH - 11)
				hc = h
				sub(/\.h$/, ".c", hc)
				if (h != "bsp.h") {
					lh = layer_of(h)
					if (lh > lf) {
						viol[f] = viol[f] sprintf("#   %s includes %s (layer %d %s > %d %s)\n", f, h, lh, lname[lh], lf, lname[lf])
						bad++
					}
				}
				continue
			}
			s = strip(line)
			while (match(s, /[A-Za-z_][A-Za-z0-9_]*/)) {
				name = substr(s, RSTART, RLENGTH)
				s = substr(s, RSTART + RLENGTH)
				if (!(name in def) || def[name] == f || f !~ /\.c$/)
					continue
				g = def[name]
				edge[f " " g] = edge[f " " g] (index(edge[f " " g] ",", name ",") ? "" : name ",")
			}
		}
		close(path)
	}
	for (e in edge) {
		split(e, fg, " ")
		lf = layer_of(fg[1]); lg = layer_of(fg[2])
		if (lf < 0 || lg < 0)
			continue
		if (lg > lf) {
			names = edge[e]
			sub(/,$/, "", names)
			viol[fg[1]] = viol[fg[1]] sprintf("#   %s -> %s: %s (layer %d %s calls up into %d %s)\n", fg[1], fg[2], names, lf, lname[lf], lg, lname[lg])
			bad++
		}
		if (lg == lf)
			same[fg[1], fg[2]] = 1
	}
	# Circles within a layer: reachability over same-layer edges.
	for (i = 1; i <= nf; i++) {
		a = file[i]
		if (a !~ /\.c$/ || layer_of(a) < 0) continue
		for (j = 1; j <= nf; j++) {
			b = file[j]
			if ((a, b) in same) reach[a, b] = 1
		}
	}
	for (k = 1; k <= nf; k++) {
		c = file[k]
		for (i = 1; i <= nf; i++) {
			a = file[i]
			if (!((a, c) in reach)) continue
			for (j = 1; j <= nf; j++) {
				b = file[j]
				if ((c, b) in reach) reach[a, b] = 1
			}
		}
	}
	ncirc = 0
	for (i = 1; i <= nf; i++) {
		a = file[i]
		if (a in incirc) continue
		members = a
		m = 1
		for (j = 1; j <= nf; j++) {
			b = file[j]
			if (b != a && ((a, b) in reach) && ((b, a) in reach)) {
				members = members " " b
				incirc[b] = 1
				m++
			}
		}
		if (m > 2) {
			circ = circ sprintf("#   %d files: %s\n", m, members)
			ncirc++
		} else if (m == 2 && !(members in pair)) {
			circ = circ sprintf("#   %s call each other but are not listed under pairs: in src/README\n", members)
			ncirc++
		}
	}

	printf "1..3\n"
	if (unplaced != "")
		printf "not ok 1 - every source file has a layer in src/README\n#  not placed:%s\n", unplaced
	else
		printf "ok 1 - every source file has a layer in src/README (%d files)\n", nf
	if (bad > 0) {
		printf "not ok 2 - no call, variable or include reaches a higher layer (%d do)\n", bad
		for (f in viol) printf "%s", viol[f]
	} else
		printf "ok 2 - no call, variable or include reaches a higher layer\n"
	if (ncirc > 0)
		printf "not ok 3 - no circle of more than two files in a layer, pairs listed (%d)\n%s", ncirc, circ
	else
		printf "ok 3 - no circle of more than two files in a layer, pairs listed\n"
	# The TAP lines carry the verdict.
	exit 0
}'
