# Build stage: a static binary, built as an unprivileged user.
FROM golang:1.26-bookworm AS build
RUN useradd -m builder
USER builder
WORKDIR /home/builder/src
COPY --chown=builder go.mod go.sum ./
RUN go mod download
COPY --chown=builder . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /home/builder/edgegate ./cmd/edgegate

# Runtime stage: just the binary. It needs CAP_NET_ADMIN and /dev/net/tun, and host networking to
# serve the node's addresses:
#   docker run --network host --cap-add NET_ADMIN --device /dev/net/tun \
#     -v /etc/edgegate:/etc/edgegate:ro edgegate
FROM gcr.io/distroless/static-debian12
COPY --from=build /home/builder/edgegate /usr/local/bin/edgegate
ENTRYPOINT ["edgegate","run","-c","/etc/edgegate/edgegate.yaml"]
