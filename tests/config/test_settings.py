"""Settings: env vars over a TOML file over defaults; platforms are all-or-nothing; the secret
key is generated once, kept private on disk, and never printed."""

from __future__ import annotations

import os
import stat

import pytest

from config import ConfigError, Settings, load_settings

WECOM = {"corp_id": "ww-corp", "agent_id": "1000002", "secret": "wecom-app-secret-xyz",
         "token": "wecom-token-xyz", "aes_key": "k" * 43}
FEISHU = {"app_id": "cli_abc", "app_secret": "feishu-secret-xyz",
          "verification_token": "feishu-vt-xyz", "encrypt_key": "feishu-ek-xyz"}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    """No FIELDBOT_* from the machine leaks into these tests."""
    for k in list(os.environ):
        if k.startswith("FIELDBOT_"):
            monkeypatch.delenv(k)


def write(tmp_path, text: str):
    p = tmp_path / "fieldbot.toml"
    p.write_text(text, encoding="utf-8")
    return p


def test_defaults_no_platforms(tmp_path):
    s = load_settings(data_dir=tmp_path)
    assert s.enabled_platforms() == []
    assert s.max_body_bytes == 64 * 1024
    assert s.replay_window_s == 300
    assert s.resolved_database_url() == f"sqlite:///{(tmp_path / 'fieldbot.db').as_posix()}"


def test_env_vars(monkeypatch, tmp_path):
    for k, v in WECOM.items():
        monkeypatch.setenv(f"FIELDBOT_WECOM_{k.upper()}", v)
    monkeypatch.setenv("FIELDBOT_REPLAY_WINDOW_S", "0")
    monkeypatch.setenv("FIELDBOT_DATABASE_URL", "sqlite:////tmp/x.db")
    s = load_settings(data_dir=tmp_path)
    assert s.enabled_platforms() == ["wecom"]
    assert s.platform_value("wecom", "corp_id") == "ww-corp"
    assert s.platform_value("wecom", "secret") == "wecom-app-secret-xyz"
    assert s.replay_window_s == 0
    assert s.resolved_database_url() == "sqlite:////tmp/x.db"


def test_toml_flat_keys_and_tables(tmp_path):
    path = write(tmp_path, f"""
port = 9090
feishu_app_id = "{FEISHU['app_id']}"
feishu_app_secret = "{FEISHU['app_secret']}"
feishu_verification_token = "{FEISHU['verification_token']}"
feishu_encrypt_key = "{FEISHU['encrypt_key']}"

[wecom]
corp_id = "ww-corp"
agent_id = 1000002
secret = "wecom-app-secret-xyz"
token = "wecom-token-xyz"
aes_key = "{'k' * 43}"

[rules]
stale_days = 30
""")
    s = load_settings(path, data_dir=tmp_path)
    assert s.port == 9090
    assert s.enabled_platforms() == ["wecom", "feishu"]
    # a bare TOML integer is accepted for an id that the platforms treat as text
    assert s.platform_value("wecom", "agent_id") == "1000002"
    assert s.platform_value("feishu", "encrypt_key") == "feishu-ek-xyz"
    assert s.rules == {"stale_days": 30}


def test_env_wins_over_toml(monkeypatch, tmp_path):
    path = write(tmp_path, 'port = 9090\n[wecom]\ncorp_id = "from-toml"\n'
                 + "".join(f'{k} = "{v}"\n' for k, v in WECOM.items() if k != "corp_id"))
    monkeypatch.setenv("FIELDBOT_PORT", "7070")
    monkeypatch.setenv("FIELDBOT_WECOM_CORP_ID", "from-env")
    s = load_settings(path, data_dir=tmp_path)
    assert s.port == 7070
    assert s.platform_value("wecom", "corp_id") == "from-env"
    # and explicit keyword overrides win over both
    assert load_settings(path, data_dir=tmp_path, port=6060).port == 6060


