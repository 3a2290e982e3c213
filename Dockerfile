# smartbench: dashboard (`smartbench serve`) and probe workers (`smartbench worker`) share this image.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    SMARTBENCH_DATA_DIR=/data
WORKDIR /src
COPY pyproject.toml README.md alembic.ini ./
COPY app ./app
COPY migrations ./migrations
COPY templates ./templates
COPY static ./static
RUN pip install . && useradd --system --home /data --uid 10001 smartbench && mkdir -p /data && chown smartbench /data
USER smartbench
WORKDIR /data
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/healthz').status != 200)"
CMD ["smartbench", "serve", "--host", "0.0.0.0", "--port", "8080"]
