# syntax=docker/dockerfile:1
# Build: docker build -t playground .   Run: docker compose up (see docker-compose.yml)

FROM python:3.11-slim AS build
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PROJECT_ENVIRONMENT=/app/.venv
RUN pip install --no-cache-dir uv==0.13.9
WORKDIR /app
COPY pyproject.toml uv.lock ./
RUN uv sync --frozen --no-dev --no-install-project --compile-bytecode
COPY . .
RUN DJANGO_DEBUG=0 DJANGO_SECRET_KEY=collectstatic-only CLERK_SECRET_KEY=build \
    /app/.venv/bin/python manage.py collectstatic --noinput

FROM python:3.11-slim AS runtime
RUN useradd --system --uid 10001 --home /app playground
WORKDIR /app
COPY --from=build --chown=playground:playground /app /app
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    DJANGO_DEBUG=0 \
    HOST=0.0.0.0 \
    PORT=3001 \
    DATA_DIR=/app/data
RUN mkdir -p /app/data && chown playground:playground /app/data
USER playground
EXPOSE 3001
HEALTHCHECK --interval=10s --timeout=3s --retries=5 \
  CMD python -c "import os,urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{os.environ[\"PORT\"]}/health/ready', timeout=2)"
CMD ["sh", "-c", "python manage.py migrate --noinput && exec python manage.py serve"]
