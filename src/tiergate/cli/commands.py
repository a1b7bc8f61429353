"""Imports every command module so each registers itself on the app."""

from tiergate.cli import admin as admin
from tiergate.cli import backup as backup
from tiergate.cli import campaign as campaign
from tiergate.cli import message as message
from tiergate.cli import plan as plan
from tiergate.cli import serve as serve
from tiergate.cli import simulate as simulate
from tiergate.cli import status as status
from tiergate.cli import template as template
from tiergate.cli import webhook as webhook
from tiergate.cli import workers as workers
