# keygate — common tasks. `make test` and `make demo` need root.

GO      ?= go
export PATH := /usr/local/go/bin:$(PATH)

.PHONY: all build generate check-generate lint test test-unit demo clean

all: build

## build: bin/keygate and bin/keygated
build:
	$(GO) build -o bin/keygate ./cmd/keygate
	$(GO) build -o bin/keygated ./cmd/keygated

## generate: rebuild the eBPF objects and their Go bindings (bpf2go)
generate:
	$(GO) generate ./bpf/...

## check-generate: fail if the committed bpf2go output is stale
check-generate: generate
	@if git rev-parse --git-dir >/dev/null 2>&1; then \
		git diff --exit-code --stat -- bpf/ || { echo "bpf2go output is stale: run make generate and commit"; exit 1; }; \
	else echo "check-generate: not a git checkout, skipped"; fi

## lint: gofmt and go vet (also for non-Linux hosts)
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
		if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	GOOS=darwin $(GO) vet ./...

## test: everything, root tests included (run as root); skips fail
test: lint check-generate
	KEYGATE_REQUIRE_ROOT=1 $(GO) test -race -count=1 ./...

## test-unit: the tests that need no root
test-unit:
	$(GO) test -count=1 ./...

## demo: a vault, a credential, a stand-in API and curl in a sandbox (root)
demo: build
	$(GO) build -o bin/testworld ./scripts/testworld
	./scripts/demo.sh

clean:
	rm -rf bin
