"""pilotnet's tests.

Hypothesis checks by default how long a test or its data generation takes, which is wall time: on
a shared machine running the suite in parallel it fails tests that are merely slow.  The suite's
profile drops those checks (no test asserts on wall time); everything else stays as Hypothesis
sets it.
"""

from hypothesis import HealthCheck, settings

settings.register_profile("pilotnet", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("pilotnet")
