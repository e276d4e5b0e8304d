#!/bin/sh
# Reported instead of the integration suite when configure found no npm (or
# was given --disable-integration): a visible SKIP, never a silent pass.
echo "1..1"
echo "ok 1 # SKIP integration suite disabled at configure time (install nodejs and npm, re-run configure)"
