from twisted.trial.unittest import SynchronousTestCase

from pilotnet.transport.states import TRANSITIONS, InvalidTransition, State, Trigger, transition


class TransitionTableTests(SynchronousTestCase):
    EXPECTED = [
        (State.CLOSED, Trigger.OPEN, State.SYN_SENT),
        (State.CLOSED, Trigger.SYN, State.SYN_RECV),
        (State.SYN_SENT, Trigger.SYN_ACK, State.ESTABLISHED),
        (State.SYN_RECV, Trigger.ACK, State.ESTABLISHED),
        (State.ESTABLISHED, Trigger.CLOSE, State.FIN_WAIT),
        (State.ESTABLISHED, Trigger.PEER_FIN, State.CLOSE_WAIT),
        (State.FIN_WAIT, Trigger.PEER_FIN, State.CLOSING),
        (State.FIN_WAIT, Trigger.TIMER, State.CLOSED),
        (State.CLOSE_WAIT, Trigger.CLOSE, State.LAST_ACK),
        (State.CLOSING, Trigger.FIN_ACKED, State.TIME_WAIT),
        (State.LAST_ACK, Trigger.FIN_ACKED, State.CLOSED),
        (State.TIME_WAIT, Trigger.TIMER, State.CLOSED),
    ]

    def test_each_transition(self):
        for state, trigger, after in self.EXPECTED:
            self.assertEqual(transition(state, trigger), after, (state, trigger))

    def test_every_live_state_can_fail(self):
        for state in State:
            if state is not State.CLOSED:
                self.assertIs(transition(state, Trigger.FAIL), State.CLOSED)

    def test_table_holds_nothing_else(self):
        self.assertEqual(len(TRANSITIONS), len(self.EXPECTED) + len(State) - 1)

    def test_invalid_transition_is_loud(self):
        self.assertRaises(InvalidTransition, transition, State.CLOSED, Trigger.CLOSE)
        self.assertRaises(InvalidTransition, transition, State.TIME_WAIT, Trigger.PEER_FIN)
