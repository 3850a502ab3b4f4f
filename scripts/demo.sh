#!/usr/bin/env bash
# The README's main command (via `make demo`): database, demo dataset, demo logins, a first model
# trained and every image scored, then the review desk served on 127.0.0.1 with a job worker.
set -euo pipefail
cd "$(dirname "$0")/.."
HOST="${HOST:-127.0.0.1}"
PORT="${PORT:-8000}"
# The demo trains at 64 px: minutes on a laptop CPU. Real datasets use the seed's 224 (see README).
export REALFAKE_IMAGE_SIZE="${REALFAKE_IMAGE_SIZE:-64}"
export REALFAKE_CACHE_SIZE="${REALFAKE_CACHE_SIZE:-64}"
export REALFAKE_EPOCHS="${REALFAKE_EPOCHS:-12}"
export REALFAKE_TRAIN_PRESET="${REALFAKE_TRAIN_PRESET:-demo}"
# The engine is measured on the first scoring job; leaving torch.compile out keeps that to
# seconds at 64 px (`flask model tune` measures it too, when minutes are fine).
export REALFAKE_ENGINE_TUNING="${REALFAKE_ENGINE_TUNING:-quick}"
FLASK=(.venv/bin/flask --app wsgi)
INSTANCE="${REALFAKE_INSTANCE:-$PWD/instance}"
mkdir -p "$INSTANCE"

echo "==> database"
"${FLASK[@]}" db upgrade

echo "==> demo dataset"
"${FLASK[@]}" data demo

echo "==> demo logins"
logins="$INSTANCE/demo-logins.txt"
if [ ! -f "$logins" ]; then
  admin_password="$(.venv/bin/python -c 'import secrets; print(secrets.token_urlsafe(9))')"
  reviewer_password="$(.venv/bin/python -c 'import secrets; print(secrets.token_urlsafe(9))')"
  echo "$admin_password" | "${FLASK[@]}" users create admin --role admin --update
  echo "$reviewer_password" | "${FLASK[@]}" users create reviewer --role reviewer --update
  printf 'admin %s\nreviewer %s\n' "$admin_password" "$reviewer_password" >"$logins"
  chmod 600 "$logins"
fi

echo "==> job worker"
"${FLASK[@]}" worker --workers 1 >"$INSTANCE/worker.log" 2>&1 &
worker_pid=$!
trap 'kill $worker_pid 2>/dev/null || true' EXIT INT TERM

if ! "${FLASK[@]}" model list | grep -q '^\*'; then
  echo "==> training the first model (demo size ${REALFAKE_IMAGE_SIZE}px, ${REALFAKE_EPOCHS} epochs)"
  "${FLASK[@]}" model train --wait
fi
"${FLASK[@]}" model list

url="http://${HOST}:${PORT}/"
echo
echo "RealFake Review is running at ${url}"
while read -r name password; do
  echo "  log in as ${name} / ${password}"
done <"$logins"
echo "  (logins are kept in ${logins}; Ctrl-C stops the desk and the worker)"
echo
# gunicorn.conf.py puts the control socket in this instance's folder (not one path per machine).
.venv/bin/gunicorn --config gunicorn.conf.py --bind "${HOST}:${PORT}" --workers 2 --threads 4 \
  --access-logfile - wsgi:app
