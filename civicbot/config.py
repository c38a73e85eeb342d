"""Bot-wide settings: a TOML file, overridden key by key from ``CIVICBOT_<SECTION>__<KEY>``.

Plugins validate their own ``[plugins.<name>]`` table with their own model (see
:mod:`civicbot.core.plugin`); here that table is kept as plain data so a plugin that is not
installed does not make the whole file invalid.
"""

from __future__ import annotations

import difflib
import functools
import ipaddress
import tomllib
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from civicbot.policy.plugin_config import LimitsConfig, WebConfig, check_zone


class ConfigError(Exception):
    """A configuration problem, already phrased for the person running the bot."""

    def __init__(self, problems: list[str], raw: dict[str, Any] | None = None):
        self.problems = problems
        # The file and environment as read, when only the values were wrong: enough for
        # check-config to go on and check the plugin tables too, so one run reports everything.
        self.raw = raw
        super().__init__("\n".join(problems))


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MatrixSettings(_Section):
    """How to reach and log in to the homeserver."""

    homeserver: str = ""
    user_id: str = ""
    password: SecretStr = SecretStr("")
    access_token: SecretStr = SecretStr("")
    device_name: str = "civicbot"
    # Replace cross-signing keys on the homeserver that are not the ones in bot.data_dir (made
    # by another client, or ours lost). Off: the bot warns and stays unsigned, since everyone
    # who verified it would see its identity change (civicbot.transport.crosssigning).
    cross_signing_reset: bool = False
    # An encrypted message whose key has not come after this long is given up on and its
    # sender told once (civicbot.transport.undecryptable). Keys usually come within seconds.
    undecryptable_timeout: float = Field(60.0, ge=5, le=3600)
    # End-to-end encryption: the bot reads and writes encrypted rooms as a full member. Its
    # keys live in bot.data_dir/crypto/, with the device id in session.json (kept together).
    encryption: bool = True
    # With encryption off, in an encrypted room the bot says once that it can't read it, then
    # leaves ("leave") or stays quiet there ("stay").
    unencrypted_rooms_policy: Literal["leave", "stay"] = "leave"

    @field_validator("homeserver")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value:
            return value
        try:
            url = urlsplit(value)
            host = url.hostname or ""
        except ValueError:
            url, host = urlsplit(""), ""
        if url.scheme not in ("http", "https") or not host:
            raise ValueError("expected a URL starting with https:// (or http:// on loopback)")
        # Plain http sends the bot's password and every message in the clear: only a homeserver
        # on this machine may be reached that way.
        if url.scheme == "http" and not _is_loopback(host):
            raise ValueError(
                "expected https:// (plain http:// is accepted only for a homeserver on this "
                "machine: localhost, 127.0.0.1 or [::1])"
            )
        return value.rstrip("/")

    @field_validator("user_id")
    @classmethod
    def _user_id(cls, value: str) -> str:
        if value and not (value.startswith("@") and ":" in value):
            raise ValueError("expected a full Matrix id like '@civicbot:example.org'")
        return value


def _is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@functools.cache
def _date_languages() -> frozenset[str]:
    from dateparser.data.languages_info import language_order

    return frozenset(language_order)


class BotSettings(_Section):
    """How the bot behaves in every room, unless a room overrides it."""

    command_prefix: str = Field("!", min_length=1, max_length=3)
    data_dir: Path = Path("./data")
    timezone: str = "Europe/London"
    allowed_inviters: list[str] = Field(default_factory=list)
    log_level: str = "INFO"
    # Languages residents write dates in. Only these are loaded: trying all ~200 on text that is
    # not a date took seconds on the first failure after a start.
    languages: list[str] = Field(default_factory=lambda: ["en"], min_length=1)
    # Plugins to load by import path ("package.module:PluginClass") without packaging them.
    extra_plugins: list[str] = Field(default_factory=list)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return check_zone(value)

    @field_validator("languages")
    @classmethod
    def _languages(cls, value: list[str]) -> list[str]:
        unknown = [code for code in value if code not in _date_languages()]
        if unknown:
            raise ValueError(
                f"expected language codes like 'en', 'fr' or 'de'; unknown: {', '.join(unknown)}"
            )
        return list(dict.fromkeys(value))

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        levels = ("DEBUG", "INFO", "WARNING", "ERROR")
        if value.upper() not in levels:
            raise ValueError(f"expected one of {', '.join(levels)}")
        return value.upper()