def test_two_loads_do_not_share_toml(tmp_path):
    a = load_settings(write(tmp_path, "port = 1111\n"), data_dir=tmp_path)
    b = load_settings(data_dir=tmp_path)
    assert (a.port, b.port) == (1111, 8080)


def test_missing_or_bad_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(write(tmp_path, "port = = 1"))


def test_half_configured_names_missing_env_var(monkeypatch, tmp_path):
    monkeypatch.setenv("FIELDBOT_DINGTALK_APP_KEY", "ding-key")
    monkeypatch.setenv("FIELDBOT_DINGTALK_TOKEN", "ding-token")
    with pytest.raises(ConfigError) as info:
        load_settings(data_dir=tmp_path)
    msg = str(info.value)
    assert "dingtalk" in msg
    for name in ("FIELDBOT_DINGTALK_APP_SECRET", "FIELDBOT_DINGTALK_ROBOT_CODE",
                 "FIELDBOT_DINGTALK_AES_KEY"):
        assert name in msg
    assert "FIELDBOT_DINGTALK_APP_KEY" not in msg
    assert "ding-token" not in msg  # the message names variables, never values


def test_half_configured_from_toml(tmp_path):
    path = write(tmp_path, '[feishu]\napp_id = "cli_abc"\n')
    with pytest.raises(ConfigError, match="FIELDBOT_FEISHU_APP_SECRET"):
        load_settings(path, data_dir=tmp_path)


def test_api_base_alone_does_not_enable(tmp_path):
    s = load_settings(data_dir=tmp_path, wecom_api_base="http://127.0.0.1:1")
    assert s.enabled_platforms() == []


def test_secret_generated_persisted_private_and_reused(tmp_path):
    data = tmp_path / "data"
    s1 = load_settings(data_dir=data)
    key = s1.secret()
    assert len(key) >= 32
    path = data / "secret_key"
    assert path.exists()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert s1.secret() == key
    # a second start (new Settings) reuses the same key: old card buttons keep working
    assert load_settings(data_dir=data).secret() == key
    # a different deployment gets a different key
    assert load_settings(data_dir=tmp_path / "other").secret() != key


def test_configured_secret_key_wins(tmp_path, monkeypatch):
    monkeypatch.setenv("FIELDBOT_SECRET_KEY", "configured-key-123")
    s = load_settings(data_dir=tmp_path)
    assert s.secret() == b"configured-key-123"
    assert not (tmp_path / "secret_key").exists()


def test_secrets_never_in_repr_or_str(monkeypatch, tmp_path):
    for k, v in WECOM.items():
        monkeypatch.setenv(f"FIELDBOT_WECOM_{k.upper()}", v)
    for k, v in FEISHU.items():
        monkeypatch.setenv(f"FIELDBOT_FEISHU_{k.upper()}", v)
    monkeypatch.setenv("FIELDBOT_DATABASE_URL", "postgresql://bot:pg-pass-xyz@127.0.0.1/fb")
    s = load_settings(data_dir=tmp_path, secret_key="top-secret-signing-key")
    generated = load_settings(data_dir=tmp_path / "g")
    generated_key = generated.secret().decode()
    texts = [repr(s), str(s), f"{s}", repr(generated), str(generated)]
    assert "postgresql://bot:***@127.0.0.1/fb" in repr(s)
    for t in texts:
        for secret in ("wecom-app-secret-xyz", "wecom-token-xyz", "k" * 43,
                       "feishu-secret-xyz", "feishu-vt-xyz", "feishu-ek-xyz",
                       "top-secret-signing-key", "pg-pass-xyz", generated_key):
            assert secret not in t, secret
    # the values are still there for the code that needs them
    assert s.platform_value("wecom", "token") == "wecom-token-xyz"
    assert s.resolved_database_url() == "postgresql://bot:pg-pass-xyz@127.0.0.1/fb"


def test_settings_class_directly(tmp_path):
    """``Settings`` (no TOML) is usable on its own, e.g. by tools."""
    s = Settings(data_dir=tmp_path)
    assert s.enabled_platforms() == []
