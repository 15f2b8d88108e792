# chatfleet — run `make help` for the targets.
GO       ?= go
FUZZTIME ?= 10s

.DEFAULT_GOAL := help

.PHONY: help
help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: run
run: build ## start chatfleet on this machine: embedded NATS, a worker, a simulated model unless an upstream is configured
	@exec ./bin/chatfleet dev

.PHONY: build
build: ## build bin/chatfleet
	$(GO) build -o bin/chatfleet ./cmd/chatfleet

.PHONY: test
test: lint ## run every test with the race detector: fuzz seeds, the benchmark's smoke run and the NATS fault tests included; then deploy/deploytest
	@echo "go test -race: a line per package as it finishes, slow tests named, failures in full"
	@CHATFLEET_BENCH_CHARTS=1 TESTPROGRESS_GO=$(GO) $(GO) run ./internal/testprogress -race -count=1 -timeout 15m -tags faults ./...
	@echo "examples/embed: the public API from another module"
	cd examples/embed && $(GO) test -race -count=1 ./...
	@echo "deploy/deploytest: the Helm chart, the compose file and the images (in containers when podman is installed); no race detector"
	cd deploy/deploytest && PATH="$$($(GO) env GOROOT)/bin:$$PATH" $(GO) test -count=1 -timeout 10m ./...

.PHONY: test-short
test-short: ## the quick tests: go test -short skips the heavy runs (the benchmark's smoke run, chatfleet dev end to end, …)
	$(GO) test -race -count=1 -short ./...

.PHONY: lint
lint: ## gofmt and go vet
	@echo "gofmt, go vet"
	@unformatted=$$(gofmt -l .); if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet -tags faults ./...
	cd bench/peers/asynq && $(GO) vet ./...
	cd bench/charts && $(GO) vet ./...
	cd examples/embed && $(GO) vet ./...
	cd deploy/deploytest && $(GO) vet ./...

.PHONY: fuzz
fuzz: ## run every fuzz target of the module for FUZZTIME each
	@for pkg in $$($(GO) list ./...); do \
		for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
			echo "fuzz $$pkg $$f"; $(GO) test $$pkg -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) || exit 1; \
		done; \
	done

.PHONY: tidy
tidy: ## go mod tidy
	$(GO) mod tidy

.PHONY: bench
bench: ## run the benchmarks (BENCHFLAGS, e.g. --scenarios throughput,latency); table on stdout, JSON and PNG charts in bench/results
	$(GO) run ./bench/cmd/chatfleet-bench --out bench/results/results.json --charts bench/results $(BENCHFLAGS)
