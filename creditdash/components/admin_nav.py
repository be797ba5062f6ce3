"""The admin workspace's own navigation, under the top bar."""

from __future__ import annotations

import reflex as rx

ADMIN_NAV = [
    ("Customers", "/admin"),
    ("Payment orders", "/admin/orders"),
    ("Payments", "/admin/payments"),
    ("Packages and invoices", "/admin/sales"),
    ("Prices and margins", "/admin/models"),
    ("Providers", "/admin/providers"),
    ("Upstream costs", "/admin/upstream"),
    ("Requests", "/admin/requests"),
    ("Mail", "/admin/mail"),
    ("Audit log", "/admin/audit"),
]


def admin_nav() -> rx.Component:
    return rx.flex(
        rx.badge("admin", color_scheme="tomato", variant="solid"),
        *[rx.link(label, href=href, size="2", weight="medium") for label, href in ADMIN_NAV],
        spacing="4",
        align="center",
        wrap="wrap",
    )