class Settings(BaseSettings):
    """Everything in the config file. Environment variables win over the file."""

    model_config = SettingsConfigDict(
        env_prefix="CIVICBOT_",
        env_nested_delimiter="__",
        extra="forbid",
        case_sensitive=False,
    )

    matrix: MatrixSettings = Field(default_factory=lambda: MatrixSettings())
    bot: BotSettings = Field(default_factory=lambda: BotSettings())
    # Flood limits the core enforces; rooms may override some (``!config limits.<key>``).
    limits: LimitsConfig = Field(default_factory=lambda: LimitsConfig())
    # The public pages (off unless web.listen and web.public_url are set); rooms opt in.
    web: WebConfig = Field(default_factory=lambda: WebConfig())
    plugins: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @field_validator("web")
    @classmethod
    def _rooms_opt_in(cls, value: WebConfig) -> WebConfig:
        if value.public:
            raise ValueError(
                "public is for each room's moderators to choose (!config web.public true)"
            )
        return value

    @property
    def has_homeserver(self) -> bool:
        return bool(self.matrix.homeserver and self.matrix.user_id)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return _sources(settings_cls, init_settings, env_settings)


class _RawSettings(BaseSettings):
    """The same file and environment as :class:`Settings`, values unchecked: read after the
    typed model failed, so the plugin tables can still be checked in the same run."""

    model_config = SettingsConfigDict(
        env_prefix="CIVICBOT_", env_nested_delimiter="__", extra="ignore", case_sensitive=False
    )

    bot: dict[str, Any] = Field(default_factory=dict)
    plugins: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return _sources(settings_cls, init_settings, env_settings)


def _sources(
    settings_cls: type[BaseSettings],
    init_settings: PydanticBaseSettingsSource,
    env_settings: PydanticBaseSettingsSource,
) -> tuple[PydanticBaseSettingsSource, ...]:
    sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
    toml_file = settings_cls.model_config.get("toml_file")
    if toml_file:
        sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_file))
    return tuple(sources)


def load_settings(path: Path | str | None, **overrides: Any) -> Settings:
    """Read ``path`` (if given) plus the environment; raise :class:`ConfigError` when invalid."""
    config_cls: type[Settings] = Settings
    raw_cls: type[_RawSettings] = _RawSettings
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError([f"{path}: no such config file (copy config.example.toml to start)"])
        try:
            tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError([f"{path}: not valid TOML: {exc}"]) from None

        class FileSettings(Settings):
            model_config = SettingsConfigDict(toml_file=path)

        class RawFileSettings(_RawSettings):
            model_config = SettingsConfigDict(toml_file=path)

        config_cls, raw_cls = FileSettings, RawFileSettings
    try:
        return config_cls(**overrides)
    except ValidationError as exc:
        problems = describe_validation_error(exc, model=Settings)
    try:
        raw: dict[str, Any] | None = raw_cls(**overrides).model_dump()
    except ValidationError:  # the plugin tables themselves are malformed: already reported
        raw = None
    raise ConfigError(problems, raw)


def _typed(value: Any) -> str:
    """A value as it was typed, for a message people read: ``'5s'``, ``'5s', '1h'``, ``12``;
    never a Python list or repr."""
    if isinstance(value, list | tuple | set | frozenset):
        return ", ".join(_typed(item) for item in value) or "nothing"
    return f"'{value}'" if isinstance(value, str) else str(value)


def describe_validation_error(
    exc: ValidationError, *, prefix: str = "", model: type[BaseModel] | None = None
) -> list[str]:
    """Turn pydantic's errors into ``dotted.path: what was expected (got ...)`` lines."""
    problems = []
    for error in exc.errors():
        path = ".".join(str(part) for part in (prefix, *error["loc"]) if part != "")
        if error["type"] == "extra_forbidden":
            hint = _suggest(error["loc"], model)
            problems.append(f"{path}: unknown key{hint}")
            continue
        message = error["msg"].removeprefix("Value error, ")
        got = error.get("input")
        shown = "" if isinstance(got, dict | SecretStr) or got is None else f" (got {_typed(got)})"
        problems.append(f"{path}: {message}{shown}")
    return problems


def _suggest(loc: tuple[Any, ...], model: type[BaseModel] | None) -> str:
    """Name the nearest known key, for typos like ``homesrver``."""
    current: Any = model
    for part in loc[:-1]:
        field = getattr(current, "model_fields", {}).get(part)
        current = field.annotation if field else None
    known = list(getattr(current, "model_fields", {}))
    close = difflib.get_close_matches(str(loc[-1]), known, n=1)
    if close:
        return f" (did you mean '{close[0]}'?)"
    return f" (known keys: {', '.join(known)})" if known else ""
