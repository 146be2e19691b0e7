"""FieldBot settings: env vars ``FIELDBOT_*`` over an optional TOML file over defaults.

A platform with no credentials at all is simply not mounted; one with some but not all of
its required variables is a start-up error that names what is missing, because a silently
half-mounted platform would drop its users' messages.
"""

from __future__ import annotations

import os
import re
import secrets
import tomllib
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

PLATFORM_FIELDS: dict[str, tuple[str, ...]] = {
    "wecom": ("corp_id", "agent_id", "secret", "token", "aes_key"),
    "dingtalk": ("app_key", "app_secret", "robot_code", "token", "aes_key"),
    "feishu": ("app_id", "app_secret", "verification_token", "encrypt_key"),
}

REAL_API_BASES = {
    "wecom": "https://qyapi.weixin.qq.com",
    "dingtalk": "https://api.dingtalk.com",
    "feishu": "https://open.feishu.cn",
}


class ConfigError(ValueError):
    """A configuration problem the operator must fix before the bot can start."""


class _TomlSource(PydanticBaseSettingsSource):
    def __init__(self, settings_cls: type[BaseSettings], data: dict[str, Any]):
        super().__init__(settings_cls)
        self._data = data

    def get_field_value(self, field, field_name):  # pragma: no cover - unused by pydantic
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._data)


