# chatfleet: one static binary. `docker build -t chatfleet .`
# deploy/deploytest builds the same binary with the same command and runs
# this final stage on scratch (FROM scratch, COPY chatfleet /chatfleet):
# keep the two stages in this shape.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /chatfleet ./cmd/chatfleet

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /chatfleet /chatfleet
USER 65532:65532
EXPOSE 9090
ENTRYPOINT ["/chatfleet"]
CMD ["worker"]
