# The Discord bot alone; ComfyUI runs in its own container (see compose.yaml and the README's "Docker").
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    JOBS_DB=/data/jobs.sqlite3 \
    WORKFLOWS_DIR=/app/workflows

WORKDIR /app

# Dependencies first: this layer is rebuilt only when requirements.txt changes.
COPY requirements.txt ./
RUN pip install -r requirements.txt

COPY bot.py cli.py ./
COPY core ./core
COPY cogs ./cogs
COPY discord_ui ./discord_ui
COPY http_api ./http_api
# The example workflows; mount your own folder over /app/workflows to use others without rebuilding.
COPY workflows ./workflows

# A fixed uid so that a bind-mounted ./data can be given to it (chown 10001 data).
RUN useradd --system --uid 10001 --no-create-home --home-dir /nonexistent bot \
    && mkdir -p /data && chown bot /data
VOLUME ["/data"]
USER bot

# The bot refreshes /data/heartbeat while it is connected to Discord; older than 90 s means stuck or offline.
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, sys, time; sys.exit(time.time() - os.path.getmtime('/data/heartbeat') > 90)"]

CMD ["python", "bot.py"]
