# The README's commands. Each target creates .venv and installs the project first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint schemas demo corridor clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/ebl serve

# On SQLite always; again on PostgreSQL when EBL_TEST_POSTGRES_URL names a database to test in (.ci/run sets it).
test: $(STAMP) lint
	$(BIN)/pytest --database=sqlite
	@if [ -n "$$EBL_TEST_POSTGRES_URL" ]; then \
		$(BIN)/pytest --database=postgresql; \
	else \
		echo "EBL_TEST_POSTGRES_URL is not set: the suite ran on SQLite only"; \
	fi

lint: $(STAMP)
	$(BIN)/ruff check ebl api tests bench
	$(BIN)/ruff format --check ebl api tests bench
	$(BIN)/mypy ebl

schemas: $(STAMP)
	$(BIN)/ebl schemas

demo: $(STAMP)
	$(BIN)/ebl demo

# The Chongqing (CQSB, port 8000) and Singapore (SGSB, port 8001) nodes as two processes; Ctrl-C stops both.
corridor: $(STAMP)
	$(BIN)/ebl corridor

clean:
	rm -rf $(VENV) data *.egg-info
