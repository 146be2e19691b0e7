"""The measures help page: docs/measures.md served as escaped HTML to anyone signed in,
linked from the dashboard's forecast panel."""

from __future__ import annotations

from tests.webapp.conftest import web  # noqa: F401 - the demo-stack fixture
from webapp.help import markdown_html


def test_markdown_subset_is_escaped():
    html = str(markdown_html("# T\n- **a** <script>x</script> `c&d`\n\npara"))
    assert "<h1>T</h1>" in html and "<ul>\n<li><strong>a</strong>" in html
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "<code>c&amp;d</code>" in html and "<p>para</p>" in html


async def test_measures_page_renders(web):  # noqa: F811
    rep = await web.client().login("zhangsan")
    html = await rep.page("/app/help/measures")
    for word in ("目标达成率", "人均单产", "数据鲜活性", "预测准确度", "周一快照", "PRIOR"):
        assert word in html
    assert "<li><strong>" in html
    mgr = await web.client().login("lijingli")
    assert 'href="/app/help/measures"' in await mgr.page("/app/dashboard")
    await web.client().page("/app/help/measures", status=200)  # the sign-in redirect
