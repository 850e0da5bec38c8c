"""Every test double that claims an interface has all of it (``verifyObject``).

A fake missing a method the real object has would let a test pass against
something the code under test cannot rely on; this fails first, naming it.
Doubles defined inside one test module's tests are checked there (the path
manager's event recorder, the reachability probe, the contract suite's memory node).
"""

from twisted.internet.interfaces import IHalfCloseableProtocol, IPullProducer, IPushProducer
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from pilotnet.daemon.tunnel import IPeerKeys
from pilotnet.interfaces import IEventEmitter, IStreamOwner
from tests.daemon.fakes import StaticKeys
from tests.daemon.test_streams import RecordingOwner
from tests.daemon.test_webhook_events import RecordingEmitter
from tests.gateway.test_service import Peer
from tests.netlab.test_gateway import SinkThenSend
from tests.test_endpoints import Collect, SendThenRead
from tests.test_stream_transport import HalfCloseable, Pulling, Pushing


class FakesTests(SynchronousTestCase):
    def test_daemon_seams(self):
        verifyObject(IStreamOwner, RecordingOwner())
        verifyObject(IEventEmitter, RecordingEmitter())
        verifyObject(IPeerKeys, StaticKeys())

    def test_twisted_seams(self):
        for protocol in (Peer(), Collect(), SendThenRead(b""), HalfCloseable(), SinkThenSend({})):
            verifyObject(IHalfCloseableProtocol, protocol)
        verifyObject(IPushProducer, Pushing())
        verifyObject(IPullProducer, Pulling(None, []))
