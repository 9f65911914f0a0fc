"""The import-linter contracts hold, and each one fails when its rule is broken.

A contract that cannot fail would prove nothing, so each is broken on purpose in a copy of the
packages (one import added to one module) and ``lint-imports`` must name it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("bot", "cogs", "shared", "emulator", "relay", "testkit")
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"

# contract id (pyproject.toml) -> (module to edit, an import the contract forbids there)
VIOLATIONS = {
    "layers": ("bot/media/video.py", "import bot.store"),  # api | media | store are independent
    "discord-only-in-adapter": ("bot/pipeline/delivery.py", "import discord"),
    "shipped-code-without-test-doubles": ("bot/pipeline/delivery.py", "import testkit.images"),
    "core-without-emulator-or-relay": ("bot/inbound/poller.py", "import emulator.server"),
    "emulator-shares-only-shared": ("emulator/render.py", "import bot.jobs"),
    "relay-shares-only-shared": ("relay/store.py", "import bot.store"),
    "shared-is-facts-only": ("shared/contract.py", "import relay.config"),
    "fake-discord-stands-alone": ("testkit/fake_discord/models.py", "import discord"),
    "no-cycles": ("bot/pipeline/scheduler.py", "import bot.pipeline.pipeline"),
}
CORE_IMPORTING_A_COG = ("bot/store/__init__.py", "import cogs.cards")


def copy_packages(to: Path) -> None:
    for package in PACKAGES:
        shutil.copytree(ROOT / package, to / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", to / "pyproject.toml")


def kept(where: Path, contract: str | None = None) -> bool:
    """Whether lint-imports passes in ``where`` (one contract, or all of them)."""
    only = ["--contract", contract] if contract else []
    run = subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", *only], cwd=where, capture_output=True, text=True, timeout=120
    )
    assert run.returncode in (0, 1), run.stdout + run.stderr  # 1: broken; anything else: no run
    return run.returncode == 0


def test_the_contracts_hold() -> None:
    assert kept(ROOT)


def test_every_contract_is_tried() -> None:
    ids = set(re.findall(r'^id = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), flags=re.M))
    assert ids == set(VIOLATIONS)


@pytest.mark.parametrize(
    ("contract", "violation"),
    [*VIOLATIONS.items(), ("discord-only-in-adapter", CORE_IMPORTING_A_COG)],
)
def test_each_contract_fails_on_a_violation(
    tmp_path: Path, contract: str, violation: tuple[str, str]
) -> None:
    copy_packages(tmp_path)
    assert kept(tmp_path, contract)  # the copy itself is clean
    module, line = violation
    path = tmp_path / module
    path.write_text(path.read_text() + f"\n{line}  # a deliberate violation\n")
    assert not kept(tmp_path, contract)
