# buraq with the example pipelines and the buraq-jsonl plugin. Used by compose.yml.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY . .
RUN pip install . ./plugins/buraq-jsonl \
    && useradd --create-home --uid 10001 buraq \
    && mkdir -p /app/var \
    && chown buraq /app/var

# Not root. /app/var is where the example `events` pipeline appends its JSON Lines file.
USER buraq

EXPOSE 2112
# Exec form, so buraq is PID 1 and receives SIGTERM itself: it drains running tasks, then exits.
# 0.0.0.0, so Prometheus in another container can scrape /metrics; beyond loopback the dashboard
# and API want BURAQ_DASHBOARD_TOKEN, which the image leaves to the runtime (compose.yml sets it).
CMD ["buraq", "serve", "pipelines/", "--listen", "0.0.0.0:2112"]
