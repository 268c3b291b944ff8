# syntax=docker/dockerfile:1
# wharf's container image: a static (musl) binary on a distroless base with CA certificates, running as an
# unprivileged user, with nothing to write outside /var/lib/wharf (the store) so the root filesystem can be
# read-only.
#
#   docker build -t wharf .
#   docker run --read-only -p 8080:8080 -v wharf-data:/var/lib/wharf wharf \
#     serve --listen 0.0.0.0:8080 --data-dir /var/lib/wharf --repo pypi=pypi+https://<your index>/simple/
#
# The same image without Docker or any daemon, as an OCI layout for skopeo: scripts/build-image (it must stay in
# step with this file's final stage: crates/wharf/tests/e2e/image.rs compares the two).

ARG RUST_VERSION=1.95
FROM rust:${RUST_VERSION}-bookworm AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/* \
 && rustup target add x86_64-unknown-linux-musl
WORKDIR /src
COPY . .
ENV CC_x86_64_unknown_linux_musl=musl-gcc \
    CARGO_TARGET_DIR=/src/target
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p wharf --target x86_64-unknown-linux-musl \
 && install -D -m 0755 target/x86_64-unknown-linux-musl/release/wharf /out/wharf \
 && install -d -m 0750 /out/var/lib/wharf

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/wharf /usr/local/bin/wharf
COPY --from=build --chown=65532:65532 /out/var/lib/wharf /var/lib/wharf
USER 65532:65532
WORKDIR /var/lib/wharf
EXPOSE 8080
VOLUME ["/var/lib/wharf"]
# Kubernetes probes /healthz and /readyz (see deploy/helm/wharf); the image has no shell for a HEALTHCHECK.
ENTRYPOINT ["/usr/local/bin/wharf"]
CMD ["serve", "--config", "/etc/wharf/config/wharf.yaml"]
