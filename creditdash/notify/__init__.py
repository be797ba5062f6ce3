"""Telling people: emails from the outbox over SMTP, and signed webhooks to workspaces' endpoints.

Services below write events and emails into the outbox (core/outbox.py) in their own
transactions; this layer reads them in the jobs loop and delivers them, with retries.
"""
