"""Scheduled jobs and the durable work queue (APScheduler 3.x)."""
