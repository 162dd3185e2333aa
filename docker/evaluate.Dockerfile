# Evaluate environment (env 3): BERTScore, BLEU, ROUGE-L, METEOR, CIDEr-D and the VisDial ranking metrics, on CPU.
#   build:  docker compose build evaluate         (or: make images)
#   run:    docker compose run --rm evaluate      (configs/evaluate/default.yaml; args replace the command)
# It installs exactly docker/requirements/evaluate.txt, in the order docker/setup_venv.sh uses for .venvs/evaluate:
# the torch pin alone first, then the whole file, then the nltk data (docker/install_nltk_data.sh) into the venv.
# evaluate.local.txt (the Compose binary, Dockerfile linters) and test.txt are for local venvs only.
# No `# syntax=` line on purpose: BuildKit would fetch that frontend image from Docker Hub at every build; the
# engine's built-in Dockerfile frontend (Docker >= 20.10, BuildKit) has every feature used here.
# Any image with python3.11 + venv as `python` can stand in (the docker tests build one from Debian bookworm).
ARG PYTHON_IMAGE=python:3.11-slim
FROM ${PYTHON_IMAGE}
# bash with pipefail: a failing grep in a pipe must fail the build, not install nothing.
SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# The local venv gets torch 2.13.0's CPU build; PyPI's default wheel for Linux is the CUDA one (several GB), so the
# same pin is resolved against PyTorch's CPU index here.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    HF_HOME=/cache/huggingface \
    TORCH_HOME=/cache/torch \
    XDG_CACHE_HOME=/cache \
    MPLCONFIGDIR=/cache/matplotlib

RUN python -m venv /opt/venv

# Optional build secrets, never stored in a layer or in the cache key (docs in README, 'Building the images'):
#   pip.conf  a pip config for this build only (mirrors, find-links), mounted as /etc/pip.conf
#   ca-bundle a CA bundle for a TLS-intercepting proxy, at /run/secrets/ca-bundle (name it in pip.conf: cert = ...)
# PIP_CACHE_DIR: XDG_CACHE_HOME=/cache (the run-time volume) would send pip's cache there, into the layer.
COPY docker/requirements/evaluate.txt /tmp/requirements/evaluate.txt
COPY docker/install_nltk_data.sh /tmp/install_nltk_data.sh
RUN --mount=type=cache,target=/root/.cache/pip \
    --mount=type=secret,id=pip.conf,target=/etc/pip.conf \
    --mount=type=secret,id=ca-bundle \
    export PIP_CACHE_DIR=/root/.cache/pip \
 && grep -E '^(torch|torchvision|torchaudio)==' /tmp/requirements/evaluate.txt | xargs -r pip install --extra-index-url "${TORCH_INDEX_URL}" \
 && pip install --extra-index-url "${TORCH_INDEX_URL}" -r /tmp/requirements/evaluate.txt \
 && bash /tmp/install_nltk_data.sh /opt/venv/nltk_data

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

ENTRYPOINT ["python", "-m", "services.evaluate"]
CMD ["--config", "configs/evaluate/default.yaml"]
