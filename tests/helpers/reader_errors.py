"""The one check every reader's error tests share: a one-line message naming the problem."""

import pytest


def expect_one_line_error(open_reader, error, *words, path=None):
    """``open_reader()`` raises ``error`` with a one-line message holding ``words`` (and ``path``)."""
    with pytest.raises(error) as info:
        open_reader()
    message = str(info.value)
    assert "\n" not in message, message
    if path is not None:
        assert str(path) in message, message
    for word in words:
        assert word in message, message
