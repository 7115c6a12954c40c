# evstore: the HTTP event store, served by `evstore serve`.
#
#   docker build -t evstore .
#   docker run -p 8000:8000 -v evstore-data:/data evstore                      # SQLite in /data
#   docker run -p 8000:8000 -e EVSTORE_DATABASE_URL=postgresql://user:pw@db:5432/evstore \
#       -e EVSTORE_WORKERS=4 evstore                                           # PostgreSQL
#
# Every EVSTORE_* setting in app/settings.py can be passed with -e.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN groupadd --system --gid 10001 evstore \
    && useradd --system --uid 10001 --gid evstore --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin evstore

WORKDIR /build

# The dependencies alone, so that this layer is rebuilt only when pyproject.toml changes.
COPY pyproject.toml ./
RUN python -c "import subprocess, sys, tomllib; \
deps = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; \
subprocess.check_call([sys.executable, '-m', 'pip', 'install', '--no-cache-dir', *deps])"

# The package itself (non-editable; its dependencies are already installed). The wheel
# carries the migrations as app/migrations (pyproject.toml), so the sources are removed
# and the service runs from any working directory (.ci/install_check proves it).
COPY README.md ./
COPY alembic/ ./alembic/
COPY app/ ./app/
RUN pip install --no-cache-dir --no-deps . \
    && cd / && rm -rf /build

ENV EVSTORE_HOST=0.0.0.0 \
    EVSTORE_DATABASE_URL=sqlite:////data/evstore.db

# Owned by the service user before VOLUME, so a fresh named volume inherits the owner.
RUN mkdir /data && chown evstore:evstore /data
VOLUME /data
WORKDIR /data

EXPOSE 8000
USER evstore

# The liveness route: the process answers HTTP (it does not touch the database, so an
# outage of PostgreSQL does not mark a healthy process unhealthy); urlopen raises on
# anything but 2xx.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health/live' % os.environ.get('EVSTORE_PORT', '8000'), timeout=4)"

CMD ["evstore", "serve"]
