# batch-runner in a slim image, for deploy/kubernetes/indexed-job.yaml (or any container host).
#   docker build -t batch-runner .
#   docker run --rm -e RUNCOMFY_API_TOKEN -v "$PWD:/data" batch-runner \
#       batch-runner run /data/manifest.yaml --out /data/run --no-progress
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# installed as the README does (pip install), but from a copy of the sources, not editable
WORKDIR /src
COPY pyproject.toml README.md ./
COPY batch_runner ./batch_runner
RUN pip install . && rm -rf /src

# never root: the run directory on the shared volume belongs to uid 10001 (fsGroup in the Job)
RUN useradd --create-home --uid 10001 --user-group runner
USER 10001:10001
WORKDIR /data
ENV XDG_CACHE_HOME=/tmp/cache

CMD ["batch-runner", "--help"]
