# tokenvault in a container: a multi-stage build, run as a non-root user.
#
#   docker build --build-arg TOKENVAULT_BUILD_COMMIT=$(git rev-parse --short=12 HEAD) -t tokenvault .
#   docker run -d --name tokenvault \
#       -v tokenvault-data:/var/lib/tokenvault -v tokenvault-run:/run/tokenvault \
#       -v /etc/tokenvault/passphrase:/run/secrets/tokenvault_passphrase:ro tokenvault
#   docker exec tokenvault tokenvault status
#
# The vault lives in the /var/lib/tokenvault volume; the socket in the /run/tokenvault volume
# (share it with other containers that run as uid 10001, or use tenant keys); the passphrase
# comes from a secret file (Compose/Swarm secrets mount at /run/secrets/NAME), never from
# the environment. scripts/docker-smoke builds this image and tries it. See docs/daemon.md.

FROM rust:1.90-bookworm AS build
WORKDIR /src
# no .git in the build context: the commit for --version comes in as an argument
ARG TOKENVAULT_BUILD_COMMIT=unknown
ENV TOKENVAULT_BUILD_COMMIT=${TOKENVAULT_BUILD_COMMIT}
COPY . .
RUN cargo build --release --locked --bin tokenvault \
 && install -D -m 0755 target/release/tokenvault /out/tokenvault \
 && /out/tokenvault man --dir /out/man1

FROM debian:bookworm-slim
# CA certificates for the providers' HTTPS endpoints
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 tokenvault \
 && useradd --system --uid 10001 --gid tokenvault --home-dir /var/lib/tokenvault \
        --no-create-home --shell /usr/sbin/nologin tokenvault \
 && install -d -m 0700 -o tokenvault -g tokenvault /var/lib/tokenvault /run/tokenvault \
 && install -d -m 0755 /etc/tokenvault
COPY --from=build /out/tokenvault /usr/local/bin/tokenvault
COPY --from=build /out/man1/ /usr/local/share/man/man1/
COPY README.md docs/ /usr/local/share/doc/tokenvault/
ENV TOKENVAULT_VAULT=/var/lib/tokenvault/vault.redb \
    TOKENVAULT_SOCKET=/run/tokenvault/tokenvault.sock \
    TOKENVAULT_CONFIG=/etc/tokenvault/config.toml \
    TOKENVAULT_PASSPHRASE_FILE=/run/secrets/tokenvault_passphrase
USER tokenvault:tokenvault
VOLUME ["/var/lib/tokenvault", "/run/tokenvault"]
# SIGTERM (docker stop) stops the daemon cleanly: in-flight work finished, audit flushed.
STOPSIGNAL SIGTERM
ENTRYPOINT ["tokenvault"]
CMD ["serve"]
