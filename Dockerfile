# blindeval image: the web process (gunicorn) and the Celery workers.
# CPU torch by default; GPU images: --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128
# (docker-compose.yml builds both: see its worker-gpu service).
FROM python:3.11-slim

ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    BLINDEVAL_VAR_DIR=/data/var \
    MEDIA_ROOT=/data/media \
    STATIC_ROOT=/app/staticfiles

WORKDIR /app

# torch first, from the index that matches the hardware; requirements.txt pins
# torch==2.13.0, which the +cpu or +cuXXX build satisfies.
COPY requirements.txt .
RUN pip install --index-url "${TORCH_INDEX_URL}" torch==2.13.0 \
    && pip install -r requirements.txt

RUN useradd --create-home --uid 1000 blindeval \
    && mkdir -p /data/var /data/media \
    && chown -R blindeval:blindeval /data

COPY --chown=blindeval:blindeval . .

# Hashed, compressed static files baked into the image; whitenoise serves them.
RUN SECRET_KEY=collectstatic-only DEBUG=0 python manage.py collectstatic --no-input

USER blindeval
EXPOSE 8000
CMD ["gunicorn", "evalsite.wsgi:application", "--bind", "0.0.0.0:8000"]
