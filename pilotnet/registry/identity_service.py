"""The identity webhook's Twisted side: a token is verified over HTTP before the request is handled.

:class:`IdentityFront` gives the registry server two *fronts*: coroutines run
in place of the plain handling of a request type, because they wait for I/O
first (:attr:`pilotnet.registry.server.RegistryServer.fronts`):

* ``register`` with an ``identity_token`` while the identity provider is a
  webhook: the token is POSTed (``{"token": ...}``, signed with
  ``X-Pilot-Signature``, 5 s timeout as the reference); a verified token lets
  the registration through and gives the node the webhook's ``external_id``,
  anything else refuses it;
* ``validate_token``: the admin asks the webhook about a token.

A registration is unauthenticated, so each one with a token costs an
outbound request: at most ``max_in_flight`` verifications run at once and each
source IP may start ``burst`` a minute; beyond that the registration is
refused (retryable) before anything is sent.
"""

from typing import Callable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from twisted.internet.error import ConnectError

from pilotnet.errors import CONNECTION_FAILED, PilotError
from pilotnet.ratelimit import RateLimiter
from pilotnet.registry.identity import Identities, Verdict, Verification, verdict_from
from pilotnet.registry.provisioning import Provisioning
from pilotnet.registry.requests import RequestError
from pilotnet.webhooks.http import HttpSender, resolve
from pilotnet.webhooks.signing import signed_headers
from pilotnet.webhooks.targets import TargetRefused, check_url
from pilotnet.webhooks.webhook import json_body

VERIFY_TIMEOUT = 5.0
MAX_IN_FLIGHT = 32
PER_SOURCE_BURST = 20
PER_SOURCE_WINDOW = 60.0


class IdentityFront:
    def __init__(self, reactor, identities: Identities, *, read_only: Callable[[], bool],
                 allow_private: bool = False, resolver=resolve, max_in_flight: int = MAX_IN_FLIGHT,
                 timeout: float = VERIFY_TIMEOUT) -> None:
        self._reactor = reactor
        self._identities = identities
        self._read_only = read_only
        self._allow_private = allow_private
        self._resolver = resolver
        self._max_in_flight = max_in_flight
        self._timeout = timeout
        self._in_flight = 0
        self._per_source = RateLimiter(PER_SOURCE_BURST, PER_SOURCE_WINDOW, max_keys=10_000)
        self._senders: dict[tuple[str, str], HttpSender] = {}
        #: Verifications by outcome: ``verified``, ``refused`` (the webhook said no), ``failed`` (no answer).
        self.verifications = {"verified": 0, "refused": 0, "failed": 0}

    def fronts(self) -> dict:
        return {"register": self.register, "validate_token": self.validate_token}

    async def register(self, request: dict, peer: tuple, handle: Callable[[], dict]) -> dict:
        # A standby refuses registrations: nothing to verify for it.
        verification = None if self._read_only() else self._identities.registration_check(request)
        if verification is None:
            return handle()
        verdict = await self._ask(verification, peer)
        if not verdict.verified:
            raise RequestError(f"identity verification failed: {verdict.error or 'token not verified'}",
                               hint="the registry's identity provider refused this node's identity token")
        reply = handle()
        if reply.get("type") == "register_ok":
            self._identities.verified(reply["node_id"], verdict, self._reactor.seconds())
            reply["external_id"] = verdict.external_id
        return reply

    async def validate_token(self, request: dict, peer: tuple, handle: Callable[[], dict]) -> dict:
        verdict = await self._ask(self._identities.validation_check(request), peer)
        reply = {"type": "validate_token_ok", "valid": verdict.verified, "external_id": verdict.external_id}
        if verdict.error:
            reply["error"] = verdict.error
        return reply

    async def _ask(self, verification: Verification, peer: tuple) -> Verdict:
        if self._in_flight >= self._max_in_flight:
            raise RequestError("identity verification busy: too many tokens being verified", code=CONNECTION_FAILED,
                               hint="retry in a few seconds")
        if not self._per_source.allow(peer[0], self._reactor.seconds()):
            raise RequestError(f"rate limited: too many identity tokens from {peer[0]}", code=CONNECTION_FAILED)
        self._in_flight += 1
        try:
            verdict = await self._exchange(verification)
        except RequestError:
            self.verifications["failed"] += 1
            raise
        finally:
            self._in_flight -= 1
        self.verifications["verified" if verdict.verified else "refused"] += 1
        return verdict

    async def _exchange(self, verification: Verification) -> Verdict:
        try:
            status, answer = await self._sender(verification).exchange({"token": verification.token})
        except TargetRefused as error:
            raise RequestError(f"identity webhook refused: {error.message}", code=CONNECTION_FAILED) from None
        except PilotError as error:
            raise RequestError(f"identity webhook unreachable: {error.message}", code=CONNECTION_FAILED) from None
        except ConnectError as error:
            raise RequestError(f"identity webhook unreachable: {error}", code=CONNECTION_FAILED) from None
        return verdict_from(status, answer)

    def register_metrics(self, collectors, provisioning: Provisioning) -> None:
        """Add the identity and provisioning families to a Prometheus ``CollectorRegistry`` (the registry's)."""
        collectors.register(_IdentityMetrics(self, self._identities, provisioning))

    def _sender(self, verification: Verification) -> HttpSender:
        key = (verification.url, verification.secret)
        sender = self._senders.get(key)
        if sender is None:
            secret = verification.secret

            def encode(payload: dict) -> tuple[bytes, dict]:
                body = json_body(payload)
                return body, signed_headers(secret, int(self._reactor.seconds()), body)

            target = check_url(verification.url, allow_private=self._allow_private)
            # One provider at a time: a new one replaces the sender of the old.
            self._senders = {key: HttpSender(self._reactor, target, encode, allow_private=self._allow_private,
                                             timeout=self._timeout, resolver=self._resolver)}
            sender = self._senders[key]
        return sender



class _IdentityMetrics:
    """The reference's identity and provisioning metrics, read when scraped."""

    def __init__(self, front: IdentityFront, identities: Identities, provisioning: Provisioning) -> None:
        self._front = front
        self._identities = identities
        self._provisioning = provisioning

    def collect(self):
        provisioned, synchronised = self._provisioning.counts()
        yield GaugeMetricFamily("pilot_idp_configured", "1 while an identity provider is set.",
                                value=int(self._identities.idp() is not None))
        verifications = CounterMetricFamily("pilot_idp_verifications", "Identity tokens verified, by outcome.",
                                            labels=["result"])
        for result, count in self._front.verifications.items():
            verifications.add_metric([result], count)
        yield verifications
        yield GaugeMetricFamily("pilot_provisioned_networks", "Networks provisioned from a blueprint.",
                                value=provisioned)
        yield GaugeMetricFamily("pilot_directory_synced_networks", "Networks synchronised with a directory.",
                                value=synchronised)
