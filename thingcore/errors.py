"""The root of every exception thingcore raises on purpose.

A leaf module: it imports nothing of ours, so every package may subclass ``ThingcoreError``
without depending on the application shell. Messages say what was wrong and what to do.
"""

from __future__ import annotations


class ThingcoreError(Exception):
    """Base class of thingcore's own errors; the CLI prints its message as one line."""


class ConfigError(ThingcoreError):
    """A setting is missing, malformed or contradicts another one."""
