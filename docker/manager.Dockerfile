# The kaito manager image: `kaito manager` (workspace controller, node provisioner, admission webhook).
# It installs kaito without extras, so no torch: the operator only talks to the API server and to ARM.
#
# Build from the repository root (BuildKit, the default builder since Docker 23, is needed for RUN --mount):
#   docker build -f docker/manager.Dockerfile -t kaito-manager:0.1.0 .
#
# The base image is pinned by tag. To pin its content too, resolve the tag to a digest once
#   docker buildx imagetools inspect python:3.11.13-slim-bookworm
# and write both in each FROM below: python:3.11.13-slim-bookworm@sha256:<the "Digest:" line>.

# Stage 1: build kaito's wheel from the sources alone (pyproject.toml, README.md, src/).
FROM python:3.11.13-slim-bookworm AS builder
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src/ src/
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

# Stage 2: the runtime, with the wheel installed and nothing of the build left behind.
FROM python:3.11.13-slim-bookworm
LABEL org.opencontainers.image.title="kaito-manager" \
      org.opencontainers.image.description="kaito operator: Workspace controller, GPU node provisioner, admission webhook" \
      org.opencontainers.image.version="0.1.0"
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# The wheel is bind-mounted from the builder for this one step, so it never becomes a layer of its own.
# A numeric UID/GID: Kubernetes can only verify `runAsNonRoot: true` against a numeric USER.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-cache-dir /wheels/kaito-*.whl \
    && groupadd --system --gid 65532 kaito \
    && useradd --system --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin kaito
USER 65532:65532
WORKDIR /tmp
# 8080 /metrics, 8081 /healthz and /readyz, 9443 the admission webhook (TLS): `kaito manager`'s default addresses.
EXPOSE 8080 8081 9443
# No HEALTHCHECK: Kubernetes ignores it; the Deployment's liveness and readiness probes call /healthz and /readyz.
ENTRYPOINT ["kaito"]
CMD ["manager"]
