# The storefront under gunicorn (docker-entrypoint.sh: schema upgrade, then gunicorn on $PORT).
# Without AMAZON_PAY_* credentials it serves the offline demo: the embedded simulator listens on
# loopback inside the container and its buyer pages go through the shop's own port, so
# `docker run -p 8000:8000 <image>` is the whole demo.
FROM python:3.11.11-slim-bookworm

# APP_INSTANCE_PATH: keys, the secret, the SQLite file and the simulator's port file. The app
# creates it (mode 0700) under /data, which any user id may write to (docker run --user ...).
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PORT=8000 \
    APP_INSTANCE_PATH=/data/instance

WORKDIR /app

COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt

RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /app --no-create-home app \
    && mkdir -p /data \
    && chmod 1777 /data

COPY --chown=root:root . .

USER 10001:10001

EXPOSE 8000

# /healthz on the container's own loopback, but with PUBLIC_URL's host: the shop refuses others.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.parse, urllib.request as u; host = urllib.parse.urlsplit(os.environ.get('PUBLIC_URL') or 'http://localhost').netloc; r = u.Request('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '8000'), headers={'Host': host}); sys.exit(0 if u.urlopen(r, timeout=4).status == 200 else 1)"]

# sh, not the file's own mode bit: a checkout that lost +x still runs.
CMD ["sh", "/app/docker-entrypoint.sh"]