class Settings(BaseSettings):
    # TOML ``agent_id = 1000002`` is a number; the platforms treat ids as text
    model_config = SettingsConfigDict(env_prefix="FIELDBOT_", extra="ignore",
                                      coerce_numbers_to_str=True)

    database_url: str = ""
    data_dir: Path = Path("data")
    host: str = "127.0.0.1"
    port: int = 8080
    secret_key: SecretStr | None = None
    log_level: str = "INFO"

    replay_window_s: int = 300
    max_body_bytes: int = 64 * 1024
    handler_budget_s: float = 0.8
    outbox_max_attempts: int = 12
    outbox_lease_s: int = 60  # a row claimed by a process that died is resent after this
    workers: int = 1  # `fieldbot serve`: worker processes beside the web process (0 = one)
    chat_buffer_days: int = 7  # FIELDBOT_CHAT_BUFFER_DAYS: how long one-tap sync can look back
    # FIELDBOT_INBOX_KEEP_DAYS: handled callbacks (and their dedupe keys) are deleted after
    # this; a platform retry older than that would run again. 0 keeps them forever
    inbox_keep_days: int = 7
    # FIELDBOT_OUTBOX_KEEP_DAYS: sent messages are deleted after this, except those an open
    # approval card still needs for its next update; 0 keeps them forever
    outbox_keep_days: int = 30

    wecom_corp_id: str = ""
    wecom_agent_id: str = ""
    wecom_secret: SecretStr = SecretStr("")
    wecom_token: SecretStr = SecretStr("")
    wecom_aes_key: SecretStr = SecretStr("")
    wecom_api_base: str = REAL_API_BASES["wecom"]

    dingtalk_app_key: str = ""
    dingtalk_app_secret: SecretStr = SecretStr("")
    dingtalk_robot_code: str = ""
    dingtalk_token: SecretStr = SecretStr("")
    dingtalk_aes_key: SecretStr = SecretStr("")
    dingtalk_api_base: str = REAL_API_BASES["dingtalk"]
    dingtalk_oapi_base: str = "https://oapi.dingtalk.com"
    dingtalk_card_template_id: str = "fieldbot.general"  # a card template of your DingTalk app

    feishu_app_id: str = ""
    feishu_app_secret: SecretStr = SecretStr("")
    feishu_verification_token: SecretStr = SecretStr("")
    feishu_encrypt_key: SecretStr = SecretStr("")
    feishu_api_base: str = REAL_API_BASES["feishu"]

    # -- the mini-app (issue 6): workbench pages under /app, REST API under /api/v1
    web_enabled: bool = True
    web_demo_login: bool = False  # the demo's "sign in as…" picker; never on in production
    web_session_hours: int = 12  # a signed session cookie older than this is refused
    web_cookie_secure: bool = False  # set true behind HTTPS (the platforms' H5 pages are)
    web_max_upload_bytes: int = 20 * 1024 * 1024  # photos, voice, CSV/XLSX imports
    web_max_form_bytes: int = 1024 * 1024  # every other page and API request
    web_public_url: str = ""  # https://fieldbot.example.com: OAuth redirects come back here
    dingtalk_corp_id: str = ""  # DingTalk H5 sign-in (免登) asks the container with it
    api_tokens: list[SecretStr] = Field(default_factory=list)  # REST API bearer tokens

    rules: dict[str, Any] = Field(default_factory=dict)

    toml_data: ClassVar[dict[str, Any]] = {}

    @classmethod
    def settings_customise_sources(
        cls, settings_cls, init_settings, env_settings, dotenv_settings, file_secret_settings
    ):
        toml = cls.toml_data
        return (init_settings, env_settings, _TomlSource(settings_cls, toml), file_secret_settings)

    def __repr_args__(self):
        """Secrets are SecretStr already; the database URL may carry a password too."""
        for name, value in super().__repr_args__():
            if name == "database_url" and value:
                value = _mask_url(value)
            yield name, value

    # -- derived -----------------------------------------------------------------------
    def platform_value(self, platform: str, name: str) -> str:
        value = getattr(self, f"{platform}_{name}")
        return value.get_secret_value() if isinstance(value, SecretStr) else str(value)

    def enabled_platforms(self) -> list[str]:
        """Platforms with a complete set of credentials; raise on a half-configured one."""
        enabled = []
        for platform, names in PLATFORM_FIELDS.items():
            present = [n for n in names if self.platform_value(platform, n)]
            if not present:
                continue
            missing = [n for n in names if n not in present]
            if missing:
                env = ", ".join(f"FIELDBOT_{platform.upper()}_{n.upper()}" for n in missing)
                raise ConfigError(f"{platform} is half-configured: missing {env}")
            enabled.append(platform)
        return enabled

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'fieldbot.db').as_posix()}"

    def secret(self) -> bytes:
        """The key that signs card payloads and cookies; generated and kept on first run."""
        if self.secret_key is not None and self.secret_key.get_secret_value():
            return self.secret_key.get_secret_value().encode()
        path = self.data_dir / "secret_key"
        if path.exists():
            return path.read_text().strip().encode()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        key = secrets.token_urlsafe(48)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process created it first: use theirs
            return path.read_text().strip().encode()
        with os.fdopen(fd, "w") as fh:
            fh.write(key)
        self.secret_key = SecretStr(key)
        return key.encode()


def _mask_url(url: str) -> str:
    """``scheme://user:***@host/db``: the password never reaches a log line."""
    return re.sub(r"^([a-zA-Z0-9+.-]+://[^:/@]*:)[^@]*@", r"\1***@", url)


def _flatten_toml(data: dict[str, Any]) -> dict[str, Any]:
    """Accept both flat keys and ``[wecom] corp_id = …`` tables; ``[rules]`` stays a table."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if key in PLATFORM_FIELDS and isinstance(value, dict):
            for sub, v in value.items():
                flat[f"{key}_{sub}"] = v
        else:
            flat[key] = value
    return flat


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    data: dict[str, Any] = {}
    if config_file:
        path = Path(config_file)
        if not path.exists():
            raise ConfigError(f"config file not found: {path}")
        try:
            data = _flatten_toml(tomllib.loads(path.read_text(encoding="utf-8")))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
    cls = type("Settings", (Settings,), {"toml_data": data,
                                         "__annotations__": {"toml_data": ClassVar[dict]}})
    settings = cls(**overrides)
    settings.enabled_platforms()  # fail fast on a half-configured platform
    return settings
