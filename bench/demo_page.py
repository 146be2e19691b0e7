#!/usr/bin/env python3
"""Send → card in the demo chat page, from the browser's point of view (headless Chromium):
the time from the click (or Enter) to the bot's card being drawn, p50 over N runs, per
platform, for the sample voice note (download, decode, Whisper, customer match, card) and the
sample storefront photo (download, OCR, match, card). Baseline, measured in the same run on
the same page: typing ``帮助`` → the help card (the same callback, outbox and page path with no
media work). Each case ends as one JSON line: p50/max seconds, baseline p50, ratio.

Usage: .venv/bin/python bench/demo_page.py [--runs 10] [--platforms wecom,dingtalk,feishu]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from simulator.demo import start_demo  # noqa: E402

COUNT = """([needle]) => [...document.querySelectorAll('.msg.bot .card')]
  .filter(c => c.textContent.includes(needle)).length"""


async def timed(page, action, needle: str, timeout_s: float = 120.0) -> float:
    before = await page.evaluate(COUNT, [needle])
    t0 = time.perf_counter()
    await action()
    await page.wait_for_function(f"([needle, n]) => ({COUNT})([needle]) > n",
                                 arg=[needle, before], timeout=timeout_s * 1000, polling=20)
    return time.perf_counter() - t0


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--platforms", default="wecom,dingtalk,feishu")
    args = ap.parse_args()
    from playwright.async_api import async_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    data = Path(tempfile.mkdtemp(prefix="fieldbot-bench-"))
    stack = await start_demo("127.0.0.1", 0, data)
    results = []
    try:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=chromium, headless=True,
                                               args=["--no-sandbox", "--disable-gpu"])
            page = await browser.new_page(viewport={"width": 1100, "height": 1000})
            await page.goto(stack.page_url)
            await page.wait_for_selector("#platform option", state="attached")
            for platform in args.platforms.split(","):
                await page.select_option("#platform", platform)
                await page.select_option("#person", "zhangsan")

                async def help_(page=page):
                    await page.fill("#text", "帮助")
                    await page.press("#text", "Enter")

                async def voice(page=page):
                    await page.click("#sample-buttons button[data-sample=visit_huadong]")

                async def photo(page=page):
                    await page.click("#sample-buttons button[data-sample=sign_huadong]")

                await timed(page, voice, "语音拜访草稿")  # warm-up: load the models once
                await timed(page, photo, "签到")
                base = [await timed(page, help_, "FieldBot · 帮助") for _ in range(args.runs)]
                for case, act, needle in (("voice", voice, "语音拜访草稿"),
                                          ("photo", photo, "签到")):
                    runs = [await timed(page, act, needle) for _ in range(args.runs)]
                    p50, b50 = statistics.median(runs), statistics.median(base)
                    results.append({"case": f"{platform}_{case}_send_to_card",
                                    "runs": args.runs, "p50_s": round(p50, 3),
                                    "max_s": round(max(runs), 3),
                                    "baseline": "help card p50", "baseline_s": round(b50, 3),
                                    "ratio": round(p50 / b50, 1) if b50 else None})
            await browser.close()
    finally:
        await stack.stop()
        shutil.rmtree(data, ignore_errors=True)
    for r in results:
        print(json.dumps(r, ensure_ascii=False))


if __name__ == "__main__":
    asyncio.run(main())
