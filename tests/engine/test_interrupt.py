"""StopRequest: the first Ctrl-C is a request, a second one interrupts, and the previous handler comes back."""

import os
import signal

import pytest

from freemask.engine.interrupt import StopRequest


def test_first_ctrl_c_requests_a_stop_second_interrupts_and_handler_is_restored():
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
