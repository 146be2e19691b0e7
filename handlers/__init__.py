"""Feature handlers; each module exports a ``router``. Order matters: first match wins."""

from handlers import alerts, approvals, forecast, location, media, targets, visits
from handlers import help as help_

ROUTERS = [approvals.router, alerts.router, visits.router, media.router, location.router,
           targets.router, forecast.router, help_.router]
JOBS = {**media.JOBS}  # deferred jobs run by jobs.worker
