"""Webhook delivery shared by the daemon and the registry.

``targets`` (which URLs and addresses are allowed; no I/O), ``signing`` (the
``X-Pilot-Signature`` HMAC), ``queue`` (bounded queue, retries, dead letters),
``http`` and ``syslog`` (the senders), ``webhook`` (a URL + secret + queue) and
``emitter`` (the daemon's events).  It imports nothing of the daemon, the
registry or the CLI.
"""
