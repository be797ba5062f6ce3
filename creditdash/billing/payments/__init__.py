"""Payments: credit packages, payment orders, checkout providers, webhooks, settlement, refunds."""
