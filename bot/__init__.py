"""The neutral core: events, targets, replies, routing, dispatch, inbox and outbox."""
