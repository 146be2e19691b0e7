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
    "wecom_aibot": ("bot_id", "secret"),
}
# Over a long connection nothing is signed or encrypted by us: the webhook's token and keys
# are not needed (PROTOCOLS §9).
LONGCONN_FIELDS: dict[tuple[str, str], tuple[str, ...]] = {
    ("dingtalk", "stream"): ("app_key", "app_secret", "robot_code"),
    ("feishu", "ws"): ("app_id", "app_secret"),
}
MODES = {"dingtalk": ("webhook", "stream"), "feishu": ("webhook", "ws")}

REAL_API_BASES = {
    "wecom": "https://qyapi.weixin.qq.com",
    "dingtalk": "https://api.dingtalk.com",
    "feishu": "https://open.feishu.cn",
    "wecom_aibot": "wss://openws.work.weixin.qq.com",
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
    # deferred jobs (OCR, speech): at most this many run at once across every worker process
    # (FIELDBOT_JOBS_GLOBAL_CAP), at most this many for one person (FIELDBOT_JOBS_PER_USER_CAP)
    jobs_global_cap: int = 4
    jobs_per_user_cap: int = 2
    # a worker whose resident memory passes this (MB) finishes its running jobs and is
    # replaced by a fresh process (FIELDBOT_WORKER_MAX_RSS_MB; 0 = no ceiling)
    worker_max_rss_mb: int = 1536
    # a check-in farther than this from the customer is marked, never refused (issue 16)
    checkin_radius_m: float = 500.0
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

    # -- long connections (issue 14): no public URL needed
    dingtalk_mode: str = "webhook"  # FIELDBOT_DINGTALK_MODE=webhook|stream
    feishu_mode: str = "webhook"  # FIELDBOT_FEISHU_MODE=webhook|ws
    # DingTalk card taps in webhook mode: "stream" (default) = cards are created with
    # callbackType STREAM and their taps come over a Stream connection that subscribes to card
    # callbacks only; "http" = callbackType HTTP, which DingTalk calls back only through a
    # registered callback route whose format is not documented (PROTOCOLS §9.1)
    dingtalk_card_callbacks: str = "stream"
    wecom_aibot_bot_id: str = ""  # WeCom 智能机器人 → API 模式 → 使用长连接
    wecom_aibot_secret: SecretStr = SecretStr("")
    wecom_aibot_ws_url: str = REAL_API_BASES["wecom_aibot"]
    # seconds between heartbeats; 0 = each platform's own (DingTalk 60, Feishu the server's,
    # WeCom AI bot 30). A connection quiet for 3 intervals is replaced.
    longconn_ping_s: float = 0.0

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
    # GET /metrics (Prometheus): with a token, "Authorization: Bearer <token>"; without one,
    # loopback clients only
    metrics_token: SecretStr = SecretStr("")
    log_format: str = "text"  # FIELDBOT_LOG_FORMAT=json: one JSON object per log line

    # -- business registry after OCR (issue 16 §4): FIELDBOT_REGISTRY_PROVIDER=none|local|
    # tianyancha; "local" reads the registry_entries table (fieldbot registry-import)
    registry_provider: str = "none"
    registry_api_base: str = "https://open.api.tianyancha.com"
    registry_token: SecretStr = SecretStr("")
    registry_timeout_s: float = 3.0

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

    def mode(self, platform: str) -> str:
        """How ``platform``'s events arrive: "webhook" or its long connection."""
        modes = MODES.get(platform)
        if modes is None:
            return "longconn" if platform == "wecom_aibot" else "webhook"
        value = str(getattr(self, f"{platform}_mode") or "webhook").strip().lower()
        if value not in modes:
            raise ConfigError(f"FIELDBOT_{platform.upper()}_MODE must be one of"
                              f" {', '.join(modes)}, not {value!r}")
        return value

    def enabled_platforms(self) -> list[str]:
        """Platforms with a complete set of credentials; raise on a half-configured one."""
        enabled = []
        for platform, all_names in PLATFORM_FIELDS.items():
            names = LONGCONN_FIELDS.get((platform, self.mode(platform)), all_names)
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
