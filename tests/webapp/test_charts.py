"""The SVG bar-chart builder: proportional bars, zero and empty data, escaping, links."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from webapp.charts import WIDTH, Bar, bar_chart, bar_width, fit_label

SVG = "{http://www.w3.org/2000/svg}"
SPAN = WIDTH


def fills(svg: str) -> list[float]:
    root = ET.fromstring(str(svg))  # well-formed XML, or this raises
    return [float(r.get("width")) for r in root.iter(SVG + "rect") if r.get("class") == "fill"]


def test_bars_are_proportional_to_values():
    svg = bar_chart([Bar("a", 10), Bar("b", 5), Bar("c", 2.5)], "t")
    assert fills(svg) == [SPAN, SPAN / 2, SPAN / 4]
    assert bar_width(3, 12, 100) == 25.0
    assert re.search(rf'viewBox="0 0 {WIDTH} \d+"', svg) and 'width="100%"' in svg


def test_zero_and_empty_data():
    assert fills(bar_chart([Bar("a", 0), Bar("b", 0)], "t")) == [0.0, 0.0]
    assert bar_width(5, 0) == 0.0 and bar_width(-1, 10) == 0.0
    empty = bar_chart([], "空", empty="暂无数据")
    assert fills(empty) == [] and "暂无数据" in empty
    ET.fromstring(str(empty))


def test_accessible_title_desc_and_value_text():
    svg = str(bar_chart([Bar("赢单 won", 3, "3 · ¥150,000")], "漏斗", "每阶段商机数"))
    root = ET.fromstring(svg)
    assert root.get("role") == "img"
    ids = root.get("aria-labelledby").split()
    assert [root.find(f".//*[@id='{i}']").text for i in ids] == ["漏斗", "每阶段商机数"]
    texts = [t.text for t in root.iter(SVG + "text")]
    assert "3 · ¥150,000" in texts and "赢单 won" in texts


def test_names_are_escaped_and_bars_link():
    evil = '<script>alert("x")</script>&'
    svg = str(bar_chart([Bar(evil, 1, evil, href='/app/x?a=1&b="2"')], evil, evil))
    assert "<script>" not in svg
    root = ET.fromstring(svg)  # escaping keeps it well-formed
    link = root.find(SVG + "a")
    assert link is not None and link.get("href") == '/app/x?a=1&b="2"'
    assert evil in [t.text for t in root.iter(SVG + "title")][1]
    assert link.find(f"{SVG}g/{SVG}rect[@class='hit']").get("width") == str(WIDTH)


def test_bar_without_link_is_not_wrapped():
    root = ET.fromstring(str(bar_chart([Bar("x", 1)], "t")))
    assert root.find(SVG + "a") is None and root.find(SVG + "g") is not None


def test_long_labels_are_cut_to_the_column():
    assert fit_label("短") == "短"
    cut = fit_label("华东精密零部件有限公司华东精密零部件有限公司")
    assert cut.endswith("…") and 10 < len(cut) < 22
    assert fit_label("华东精密零部件有限公司", px=60) == "华东精密…"
    assert fit_label("negotiation") == "negotiation"
