# meshd container image: build on Debian 12 with the packages scripts/ installs, run from a slim stage.
#   docker build -t meshd .
#   docker run --rm -p 7070:7070 -p 127.0.0.1:9464:9464 -v /etc/meshd/tls:/etc/meshd/tls:ro \
#       meshd coordinator --listen 0.0.0.0:7070 --tls-cert /etc/meshd/tls/coordinator.pem \
#       --tls-key /etc/meshd/tls/coordinator.key --tls-ca /etc/meshd/tls/ca.pem \
#       --metrics-listen 0.0.0.0:9464
#   (mutual TLS on every port, metrics included: HTTPS, and Prometheus presents a certificate of the
#   CA; docs/security.md. The key must be readable by uid/gid 10001. Without the three TLS flags a
#   non-loopback --listen is refused, exit 2, and metrics are plaintext: published on loopback.)
#   docker run --rm --entrypoint meshctl meshd plan --world 64 --shape 2,4,8 --names pp,dp,tp
# Both stages read their package lists from scripts/packages-*.txt, the same files the setup scripts
# use, so the image and a host build never drift apart.

FROM debian:12 AS build
ENV DEBIAN_FRONTEND=noninteractive
WORKDIR /src
COPY scripts/ scripts/
RUN ./scripts/install-deps.sh scripts/packages-build.txt && rm -rf /var/lib/apt/lists/*
COPY . .
RUN rm -rf build && BUILD_TYPE=Release MESHD_CMAKE_ARGS="-DMESHD_BUILD_TESTS=OFF -DMESHD_BUILD_BENCH=OFF" \
    ./scripts/build.sh

FROM debian:12-slim AS runtime
ENV DEBIAN_FRONTEND=noninteractive
COPY scripts/install-deps.sh scripts/packages-runtime.txt /tmp/meshd-setup/
RUN /tmp/meshd-setup/install-deps.sh /tmp/meshd-setup/packages-runtime.txt \
    && rm -rf /var/lib/apt/lists/* /tmp/meshd-setup \
    && groupadd --system --gid 10001 meshd \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin meshd
COPY --from=build /src/build/bin/meshd /src/build/bin/meshctl /src/build/bin/mesh_worker /usr/local/bin/
# libmeshd_client for the example worker (deploy/k8s/overlays/example runs it); NCCL is not included.
COPY --from=build /src/build/lib/libmeshd_client.so /usr/local/lib/
RUN ldconfig
LABEL org.opencontainers.image.title="meshd" \
      org.opencontainers.image.description="Device-mesh control plane for GPU clusters" \
      org.opencontainers.image.source="https://github.com/meshd/meshd" \
      org.opencontainers.image.licenses="Apache-2.0"
USER meshd
# gRPC (coordinator), health for probes (agent --health-listen), Prometheus (--metrics-listen)
EXPOSE 7070 7071 9464
ENTRYPOINT ["/usr/local/bin/meshd"]
CMD ["--help"]
