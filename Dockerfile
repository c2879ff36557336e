# The tubai image for the lab-machine stack (docker-compose.yml): the exporter and the scoring
# service. It installs this repository's package with exactly the dependencies pyproject.toml
# lists under [project.dependencies], the same ones the tests run with; the `bench` extra
# (TensorFlow, Keras) is not installed: benchmarks run on the host (`make bench`).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

# Only what the package needs (.dockerignore keeps everything else out of the context).
WORKDIR /src
COPY pyproject.toml README.md ./
COPY exporters exporters/
COPY benchmark benchmark/
COPY scoring scoring/
RUN pip install --no-cache-dir . && cd / && rm -rf /src

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
