# warmbee: two commands do everything.
#   make run   installs what the project needs, starts broker, database, services, and a demo
#   make test  installs what the project needs and runs every check and test
SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install run test lint unit integration e2e demo bench clean help i18n i18n-reasons i18n-problems i18n-pages i18n-notices

help:
	@echo "make run    - install and run everything locally (Ctrl-C stops it)"
	@echo "make test   - install and run lint, type checks and all tests"
	@echo "make bench  - measure events per second through the points path"

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"

# The Python environment from the lock file; system packages the local stack needs.
install: $(UV)
	@command -v pg_ctlcluster >/dev/null || command -v psql >/dev/null || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; }
	@command -v prometheus >/dev/null && command -v promtool >/dev/null || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus; }
	@# The browser tests (tests/e2e/test_pages.py) drive Debian's chromium; a CJK font so Chinese is not boxes.
	@command -v chromium >/dev/null && fc-list | grep -qi "noto sans cjk" || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-noto-cjk; }
	@# The AsyncAPI specification's own JSON Schema (@asyncapi/specs, locked in tests/asyncapi/) for
	@# tests/unit/test_asyncapi.py; Debian's node and npm install it from the npm registry.
	@command -v node >/dev/null && command -v npm >/dev/null || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm; }
	@test -d tests/asyncapi/node_modules/@asyncapi/specs || \
		(cd tests/asyncapi && npm ci --no-audit --no-fund --silent)
	@# The OpenID provider of tests/e2e/test_identity.py: oidc-provider from the npm registry (locked in
	@# tests/oidc/package-lock.json).
	@[ -d tests/oidc/node_modules ] || npm ci --prefix tests/oidc --no-audit --no-fund --loglevel=error
	$(UV) sync --frozen --python $(PYTHON) --quiet

run: install
	$(BIN)/warmbee run

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

unit: install
	$(BIN)/pytest tests/unit

integration: install
	$(BIN)/pytest tests/integration

e2e: install
	$(BIN)/pytest tests/e2e

# The gettext catalogues (libs/i18n/locale), one domain per reader: extract the English msgids from the
# sources with Babel, merge them into the zh_CN and en .po files (new ones empty, to be translated), and
# compile the .mo files the services load. The .po and .mo files are committed; tests/unit/test_i18n.py
# fails when a source has a word the catalogues lack, a Chinese msgstr is empty or a .mo is stale.
I18N := libs/i18n/locale
# Each domain has its own markers: P_ marks a problem's words wherever it is raised, N_/Nn_/Np_ the rest.
BABEL_KEYWORDS := --no-default-keywords -k N_ -k Nn_:1,2 -k Np_:1c,2 -k _ -k gettext -k ngettext:1,2 -k pgettext:1c,2
define catalogue
	$(BIN)/pybabel --quiet extract --no-location --sort-output --omit-header $(3) -o $(I18N)/$(1).pot $(2)
	for l in zh_CN en; do [ -f $(I18N)/$$l/LC_MESSAGES/$(1).po ] || \
		$(BIN)/pybabel --quiet init -D $(1) -i $(I18N)/$(1).pot -d $(I18N) -l $$l; done
	$(BIN)/pybabel --quiet update --no-fuzzy-matching --ignore-obsolete -D $(1) -i $(I18N)/$(1).pot -d $(I18N)
	$(BIN)/pybabel --quiet compile -D $(1) -d $(I18N)
endef

i18n: i18n-reasons i18n-problems i18n-pages i18n-notices
i18n-reasons: install
	$(call catalogue,reasons,libs/i18n/reasons.py,$(BABEL_KEYWORDS))
i18n-problems: install
	$(call catalogue,problems,libs services,--no-default-keywords -k P_)
i18n-pages: install
	$(call catalogue,pages,-F libs/i18n/pages.cfg services/pages,$(BABEL_KEYWORDS))
i18n-notices: install
	$(call catalogue,notices,services/notifications/domain/notices.py,$(BABEL_KEYWORDS))

# pytest exits 5 when it collects no test: that fails here like any other non-zero exit.
test: lint
	$(BIN)/pytest

