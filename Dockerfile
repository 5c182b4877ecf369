# The nextbest image: the locked environment (uv.lock, no dev tools) and the package; one
# image for `nextbest serve` (the default command), `nextbest retrain` (the CronJob) and
# every other command.
#
#   docker build -t nextbest:0.1.0 .
#   docker run -p 3000:3000 -v nextbest-data:/data \
#     -e NEXTBEST_API_KEYS=... -e NEXTBEST_PSEUDONYM_KEY=... nextbest:0.1.0
#
# Volumes: everything lives under /data (one volume, or one per folder):
#   /data/cdp       the contract folder the CDP exports (read)
#   /data/features  the feature snapshot served (written by retrain, read by serve)
#   /data/mlruns    the MLflow store: runs and registered champions (retrain writes)
#   /data/state     the service's own records: feedback, online log, audit log (serve writes)
# Secrets come from the environment: NEXTBEST_API_KEYS (or NEXTBEST_API_KEYS_FILE),
# NEXTBEST_PSEUDONYM_KEY, and NEXTBEST_ONLINE_STORE=redis://... for more than one worker.
FROM python:3.11-slim-bookworm AS build
COPY --from=ghcr.io/astral-sh/uv:0.13.9 /uv /usr/local/bin/uv
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never
WORKDIR /app
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project
COPY cdp cdp
COPY features features
COPY training training
COPY policy policy
COPY serving serving
COPY nextbest nextbest
RUN uv sync --frozen --no-dev --no-editable

FROM python:3.11-slim-bookworm
# LightGBM needs the OpenMP runtime
RUN apt-get update && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --uid 10001 --create-home nextbest \
    && mkdir -p /data && chown nextbest /data
COPY --from=build --chown=nextbest /app /app
ENV PATH=/app/.venv/bin:$PATH PYTHONUNBUFFERED=1 \
    MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR=false BENTOML_DO_NOT_TRACK=true
USER 10001
WORKDIR /data
VOLUME ["/data"]
EXPOSE 3000
ENTRYPOINT ["nextbest"]
CMD ["serve", "--host", "0.0.0.0", "--port", "3000", "--data", "/data/cdp", "--features", "/data/features", "--mlruns", "/data/mlruns", "--state", "/data/state"]
