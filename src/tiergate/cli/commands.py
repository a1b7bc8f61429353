"""Imports every command module so each registers itself on the app."""

from tiergate.cli import plan as plan  # noqa: F401
from tiergate.cli import simulate as simulate  # noqa: F401
