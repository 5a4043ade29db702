"""Alerting: rule definitions and pure evaluation, the engine, notifications and signed webhooks."""
