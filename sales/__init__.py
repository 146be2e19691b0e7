"""The sales domain: business rules that every front-end shares (chat handlers, the mini-app,
the API, jobs). Plain arguments in, plain results (dataclasses) out; no platform, no card,
no HTTP request. One module per capability (targets and attainment, stage history, forecast,
location check-in …)."""

# Any use of the sales domain registers the deal-history safety net (a session flush hook),
# so no ORM write of a deal escapes its history however the caller got here.
from sales import stage_history as _stage_history  # noqa: E402,F401
