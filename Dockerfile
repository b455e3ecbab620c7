# twinhub's container image: a static binary on a distroless base, run as
# a non-root user, its data folder a volume.
#
#   docker build -t twinhub .
#   docker run -d --name twinhub -v twinhub-data:/data \
#     -e TWINHUB_HOSTNAME=hub.example.com \
#     -p 443:8443 -p 8883:8883 -p 5671:5671 twinhub
#
# The hub listens on 8443 inside (a non-root user may not bind 443) and the
# host maps 443 to it, because the SDKs dial 443, 8883 and 5671 on the
# connection string's HostName. Every serve flag is also a TWINHUB_*
# variable, or a key of a --config file mounted into the container
# (docs/deploy.md). interop/deploy tests this file's build flags, user,
# data folder and ports, without a container engine.

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# Static (no cgo), without local paths or debug symbols.
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/twinhub ./cmd/twinhub
RUN mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/twinhub /usr/local/bin/twinhub
COPY --from=build --chown=65532:65532 /out/data /data
USER 65532:65532
ENV TWINHUB_DATA=/data
VOLUME /data
EXPOSE 8443 8883 5671
ENTRYPOINT ["/usr/local/bin/twinhub"]
CMD ["serve", "--https-addr", ":8443", "--mqtt-addr", ":8883", "--amqp-addr", ":5671"]
