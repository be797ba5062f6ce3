"""Form field parsing shared by the admin and portal handlers."""

from __future__ import annotations

import pytest

from creditdash.billing.pricing import Price
from creditdash.errors import ValidationFailed
from creditdash.state import forms


def test_whole_numbers() -> None:
    assert forms.whole({"n": " 42 "}, "n") == 42
    assert forms.whole({}, "n", "7") == 7
    assert forms.optional_whole({"n": "  "}, "n") is None
    for bad in ("-1", "1.5", "²", "1234567", "x"):
        with pytest.raises(ValidationFailed, match="n must be a whole number"):
            forms.whole({"n": bad}, "n")


def test_checkboxes_and_prices() -> None:
    assert forms.checked({"a": "on"}, "a") and not forms.checked({}, "a")
    form = {"input": "0.6", "output": "2.4", "cached": "", "fee": "0.000001"}
    assert forms.price(form) == Price(600_000, 2_400_000, 0, 1)
    with pytest.raises(ValidationFailed, match="output cost"):
        forms.price({"output": "0.0000001"}, "cost")
