"""Opt-in integration tests against real external servers (see docs/monailabel.md)."""
