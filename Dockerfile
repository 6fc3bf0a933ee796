# syntax=docker/dockerfile:1
# The litellm-org-operator image: built in the official Rust image, run from a
# distroless base (glibc and libgcc, no shell, no package manager) as the
# non-root user 65532 that the Helm chart's pod security context expects.
#
#   docker build -t litellm-org-operator:0.1.0 .

FROM rust:1-bookworm AS builder
WORKDIR /src
# .dockerignore keeps target/, .tools/ and local databases out of the context.
COPY . .
# --locked: build exactly the dependency versions of Cargo.lock. The cache
# mounts keep the registry and target/ between builds (BuildKit).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin litellm-org-operator \
 && install -D -m 0755 target/release/litellm-org-operator /out/litellm-org-operator

FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="litellm-org-operator" \
      org.opencontainers.image.description="Declarative LiteLLM organizations and members: a Kubernetes operator and a cluster-less plan/apply CLI" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /out/litellm-org-operator /usr/local/bin/litellm-org-operator
USER 65532:65532
# Metrics (/metrics) and health (/healthz, /readyz) with --http-addr 0.0.0.0:8080.
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/litellm-org-operator"]
CMD ["--help"]
