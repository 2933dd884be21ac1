#!/usr/bin/env bash
# Creates .venv-tests/ (git-ignored) in the repo root with the PyPI packages the inference
# tests and benchmark use: the official `openai` client (tests) and `litellm[proxy]` (the
# benchmark's peer). Idempotent: returns at once when the venv already has them.
#   NEMOCLAW_SKIP_LITELLM=1  installs only `openai` (the tests need nothing else).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv-tests"
py="${PYTHON:-python3}"
stamp="$venv/.nemoclaw-ready"
want="openai"
if [ "${NEMOCLAW_SKIP_LITELLM:-0}" != "1" ]; then want="$want litellm[proxy]"; fi
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
if [ ! -x "$venv/bin/python" ]; then
  "$py" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip >/dev/null
# shellcheck disable=SC2086
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check $want
"$venv/bin/python" -c 'import openai; print("openai", openai.__version__)'
printf '%s' "$want" > "$stamp"
