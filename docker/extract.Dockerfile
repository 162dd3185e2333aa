# Extract environment (env 1): frozen encoders -> safetensors embedding shards.
#   build:  docker compose build extract          (or: make images)
#   run:    docker compose run --rm extract       (ImageBind-Huge on the val split; `... extract split=train`)
# It installs exactly docker/requirements/extract.txt, in the order docker/setup_venv.sh uses for .venvs/extract:
# the torch pins alone first, then the whole file. test.txt is for local venvs only.
# No `# syntax=` line on purpose: BuildKit would fetch that frontend image from Docker Hub at every build; the
# engine's built-in Dockerfile frontend (Docker >= 20.10, BuildKit) has every feature used here.
ARG CUDA_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu22.04
FROM ${CUDA_IMAGE}
# bash with pipefail: a failing grep in a pipe must fail the build, not install nothing.
SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# /cache is a mounted volume (compose: the named volume "cache"): model hubs, torch hub and pip caches live there.
ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    HF_HOME=/cache/huggingface \
    TORCH_HOME=/cache/torch \
    XDG_CACHE_HOME=/cache \
    MPLCONFIGDIR=/cache/matplotlib

# Python 3.11 (the version of the local venvs) from Ubuntu 22.04's universe archive; apt lists cached across builds.
# The base image tag fixes the distribution release, so apt package versions are not pinned one by one.
# hadolint ignore=DL3008
RUN --mount=type=cache,target=/var/cache/apt,sharing=locked \
    --mount=type=cache,target=/var/lib/apt,sharing=locked \
    rm -f /etc/apt/apt.conf.d/docker-clean \
 && apt-get update \
 && apt-get install -y --no-install-recommends python3.11 python3.11-venv ca-certificates \
 && python3.11 -m venv /opt/venv

# Requirements before the code, so a code change does not reinstall 7 GB of wheels.
# Optional build secrets, never stored in a layer or in the cache key (docs in README, 'Building the images'):
#   pip.conf  a pip config for this build only (mirrors, find-links), mounted as /etc/pip.conf
#   ca-bundle a CA bundle for a TLS-intercepting proxy, at /run/secrets/ca-bundle (name it in pip.conf: cert = ...)
# PIP_CACHE_DIR: XDG_CACHE_HOME=/cache (the run-time volume) would send pip's cache there, into the layer.
COPY docker/requirements/extract.txt /tmp/requirements/extract.txt
RUN --mount=type=cache,target=/root/.cache/pip \
    --mount=type=secret,id=pip.conf,target=/etc/pip.conf \
    --mount=type=secret,id=ca-bundle \
    export PIP_CACHE_DIR=/root/.cache/pip \
 && grep -E '^(torch|torchvision|torchaudio)==' /tmp/requirements/extract.txt | xargs -r pip install \
 && pip install -r /tmp/requirements/extract.txt

# A non-root user whose ids match the host user (compose passes UID/GID), so files written to the bind mounts
# belong to that user. The folders compose mounts over are created here so a plain `docker run` works too.
# Declared only here: the user's ids change nothing above, so every UID/GID shares the package layers.
ARG UID=1000
ARG GID=1000
RUN (getent group "${GID}" || groupadd -g "${GID}" vdmem) \
 && (getent passwd "${UID}" || useradd -l -m -u "${UID}" -g "${GID}" -s /bin/bash vdmem) \
 && mkdir -p /cache /workspace/data /workspace/checkpoints /workspace/outputs /workspace/embeddings \
 && chown -R "${UID}:${GID}" /cache /workspace

WORKDIR /workspace
COPY --chown=${UID}:${GID} . /workspace
USER ${UID}:${GID}

# As in compose.yaml: arguments add to the default config (`docker run vdmem-extract split=train`); a later --config wins.
ENTRYPOINT ["python", "-m", "services.extract", "--config", "configs/extract/imagebind_huge.yaml"]
CMD ["split=val"]
