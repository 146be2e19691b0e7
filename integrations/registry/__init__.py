"""Business-registry providers (工商信息) behind ``integrations.media.registry.RegistryLookup``:
``local`` (the ``registry_entries`` table, filled by ``importer``), ``tianyancha`` (the 天眼查
open API); ``build_registry`` picks one by ``settings.registry_provider``."""

from __future__ import annotations

from typing import Any

from integrations.media.registry import NoRegistry, RegistryLookup

PROVIDERS = ("none", "local", "tianyancha")


def build_registry(settings: Any, engine: Any = None) -> RegistryLookup:
    """The provider ``settings.registry_provider`` names (none|local|tianyancha); ``engine``
    (an async engine) is needed for "local". An unknown name is a configuration error."""
    from config import ConfigError

    kind = str(getattr(settings, "registry_provider", "none") or "none").strip().lower()
    if kind not in PROVIDERS:
        raise ConfigError(f"FIELDBOT_REGISTRY_PROVIDER must be one of {', '.join(PROVIDERS)},"
                          f" not {kind!r}")
    if kind == "local":
        if engine is None:
            raise ValueError("the local registry needs a database engine")
        from integrations.registry.local import LocalRegistry

        return LocalRegistry(engine)
    if kind == "tianyancha":
        from integrations.registry.tianyancha import TianyanchaRegistry

        return TianyanchaRegistry(settings.registry_token.get_secret_value(),
                                  settings.registry_api_base, settings.registry_timeout_s)
    return NoRegistry()
