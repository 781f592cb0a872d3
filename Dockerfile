# syntax=docker/dockerfile:1
#
# The scenario-exporter image: the project's wheel in a virtual environment on a
# slim Python base, run as a fixed non-root user. Build from the repository root:
#
#   docker build -t scenario-exporter .
#
# Both stages use the same base so that the virtual environment's interpreter
# link (/opt/venv/bin/python -> the base's python3) stays valid. Any base with
# python3 and its venv module works: the tests build on a Debian base made by
# debootstrap (python3, python3-venv, python3-pip) passed as PYTHON_IMAGE.
ARG PYTHON_IMAGE=python:3.12-slim-bookworm

FROM ${PYTHON_IMAGE} AS build

# A package mirror: --build-arg PIP_INDEX_URL=https://mirror.example/simple.
# Behind a TLS-intercepting proxy, mount its CA bundle for this stage's pip and
# name it in PIP_CERT (see docs/image.md); neither reaches the final image.
ARG PIP_INDEX_URL=https://pypi.org/simple
ARG PIP_CERT

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY exporter/ exporter/

# The wheel first (pyproject.toml is the single source of metadata), then a
# venv without pip into which the build stage's pip installs the wheel and its
# dependencies. The bytecode is compiled here, checked by hash rather than file
# timestamps, so that the read-only image never needs to write a .pyc file.
RUN python3 -m pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . \
    && python3 -m venv --without-pip /opt/venv \
    && python3 -m pip --python /opt/venv/bin/python install --no-cache-dir --no-compile \
       /wheels/*.whl \
    && python3 -m compileall -q --invalidation-mode unchecked-hash /opt/venv/lib

FROM ${PYTHON_IMAGE}

ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
# The repository URL; left empty rather than guessed when the build does not set it.
ARG SOURCE=

LABEL org.opencontainers.image.title="scenario-exporter" \
      org.opencontainers.image.description="Prometheus exporter for Scenario usage and Creative Unit billing data" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="${SOURCE}"

# A fixed UID/GID, so that Kubernetes' runAsNonRoot can check it and volume
# permissions can be set with fsGroup.
RUN groupadd --system --gid 10001 exporter \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin exporter

COPY --from=build /opt/venv /opt/venv

ENV PATH="/opt/venv/bin:${PATH}" \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

# The exporter writes no files; /tmp is the only place Python may want to
# write, so it is a volume and the root filesystem can be mounted read-only.
VOLUME ["/tmp"]

USER 10001:10001
EXPOSE 10097

# No HEALTHCHECK: Kubernetes ignores it (the chart probes /-/healthy and
# /-/ready), and with TLS or basic auth turned on a fixed probe would fail.
ENTRYPOINT ["scenario-exporter"]
