#!/usr/bin/env bash
# Create .venv when absent and install the project with the extras named in $1 ("" or "test").
# Re-running is cheap: pip runs again only when pyproject.toml changed since the last install.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv"
  "$python" -m venv .venv
fi
stamp=".venv/.installed-${extras:-runtime}"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "==> installing Python packages (${extras:-runtime})"
  # The app runs from the checkout (flask --app wsgi), so only its dependencies are installed.
  .venv/bin/python scripts/requirements.py $extras > .venv/requirements.txt
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -r .venv/requirements.txt
  touch "$stamp"
fi
