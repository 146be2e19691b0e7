"""Errors of the media pipeline that carry a message for the rep.

They subclass ``bot.platform.MediaError`` so that handlers (which never import integrations)
can catch them and show ``user_message``."""

from __future__ import annotations

from bot.platform import MediaError


class BadMedia(MediaError):
    """Input we will not process: the rep gets ``user_message``; retrying will not help."""

    def __init__(self, message: str, user_message: str):
        super().__init__(message)
        self.user_message = user_message


class BadAudio(BadMedia):
    pass


class BadImage(BadMedia):
    pass


class EngineUnavailable(MediaError):
    """An engine or its model is not installed (see ``fieldbot models``)."""

    user_message = ("识别服务暂不可用，请联系管理员。"
                    "/ Recognition is not available on this server; please tell the admin.")
