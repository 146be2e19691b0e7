from __future__ import annotations

import pytest
from sqlmodel.ext.asyncio.session import AsyncSession

from tests.approvals.org import build_org


@pytest.fixture
def org(db_url):
    return build_org(db_url)


@pytest.fixture
async def engine(org):
    eng = org.engine()
    yield eng
    await eng.dispose()


@pytest.fixture
def session_factory(engine):
    def make() -> AsyncSession:
        return AsyncSession(engine, expire_on_commit=False)

    return make
