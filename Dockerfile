# syntax=docker/dockerfile:1
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    DATABASE_PATH=/data/animate-bot.db

WORKDIR /app
# PyAV and Pillow ship manylinux wheels with FFmpeg and the codecs inside: no apt packages needed.
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY cogs ./cogs
RUN pip install . \
    && useradd --create-home --uid 10001 animate \
    && mkdir -p /data && chown animate:animate /data

USER animate
VOLUME ["/data"]
# The webhook receiver (PUBLIC_WEBHOOK_URL should reach it).
EXPOSE 8080
# /healthz of the bot's receiver, or of the relay (`python -m bot relay --port 8080`). A bot run
# with WEBHOOK_PORT=off listens on nothing, so there is nothing to probe: it counts as healthy.
HEALTHCHECK --interval=30s --timeout=3s CMD python -c "import urllib.request,os;p=os.environ.get('WEBHOOK_PORT','8080');p=='off' or urllib.request.urlopen(f'http://127.0.0.1:{p}/healthz')" || exit 1
ENTRYPOINT ["python", "-m", "bot"]
