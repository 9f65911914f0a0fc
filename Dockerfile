# syntax=docker/dockerfile:1
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    DATABASE_PATH=/data/animate-bot.db

# PyAV and Pillow ship manylinux wheels with FFmpeg and the codecs inside: no apt packages needed.
# A plain (not editable) install, and the sources removed afterwards: what runs is the installed
# package, so anything it needs at run time (the store's SQL migrations) must ship inside it.
WORKDIR /src
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY cogs ./cogs
COPY shared ./shared
COPY emulator ./emulator
COPY relay ./relay
RUN pip install . \
    && rm -rf /src && mkdir -p /app \
    && useradd --create-home --uid 10001 animate \
    && mkdir -p /data && chown animate:animate /data

# The working directory is where `.env` is read from (mount one at /app/.env) and where relative
# paths in settings resolve; the database itself lives on the /data volume.
WORKDIR /app
USER animate
VOLUME ["/data"]
# The webhook receiver (PUBLIC_WEBHOOK_URL should reach it).
EXPOSE 8080
# /healthz of the bot's receiver, or of the relay (`animate-relay --port 8080`). A bot run
# with WEBHOOK_PORT=off listens on nothing, so there is nothing to probe: it counts as healthy.
HEALTHCHECK --interval=30s --timeout=3s CMD python -c "import urllib.request,os;p=os.environ.get('WEBHOOK_PORT','8080');p=='off' or urllib.request.urlopen(f'http://127.0.0.1:{p}/healthz')" || exit 1
ENTRYPOINT ["python", "-m", "bot"]
