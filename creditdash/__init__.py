"""creditdash: prepaid usage credits and a metered OpenAI-compatible gateway."""

__version__ = "0.1.0"
