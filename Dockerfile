# dify-stats: the service only (no embedded PostgreSQL); point it at SLS or a PostgreSQL.
#   docker build -t dify-stats .
#   docker run -p 8000:8000 -e STATS_DATABASE_URL=... -e STATS_API_KEYS='<key>=*' dify-stats
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
# A container listens on every interface (so it needs STATS_API_KEYS); -e STATS_HOST overrides it.
ENV STATS_HOST=0.0.0.0
WORKDIR /srv/dify-stats

COPY pyproject.toml README.md ./
COPY app ./app
COPY queries ./queries
COPY schemas ./schemas
RUN pip install . && useradd --system --uid 10001 --home-dir /srv/dify-stats stats

USER stats
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s --retries=3 \
    CMD python -c "import os, sys, urllib.request; port = os.environ.get('STATS_PORT', '8000'); sys.exit(0 if urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=2).status == 200 else 1)"
CMD ["python", "-m", "app", "serve"]
