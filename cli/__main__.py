"""``python -m stationwatch.cli`` = the ``stationwatch`` command."""
from stationwatch.cli.main import main

main()
