"""Image safety, audio decoding, the sign-name rule, the file store and model resolution."""

from __future__ import annotations

import io
import struct
import zlib

import pytest
from PIL import Image

from integrations.media import audio, images, models
from integrations.media.asr import build_prompt, strip_prompt_echo, to_simplified
from integrations.media.errors import BadAudio, BadImage, EngineUnavailable
from integrations.media.ocr import OCRLine, pick_sign_name
from storage.files import FileStore, FileTooLarge
from tests.media.conftest import fixture_bytes, needs_ffmpeg


def bomb_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A tiny PNG whose header declares width×height pixels (a decompression bomb)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + \
        chunk(b"IEND", b"")


# -- images ---------------------------------------------------------------------------------
def test_decompression_bomb_is_refused_before_decoding():
    data = bomb_png()
    assert len(data) < 200
    with pytest.raises(BadImage) as exc:
        images.open_photo(data, max_side=1280)
    assert "过大" in exc.value.user_message


def test_just_over_the_cap_is_refused_and_under_is_fine():
    with pytest.raises(BadImage):
        images.open_photo(bomb_png(8000, 6000), max_pixels=40_000_000)
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 10, 10)).save(buf, "PNG")
    photo = images.open_photo(buf.getvalue(), max_side=1280)
    assert photo.image.size == (64, 48) and photo.gps is None


@pytest.mark.parametrize("data", [b"", b"hello, not an image", b"%PDF-1.4\n...",
                                  b"\x89PNG\r\n\x1a\n" + b"\x00" * 40,
                                  b"\xff\xd8\xff\xe0" + b"\x00" * 100])
def test_non_images_are_refused_clearly(data):
    with pytest.raises(BadImage) as exc:
        images.open_photo(data)
    assert "不是可识别的图片" in exc.value.user_message or "过大" in exc.value.user_message


def test_unlisted_formats_are_refused():
    buf = io.BytesIO()
    Image.new("RGB", (10, 10)).save(buf, "TIFF")
    with pytest.raises(BadImage):
        images.open_photo(buf.getvalue())


def test_exif_rotation_gps_and_time():
    photo = images.open_photo(fixture_bytes("sign_gps_rotated.jpg"), max_side=1280)
    w, h = photo.image.size
    assert h > w  # stored sideways (orientation 6), upright after transpose
    assert photo.gps == pytest.approx((31.298886, 120.585316), abs=1e-4)
    assert photo.taken_at.isoformat() == "2025-03-14T10:21:05"


def test_downscale_to_engine_size():
    photo = images.open_photo(fixture_bytes("sign_hard.jpg"), max_side=640)
    assert max(photo.image.size) == 640


# -- sign name rule ---------------------------------------------------------------------------
def test_pick_sign_name_prefers_company_suffix_then_longest_cjk():
    lines = [OCRLine("欢迎光临", 0.99), OCRLine("华东精密零部件有限公司", 0.9),
             OCRLine("电话：0512-6688 1234", 0.99), OCRLine("SUZHOU HENGXIN", 0.99)]
    assert pick_sign_name(lines) == "华东精密零部件有限公司"
    lines = [OCRLine("老王 面馆 总店", 0.8), OCRLine("营业中", 0.99)]
    assert pick_sign_name(lines) == "老王面馆总店"
    assert pick_sign_name([OCRLine("地址：人民路100号", 0.9), OCRLine("ABC", 0.9)]) == ""


# -- audio --------------------------------------------------------------------------------------
def test_sniff_containers():
    assert audio.sniff(b"#!AMR\n\x3c") == "amr"
    assert audio.sniff(b"#!AMR-WB\n") == "amr-wb"
    assert audio.sniff(b"OggS\x00\x02") == "ogg"
    assert audio.sniff(b"RIFF\x00\x00\x00\x00WAVEfmt ") == "wav"
    assert audio.sniff(b"\x02#!SILK_V3") == "silk"
    assert audio.sniff(b"\x00\x00\x00\x20ftypM4A ") == "mp4"
    assert audio.sniff(b"hello") is None


