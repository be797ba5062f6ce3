"""Reflex configuration. Runtime settings come from creditdash.settings (CREDITDASH_*)."""

import reflex as rx

from creditdash.core.settings import get_settings

_settings = get_settings()

config = rx.Config(
    app_name="creditdash",
    frontend_port=_settings.port,
    backend_port=_settings.port,
    telemetry_enabled=False,
    show_built_with_reflex=False,
    plugins=[rx.plugins.RadixThemesPlugin(theme=rx.theme(accent_color="iris", radius="medium"))],
    disable_plugins=[rx.plugins.SitemapPlugin],
)
