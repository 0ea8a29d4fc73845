"""launch(): flags that cannot work are one-line user errors raised before any worker starts."""

import pytest

from freemask.engine import launch
from freemask.errors import ArgumentError


def test_auto_dist_url_on_several_machines_is_a_user_error():
    with pytest.raises(ArgumentError, match="--dist-url auto only works on one machine"):
        launch(print, 2, num_machines=2, machine_rank=0, dist_url="auto")