@needs_ffmpeg
@pytest.mark.parametrize("name", ["visit_zh.amr", "visit_zh_dtx.amr", "visit_zh.ogg"])
def test_decode_every_container_to_16k_mono(name):
    dec = audio.decode(fixture_bytes(name))
    assert dec.container == ("ogg" if name.endswith(".ogg") else "amr")
    assert 5.0 < dec.seconds < 9.0
    assert dec.pcm.dtype.name == "float32" and abs(dec.pcm).max() > 0.05


@needs_ffmpeg
@pytest.mark.parametrize("data", [b"", b"this is not audio at all" * 50,
                                  b"#!AMR\n" + b"\xff" * 3000, b"OggS" + b"\x00" * 500,
                                  b"\x02#!SILK_V3" + b"\x00" * 200])
def test_corrupt_or_non_audio_gets_a_clear_error(data):
    with pytest.raises(BadAudio) as exc:
        audio.decode(data)
    assert "无法解码" in exc.value.user_message


@needs_ffmpeg
def test_audio_over_the_cap_is_refused():
    with pytest.raises(BadAudio) as exc:
        audio.decode(fixture_bytes("order_zh.ogg"), max_seconds=3)
    assert "3 秒" in exc.value.user_message
    assert audio.decode(fixture_bytes("order_zh.ogg"), max_seconds=60).seconds > 3


def test_prompt_and_t2s():
    p = build_prompt(["华东精密", "恒信电子", "华东精密", ""])
    assert p == "以下是普通话的句子。华东精密、恒信电子。"
    many = [f"很长的客户名称{i}有限公司" for i in range(100)]
    assert len(build_prompt(many)) <= 190
    assert to_simplified("這個客戶對報價有疑問") == "这个客户对报价有疑问"
    assert strip_prompt_echo("以下是普通话的句子。 以下是普通话的句子。") == ""


# -- file store ---------------------------------------------------------------------------------
def test_file_store_is_content_addressed_and_capped(tmp_path):
    store = FileStore(tmp_path / "files", max_bytes=2500, max_file_bytes=1000)
    a = store.put(b"a" * 900, ".jpg")
    assert store.put(b"a" * 900, ".jpg") == a and store.usage() == 900
    assert store.get(a) == b"a" * 900 and store.find(a).suffix == ".jpg"
    with pytest.raises(FileTooLarge):
        store.put(b"x" * 1001)
    b = store.put(b"b" * 900)
    c = store.put(b"c" * 900)  # over 2500: the oldest goes
    assert store.usage() <= 2500 and store.get(c) and store.get(b)
    assert store.get(a) is None
    assert store.find("../../etc/passwd") is None


# -- models ---------------------------------------------------------------------------------
def test_asr_model_setting_must_be_a_model(tmp_path):
    with pytest.raises(EngineUnavailable):
        models.resolve_asr_model(str(tmp_path / "nope"), tmp_path)
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "model.bin").write_bytes(b"x")
    assert models.resolve_asr_model(str(tmp_path / "m"), tmp_path) == ("ct2", tmp_path / "m")
    (tmp_path / "w.pt").write_bytes(b"x")
    assert models.resolve_asr_model(str(tmp_path / "w.pt"), tmp_path)[0] == "pt"


def test_base_weights_assemble_and_verify(model_cache):
    if None in models.packages_installed().values():
        pytest.skip("whisper base packages not installed")
    d = models.assemble_base(model_cache)
    assert models.sha256_file(d / "model.bin") == models.MODEL_SHA256
    assert (d / "tokenizer.json").exists() and (d / ".sha256-verified").exists()
    assert models.assemble_base(model_cache) == d  # second call: marker, no rehash


def test_tampered_weights_are_rebuilt_not_used(tmp_path):
    if None in models.packages_installed().values():
        pytest.skip("whisper base packages not installed")
    d = tmp_path / models.BASE_DIR_NAME
    d.mkdir()
    for n in models.EXTRA:
        (d / n).write_text("{}")
    (d / "model.bin").write_bytes(b"tampered")
    out = models.assemble_base(tmp_path)
    assert models.sha256_file(out / "model.bin") == models.MODEL_SHA256


def test_models_report_is_offline(model_cache):
    info = models.report("", model_cache)
    assert info["hub_offline"] is True
    assert info["engines"]["rapidocr"] is True
    assert any(m.endswith(".onnx") for m in info["rapidocr_models"])
