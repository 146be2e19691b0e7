"""Media pipeline: voice notes (speech-to-text) and storefront photos (OCR).

Engines sit behind small interfaces (``ocr.OCREngine``, ``asr.ASREngine``) and load lazily,
once per process. Everything here is synchronous and CPU-bound: the job worker runs it in a
thread pool, never on the event loop. Model weights come from installed packages or a local
path; nothing is fetched from a model hub at run time (``HF_HUB_OFFLINE=1``).
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
