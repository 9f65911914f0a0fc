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
HEALTHCHECK --interval=30s --timeout=3s CMD python -c "import urllib.request,os;urllib.request.urlopen(f'http://127.0.0.1:{os.environ.get(\"WEBHOOK_PORT\",\"8080\")}/healthz')" || exit 1
ENTRYPOINT ["python", "-m", "bot"]
