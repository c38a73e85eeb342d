"""Config: the example validates, bad keys name their dotted path, env wins over the file."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

from civicbot.app.cli import main
from civicbot.config import ConfigError, describe_validation_error, load_settings
from civicbot.core.loader import discover, validate_plugin_config
from civicbot.policy.plugin_config import check_zone, zone_name

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "config.example.toml"


def test_example_config_is_valid_for_the_bot_and_every_plugin():
    settings = load_settings(EXAMPLE)
    assert validate_plugin_config(discover(builtin_only=True), settings.plugins) == []
    assert settings.bot.command_prefix == "!"


def test_example_documents_every_plugin():
    settings = load_settings(EXAMPLE)
    assert set(settings.plugins) == set(discover(builtin_only=True))


def test_every_built_in_plugin_is_registered_as_an_entry_point():
    """The built-ins are found the way third-party plugins are: a folder under plugins/ without
    an entry point in civicbot's own pyproject would silently never load."""
    registered = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["entry-points"]
    values = registered["civicbot.plugins"].values()
    for folder in (REPO / "plugins").iterdir():
        if (folder / "__init__.py").exists() and (folder / "plugin.py").exists():
            assert any(v.startswith(f"civicbot_plugins.{folder.name}.") for v in values), folder
    assert set(discover(builtin_only=True)) == set(registered["civicbot.plugins"])


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_bad_value_names_dotted_path_and_expectation(tmp_path, capsys):
    path = write(tmp_path, '[bot]\ntimezone = "Mars/Olympus"\n')
    assert main(["check-config", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "bot.timezone" in err
    assert "IANA time zone" in err
    assert "Traceback" not in err


def test_unknown_key_suggests_the_right_one(tmp_path, capsys):
    path = write(tmp_path, '[matrix]\nhomesrver = "https://m.example.org"\n')
    assert main(["check-config", "--config", str(path)]) == 2
    assert "matrix.homesrver: unknown key (did you mean 'homeserver'?)" in capsys.readouterr().err


def test_plugin_table_is_checked_by_the_plugins_model(tmp_path, capsys):
    path = write(tmp_path, '[plugins.ping]\nenabled = "sometimes"\n')
    assert main(["check-config", "--config", str(path)]) == 2
    assert "plugins.ping.enabled" in capsys.readouterr().err


def test_unknown_plugin_is_named(tmp_path, capsys):
    path = write(tmp_path, "[plugins.nosuch]\nenabled = true\n")
    assert main(["check-config", "--config", str(path)]) == 2
    assert "plugins.nosuch: no plugin called 'nosuch'" in capsys.readouterr().err


def test_broken_toml_is_reported_without_traceback(tmp_path, capsys):
    path = write(tmp_path, "[bot\n")
    assert main(["check-config", "--config", str(path)]) == 2
    assert "not valid TOML" in capsys.readouterr().err


def test_environment_overrides_the_file(tmp_path, monkeypatch):
    path = write(tmp_path, '[bot]\ncommand_prefix = "!"\n[matrix]\npassword = "in-file"\n')
    monkeypatch.setenv("CIVICBOT_BOT__COMMAND_PREFIX", "?")
    monkeypatch.setenv("CIVICBOT_MATRIX__PASSWORD", "from-env")
    settings = load_settings(path)
    assert settings.bot.command_prefix == "?"
    assert settings.matrix.password.get_secret_value() == "from-env"
    assert "from-env" not in repr(settings)  # secrets never print


def test_environment_override_is_validated_too(monkeypatch):
    monkeypatch.setenv("CIVICBOT_BOT__LOG_LEVEL", "LOUD")
    with pytest.raises(ConfigError) as err:
        load_settings(None)
    assert "bot.log_level" in str(err.value)


def test_run_refuses_bad_config_with_exit_2_and_no_traceback(tmp_path):
    path = write(tmp_path, '[bot]\ntimezone = "Nowhere/Special"\n')
    result = subprocess.run(
        [sys.executable, "-m", "civicbot", "run", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "bot.timezone" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_run_can_be_configured_from_the_environment_alone(tmp_path):
    """No file, everything in CIVICBOT_* variables (a container): validated the same way."""
    env = {
        **os.environ,
        "CIVICBOT_MATRIX__HOMESERVER": "https://matrix.example.org",
        "CIVICBOT_MATRIX__USER_ID": "@bot:example.org",
        "CIVICBOT_BOT__TIMEZONE": "Nowhere",
    }
    result = subprocess.run(
        [sys.executable, "-m", "civicbot", "run", "--config", str(tmp_path / "absent.toml")],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert result.returncode == 2
    assert "bot.timezone" in result.stderr
    assert "no such config file" not in result.stderr


@pytest.mark.parametrize("zone", ["Factory", "localtime", "posix/Europe/London", "right/UTC"])
def test_only_real_place_time_zones_are_accepted(tmp_path, zone):
    """Found in review: these load as zones but break date reading (or mean the server's)."""
    with pytest.raises(ConfigError, match=r"bot\.timezone"):
        load_settings(write(tmp_path, f'[bot]\ntimezone = "{zone}"\n'))
    assert load_settings(write(tmp_path, '[bot]\ntimezone = "America/Sao_Paulo"\n'))


def test_check_config_reports_every_section_in_one_run(tmp_path, capsys):
    """Issue 9: a bad [bot] key used to hide a bad [plugins.polls] one."""
    path = write(
        tmp_path,
        '[matrix]\nuser_id = "civicbot"\n[bot]\ntimezone = "Mars/Olympus"\n'
        "[plugins.polls]\nreminder_hours = -3\n[plugins.nosuch]\nenabled = true\n",
    )
    assert main(["check-config", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    for key in ("matrix.user_id", "bot.timezone", "plugins.polls.reminder_hours", "plugins.nosuch"):
        assert key in err, key


def test_check_config_checks_plugin_values_from_the_environment_too(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CIVICBOT_PLUGINS__POLLS__CREATE_LEVEL", "999")
    path = write(tmp_path, '[bot]\nlog_level = "LOUD"\n')
    assert main(["check-config", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "bot.log_level" in err
    assert "plugins.polls.create_level" in err


@pytest.mark.parametrize(
    ("url", "accepted"),
    [
        ("https://matrix.example.org", True),
        ("http://127.0.0.1:8448", True),
        ("http://localhost:8008/", True),
        ("http://[::1]:8008", True),
        ("http://matrix.example.org", False),
        ("http://127.0.0.1.example.org", False),
        ("http://10.0.0.5:8008", False),
        ("matrix.example.org", False),
        ("https://", False),
    ],
)
def test_plain_http_is_accepted_only_for_a_homeserver_on_this_machine(tmp_path, url, accepted):
    path = write(tmp_path, f'[matrix]\nhomeserver = "{url}"\n')
    if accepted:
        assert load_settings(path).matrix.homeserver == url.rstrip("/")
    else:
        with pytest.raises(ConfigError, match=r"matrix\.homeserver"):
            load_settings(path)


def test_date_languages_are_checked(tmp_path):
    assert load_settings(EXAMPLE).bot.languages == ["en"]
    assert load_settings(write(tmp_path, '[bot]\nlanguages = ["en", "fr"]\n')).bot.languages == [
        "en",
        "fr",
    ]
    with pytest.raises(ConfigError, match=r"bot\.languages.*klingon"):
        load_settings(write(tmp_path, '[bot]\nlanguages = ["en", "klingon"]\n'))


def test_a_refused_list_is_echoed_as_typed_not_as_python():
    # Issue 22 §5: "!config meetings.reminders 5s" answered "... (got ['5s'])".
    class Reminders(BaseModel):
        hours: list[int]

    with pytest.raises(ValidationError) as caught:
        Reminders.model_validate({"hours": ["5s", 3]})
    (problem,) = describe_validation_error(caught.value, prefix="meetings")
    assert "(got '5s')" in problem and "[" not in problem


@pytest.mark.parametrize(
    ("typed", "zone"),
    [
        ("Europe/London", "Europe/London"),
        ("europe/london", "Europe/London"),
        (" EUROPE/WARSAW ", "Europe/Warsaw"),
        ("america/new york", "America/New_York"),
        ("utc", "UTC"),
        ("Z", "UTC"),
    ],
)
def test_zone_names_are_read_whatever_their_case(typed, zone):
    # Issue 22 §5: "!config room.timezone europe/london" was refused, "!tz europe/warsaw" not.
    assert zone_name(typed) == zone
    assert check_zone(typed) == zone


@pytest.mark.parametrize("typed", ["Mars/Olympus", "posix/Europe/London", "localtime", ""])
def test_zones_that_are_no_place_are_refused(typed):
    with pytest.raises(ValueError, match="IANA time zone"):
        zone_name(typed)
