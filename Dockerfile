# civicbot: docker build -t civicbot . && docker run -v ./config:/config -v civicbot-data:/data civicbot
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
# The database, sync position and login session; keep it on a volume.
VOLUME /data
ENV CIVICBOT_BOT__DATA_DIR=/data PYTHONUNBUFFERED=1
ENTRYPOINT ["civicbot"]
CMD ["run", "--config", "/config/config.toml"]
