# The kaito runtime image, the one the operator puts in workspace pods (its default `--image`, kaito-runtime:0.1.0):
# `kaito serve` (vLLM on GPUs, transformers otherwise), `kaito tune` (LoRA/QLoRA), `kaito pull-adapter`.
# kaito is installed with the inference, qlora and vllm extras.
#
# Build from the repository root:
#   docker build -f docker/runtime.Dockerfile -t kaito-runtime:0.1.0 .
#
# Why nvidia/cuda:13.0.1-base-ubuntu24.04:
# - pyproject pins torch==2.13.0; its PyPI wheel, and the vLLM release pip pairs with it (0.32.x), are built for
#   CUDA 13 and bring their own CUDA libraries as nvidia-*-cu13 wheels. The `base` flavour adds only the CUDA runtime
#   and the NVIDIA_* settings the container toolkit reads (NVIDIA_REQUIRE_CUDA=cuda>=13.0 makes a node whose driver
#   is too old fail at container start with a clear message, not inside torch). The `runtime` flavour would ship
#   a second copy of cuBLAS/cuDNN/NCCL that nothing loads.
# - Ubuntu 24.04 has Python 3.12 in its archive (kaito needs >=3.11): no third-party apt repository.
# - Not vllm/vllm-openai: it carries its own Python environment and torch build; installing kaito's extras on top
#   would be a second dependency resolution over the first. Here one `pip install` resolves everything from
#   pyproject.toml.
#
# The base image is pinned by tag. To pin its content too, resolve the tag to a digest once
#   docker buildx imagetools inspect nvidia/cuda:13.0.1-base-ubuntu24.04
# and write both in each FROM below: nvidia/cuda:13.0.1-base-ubuntu24.04@sha256:<the "Digest:" line>.

# Stage 1: a virtual environment with kaito and every extra the pods use.
FROM nvidia/cuda:13.0.1-base-ubuntu24.04 AS builder
ARG DEBIAN_FRONTEND=noninteractive
# Ubuntu's archive keeps only the newest build of each package, so exact version pins stop resolving at the next
# security update; the base image tag pins the release (24.04) and with it the package versions' series.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/kaito
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src/ src/
RUN /opt/kaito/bin/pip install --no-cache-dir ".[inference,qlora,vllm]"

# Stage 2: the same base with the Python interpreter and the environment; pip's caches and the sources stay behind.
FROM nvidia/cuda:13.0.1-base-ubuntu24.04
ARG DEBIAN_FRONTEND=noninteractive
LABEL org.opencontainers.image.title="kaito-runtime" \
      org.opencontainers.image.description="kaito inference server (vLLM, transformers) and fine-tuning (LoRA, QLoRA)" \
      org.opencontainers.image.version="0.1.0"
# Triton (used by vLLM and bitsandbytes) compiles a small C launcher on first use: it needs gcc, the libc headers
# and Python.h at run time, not only at build time. Unpinned for the reason given in the builder stage.
# A numeric UID/GID: Kubernetes can only verify `runAsNonRoot: true` against a numeric USER. The home directory is
# where the Hugging Face, vLLM and Triton caches go.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-dev gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 65532 kaito \
    && useradd --uid 65532 --gid 65532 --create-home --home-dir /home/kaito --shell /usr/sbin/nologin kaito
COPY --from=builder /opt/kaito /opt/kaito
ENV PATH=/opt/kaito/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/home/kaito
USER 65532:65532
WORKDIR /home/kaito
# 5000: `kaito serve` (OpenAI API, /health, /metrics) and the tuning pod's /metrics.
EXPOSE 5000
# No HEALTHCHECK: Kubernetes ignores it; the pods' startup, readiness and liveness probes call /health.
ENTRYPOINT ["kaito"]
CMD ["serve", "--help"]
