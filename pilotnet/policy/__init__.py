"""Network policies, sans-IO: the expression language, policy documents and managed networks.

:mod:`~pilotnet.policy.expr` parses and evaluates the expressions of a rule's
``match``; :mod:`~pilotnet.policy.document` validates a network's policy
document and evaluates its rules against an event; :mod:`~pilotnet.policy.managed`
is the engine of a managed network's cycle.  Nothing here touches a socket, a
clock or a file: callers pass ``now`` and apply the directives they get back.
"""
