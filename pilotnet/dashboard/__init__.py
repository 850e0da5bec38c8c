"""Polo, the registry's web dashboard: pages, JSON API, live updates, badges.

Served from the registry's own reactor (``--http`` on ``pilot-registry`` and
``pilot-rendezvous``).  :mod:`~pilotnet.dashboard.index` keeps indexes
over the directory, updated change by change; :mod:`~pilotnet.dashboard.app` is the Klein
app; :mod:`~pilotnet.dashboard.service` wires both into the registry process.
"""
