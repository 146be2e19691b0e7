"""OCR engines behind one interface, and the rule that picks the company name on a sign.

``RapidOCREngine`` (default): PP-OCR ONNX models shipped inside the ``rapidocr`` wheel, one
lazy instance per process, photos resized to 1280 px on the long side. ``TesseractEngine``
(alternative): grayscale + autocontrast, OCR the image *and its inverse* (light text on dark
boards), ``chi_sim``, psm 6, 1600 px — the best Tesseract setting measured (MEDIA.md §2).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Protocol

from PIL import Image, ImageOps

from integrations.media.errors import EngineUnavailable
from integrations.media.images import DEFAULT_MAX_PIXELS, Photo, open_photo


@dataclass
class OCRLine:
    text: str
    score: float = 1.0


@dataclass
class OCRResult:
    lines: list[OCRLine]
    engine: str
    seconds: float = 0.0
    photo: Photo | None = field(default=None, repr=False)

    @property
    def text(self) -> str:
        return "\n".join(line.text for line in self.lines)

    @property
    def name(self) -> str:
        return pick_sign_name(self.lines)


class OCREngine(Protocol):
    name: str
    max_side: int

    def read(self, image: Image.Image) -> list[OCRLine]: ...


_CJK = re.compile(r"[\u4e00-\u9fff]")
_SUFFIX = re.compile(r"(有限责任公司|股份有限公司|有限公司|集团|公司|厂|店|商行|中心|"
                     r"门市部|工作室|超市|酒店|医院|研究院|事务所)$")
_NOISE = re.compile(r"^(电话|TEL|Tel|地址|手机|网址|www\.)|\d{3,}")


def pick_sign_name(lines: list[OCRLine]) -> str:
    """The company name on a sign: a line ending in 有限公司/厂/店/… first, else the longest
    mostly-CJK line, ties broken by score. Phone numbers and addresses are never names."""
    cands = []
    for ln in lines:
        t = re.sub(r"\s+", "", ln.text)
        cjk = len(_CJK.findall(t))
        if cjk < 2 or _NOISE.search(t):
            continue
        cands.append((1 if _SUFFIX.search(t) else 0, cjk, ln.score, t))
    if not cands:
        return ""
    return max(cands)[3]


class RapidOCREngine:
    name = "rapidocr"
    max_side = 1280

    def __init__(self) -> None:
        self._engine = None
        self._lock = threading.Lock()

    def load(self):
        with self._lock:
            if self._engine is None:
                try:
                    from rapidocr import RapidOCR
                    logging.getLogger("RapidOCR").setLevel(logging.WARNING)
                except ImportError as exc:  # pragma: no cover - depends on the install
                    raise EngineUnavailable("rapidocr is not installed") from exc
                self._engine = RapidOCR()
        return self._engine

    def read(self, image: Image.Image) -> list[OCRLine]:
        import numpy as np

        eng = self.load()
        res = eng(np.asarray(image.convert("RGB"))[:, :, ::-1])  # BGR, like cv2
        txts = res.txts or ()
        scores = res.scores or (1.0,) * len(txts)
        return [OCRLine(str(t), float(s)) for t, s in zip(txts, scores, strict=False)]


class TesseractEngine:
    name = "tesseract"
    max_side = 1600

    def __init__(self, lang: str = "chi_sim", psm: int = 6) -> None:
        self.lang, self.psm = lang, psm

    def read(self, image: Image.Image) -> list[OCRLine]:
        try:
            import pytesseract
        except ImportError as exc:  # pragma: no cover
            raise EngineUnavailable("pytesseract is not installed") from exc
        gray = ImageOps.autocontrast(image.convert("L"), cutoff=1)
        out: list[OCRLine] = []
        seen: set[str] = set()
        for im in (gray, ImageOps.invert(gray)):
            try:
                text = pytesseract.image_to_string(im, lang=self.lang,
                                                   config=f"--psm {self.psm}", timeout=30)
            except pytesseract.TesseractNotFoundError as exc:
                raise EngineUnavailable("tesseract is not installed (apt: tesseract-ocr "
                                        "tesseract-ocr-chi-sim)") from exc
            for raw in text.splitlines():
                t = raw.replace(" ", "").strip()  # chi_sim puts spaces between hanzi
                if t and t not in seen:
                    seen.add(t)
                    out.append(OCRLine(t, 0.5))
        return out


_ENGINES: dict[str, OCREngine] = {}
_ENGINES_LOCK = threading.Lock()


def get_ocr_engine(name: str = "rapidocr") -> OCREngine:
    """One engine instance per process (models load lazily on first ``read``)."""
    key = name.lower()
    with _ENGINES_LOCK:
        if key not in _ENGINES:
            if key in ("rapidocr", "rapid"):
                _ENGINES[key] = RapidOCREngine()
            elif key in ("tesseract", "tess", "pytesseract"):
                _ENGINES[key] = TesseractEngine()
            else:
                raise EngineUnavailable(f"unknown OCR engine {name!r} (rapidocr | tesseract)")
        return _ENGINES[key]


def ocr_bytes(data: bytes, engine: OCREngine,
              max_pixels: int = DEFAULT_MAX_PIXELS) -> OCRResult:
    """Open safely, rotate, downscale to the engine's size, OCR. Raises ``BadImage``."""
    t0 = time.perf_counter()
    photo = open_photo(data, max_side=engine.max_side, max_pixels=max_pixels)
    lines = engine.read(photo.image)
    return OCRResult(lines=lines, engine=engine.name, seconds=time.perf_counter() - t0,
                     photo=photo)
