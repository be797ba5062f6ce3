"""The frame every signed-in page uses: a top bar with navigation, the workspace switcher and
the user menu; plus small shared pieces (stat cards, field labels, error callouts)."""

from __future__ import annotations

import functools
import operator
from typing import Any

import reflex as rx

from creditdash.accounts import roles
from creditdash.routes import WEBHOOKS_PATH
from creditdash.state.base import PortalState, SessionState

# (label, path, the permission its page loads with: accounts/roles.py)
NAV = [
    ("Overview", "/home", "workspace.read"),
    ("API keys", "/keys", "keys.read"),
    ("Usage", "/usage", "workspace.read"),
    ("Webhooks", WEBHOOKS_PATH, "webhooks.read"),
    ("Billing", "/billing", "billing.read"),
    ("Team", "/team", "members.read"),
    ("Account", "/account", None),
]


def brand() -> rx.Component:
    return rx.link(
        rx.hstack(
            rx.icon("coins", size=22, color=rx.color("iris", 10)),
            rx.heading("creditdash", size="5", weight="bold"),
            align="center",
            spacing="2",
        ),
        href="/pricing",
        underline="none",
        color="inherit",
    )


def workspace_switcher() -> rx.Component:
    return rx.cond(
        PortalState.workspaces.length() > 1,
        rx.select.root(
            rx.select.trigger(placeholder="Workspace"),
            rx.select.content(
                rx.foreach(
                    PortalState.workspaces,
                    lambda w: rx.select.item(w["name"], value=w["id"]),
                )
            ),
            value=PortalState.workspace_id,
            on_change=PortalState.pick_workspace,
            size="2",
        ),
        rx.text(PortalState.workspace_name, size="2", weight="medium"),
    )


def nav_link(label: str, href: str, permission: str | None) -> rx.Component:
    """A page's link, left out for a role that cannot open the page (shown while the role is
    not yet known, so the bar does not flicker for those who can)."""
    link = rx.link(label, href=href, size="2", weight="medium")
    if permission is None or set(roles.ROLES) <= set(roles.PERMISSIONS[permission]):
        return link
    return rx.cond((PortalState.workspace_role == "") | can(permission), link)


# Below this width the navigation folds into a menu button (a phone held upright).
NARROW = "@media (max-width: 599px)"
WIDE = "@media (min-width: 600px)"


def only(media: str, component: rx.Component) -> rx.Component:
    """The component, shown only on screens that `media` (NARROW or WIDE) describes."""
    other = WIDE if media == NARROW else NARROW
    component.style[other] = {"display": "none"}
    return component


def menu_item(label: str, href: str, permission: str | None) -> rx.Component:
    """nav_link's entry in the phone menu, left out on the same terms."""
    item = rx.menu.item(label, on_click=rx.redirect(href))
    if permission is None or set(roles.ROLES) <= set(roles.PERMISSIONS[permission]):
        return item
    return rx.cond((PortalState.workspace_role == "") | can(permission), item)


def nav_menu() -> rx.Component:
    """The phone's navigation: one button opening every page, the user and sign-out."""
    return rx.menu.root(
        rx.menu.trigger(
            rx.icon_button(rx.icon("menu", size=18), variant="soft", size="2", id="nav-menu")
        ),
        rx.menu.content(
            *[menu_item(label, href, permission) for label, href, permission in NAV],
            rx.cond(SessionState.is_admin, rx.menu.item("Admin", on_click=rx.redirect("/admin"))),
            rx.menu.separator(),
            rx.box(
                rx.text(SessionState.user_email, size="1", color_scheme="gray"), padding_x="0.75em"
            ),
            rx.menu.item("Sign out", on_click=SessionState.sign_out, color="red"),
        ),
    )


