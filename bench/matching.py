"""Customer matching at scale: 100k generated customers, per-message latency after loading.

Generates a deterministic customer list (region + 2–3 character brand + trade word + legal
suffix, an alias for most), builds ``bot.matching.CustomerMatcher`` once, then times ``find`` on
chat-like messages (~20–60 characters): a third name a customer by full name or alias, a third
with one wrong character (speech-to-text / OCR), a third name nobody. Baseline, in the same
run: the naive loop (``key in text`` over every name and alias, longest hit wins) on a subset
of the messages, since it costs ~100k substring searches per message.

  python bench/matching.py                 # 100k customers, 3000 messages
  python bench/matching.py --customers 20000 --messages 500

Prints a table, then as the last lines one JSON object per case. Target: < 1 ms/message.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.matching import CustomerMatcher, normalize, resolve  # noqa: E402

REGIONS = ["上海", "北京", "深圳", "广州", "杭州", "苏州", "南京", "宁波", "厦门", "成都", "武汉",
           "西安", "青岛", "天津", "重庆", "东莞", "佛山", "无锡", "合肥", "长沙", ""]
TRADES = ["机电", "电子", "科技", "精密", "化工", "物流", "食品", "医疗器械", "新能源", "智能",
          "包装", "模具", "五金", "塑胶", "纺织", "环保", "材料", "光电", "汽配", "仪器"]
SUFFIXES = ["有限公司", "股份有限公司", "集团", "有限责任公司", "厂", "集团有限公司"]
# brand characters: common in company names, none of them generic on their own
BRAND = ("华宏泰盛鑫达信诚恒源瑞通丰隆润昌兴鸿福康嘉德明伟富安永利顺祥凯博远海天正荣新宇"
         "辰昊晟腾骏朗峰川岳林森博雅卓越锦绣星辉云帆金银玉翔鹏飞龙凤麒麟春秋冬夏东南西北"
         "中乾坤元亨贞吉祺瑞景辉煌腾达方圆通九洲华夏联合创新立升旭阳光明月晨曦")
FILLER = ["今天上午去了{}，聊了明年的框架协议，对方比较积极", "{}的采购说价格还要再压一压",
          "刚从{}出来，样品下周二送过去", "和{}的王总吃了个饭，聊得不错",
          "{}那边下个月招标，要准备材料", "客户{}反馈交期太长，需要协调生产"]
NOISE = ["今天天气不错，下午开会讨论季度目标", "报销单已经提交了，麻烦审批一下",
         "周五团建，大家记得报名", "这个月业绩还差一点，大家加油", "明天上午九点例会，不要迟到",
         "新能源汽车行业发展很快，机会很多"]


def generate(n: int, seed: int = 7) -> list[dict]:
    rnd = random.Random(seed)
    rows, seen = [], set()
    while len(rows) < n:
        brand = "".join(rnd.choice(BRAND) for _ in range(rnd.choice((2, 2, 3))))
        region, trade, suffix = rnd.choice(REGIONS), rnd.choice(TRADES), rnd.choice(SUFFIXES)
        name = f"{region}{brand}{trade}{suffix}"
        if name in seen:
            continue
        seen.add(name)
        alias = [brand + trade] if rnd.random() < 0.8 else []
        rows.append({"id": len(rows) + 1, "name": name, "aliases": alias,
                     "short_name": alias[0] if alias else "", "region": region})
    return rows


def messages(rows: list[dict], n: int, seed: int = 11) -> list[tuple[str, int | None, str]]:
    """(text, planted customer id or None, kind: exact | fuzzy | none)."""
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        kind = ("exact", "fuzzy", "none")[i % 3]
        if kind == "none":
            out.append((rnd.choice(NOISE), None, kind))
            continue
        row = rnd.choice(rows)
        said = rnd.choice([row["name"], *row["aliases"]]) if row["aliases"] else row["name"]
        if kind == "fuzzy":
            pos = rnd.randrange(len(said))
            said = said[:pos] + rnd.choice("错误字口土") + said[pos + 1:]
        out.append((rnd.choice(FILLER).format(said), row["id"], kind))
    return out


def naive_find(keys: list[tuple[str, int]], text: str) -> int | None:
    """The baseline: every key, ``in``, longest hit wins (exact only)."""
    t = normalize(text)
    best, best_len = None, 0
    for key, cid in keys:
        if len(key) > best_len and key in t:
            best, best_len = cid, len(key)
    return best


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(p * len(values)))]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--customers", type=int, default=100_000)
    ap.add_argument("--messages", type=int, default=3000)
    ap.add_argument("--baseline-messages", type=int, default=60)
    args = ap.parse_args(argv)

    rows = generate(args.customers)
    msgs = messages(rows, args.messages)
    gc.collect()
    rss0 = rss_mb()
    t0, c0 = time.perf_counter(), time.process_time()
    matcher = CustomerMatcher.from_rows(rows)
    build_s, build_cpu_s = time.perf_counter() - t0, time.process_time() - c0
    rss1 = rss_mb()

    lat: list[float] = []
    cpu: list[float] = []
    hits = {"exact": [0, 0], "fuzzy": [0, 0], "none": [0, 0]}
    listed = 0  # the planted customer is among the candidates (the card can offer it)
    for text, cid, kind in msgs:
        c, t = time.process_time(), time.perf_counter()
        found = matcher.find(text)
        lat.append((time.perf_counter() - t) * 1000)
        cpu.append((time.process_time() - c) * 1000)
        h = hits[kind]
        h[1] += 1
        if kind == "none":
            h[0] += not found
        else:
            h[0] += bool(found) and found[0].customer_id == cid
            listed += any(c.customer_id == cid for c in found)
    auto = sum(1 for text, cid, kind in msgs if kind != "none"
               and (r := resolve(matcher.find(text))) is not None and r.customer_id == cid)

    keys = sorted({(normalize(k), r["id"]) for r in rows for k in [r["name"], *r["aliases"]]},
                  key=lambda kv: -len(kv[0]))
    sub = msgs[: args.baseline_messages]
    base_lat, base_hits = [], 0
    for text, cid, kind in sub:
        t = time.perf_counter()
        got = naive_find(keys, text)
        base_lat.append((time.perf_counter() - t) * 1000)
        base_hits += (got == cid) if kind == "exact" else 0
    base_exact = sum(1 for _t, _c, k in sub if k == "exact")

    cases = [
        {"case": "matcher", "customers": len(rows), "messages": len(msgs),
         "build_s": round(build_s, 2), "build_cpu_s": round(build_cpu_s, 2),
         "rss_mb_added": round(rss1 - rss0, 1),
         "ms_per_msg_mean": round(statistics.fmean(lat), 4),
         "ms_per_msg_p50": round(pct(lat, 0.5), 4), "ms_per_msg_p99": round(pct(lat, 0.99), 4),
         "cpu_ms_per_msg_mean": round(statistics.fmean(cpu), 4),
         "top1_exact": round(hits["exact"][0] / hits["exact"][1], 4),
         "top1_one_wrong_char": round(hits["fuzzy"][0] / hits["fuzzy"][1], 4),
         "no_false_hit_on_noise": round(hits["none"][0] / hits["none"][1], 4),
         "in_candidates": round(listed / (hits["exact"][1] + hits["fuzzy"][1]), 4),
         "auto_resolved_correct": round(auto / (hits["exact"][1] + hits["fuzzy"][1]), 4)},
        {"case": "naive_in_loop", "customers": len(rows), "messages": len(sub),
         "keys": len(keys), "ms_per_msg_mean": round(statistics.fmean(base_lat), 3),
         "ms_per_msg_p50": round(pct(base_lat, 0.5), 3),
         "ms_per_msg_p99": round(pct(base_lat, 0.99), 3),
         "top1_exact": round(base_hits / max(base_exact, 1), 4),
         "top1_one_wrong_char": 0.0},
    ]
    print(f"{'case':<16}{'msgs':>6}{'mean ms':>10}{'p50 ms':>10}{'p99 ms':>10}"
          f"{'exact top1':>12}{'1-typo top1':>13}")
    for c in cases:
        print(f"{c['case']:<16}{c['messages']:>6}{c['ms_per_msg_mean']:>10}"
              f"{c['ms_per_msg_p50']:>10}{c['ms_per_msg_p99']:>10}{c['top1_exact']:>12}"
              f"{c['top1_one_wrong_char']:>13}")
    m = cases[0]
    print(f"matcher: {m['customers']} customers built in {m['build_s']} s,"
          f" +{m['rss_mb_added']} MB RSS; noise messages without a hit: "
          f"{m['no_false_hit_on_noise']:.0%}; speed-up vs naive (mean):"
          f" {cases[1]['ms_per_msg_mean'] / m['ms_per_msg_mean']:.0f}x")
    for c in cases:
        print(json.dumps(c, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
