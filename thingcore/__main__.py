"""``python -m thingcore`` is the ``thingcore`` command."""

from thingcore.cli import main

main()
