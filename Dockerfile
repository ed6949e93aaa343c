# One image for every fedchain role: validator (`fedchain start`), FL client
# (`fedchain client run`) and the one-shot testnet generator (`fedchain testnet`).
#
# With an image registry:   docker build -t fedchain:latest .   (python:3.11-slim-bookworm + PyPI)
# Without one (this repo's CI machines): scripts/docker/build_image.sh, which builds a debootstrap
# base image and a host-side wheelhouse and passes them as BASE_IMAGE and WHEELHOUSE, so nothing
# is pulled and nothing inside the build needs the network.
#
# Stages: `deps` (a venv with the dependencies, keyed on pyproject.toml alone), `build` (our
# wheel), and the final image, which copies the deps venv (a cached layer while pyproject.toml
# is unchanged) and installs only our small wheel on top, so a source edit rebuilds in seconds.

ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS deps
LABEL io.fedchain.image=build
# A directory of wheels in the build context; empty (the default) means "use PyPI".
ARG WHEELHOUSE=scripts/docker/no-wheels
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python3 -m venv /opt/fedchain
COPY ${WHEELHOUSE}/ /wheels/
COPY pyproject.toml /src/pyproject.toml
RUN set -eu; \
    if ls /wheels/*.whl >/dev/null 2>&1; then pip_from="--no-index --find-links /wheels"; \
    else pip_from=""; fi; \
    python3 -c 'import tomllib; print("\n".join(tomllib.load(open("/src/pyproject.toml", "rb"))["project"]["dependencies"]))' > /src/requirements.txt; \
    /opt/fedchain/bin/pip install -q $pip_from "setuptools>=77" wheel -r /src/requirements.txt

FROM deps AS build
COPY README.md /src/README.md
COPY consensus /src/consensus
COPY fl /src/fl
COPY node /src/node
RUN /opt/fedchain/bin/pip wheel -q --no-deps --no-build-isolation -w /dist /src

FROM ${BASE_IMAGE}
LABEL io.fedchain.image=node
ENV PATH=/opt/fedchain/bin:$PATH \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    LANG=C.UTF-8
# Non-root: homes live under /testnet (a named volume in docker-compose.yml inherits this
# ownership when it is first created).
RUN useradd --system --uid 10001 --user-group --home-dir /testnet --shell /usr/sbin/nologin fedchain \
    && mkdir -p /testnet && chown fedchain:fedchain /testnet
WORKDIR /testnet
# p2p, RPC, metrics
EXPOSE 26656 26657 26660
# A validator is healthy when its RPC answers /health with 200; FL clients and the init job
# turn this off in docker-compose.yml (they serve no RPC).
HEALTHCHECK --interval=5s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python3", "-c", "import sys, urllib.request as u; sys.exit(0 if u.urlopen('http://127.0.0.1:26657/health', timeout=2).status == 200 else 1)"]
ENTRYPOINT ["/usr/local/bin/fedchain-docker"]
CMD ["--help"]
# git keeps the script executable, and COPY keeps the mode.
COPY scripts/docker/entrypoint.sh /usr/local/bin/fedchain-docker
COPY --from=deps /opt/fedchain /opt/fedchain
# Everything above is cached until pyproject.toml or the entrypoint changes; a source edit
# redoes only the three steps below.
COPY --from=build /dist /tmp/dist
RUN pip install -q --no-deps --no-index /tmp/dist/*.whl && rm -rf /tmp/dist \
    && fedchain --help >/dev/null
USER fedchain
