#!/usr/bin/env bash
# Creates .venv-tests/ (git-ignored) in the repo root with the PyPI packages the inference tests
# need: the official `openai` client. With --bench it also installs `litellm[proxy]`, the peer
# that `cargo bench --bench inference` measures against. Idempotent: returns at once when the
# venv already has what is asked for.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv-tests"
py="${PYTHON:-python3}"
want=(openai)
if [ "${1:-}" = "--bench" ]; then want+=("litellm[proxy]"); fi

missing=()
for pkg in "${want[@]}"; do
  [ -f "$venv/.ready-${pkg%%[*}" ] || missing+=("$pkg")
done
[ "${#missing[@]}" -eq 0 ] && exit 0

if [ ! -x "$venv/bin/python" ]; then
  "$py" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${missing[@]}"
"$venv/bin/python" -c 'import openai' 2>/dev/null || true
for pkg in "${missing[@]}"; do
  touch "$venv/.ready-${pkg%%[*}"
done
echo "setup-python: installed ${missing[*]} into $venv"
