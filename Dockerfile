# One image for the portfolio operator AND for the Dask scheduler and workers it starts:
#   operator:  portfolio-operator            (the default command)
#   scheduler: dask-scheduler / dask scheduler  (DaskCluster pods replace the command)
#   worker:    dask-worker / dask worker tcp://...:8786
#   dask-kubernetes controller: python -m kopf run -m dask_kubernetes.operator.controller ...
#
#   docker build -t portfolio-operator:dev .
#   docker build --build-arg BASE_IMAGE=bookworm-python:local -t portfolio-operator:dev .
#
# The base image needs only python3 (>= 3.11, the same in both stages) and pip. Dependencies come
# from uv.lock (`--locked`: the build fails if the lock does not match pyproject.toml). No syntax
# directive and no RUN --mount, so the legacy builder and offline BuildKit both work.
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS builder
ARG UV_VERSION=0.13.9
# PIP_BREAK_SYSTEM_PACKAGES: Debian's python3 refuses a system-wide pip install without it
# (PEP 668); the builder stage is thrown away, so installing uv there is harmless.
ENV PIP_BREAK_SYSTEM_PACKAGES=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    UV_PYTHON=python3 \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy
RUN python3 -m pip install "uv==${UV_VERSION}"
WORKDIR /app
# Dependencies first, in their own layer: it is rebuilt only when the lock changes.
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --locked --no-dev --extra operator --no-install-project
# Then the project itself, installed as a wheel (not editable) so the sources need not be copied.
COPY analysis ./analysis
COPY operator ./operator
RUN uv sync --locked --no-dev --extra operator --no-editable
# dask-kubernetes' DaskCluster pods start `dask-scheduler` and `dask-worker` (its make_cluster_spec
# defaults), commands distributed no longer installs: thin shims onto `dask scheduler`/`dask worker`.
RUN for command in scheduler worker; do \
      printf '#!/bin/sh\nexec "$(dirname "$0")/dask" %s "$@"\n' "$command" \
        > "$UV_PROJECT_ENVIRONMENT/bin/dask-$command" \
      && chmod 0755 "$UV_PROJECT_ENVIRONMENT/bin/dask-$command"; \
    done

FROM ${BASE_IMAGE} AS runtime
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="portfolio-operator" \
      org.opencontainers.image.description="Portfolio analysis operator for Kubernetes; also the Dask scheduler and worker image" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
# A numeric user so that Kubernetes' runAsNonRoot can verify it; the chart runs as the same uid.
RUN groupadd --system --gid 10001 portfolio \
 && useradd --system --uid 10001 --gid 10001 --home-dir /home/portfolio --create-home \
      --shell /usr/sbin/nologin portfolio
COPY --from=builder /app/.venv /app/.venv
# HOME and /tmp are the only places written at run time (Prefect, Dask and kopf state, caches);
# the chart mounts emptyDirs there so the root file system can stay read-only.
# NUMBA_*: the indicator kernel is compiled once, below, into /app/numba-cache for any CPU of
# the architecture ("generic"), so a new Dask worker loads it instead of compiling it (~1.5 s).
# Where that directory is read-only (the operator's pod), numba caches under HOME instead.
ENV PATH=/app/.venv/bin:$PATH \
    HOME=/home/portfolio \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    NUMBA_CACHE_DIR=/app/numba-cache \
    NUMBA_CPU_NAME=generic
RUN install -d -o 10001 -g 10001 /app/numba-cache
USER 10001:10001
RUN python -c "from portfolio_analysis.technicals import compile_kernels; compile_kernels()"
WORKDIR /home/portfolio
# 8080: operator health/metrics; 8786/8787: Dask scheduler and dashboard.
EXPOSE 8080 8786 8787
CMD ["portfolio-operator"]
