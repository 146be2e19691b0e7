"""What the job worker hands to the media jobs: downloads through the platform adapters, the
engines run in a thread pool (never on the event loop), the file store and the registry.

Handlers use this object through ``handlers.media.MediaServices`` (a Protocol), so they never
import integrations."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import Executor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bot.event import Event
from bot.platform import MediaError
from integrations.media.asr import Transcript, get_asr_engine, transcribe_bytes
from integrations.media.config import MediaConfig
from integrations.media.ocr import OCRResult, get_ocr_engine, ocr_bytes
from integrations.media.registry import NoRegistry, RegistryLookup
from storage.files import FileStore

log = logging.getLogger(__name__)

TOO_BIG = "文件过大，无法处理。/ The file is too large for me to process."
EXPIRED = ("无法下载这条消息的文件（可能已过期），请重新发送。"
           "/ I could not download the file; please resend.")


class MediaServices:
    def __init__(self, config: MediaConfig, adapters: dict[str, Any], data_dir: Path,
                 executor: Executor | None = None, registry: RegistryLookup | None = None,
                 asr_engine=None, ocr_engine=None) -> None:
        self.config = config
        self.adapters = adapters
        self.files = FileStore(Path(data_dir) / "files", max_bytes=config.files_max_bytes,
                               max_file_bytes=config.media_max_bytes)
        self.executor = executor or ThreadPoolExecutor(max_workers=config.threads(),
                                                       thread_name_prefix="media")
        self.registry = registry or NoRegistry()
        self._asr = asr_engine
        self._ocr = ocr_engine
        self.matchers: dict = {}

    @property
    def asr(self):
        if self._asr is None:
            self._asr = get_asr_engine(self.config.asr_engine, self.config.asr_model,
                                       self.config.model_cache, threads=self.config.threads())
        return self._asr

    @property
    def ocr_engine(self):
        if self._ocr is None:
            self._ocr = get_ocr_engine(self.config.ocr_engine)
        return self._ocr

    async def run(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    async def download(self, event: Event) -> bytes:
        """The event's media through its platform adapter, capped; ``MediaError`` with a
        ``user_message`` on failure."""
        adapter = self.adapters.get(event.platform)
        if adapter is None or event.media is None:
            err = MediaError(f"no adapter/media for {event.platform}")
            err.user_message = EXPIRED  # type: ignore[attr-defined]
            raise err
        try:
            return await adapter.download_media(event.media, self.config.media_max_bytes)
        except MediaError as exc:
            if not getattr(exc, "user_message", None):
                exc.user_message = TOO_BIG if "large" in str(exc) else EXPIRED  # type: ignore
            raise

    async def ocr(self, data: bytes) -> OCRResult:
        return await self.run(ocr_bytes, data, self.ocr_engine, self.config.max_image_pixels)

    async def transcribe(self, data: bytes, hot_words: list[str] | None = None) -> Transcript:
        return await self.run(transcribe_bytes, data, self.asr, hot_words,
                              self.config.max_audio_s)

    async def store(self, data: bytes, ext: str = "") -> str:
        return await self.run(self.files.put, data, ext)

    def close(self) -> None:
        if isinstance(self.executor, ThreadPoolExecutor):
            self.executor.shutdown(wait=False, cancel_futures=True)
