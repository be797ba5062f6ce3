"""Reconciling what the upstream providers say they charged with what the gateway recorded."""
