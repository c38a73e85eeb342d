# civicbot: docker build -t civicbot . && docker run -d --name civicbot --restart unless-stopped -v "$PWD/config.toml:/config/config.toml:ro" -v civicbot-data:/data civicbot
# (the README's "With Docker" has the same mounts: the config file read-only, state in a volume)
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY civicbot ./civicbot
COPY plugins ./plugins
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels \
    && useradd --system --uid 1000 --home-dir /data civicbot \
    && mkdir -p /data /config && chown civicbot /data
USER civicbot
# The database, sync position, login session and secret.key; keep it on a volume and back it
# up with `civicbot backup` (see the README).
VOLUME /data
ENV CIVICBOT_BOT__DATA_DIR=/data PYTHONUNBUFFERED=1
ENTRYPOINT ["civicbot"]
CMD ["run", "--config", "/config/config.toml"]
