#!/usr/bin/env bash
# Prints the path of a working Python 3.13 interpreter (pyenv shims may exist without one selected).
set -euo pipefail
if command -v python3.13 >/dev/null 2>&1 && python3.13 -c 'import sys; assert sys.version_info[:2] == (3, 13)' 2>/dev/null; then
  command -v python3.13
  exit 0
fi
if command -v pyenv >/dev/null 2>&1; then
  for version in $(pyenv versions --bare 2>/dev/null | grep -E '^3\.13(\.|$)' | sort -V -r); do
    candidate="$(pyenv prefix "$version")/bin/python3.13"
    if [ -x "$candidate" ]; then echo "$candidate"; exit 0; fi
  done
fi
for candidate in /usr/local/bin/python3.13 /usr/bin/python3.13; do
  if [ -x "$candidate" ]; then echo "$candidate"; exit 0; fi
done
echo "Python 3.13 not found: install it (e.g. 'pyenv install 3.13' or your OS package) and retry." >&2
exit 1
