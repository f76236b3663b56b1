# syntax=docker/dockerfile:1.7
# One image recipe for every deployable of the workspace; pick it with --build-arg SERVICE=...
# (command-svc, projector-svc, query-svc, or cqrs-cli for the operator tool). One file instead of
# four near-copies: the services differ only in the package installed and the entry point.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
COPY --from=ghcr.io/astral-sh/uv:0.9 /uv /usr/local/bin/uv
ARG SERVICE
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never UV_PROJECT_ENVIRONMENT=/app/.venv
WORKDIR /src
# Dependencies first, from the lock alone, so source edits do not re-download them.
COPY pyproject.toml uv.lock ./
COPY shared/pyproject.toml shared/pyproject.toml
COPY services/command-svc/pyproject.toml services/command-svc/pyproject.toml
COPY services/projector-svc/pyproject.toml services/projector-svc/pyproject.toml
COPY services/query-svc/pyproject.toml services/query-svc/pyproject.toml
COPY cli/pyproject.toml cli/pyproject.toml
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-install-workspace --package "${SERVICE}"
COPY shared shared
COPY services services
COPY cli cli
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-editable --package "${SERVICE}"

FROM ${PYTHON_IMAGE}
ARG SERVICE
LABEL org.opencontainers.image.source="cqrs-platform" org.opencontainers.image.title="${SERVICE}"
# A fixed, unprivileged uid: Kubernetes' runAsNonRoot can verify it without a passwd lookup.
RUN groupadd --system --gid 10001 app && useradd --system --uid 10001 --gid app --no-create-home app
COPY --from=build --chown=root:root /app/.venv /app/.venv
ENV PATH=/app/.venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 SERVICE=${SERVICE}
USER 10001:10001
# The console script named like the package: command-svc, projector-svc, query-svc or cqrs.
ENTRYPOINT ["/bin/sh", "-c", "exec \"${SERVICE%-cli}\" \"$@\"", "--"]
