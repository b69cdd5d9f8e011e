# keygate — common tasks. `make test` and `make demo` need root.

GO      ?= go
PREFIX  ?= /usr/local
DESTDIR ?=
UNITDIR ?= /etc/systemd/system
export PATH := /usr/local/go/bin:$(PATH)

.PHONY: all build generate check-generate lint test test-unit demo install clean bench bench-quick

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

## test: everything, root tests included (run as root); skips fail.
## -p 1: test worlds and BPF tests hold host-wide resources (routes to the
## stand-in metadata address, service addresses), so packages run one at a time.
test: lint check-generate
	KEYGATE_REQUIRE_ROOT=1 $(GO) test -race -count=1 -p 1 -timeout 30m ./...

## test-unit: the tests that need no root
test-unit:
	$(GO) test -count=1 ./...

## demo: a vault, a credential, a stand-in API and curl in a sandbox (root)
demo: build
	$(GO) build -o bin/testworld ./scripts/testworld
	./scripts/demo.sh

## bench: keygate beside direct access, mitmproxy, squid and a plain Go proxy (root;
## scripts/bench/install.sh installs the tools). Writes docs/benchmarks.md and
## docs/bench/*.png. ARGS passes flags: `make bench ARGS=--quick` is bench-quick.
bench: build
	$(GO) build -o bin/kgbench ./scripts/bench
	./bin/kgbench $(ARGS)

## bench-quick: the short run (under 3 minutes) CI makes; prints, writes to a temp dir
bench-quick:
	$(MAKE) bench ARGS="--quick $(ARGS)"

## install: bin/keygate and bin/keygated to PREFIX/bin, keygated.service to UNITDIR (root;
## DESTDIR stages). Files already identical are left untouched, and systemd is told
## only when the unit changed.
install: build
	@set -e; \
	sed 's|/usr/local/bin/|$(PREFIX)/bin/|g' scripts/keygated.service >bin/keygated.service; \
	put() { \
		if cmp -s "$$2" "$$3" && [ "$$(stat -c %a "$$3")" = "$${1#0}" ]; then \
			echo "install: $$3 unchanged"; return 1; \
		fi; \
		install -D -m "$$1" "$$2" "$$3"; echo "install: $$3 installed"; \
	}; \
	put 0755 bin/keygate '$(DESTDIR)$(PREFIX)/bin/keygate' || true; \
	put 0755 bin/keygated '$(DESTDIR)$(PREFIX)/bin/keygated' || true; \
	if put 0644 bin/keygated.service '$(DESTDIR)$(UNITDIR)/keygated.service' \
		&& [ -z '$(DESTDIR)' ] && [ -d /run/systemd/system ]; then \
		echo "install: systemctl daemon-reload"; systemctl daemon-reload; \
	fi

clean:
	rm -rf bin
