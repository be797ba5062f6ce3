"""Wire protocols at the metered core's two edges (base.py says how they plug in).

Client wires: base.OPENAI (chat/completions, completions, embeddings as they are). Upstream
wires, by provider kind: UPSTREAM_WIRES (OpenAI's in base.py, Anthropic's Messages in
anthropic_upstream.py).
"""

from __future__ import annotations

from creditdash.proxy.wires.anthropic_upstream import ANTHROPIC_UPSTREAM
from creditdash.proxy.wires.base import OPENAI_UPSTREAM, UpstreamWire

# Provider kind -> the wire its upstreams speak.
UPSTREAM_WIRES: dict[str, UpstreamWire] = {
    "openai": OPENAI_UPSTREAM,
    "sandbox": OPENAI_UPSTREAM,
    "anthropic": ANTHROPIC_UPSTREAM,
    "anthropic-sandbox": ANTHROPIC_UPSTREAM,
}


def upstream_wire(kind: str) -> UpstreamWire | None:
    """The wire of a provider kind; None for a kind this gateway cannot call."""
    return UPSTREAM_WIRES.get(kind)
