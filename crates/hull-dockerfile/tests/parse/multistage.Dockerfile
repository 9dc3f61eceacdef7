# syntax=docker/dockerfile:1.7
ARG GO_VERSION=1.22 BASE="debian:bookworm-slim"
ARG TARGETOS TARGETARCH

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS Build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build,sharing=locked \
    go mod download
COPY . .
RUN --mount=type=cache,target=/root/.cache/go-build \
    GOOS=$TARGETOS GOARCH=$TARGETARCH go build -o /out/app ./cmd/app

FROM ${BASE} as runtime
ARG GO_VERSION
COPY --from=build --chown=10001:10001 --chmod=0755 /out/app /usr/local/bin/app
USER 10001
EXPOSE 8080/tcp 9090
ENTRYPOINT ["/usr/local/bin/app"]
CMD ["--listen", ":8080"]

from scratch
copy --from=runtime /usr/local/bin/app /app
