FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md alembic.ini ./
COPY config ./config
COPY domain ./domain
COPY infra ./infra
COPY api ./api
COPY workers ./workers
COPY simulator ./simulator
COPY cli ./cli
COPY alembic ./alembic
# editable: the code runs from /app, where `batchery db upgrade` finds alembic/ beside it
RUN pip install -e . && useradd --create-home batchery
USER batchery
EXPOSE 8000
CMD ["batchery", "api", "--host", "0.0.0.0", "--port", "8000"]
