# stalwart's container image: `docker build -t stalwart:0.1.0 .` at the repository root, then
#   docker run -p 8470:8470 -e STALWART_API_TOKEN="$(openssl rand -hex 24)" stalwart:0.1.0
# runs the helpdesk demo (stalwart.demo.app, its simulated models inside) with the dashboard
# and the API on http://localhost:8470. Another app: `docker run ... stalwart:0.1.0 run
# mymodule:app ...`, or build your own image on this one (a `stalwart init` project has its
# Dockerfile). The Helm chart (deploy/helm/stalwart) and deploy/kubernetes run this image.
#
# Two stages: the wheel is built from the source and installed into a virtual environment,
# which alone is copied into a slim image that runs as a non-root user, with a health check
# on /livez. tests/unit/deploy/test_dockerfile.py checks its structure and, where a Docker
# daemon answers, builds and starts it.

FROM python:3.12-slim AS build
WORKDIR /src
COPY pyproject.toml README.md LICENSE CHANGELOG.md ./
COPY src ./src
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir --upgrade pip \
 && /opt/venv/bin/pip install --no-cache-dir .

FROM python:3.12-slim
RUN groupadd --gid 10001 app \
 && useradd --uid 10001 --gid 10001 --create-home app \
 && mkdir /data && chown app:app /data
COPY --from=build /opt/venv /opt/venv
# the local secrets vault and its key live on the data volume, not in the image
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    STALWART_HTTP_PORT=8470 \
    STALWART_VAULT=/data/.stalwart/vault.enc
WORKDIR /data
USER 10001:10001
VOLUME ["/data"]
EXPOSE 8470
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/livez' % os.environ.get('STALWART_HTTP_PORT', '8470'), timeout=2)"]
ENTRYPOINT ["stalwart"]
CMD ["run", "stalwart.demo.app:app", "--store", "sqlite:////data/stalwart.db", \
     "--http-host", "0.0.0.0", "--log-db", "/data/stalwart-logs.db"]
