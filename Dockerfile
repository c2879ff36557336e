# The tubai image for the lab-machine stack (docker-compose.yml): the exporter and the scoring
# service. It installs exactly requirements.lock, the hashed lock of the dependencies
# pyproject.toml lists under [project.dependencies] (`make lock` writes it), then this
# repository's package alone; the `bench` extra (TensorFlow, Keras) is not installed: benchmarks
# run on the host (`make bench`).
#
# The base image is pinned to its exact version; its CPython 3.11 is the one requirements.lock is
# made for. To pin the digest too, append the one a pull reports
# (`docker buildx imagetools inspect python:3.11.14-slim-bookworm`): none is written here that
# was not pulled and checked.
FROM python:3.11.14-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

WORKDIR /src

# The dependencies first (a layer that changes only with the lock): every file pip downloads
# must match a hash in the lock, and wheels only, so nothing is built from source.
COPY requirements.lock ./
RUN pip install --no-cache-dir --require-hashes --only-binary=:all: -r requirements.lock

# Then the package: no dependency resolved here (--no-deps), and built with the setuptools the
# lock just installed (--no-build-isolation) instead of one fetched unhashed from the index.
# .dockerignore keeps everything else out of the context.
COPY pyproject.toml README.md ./
COPY exporters exporters/
COPY benchmark benchmark/
COPY scoring scoring/
RUN pip install --no-cache-dir --no-deps --no-build-isolation . && cd / && rm -rf /src

# An unprivileged user for everything but the exporter, which runs as root in
# docker-compose.yml to read RAPL's root-only counters. The spool directories are created here
# so that a new tubai-spool volume starts with them, scoring's owned by that user.
RUN useradd --system --uid 10001 --no-create-home --home-dir /var/lib/tubai \
        --shell /usr/sbin/nologin tubai \
    && mkdir -p /var/lib/tubai/spool/exporter /var/lib/tubai/spool/scoring \
    && chown tubai:tubai /var/lib/tubai/spool/scoring
WORKDIR /var/lib/tubai
USER tubai

# docker-compose.yml gives each service its command; alone, the image says what it can measure.
CMD ["python", "-m", "exporters", "doctor"]
