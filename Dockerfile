# The Kijko API image (used by docker-compose.yml): kijko serve on uvicorn.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
# git: the worker clones repositories for ingestion (kijko_core/git.py runs the git binary).
RUN apt-get update && apt-get install -y --no-install-recommends git \
    && rm -rf /var/lib/apt/lists/*
COPY setup.cfg pyproject.toml README.md ./
COPY kijko_core ./kijko_core
COPY kijko_server ./kijko_server
COPY kijko_cli ./kijko_cli
RUN pip install . && useradd --system --home /app kijko
USER kijko
EXPOSE 8000
ENV KIJKO_HOST=0.0.0.0 KIJKO_PORT=8000
CMD ["kijko", "serve"]