# The property tests with fresh random examples, five times as many as `make test` draws (which repeats
# the same ones every run), and Schemathesis with five times as many cases against a stack of its own:
# for finding new odd events and requests, not a gate (the property tests alone take about 25 minutes).
.PHONY: fuzz
fuzz: install
	WARMBEE_HYPOTHESIS_PROFILE=explore WARMBEE_PROPERTY_SCALE=5 $(BIN)/pytest tests/unit tests/e2e/test_schemathesis.py

# The speed benchmark on a stack of its own (own database and ports): PostgreSQL's ceiling, 200,000 events
# over Kafka and 50,000 over HTTP, balance reads, redemptions, CPU and memory per process. One table, and
# bench/results/latest.json. About 2 minutes. Then the operators' points report over a month of 10,000 riders and
# 200,000 entries (bench/reports.py, its own database; bench/results/reports.json), under a minute. Then
# the lapse job over 100,000 due lots of 10,000 riders (bench/lapsing.py), about 5 minutes. Then replay and
# reconcile over 200,000 scored events (bench/replay.py), about 2 minutes.
bench: install
	$(BIN)/python -m bench.throughput
	$(BIN)/python -m bench.reports
	$(BIN)/python -m bench.lapsing
	$(BIN)/python -m bench.replay

.PHONY: bench-reports
bench-reports: install
	$(BIN)/python -m bench.reports

# The lapse job (issue 20: 100,000 lots in under 60 s): lapse_due over 100,000 due lots of 10,000 riders,
# reconcile clean afterwards, against a same-run baseline of 100,000 plain debits in batches of 1,000;
# and what lots add to a hold. Three runs on fresh databases of its own (no broker, no ports), medians
# and ranges in bench/results/lapsing.json. About 5 minutes.
.PHONY: bench-lapsing
bench-lapsing: install
	$(BIN)/python -m bench.lapsing

# Replay (issue 22: 200,000 events at 20,000 a second or more) and reconcile over 200,000 events scored by the
# live scorer into a database of its own, against a same-run baseline of the same read without scoring;
# three runs, medians and ranges in bench/results/replay.json. About 2 minutes.
.PHONY: bench-replay
bench-replay: install
	$(BIN)/python -m bench.replay

# Reconcile (issue 22: 1,000,000 ledger entries in under 10 s): the whole reconcile over 1,000,000 events scored by
# the live scorer, then the worker's scoped one over 1,000 events more; three runs each, medians and ranges in
# bench/results/reconcile.json. About 10 minutes, most of it seeding.
.PHONY: bench-reconcile
bench-reconcile: install
	$(BIN)/python -m bench.replay --events 1000000 --reconcile-only

# A burst of reserves (issue 22: 200 at the same instant, p99 under 250 ms, no overdraft): 200 riders reserve one
# reward at once and have their codes confirmed, 3 runs with no stock limit and 3 with one, each process's CPU per
# redemption and what PostgreSQL's sessions waited on (bench/reserves.py; bench/results/reserves.json). About 3 minutes.
.PHONY: bench-reserves
bench-reserves: install
	$(BIN)/python -m bench.reserves

# Balance reads alone (issue 22: balance p99 at most 2x the raw row's): the broker, PostgreSQL and the points API only,
# one rider's balance, /healthz and the raw row at 1,000 a second for 20 s each, 3 runs, the API's CPU per read
# (bench/reads.py; bench/results/reads.json). About 4 minutes.
.PHONY: bench-reads
bench-reads: install
	$(BIN)/python -m bench.reads

# Webhook deliveries per second through the notifications sender (claim, sign, POST, record) to a local
# receiver, 10 subscriptions, with a same-run baseline of the bare signed POSTs; bench/results/webhooks.json.
.PHONY: bench-webhooks
bench-webhooks: install
	$(BIN)/python -m bench.webhooks

# Scale-out of the points worker: 1, 2 and 4 processes in one consumer group on a 16-partition topic,
# 200,000 events each, then 4 again with one SIGKILLed half-way (exactly once, replay and reconcile
# clean). Its own database and ports (3xxxx); figures in bench/results/scaleout.json. About 8 minutes.
.PHONY: scaleout
scaleout: install
	$(BIN)/python -m bench.scaleout

demo: install
	$(BIN)/warmbee demo

clean:
	rm -rf $(VENV) $(TOOLS) .run test-artifacts .mypy_cache .ruff_cache .pytest_cache
