# zqbo's image: the app and its wheels in a venv, run as a non-root user.
#
#   podman build -t zqbo .                       (or docker build; `Dockerfile` is this file)
#   podman run -p 3000:3000 -v zqbo-data:/data --env-file zqbo.env zqbo            (web)
#   podman run -v zqbo-data:/data --env-file zqbo.env zqbo worker                  (jobs)
#   podman run --env-file zqbo.env zqbo migrate | doctor | check | keygen
#
# BASE chooses the base image: any Debian-like image with python3 (>= 3.11) and its venv module.
# WHEELS chooses where the wheels come from: `pip` builds them here from the index; `local` takes
# a ./wheels folder made beforehand with `pip wheel . -w wheels` (for a build that cannot reach an
# index). Build with `--format docker` under podman so that the HEALTHCHECK is kept.
ARG BASE=python:3.12-slim
ARG WHEELS=pip

# The build stages are labelled, so that their images can be pruned once the image is made.
FROM ${BASE} AS wheels-pip
LABEL zqbo.stage=build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY bot bot
COPY handlers handlers
RUN python3 -m venv /tmp/pip && /tmp/pip/bin/pip wheel --quiet --no-cache-dir --wheel-dir /wheels .

FROM ${BASE} AS wheels-local
LABEL zqbo.stage=build
COPY wheels /wheels

FROM wheels-${WHEELS} AS wheels

FROM ${BASE} AS venv
LABEL zqbo.stage=build
COPY --from=wheels /wheels /wheels
RUN python3 -m venv /opt/zqbo \
 && /opt/zqbo/bin/pip install --quiet --no-cache-dir --no-index --find-links /wheels zqbo \
 && /opt/zqbo/bin/pip uninstall --quiet --yes pip

FROM ${BASE}
COPY --from=venv /opt/zqbo /opt/zqbo
# /data holds what embedded mode keeps (SQLite file, its key, the token journal); with
# DATABASE_URL the journal still lives there. Mount a volume on it.
RUN groupadd --gid 10001 zqbo \
 && useradd --uid 10001 --gid zqbo --home-dir /data --no-create-home --shell /usr/sbin/nologin zqbo \
 && mkdir -p /data && chown zqbo:zqbo /data && chmod 0700 /data
ENV PATH=/opt/zqbo/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PORT=3000 \
    ZQBO_DB=/data/zqbo.db \
    ZQBO_JOURNAL_DIR=/data/zqbo-journal \
    HOME=/data
VOLUME /data
WORKDIR /data
USER zqbo
EXPOSE 3000
# `zqbo serve`: its GET /healthz on $PORT answers 200; other commands: running is healthy.
HEALTHCHECK --interval=10s --timeout=4s --start-period=20s --retries=3 \
  CMD ["python3", "-m", "bot.healthcheck"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["zqbo"]
CMD ["serve"]
