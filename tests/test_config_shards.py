"""SHARD_COUNT and SHARD_IDS, and `run --shard-ids/--shard-count` over them."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bot.__main__ import main
from bot.config import ConfigError, Settings, load_settings
from testkit.harness import ROOT


def test_no_shard_settings_means_discord_decides() -> None:
    settings = load_settings({})
    assert settings.shard_count is None and settings.shard_ids is None


@pytest.mark.parametrize(
    ("values", "count", "ids"),
    [
        ({"SHARD_COUNT": "4"}, 4, None),
        ({"SHARD_COUNT": "4", "SHARD_IDS": "0,1"}, 4, (0, 1)),
        ({"SHARD_COUNT": "4", "SHARD_IDS": " 3 , 1 "}, 4, (3, 1)),
        ({"SHARD_COUNT": "1", "SHARD_IDS": "0"}, 1, (0,)),
        ({"SHARD_COUNT": "2", "SHARD_IDS": ""}, 2, None),  # empty is unset, like every setting
    ],
)
def test_good_shard_settings(values: dict[str, str], count: int, ids: tuple[int, ...] | None) -> None:
    settings = load_settings(values)
    assert (settings.shard_count, settings.shard_ids) == (count, ids)


@pytest.mark.parametrize(
    ("values", "named", "says"),
    [
        ({"SHARD_COUNT": "0"}, ["SHARD_COUNT"], "'0' is not a whole number >= 1"),
        ({"SHARD_COUNT": "-2"}, ["SHARD_COUNT"], "whole number >= 1"),
        ({"SHARD_COUNT": "two"}, ["SHARD_COUNT"], "whole number >= 1"),
        ({"SHARD_IDS": "0,1"}, ["SHARD_COUNT"], "SHARD_IDS is set and needs the total number of shards"),
        ({"SHARD_COUNT": "4", "SHARD_IDS": "0,4"}, ["SHARD_IDS"], "4 not below SHARD_COUNT 4"),
        ({"SHARD_COUNT": "2", "SHARD_IDS": "5,2,1"}, ["SHARD_IDS"], "5, 2 not below SHARD_COUNT 2"),
        ({"SHARD_COUNT": "4", "SHARD_IDS": "0,,1"}, ["SHARD_IDS"], "comma-separated list"),
        ({"SHARD_COUNT": "4", "SHARD_IDS": "1,1"}, ["SHARD_IDS"], "distinct shard ids"),
        ({"SHARD_COUNT": "4", "SHARD_IDS": "-1"}, ["SHARD_IDS"], "whole numbers >= 0"),
        # both wrong: each named once (the missing count is not said twice)
        ({"SHARD_COUNT": "x", "SHARD_IDS": "y"}, ["SHARD_COUNT", "SHARD_IDS"], "is not"),
        ({"SHARD_COUNT": "0", "SHARD_IDS": "0"}, ["SHARD_COUNT"], "whole number >= 1"),
    ],
)
def test_bad_shard_settings_are_named(values: dict[str, str], named: list[str], says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(values)
    assert says in str(caught.value)
    assert sorted(p.split(":")[0] for p in caught.value.problems) == sorted(named)


def test_shard_problems_come_with_the_others() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"SHARD_COUNT": "2", "SHARD_IDS": "2", "LOG_LEVEL": "chatty"})
    assert [p.split(":")[0] for p in caught.value.problems] == ["LOG_LEVEL", "SHARD_IDS"]


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[Settings]:
    """`python -m bot run ...` up to the bot's start: the settings it would run with."""
    from bot.discord_adapter import runner

    seen: list[Settings] = []

    async def run_bot(settings: Settings) -> int:
        seen.append(settings)
        return 0

    monkeypatch.setattr(runner, "run_bot", run_bot)
    monkeypatch.setattr("bot.__main__.configure_logging", lambda level: None)
    for name in ("SHARD_COUNT", "SHARD_IDS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DISCORD_TOKEN", "t")
    return seen


def test_the_command_line_overrides_the_environment(
    started: list[Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHARD_COUNT", "8")
    monkeypatch.setenv("SHARD_IDS", "6,7")
    assert main(["run", "--shard-ids", "0,1", "--shard-count", "4"]) == 0
    assert main(["run", "--shard-ids", "2"]) == 0  # the count still from SHARD_COUNT
    assert main(["run"]) == 0
    assert [(s.shard_count, s.shard_ids) for s in started] == [(4, (0, 1)), (8, (2,)), (8, (6, 7))]


def test_the_command_line_is_checked_like_the_environment(
    started: list[Settings], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["run", "--shard-ids", "0,4", "--shard-count", "4"])
    assert exited.value.code == 2
    assert "SHARD_IDS: 4 not below SHARD_COUNT 4" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["run", "--shard-ids", "0,1"])  # no count anywhere
    assert "SHARD_COUNT: missing" in capsys.readouterr().err
    for bad, said in ((["--shard-count", "0"], "whole number >= 1"), (["--shard-ids", "a"], "shard ids")):
        with pytest.raises(SystemExit) as exited:
            main(["run", *bad])
        assert exited.value.code == 2
        err = capsys.readouterr().err
        assert f"argument {bad[0]}: {bad[1]!r} is not" in err and said in err
    assert started == []


def test_help_still_imports_no_discord_py() -> None:
    code = (
        "import sys\nfrom bot.__main__ import main\n"
        "try:\n    main(['run', '--help'])\nexcept SystemExit:\n    pass\n"
        "assert 'discord' not in sys.modules, 'discord.py imported by --help'\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0, out.stderr
    assert "--shard-ids IDS" in out.stdout and "--shard-count N" in out.stdout
