"""Offline stand-in for the OpenAI Realtime API (WebRTC, sideband, hangup, Usage and Costs).

Imports nothing from the product: the product, the official ``openai`` SDK and a browser talk to it
unchanged, only with a different base URL. See README.md.
"""

from fakes.openai.config import FakeConfig, KeyInfo

__all__ = ["FakeConfig", "KeyInfo"]
