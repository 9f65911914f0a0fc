# Two commands on a fresh machine:  `make demo` (the main job) and `make test` (the checks).
# Both create .venv and install the project into it the first time.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin

.PHONY: demo test test-slow test-pg install-check lint typecheck imports pytest catalogues clean

$(BIN)/animate-bot: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

# Animate the bundled example with embedded defaults: SQLite under data/, the built-in emulator.
demo: $(BIN)/animate-bot
	$(BIN)/python -m bot animate examples/harbour.jpg --prompt "the boat rocks gently at sunset" \
		--duration 5 --aspect-ratio 16:9 --motion medium --out out/harbour.mp4

# ruff (lint and format), mypy --strict on the shipped code, the import-linter contracts, then the tests.
test: $(BIN)/animate-bot lint typecheck imports pytest

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck:
	$(BIN)/mypy --strict bot cogs shared emulator relay

# The layers and forbidden imports of pyproject.toml's [tool.importlinter] (ARCHITECTURE.md).
imports:
	$(BIN)/lint-imports

pytest:
	$(BIN)/pytest -q

# Only the cases that use PostgreSQL (marked postgres), and they must run: no skipping when the
# server cannot start. `make test` runs them too, skipping them where PostgreSQL is missing.
test-pg: $(BIN)/animate-bot
	REQUIRE_POSTGRES=1 $(BIN)/pytest -q -m postgres

# The long cases the default run leaves out (marked slow).
test-slow: $(BIN)/animate-bot
	$(BIN)/pytest -q -m slow

# `pip install .` (not editable, as the Docker image does) into a fresh venv, then
# `python -m bot animate` from outside the checkout: what the package ships is all it has.
install-check:
	.ci/install-check

# The languages (README "Languages"): extract every marked message (say, say_n) and the command
# tree's strings into the template, merge it into each language's .po, and compile the .mo files
# that ship in the package. Edit the .po files between `make catalogues` runs; commit all three.
I18N      = bot/i18n/locales
LANGUAGES = id es
catalogues: $(BIN)/animate-bot
	$(BIN)/pybabel extract -F babel.cfg --no-default-keywords -k say -k say_n:1,2 -k pgettext:1c,2 \
		--project animate-bot --no-location --sort-output --omit-header -o $(I18N)/bot.pot .
	for lang in $(LANGUAGES); do \
		[ -f $(I18N)/$$lang/LC_MESSAGES/bot.po ] || $(BIN)/pybabel init -D bot -i $(I18N)/bot.pot -d $(I18N) -l $$lang; \
		$(BIN)/pybabel update -D bot -i $(I18N)/bot.pot -d $(I18N) -l $$lang --no-wrap --ignore-obsolete; \
	done
	$(BIN)/pybabel compile -D bot -d $(I18N) --statistics

clean:
	rm -rf $(VENV) data out .mypy_cache .ruff_cache .pytest_cache
