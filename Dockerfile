# ragstore in a container: the binary, the embedding model and ONNX Runtime, data in a volume.
FROM rust:1-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-pip \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN ./scripts/fetch-models.sh && cargo build --locked --release

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/ragstore /usr/local/bin/ragstore
COPY --from=build /src/models /opt/ragstore/models
# Listening on every interface, the server refuses to start until the data dir holds an API key
# (`docker run … ragstore keys create --project NAME`) unless RAGSTORE_INSECURE_NO_AUTH=true.
ENV RAGSTORE_ADDR=0.0.0.0:8321 \
    RAGSTORE_DATA_DIR=/var/lib/ragstore \
    RAGSTORE_MODELS_DIR=/opt/ragstore/models
VOLUME /var/lib/ragstore
EXPOSE 8321
STOPSIGNAL SIGTERM
ENTRYPOINT ["ragstore"]
CMD ["serve"]
