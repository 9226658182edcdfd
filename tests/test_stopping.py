import signal

import pytest

from alexnet.errors import StopNow
from alexnet.training.stopping import DeferredInterrupt


def test_a_second_stop_signal_stops_at_once_with_the_first_signals_status():
    interrupt = DeferredInterrupt()
    interrupt._handle(signal.SIGTERM, None)  # recorded, acted on at the next safe point
    assert interrupt.requested and interrupt.exit_code == 143
    with pytest.raises(StopNow) as caught:
        interrupt._handle(signal.SIGTERM, None)
    assert caught.value.exit_code == 143 and isinstance(caught.value, KeyboardInterrupt)
