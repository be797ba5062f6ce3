"""Tests of the notify layer."""
