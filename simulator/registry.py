"""A fake 天眼查 (Tianyancha) open API: "企业基本信息" (``GET
/services/open/ic/baseinfo/normal?keyword=<name>``, header ``Authorization: <token>``) with
the real wire format — ``{"error_code": 0, "reason": "ok", "result": {...}}`` — and its error
answers: 300000 经查无结果 (no data), 300003 quota exhausted (after ``quota`` calls),
300006 token invalid. ``slow_s`` delays every answer (the client's timeout path).

Mounted by ``simulator.server.Simulator`` (``Simulator.registry``); tests may mount it alone
(``RegistrySim().add_routes(app)``). ``calls`` records each keyword asked for."""

from __future__ import annotations

import asyncio
import unicodedata
from typing import Any

from aiohttp import web

PATH = "/services/open/ic/baseinfo/normal"
TOKEN = "sim-tianyancha-token"
NO_DATA = 300000
QUOTA_EXHAUSTED = 300003
TOKEN_INVALID = 300006

# the demo's signs (tests/media/fixtures/signs.json) and a deregistered company; the credit
# codes carry valid GB 32100-2015 check characters
FIXTURES: list[dict[str, Any]] = [
    {"name": "华东精密零部件有限公司", "creditCode": "91310115MA1K4F2D6R",
     "legalPersonName": "王建国", "regStatus": "存续", "regCapital": "5000万人民币",
     "regLocation": "上海市浦东新区张江路88号", "regNumber": "310115000123456",
     "companyOrgType": "有限责任公司(自然人投资或控股)", "base": "sh"},
    {"name": "南京金陵化工集团", "creditCode": "91320100MA1R7J8K4L",
     "legalPersonName": "孙海", "regStatus": "存续", "regCapital": "2亿人民币",
     "regLocation": "南京市江北新区化工园区方水路18号", "regNumber": "320100000777888",
     "companyOrgType": "股份有限公司", "base": "js"},
    {"name": "苏州恒信电子科技有限公司", "creditCode": "91320594MA1N8C7W3K",
     "legalPersonName": "李敏", "regStatus": "在业", "regCapital": "1000万人民币",
     "regLocation": "苏州工业园区星湖街328号", "regNumber": "320594000654321",
     "companyOrgType": "有限责任公司", "base": "js"},
    {"name": "杭州云帆物流有限公司", "creditCode": "91330106MA2H5Y3K0F",
     "legalPersonName": "赵云帆", "regStatus": "吊销，未注销", "regCapital": "200万人民币",
     "regLocation": "杭州市西湖区文三路100号", "regNumber": "330106000111222",
     "companyOrgType": "有限责任公司", "base": "zj"},
    {"name": "深圳南山旧城贸易有限公司", "creditCode": "91440300MA5G9T7Q1Y",
     "legalPersonName": "陈旧", "regStatus": "注销", "regCapital": "50万人民币",
     "regLocation": "深圳市南山区科技园1号", "regNumber": "440300000333444",
     "companyOrgType": "有限责任公司", "base": "gd"},
]


def _key(name: str) -> str:
    return "".join(unicodedata.normalize("NFKC", name or "").split()).replace(
        "（", "(").replace("）", ")")


class RegistrySim:
    def __init__(self, token: str = TOKEN, quota: int | None = None, slow_s: float = 0.0,
                 fixtures: list[dict[str, Any]] | None = None) -> None:
        self.token = token
        self.quota = quota  # None: unlimited; N: call N+1 on answers QUOTA_EXHAUSTED
        self.slow_s = slow_s
        self.companies = {_key(c["name"]): dict(c) for c in (fixtures or FIXTURES)}
        self.calls: list[str] = []

    def add(self, **company: Any) -> None:
        self.companies[_key(company["name"])] = dict(company)

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get(PATH, self.baseinfo)

    @staticmethod
    def _answer(code: int, reason: str, result: Any = None) -> web.Response:
        return web.json_response({"error_code": code, "reason": reason, "result": result})

    async def baseinfo(self, request: web.Request) -> web.Response:
        keyword = request.query.get("keyword", "")
        self.calls.append(keyword)
        if self.slow_s:
            await asyncio.sleep(self.slow_s)
        if request.headers.get("Authorization", "") != self.token:
            return self._answer(TOKEN_INVALID, "无效的token")
        if self.quota is not None and len(self.calls) > self.quota:
            return self._answer(QUOTA_EXHAUSTED, "账号余额不足或接口调用次数已用完")
        company = self.companies.get(_key(keyword))
        if company is None:  # the API also finds a company by its credit code
            company = next((c for c in self.companies.values()
                            if c.get("creditCode") == keyword.strip().upper()), None)
        if company is None:
            return self._answer(NO_DATA, "经查无结果")
        return self._answer(0, "ok", company)
