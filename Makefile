# make test: the project's test command (README). It makes sure Redis is
# installed, then checks formatting, vets, and runs every test with -race
# against real redis-server processes that the tests start themselves; then
# the runtime's unit tests again with every lock checked against the lock
# order (the dlock_lockorder tag, see runtime/lockorder.go).

GO ?= go

.PHONY: test redis fmt-check vet gen-check bench soak mutants fuzz-short examples-offline

test: redis fmt-check vet gen-check
	$(GO) test -race -count=1 -timeout 20m ./...
	$(GO) test -tags dlock_lockorder -count=1 -timeout 10m -run '^Test(LockOrder|Flight|Fanout|Push|Lock|MultiLock|Semaphore|Permit|Close)_' ./runtime
	cd dlockotel && $(GO) vet ./... && $(GO) test -race -count=1 ./...
	cd bench && $(GO) vet ./...
	$(MAKE) examples-offline
	$(MAKE) fuzz-short

# The runnable examples run anywhere: on dlocktest's in-process server, with
# no redis-server on PATH (only the go command's directory is).
examples-offline:
	env -u CI PATH="$$(dirname "$$(readlink -f "$$(command -v $(GO))")")" CGO_ENABLED=0 $(GO) test -count=1 -run '^Example' ./runtime ./dlocktest ./examples/profiles

# A few seconds of each fuzz target (the seeds also run in go test), as a
# count of executions: a duration races Go 1.26's fuzz coordinator at its
# deadline (go.dev/issue/75804: a spurious "context deadline exceeded"
# with no failing input; fixed in Go 1.27).
FUZZTIME ?= 30000x
fuzz-short:
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeEnvelope$$' -fuzztime $(FUZZTIME) ./runtime/
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeUser$$' -fuzztime $(FUZZTIME) ./examples/users/
	$(GO) test -run '^$$' -fuzz '^FuzzParseDirective$$' -fuzztime $(FUZZTIME) ./generator/
	$(GO) test -run '^$$' -fuzz '^FuzzParseKeyTemplate$$' -fuzztime $(FUZZTIME) ./generator/

# Installs redis-server, redis-sentinel and faketime (the soak jumps the
# server's clock with libfaketime) from Debian's packages when they are
# missing and we are root on Debian/Ubuntu; otherwise says how and fails.
FAKETIME_LIB = $(firstword $(wildcard /usr/lib/*/faketime/libfaketimeMT.so.1 /usr/lib/faketime/libfaketimeMT.so.1 /usr/local/lib/faketime/libfaketimeMT.so.1))
redis:
	@if command -v redis-server >/dev/null && command -v redis-sentinel >/dev/null && [ -n "$(FAKETIME_LIB)" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing redis-server, redis-sentinel and faketime"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server redis-sentinel faketime >/dev/null; \
	else \
		echo "redis-server, redis-sentinel and faketime are needed: sudo apt-get update && sudo apt-get install -y redis-server redis-sentinel faketime"; \
		exit 1; \
	fi

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...
	$(GO) vet -tags dlock_lockorder ./runtime

# The committed generated code of the examples must be fresh.
gen-check:
	$(GO) run ./cmd/dlockgen -check ./examples/...

# make bench: dlock next to its peers, in one run against a redis-server it
# starts itself; prints the table and writes docs/bench.md and docs/bench.png.
# The peers live in bench/go.mod, so users of dlock never inherit them.
bench: redis
	cd bench && $(GO) run . -out ../docs

# make soak: the fault-schedule soaks (runtime/soak_test.go: standalone
# with kills, pauses, network faults, restarts without persistence and
# clock jumps, and Sentinel failovers; soak_cluster_test.go: Cluster
# failovers and slot migrations) for SOAK (2m) each, every operation
# recorded and checked by porcupine (internal/history), then prints one
# table: fault × promise. Also the heap check over 10^6 operations. make
# test runs short versions of them all. SOAK_FAULTS (a regexp of fault
# names) keeps only those faults, to chase one: SOAK_FAULTS='clock|restart'.
SOAK ?= 2m
SOAK_REPORT ?= $(CURDIR)/soak-report.md
SOAK_FAULTS ?=
soak: redis
	rm -f $(SOAK_REPORT)
	DLOCK_SOAK=$(SOAK) DLOCK_SOAK_FAULTS='$(SOAK_FAULTS)' DLOCK_SOAK_REPORT=$(SOAK_REPORT) $(GO) test -race -count=1 -timeout 60m -run 'TestSoak' -v ./runtime/ > soak.log 2>&1; \
	status=$$?; cat $(SOAK_REPORT) 2>/dev/null; grep -E '^(--- |FAIL|ok)' soak.log; echo "(full log: soak.log)"; exit $$status

# make mutants: plants each one-line bug of internal/mutants/list*.go in a
# copy of the tree and runs the tests that must catch it (two at a time,
# about 20 minutes on 2 cores); prints a line per mutant, writes the table
# to docs/mutants.md, and fails when one survives, no longer applies or
# does not compile. Not part of make test. A survivor is a missing test:
# write it, never delete the mutant. MUTANTS=REGEXP runs only those ids.
MUTANTS ?= .
mutants: redis
	$(GO) run ./internal/mutants -run '$(MUTANTS)' -md $(CURDIR)/docs/mutants.md
