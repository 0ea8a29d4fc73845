"""StopRequest: the first Ctrl-C is a request, a second one interrupts, and the previous handler comes back."""

import os
import signal

import pytest

from freemask.engine.interrupt import StopRequest


@pytest.fixture
def python_sigint_handler():
    """Python's own SIGINT handler for the test, as in a user's training process: a pytest-xdist worker may hold
    another one left by an earlier test, and the second Ctrl-C goes to whatever handler was there before."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_first_ctrl_c_requests_a_stop_second_interrupts_and_handler_is_restored(python_sigint_handler):
    before = signal.getsignal(signal.SIGINT)
    stop = StopRequest()
    with stop:
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.requested
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is before
    with stop:  # a new train() call starts without the old request
        assert not stop.requested
