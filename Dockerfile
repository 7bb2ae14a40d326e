# authsvc on a slim Python base, running as a non-root user.
# Keys and the SQLite database live on volumes so they survive the container.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
RUN useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin authsvc

COPY pyproject.toml README.md ./
COPY authsvc ./authsvc
RUN pip install '.[postgres]' \
    && mkdir -p /app/keys /app/data \
    && chown authsvc:authsvc /app/keys /app/data \
    && chmod 0700 /app/keys

ENV AUTHSVC_DATABASE_URL=sqlite:////app/data/authsvc.db \
    AUTHSVC_KEYS_DIR=/app/keys

VOLUME ["/app/keys", "/app/data"]
USER authsvc
EXPOSE 8000

HEALTHCHECK --interval=30s --timeout=3s --start-period=20s \
    CMD ["python", "-c", "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=2).status != 200)"]

ENTRYPOINT ["authsvc", "serve"]
CMD ["--host", "0.0.0.0", "--port", "8000"]
