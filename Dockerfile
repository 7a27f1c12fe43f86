# syntax=docker/dockerfile:1
# One image for every warmbee process; the command chooses which:
#   docker run IMAGE serve events|points|redemption|pages
#   docker run IMAGE worker points
#   docker run IMAGE migrate
# Configuration is WARMBEE_* environment variables only (libs/platform/settings.py).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: the locked environment, then the project ---------------------------------------------
FROM ${PYTHON_IMAGE} AS build

ARG UV_VERSION=0.13.9
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3.11 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN pip install --no-cache-dir "uv==${UV_VERSION}"

WORKDIR /app

# Dependencies from the lock file alone first, so a code change reuses this layer. The workspace's
# member (the publishing client, clients/python) is named in the lock: its pyproject.toml is needed to
# read it, its code only in the next step.
COPY pyproject.toml uv.lock ./
COPY clients/python/pyproject.toml clients/python/README.md ./clients/python/
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-install-workspace

# The project itself. It stays an editable install in /app: migrations/, schemas/ and rules/ are
# found next to the code (Path(__file__).parents[2]), so the tree keeps its shape. README.md is the
# package's long description (pyproject.toml), needed to build it.
COPY README.md ./
COPY services ./services
COPY libs ./libs
COPY migrations ./migrations
COPY schemas ./schemas
COPY rules ./rules
COPY clients/python/src ./clients/python/src
COPY deploy/docker/healthcheck.py ./deploy/docker/healthcheck.py
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev

# --- runtime: the same Python, the environment and the code, no build tools ----------------------
FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="warmbee" \
      org.opencontainers.image.description="Points and rewards for delivery riders: events, points (API and worker), redemption, pages, notifications (API and worker)"

RUN groupadd --system --gid 10001 warmbee \
 && useradd --system --uid 10001 --gid warmbee --no-create-home --home-dir /nonexistent \
            --shell /usr/sbin/nologin warmbee

WORKDIR /app
# Owned by root and read-only to the service user: the process cannot change its own code.
COPY --from=build /app /app

ENV PATH="/app/.venv/bin:${PATH}" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    WARMBEE_HOST=0.0.0.0

USER 10001:10001

# events, points API, redemption, pages, points worker metrics
EXPOSE 8001 8002 8003 8004 8005 8012 8015

# /healthz of whichever service the command started (the worker: /metrics); see the script.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "/app/deploy/docker/healthcheck.py"]

ENTRYPOINT ["warmbee"]
CMD ["--help"]
