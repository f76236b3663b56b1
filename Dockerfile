# One image recipe for every deployable of the workspace; pick it with --build-arg SERVICE=...
# (command-svc, projector-svc, query-svc, or cqrs-cli for the operator tool). One file instead of
# four near-copies: the services differ only in the package installed and the entry point.
#
# Builds without a registry: there is no `# syntax=` line (it makes BuildKit pull a frontend image),
# and both images it starts from are build arguments. The defaults are the public images; where they
# cannot be pulled, `make images` makes local ones from Debian's archive (scripts/deploy/base-images.sh)
# and passes them in. Behind a TLS-inspecting proxy, give the proxy's CA bundle as a build secret:
#   docker build --secret id=ssl_ca,src=/etc/ssl/certs/ca-certificates.crt ...
# It is mounted only while dependencies download and never lands in a layer.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG UV_IMAGE=ghcr.io/astral-sh/uv:0.13.9

FROM ${UV_IMAGE} AS uv

FROM ${PYTHON_IMAGE} AS build
COPY --from=uv /uv /usr/local/bin/uv
ARG SERVICE
# Optional extras of the package (EXTRAS=aws gives the CLI `cqrs aws`); none by default.
ARG EXTRAS=""
# UV_PYTHON_DOWNLOADS=never: the venv is built on the base image's interpreter, the one the runtime
# stage has at the same path.
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never UV_PROJECT_ENVIRONMENT=/app/.venv
WORKDIR /src
# Dependencies first, from the lock alone, so source edits do not re-download them.
COPY pyproject.toml uv.lock ./
COPY shared/pyproject.toml shared/pyproject.toml
COPY services/command-svc/pyproject.toml services/command-svc/pyproject.toml
COPY services/projector-svc/pyproject.toml services/projector-svc/pyproject.toml
COPY services/query-svc/pyproject.toml services/query-svc/pyproject.toml
COPY cli/pyproject.toml cli/pyproject.toml
# SSL_CERT_FILE only when the secret was given: uv then trusts that bundle instead of its built-in roots.
RUN --mount=type=cache,target=/root/.cache/uv --mount=type=secret,id=ssl_ca \
    if [ -s /run/secrets/ssl_ca ]; then export SSL_CERT_FILE=/run/secrets/ssl_ca; fi \
    && uv sync --frozen --no-dev --no-install-workspace --package "${SERVICE}" ${EXTRAS:+--extra "${EXTRAS}"}
COPY shared shared
COPY services services
COPY cli cli
RUN --mount=type=cache,target=/root/.cache/uv --mount=type=secret,id=ssl_ca \
    if [ -s /run/secrets/ssl_ca ]; then export SSL_CERT_FILE=/run/secrets/ssl_ca; fi \
    && uv sync --frozen --no-dev --no-editable --package "${SERVICE}" ${EXTRAS:+--extra "${EXTRAS}"}

FROM ${PYTHON_IMAGE}
ARG SERVICE
LABEL org.opencontainers.image.source="cqrs-platform" org.opencontainers.image.title="${SERVICE}"
# A fixed, unprivileged uid: Kubernetes' runAsNonRoot can verify it without a passwd lookup.
# pip leaves too (the official base ships it): the runtime installs nothing, so it carries no installer.
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --no-create-home --home-dir /nonexistent app \
    && if python3 -m pip --version >/dev/null 2>&1; then python3 -m pip uninstall --yes --quiet pip; fi
COPY --from=build --chown=root:root /app/.venv /app/.venv
COPY --chown=root:root deploy/docker/healthcheck.py /app/healthcheck.py
ENV PATH=/app/.venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 SERVICE=${SERVICE}
USER 10001:10001
# uvicorn drains in-flight requests and the services stop their consumers cleanly on SIGTERM (command-svc
# needs up to 20 s: give containers a stop timeout of 30 s, as compose and the chart do).
STOPSIGNAL SIGTERM
# Readiness of the service's own HTTP port (the CLI image has none and always passes).
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 CMD ["python", "/app/healthcheck.py"]
# The console script named like the package: command-svc, projector-svc, query-svc or cqrs.
ENTRYPOINT ["/bin/sh", "-c", "exec \"${SERVICE%-cli}\" \"$@\"", "--"]
