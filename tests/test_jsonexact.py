"""JSON with integers of any size: exact where orjson alone would lose digits."""

import pytest

from gateway.jsonexact import dumps_exact, loads_exact


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b'{"a": 123456789012345678901234}', {"a": 123456789012345678901234}),
        (b"[1.5, 18446744073709551616]", [1.5, 18446744073709551616]),
        (b"[-99999999999999999999]", [-99999999999999999999]),
        (b"[9223372036854775807, 0.5]", [9223372036854775807, 0.5]),  # in range: orjson's
        (b'["12345678901234567890", 2.5]', ["12345678901234567890", 2.5]),  # digits in a string
        (b'{"sig": "0xab12cd"}', {"sig": "0xab12cd"}),
    ],
)
def test_integers_are_read_exactly(raw, expected):
    value = loads_exact(raw)
    assert value == expected
    assert [type(v) for v in (value.values() if isinstance(value, dict) else value)] == [
        type(v) for v in (expected.values() if isinstance(expected, dict) else expected)
    ]


def test_and_written_back_digit_for_digit():
    raw = b'{"n":123456789012345678901234567890}'
    assert dumps_exact(loads_exact(raw)) == raw


def test_not_json_is_a_value_error():
    with pytest.raises(ValueError):  # noqa: PT011  # orjson's JSONDecodeError is one
        loads_exact(b"{oops")