def top_bar() -> rx.Component:
    return rx.flex(
        brand(),
        only(
            WIDE,
            rx.flex(
                *[nav_link(label, href, permission) for label, href, permission in NAV],
                rx.cond(SessionState.is_admin, rx.link("Admin", href="/admin", size="2")),
                spacing="4",
                wrap="wrap",
            ),
        ),
        rx.spacer(),
        workspace_switcher(),
        only(WIDE, rx.text(SessionState.user_email, size="2", color_scheme="gray")),
        only(WIDE, rx.button("Sign out", on_click=SessionState.sign_out, variant="soft", size="2")),
        only(NARROW, rx.box(nav_menu())),
        align="center",
        spacing="5",
        width="100%",
        padding_x=rx.breakpoints(initial="1em", sm="1.5em"),
        padding_y="0.9em",
        border_bottom=f"1px solid {rx.color('gray', 5)}",
        background=rx.color("gray", 1),
        wrap="wrap",
        row_gap="0.6em",
        column_gap=rx.breakpoints(initial="0.75em", sm="1.25em"),
    )


def can(permission: str) -> rx.Var:
    """Whether the member's role allows the permission, for pages to hide what it does not (the
    handlers refuse it anyway: this only spares the member a button that cannot work)."""
    role = rx.Var.create(PortalState.workspace_role)
    allowed = [role == r for r in roles.ROLES if roles.allows(r, permission)]
    return functools.reduce(operator.or_, allowed)


def page_layout(*children: rx.Component) -> rx.Component:
    return rx.box(
        top_bar(),
        rx.container(
            rx.vstack(
                error_callout(PortalState.role_refusal), *children, spacing="5", width="100%"
            ),
            size="4",
            padding_y="2em",
            padding_x="1em",
        ),
        min_height="100vh",
        background=rx.color("gray", 2),
    )


def stat_card(
    label: str, value: rx.Var | str, hint: rx.Var | str = "", **props: object
) -> rx.Component:
    return rx.card(
        rx.vstack(
            rx.text(label, size="2", color_scheme="gray"),
            rx.heading(value, size="6", font_family="ui-monospace, monospace", **props),
            rx.cond(hint != "", rx.text(hint, size="1", color_scheme="gray")),
            spacing="1",
        ),
        min_width="12em",
        flex="1",
    )


def field(
    label: str, control: rx.Component, error: rx.Var | str = "", **props: Any
) -> rx.Component:
    """A labelled control that shares a wrapping row with its neighbours; `error` (a refusal
    about this field, "" for none) shows right under it."""
    control.style["width"] = "100%"
    below = (
        []
        if isinstance(error, str) and not error
        else [rx.cond(error != "", rx.text(error, size="1", color_scheme="red", role="alert"))]
    )
    return rx.vstack(
        rx.text(label, as_="label", size="2", weight="medium"),
        control,
        *below,
        spacing="1",
        flex="1",
        min_width="11em",
        **props,
    )


def error_callout(message: rx.Var | str) -> rx.Component:
    return rx.cond(
        message != "",
        rx.callout(message, icon="triangle_alert", color_scheme="red", role="alert", width="100%"),
    )


def notice_callout(message: rx.Var | str) -> rx.Component:
    return rx.cond(
        message != "",
        rx.callout(message, icon="info", color_scheme="iris", role="status", width="100%"),
    )


def loading(ready: rx.Var | bool, *children: rx.Component) -> rx.Component:
    return rx.cond(ready, rx.fragment(*children), rx.center(rx.spinner(size="3"), width="100%"))


def shown_once_dialog(
    *,
    title: str,
    description: str,
    value: rx.Var | str,
    on_done: Any,
    value_id: str,
    done_id: str,
) -> rx.Component:
    """A secret shown once (a new API key, a webhook signing secret): open while value is set,
    with a copy button; Done forgets it."""
    return rx.alert_dialog.root(
        rx.alert_dialog.content(
            rx.alert_dialog.title(title),
            rx.alert_dialog.description(description),
            rx.code_block(value, language="bash", id=value_id),
            rx.flex(
                rx.button(
                    rx.icon("copy", size=16),
                    "Copy",
                    on_click=rx.set_clipboard(value),
                    variant="soft",
                ),
                rx.alert_dialog.action(rx.button("Done", on_click=on_done, id=done_id)),
                spacing="3",
                justify="end",
                margin_top="1em",
            ),
        ),
        open=rx.Var.create(value) != "",
    )
