"""The ledger's vocabulary is data: the strings below are in every database already.

Each expected value is written out literally, as the code before billing/codes.py built it, so
a changed spelling fails here instead of orphaning the rows stored under the old one.
"""

from __future__ import annotations

import ast
import inspect

from creditdash.billing import codes
from creditdash.billing.codes import TransferCode


def test_transfer_codes_are_the_stored_strings() -> None:
    assert {member.name: str(member) for member in TransferCode} == {
        "GRANT": "grant",
        "DEBIT_ADJUSTMENT": "debit_adjustment",
        "USAGE": "usage",
        "USAGE_OVERAGE": "usage_overage",
        "TOPUP": "topup",
        "TOPUP_BONUS": "topup_bonus",
        "REFUND": "refund",
        "REFUND_REVERSAL": "refund_reversal",
        "DISPUTE": "dispute",
        "REVENUE_SHARD": "revenue_shard",
    }


def test_a_code_is_its_string() -> None:
    # Compared with, hashed as and formatted as the plain value: rows read back from the
    # database (plain str) match the members, and dicts keyed by either find the other.
    assert TransferCode.TOPUP == "topup"
    assert {"topup": 1}[TransferCode.TOPUP] == 1
    assert {TransferCode.TOPUP: 1}["topup"] == 1
    assert f"{TransferCode.USAGE_OVERAGE}" == "usage_overage"


def test_key_builders_give_todays_keys() -> None:
    assert codes.hold_key("req_abc") == "req:req_abc"
    assert codes.overage_key("req_abc") == "req:req_abc:overage"
    assert codes.resolve_key(42) == "ledger:resolve:42"
    assert codes.order_credit_key("ord_x") == "order:ord_x:credit"
    assert codes.order_bonus_key("ord_x") == "order:ord_x:bonus"
    assert codes.refund_key("rf-1") == "refund:rf-1"
    assert codes.refund_reversal_key("rf-1") == "refund:rf-1:reversal"
    assert codes.opening_grant_key("cus_y") == "opening-grant:cus_y"
    assert codes.admin_adjustment_key("k1") == "admin-adjust:k1"
    assert codes.checkout_key("ord_x") == "checkout:ord_x"
    assert codes.autotopup_charge_key("att_x") == "autotopup:att_x"
    assert codes.autotopup_setup_key("pmt_x") == "autotopup-setup:pmt_x"
    assert codes.autotopup_customer_key("cus_y") == "autotopup-customer:cus_y"
    assert codes.dispute_hold_key("dsp_x") == "dispute:dsp_x:hold"


def test_the_resolution_keys_are_the_reserved_ones() -> None:
    # The ledger refuses caller keys with this prefix; a resolution key must carry it.
    assert codes.RESERVED_KEY_PREFIX == "ledger:"
    assert codes.resolve_key(1).startswith(codes.RESERVED_KEY_PREFIX)
    for build in (codes.hold_key, codes.overage_key, codes.order_credit_key):
        assert not build("x").startswith(codes.RESERVED_KEY_PREFIX)


def test_codes_imports_only_the_standard_library() -> None:
    tree = ast.parse(inspect.getsource(codes))
    imported = {
        (node.module or "").split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
    } | {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    assert imported <= {"__future__", "enum"}
