# syntax=docker/dockerfile:1
# ghlsync's image: static binaries of every command on distroless, run as a
# non-root user. No configuration or secret is baked in: it all comes from
# the environment (see docker-compose.yml and .env.example).

FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -buildvcs=false -ldflags="-s -w" -o /out/ \
    ./cmd/worker ./cmd/web ./cmd/scheduler ./cmd/enqueue ./cmd/healthcheck

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/ /usr/local/bin/
USER nonroot:nonroot
# web; worker and scheduler serve /metrics, /healthz and /readyz on 9091 and 9092.
EXPOSE 8080 9091 9092
CMD ["/usr/local/bin/web"]
