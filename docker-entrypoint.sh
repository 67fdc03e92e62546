#!/bin/sh
# The image's command: bring the database schema up to date, then serve the shop with gunicorn
# on 0.0.0.0:$PORT (default 8000). Works from any working directory and as any user id.
#
# Offline (no AMAZON_PAY_PUBLIC_KEY_ID) the buyer's browser reaches the simulator's pages through
# this same port, under /_amazon-pay-simulator of PUBLIC_URL (default http://localhost:$PORT,
# what `docker run -p 8000:8000` gives the machine running Docker).
set -eu

cd "$(dirname "$0")"
port="${PORT:-8000}"

if [ -z "${APP_SIMULATOR_PUBLIC_URL:-}" ]; then
    origin="${PUBLIC_URL:-http://localhost:${port}}"
    APP_SIMULATOR_PUBLIC_URL="${origin%/}/_amazon-pay-simulator"
    export APP_SIMULATOR_PUBLIC_URL
fi

# An empty database gets its tables from the app itself; an older one needs this upgrade.
flask --app app db upgrade

exec gunicorn 'app:create_app()' \
    --bind "0.0.0.0:${port}" \
    --workers "${WEB_CONCURRENCY:-2}" \
    --threads 4 \
    --access-logfile -
