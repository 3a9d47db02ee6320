# couchpoint in a container: `docker build -t couchpoint .` then
#   docker run -p 127.0.0.1:5984:5984 -v couchpoint-data:/data -e COUCHPOINT_ADMINS=admin:pw couchpoint
# compose.yaml runs it next to a CouchDB 3 that replicates with it both ways.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY couchpoint ./couchpoint
RUN pip install . \
    && useradd --system --uid 10001 --home-dir /data --no-create-home couchpoint \
    && mkdir /data \
    && chown couchpoint /data

USER couchpoint
WORKDIR /data
VOLUME /data
EXPOSE 5984

# 0.0.0.0 is needed inside a container, so couchpoint needs a server admin
# (COUCHPOINT_ADMINS=name:password) and refuses to start without one.
CMD ["couchpoint", "serve", "--host", "0.0.0.0", "--port", "5984", "--data-dir", "/data"]
