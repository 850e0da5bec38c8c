"""The commands of ``pilotctl``, one module per family (see :mod:`pilotnet.cli.catalogue`)."""
