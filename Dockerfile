# chatfleet: one static binary. `docker build -t chatfleet .`
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /chatfleet ./cmd/chatfleet

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /chatfleet /chatfleet
EXPOSE 9090
ENTRYPOINT ["/chatfleet"]
CMD ["worker"]
