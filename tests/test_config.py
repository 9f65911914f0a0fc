from pathlib import Path

import pytest

from bot.config import ConfigError, Secret, load_settings, read_environment
from bot.pipeline.delivery import WORKERS


def test_defaults_need_nothing() -> None:
    settings = load_settings({})
    assert settings.uses_emulator
    assert settings.doitong_plan == "free"
    assert settings.plan.concurrent_jobs == 1
    assert settings.discord_api_base == "https://discord.com/api/v10"
    assert settings.database_path == Path("data/animate-bot.db")


def test_every_bad_setting_is_named_in_one_error() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(
            {
                "DOITONG_PLAN": "gold",
                "WEBHOOK_PORT": "99999",
                "DISCORD_API_BASE": "not a url",
                "LOG_LEVEL": "chatty",
                "DOITONG_TIMEOUT": "-1",
            }
        )
    message = str(caught.value)
    for name in ("DOITONG_PLAN", "WEBHOOK_PORT", "DISCORD_API_BASE", "LOG_LEVEL", "DOITONG_TIMEOUT"):
        assert name in message
    assert len(caught.value.problems) == 5
    assert "free, starter, pro, enterprise" in message


def test_bot_needs_a_token() -> None:
    with pytest.raises(ConfigError, match="DISCORD_TOKEN: missing"):
        load_settings({}, require_discord=True)


def test_secrets_never_shown() -> None:
    settings = load_settings(
        {
            "DISCORD_TOKEN": "tok-SECRET-1",
            "DOITONG_API_KEY": "key-SECRET-2",
            "DOITONG_WEBHOOK_SECRET": "whs-SECRET-3",
        }
    )
    shown = repr(settings) + str(settings)
    assert "SECRET" not in shown
    assert settings.doitong_api_key == Secret("key-SECRET-2")
    assert settings.doitong_api_key is not None and settings.doitong_api_key.reveal() == "key-SECRET-2"


def test_webhook_url_needs_its_secret_and_secret_is_not_echoed() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(
            {"PUBLIC_WEBHOOK_URL": "https://bot.example.org/webhooks/doitong", "DOITONG_API_KEY": "k-xyz"}
        )
    assert "DOITONG_WEBHOOK_SECRET" in str(caught.value)
    assert "k-xyz" not in str(caught.value)


def test_environment_beats_dotenv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("DOITONG_PLAN=pro\nLOG_LEVEL=DEBUG\n")
    monkeypatch.setenv("DOITONG_PLAN", "starter")
    settings = load_settings(read_environment(env_file))
    assert settings.doitong_plan == "starter"
    assert settings.log_level == "DEBUG"


def test_the_owner_sets_the_enterprise_numbers() -> None:
    settings = load_settings({"DOITONG_PLAN": "enterprise", "ENTERPRISE_LIMITS": "1200/80/50000"})
    assert (settings.plan.requests_per_minute, settings.plan.concurrent_jobs) == (1200, 80)
    assert settings.plans["enterprise"].jobs_per_day == 50_000 and settings.plans["pro"].concurrent_jobs == 10
    assert load_settings({"ENTERPRISE_LIMITS": "600/50/unlimited"}).plans["enterprise"].jobs_per_day is None
    for bad in ("600/50", "0/5/10", "a/b/c", "600/-1/unlimited"):
        with pytest.raises(ConfigError, match="ENTERPRISE_LIMITS"):
            load_settings({"ENTERPRISE_LIMITS": bad})


def test_delivery_workers_default_to_the_pipelines_and_are_bounded() -> None:
    assert load_settings({}).delivery_workers == WORKERS
    assert load_settings({"DELIVERY_WORKERS": "1"}).delivery_workers == 1
    for bad in ("0", "33", "-1", "four", "2.5"):
        with pytest.raises(ConfigError, match="DELIVERY_WORKERS"):
            load_settings({"DELIVERY_WORKERS": bad})


def test_the_store_is_sqlite_unless_a_database_url_is_set() -> None:
    assert load_settings({}).database == Path("data/animate-bot.db")
    assert load_settings({"DATABASE_PATH": "/data/x.db"}).database == Path("/data/x.db")
    url = "postgresql://bot:pw-SECRET@db.example:5432/animate"
    settings = load_settings({"DATABASE_PATH": "/data/x.db", "DATABASE_URL": url})
    assert settings.database == url  # the URL wins over the path
    assert "pw-SECRET" not in repr(settings) + str(settings) + settings.database_shown
    assert settings.database_shown == "postgresql://bot:********@db.example:5432/animate"


def test_a_database_url_is_postgresql_and_is_not_echoed_when_wrong() -> None:
    with pytest.raises(ConfigError, match="DATABASE_URL: not a postgresql:// URL") as caught:
        load_settings({"DATABASE_URL": "mysql://bot:pw-SECRET@db/animate"})
    assert "pw-SECRET" not in str(caught.value)
    assert load_settings({"DATABASE_URL": "postgres:///animate?password=pw-SECRET"}).database_shown == (
        "postgres:///animate?password=********"
    )


def test_image_link_networks_and_the_blocklist_file_are_checked_at_start(tmp_path: Path) -> None:
    listing = tmp_path / "blocklist.txt"
    listing.write_text("troll\n")
    s = load_settings(
        {"IMAGE_URL_ALLOWED_NETWORKS": "10.0.5.0/24, fd00::/8", "PROMPT_BLOCKLIST_FILE": str(listing)}
    )
    assert [str(n) for n in s.image_url_allowed_networks] == ["10.0.5.0/24", "fd00::/8"]
    assert s.prompt_blocklist_file == listing
    with pytest.raises(ConfigError) as caught:
        load_settings(
            {"IMAGE_URL_ALLOWED_NETWORKS": "10.0.0.0/33", "PROMPT_BLOCKLIST_FILE": str(tmp_path / "none")}
        )
    assert "IMAGE_URL_ALLOWED_NETWORKS" in str(caught.value) and "PROMPT_BLOCKLIST_FILE" in str(caught.value)
