# A stand-in for python:3.11-slim (no image registry here): Debian bookworm's python3.11 as `python`, with venv.
#   docker build --network host --build-arg BASE_IMAGE=<imported bookworm> - < tests/docker/python-base.Dockerfile
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
# The base image tag fixes the distribution release, so apt package versions are not pinned one by one.
# hadolint ignore=DL3008
RUN --mount=type=cache,target=/var/cache/apt,sharing=locked \
    --mount=type=cache,target=/var/lib/apt,sharing=locked \
    rm -f /etc/apt/apt.conf.d/docker-clean \
 && apt-get update \
 && apt-get install -y --no-install-recommends python3.11 python3.11-venv ca-certificates \
 && ln -s /usr/bin/python3.11 /usr/local/bin/python \
 && ln -s /usr/bin/python3.11 /usr/local/bin/python3
