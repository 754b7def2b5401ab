"""Dashboard panels. Each app registers what it can show (in its AppConfig.ready()), so the
dashboard shows what exists and nothing fake."""

from collections.abc import Callable
from typing import Any

from django.http import HttpRequest

# A provider returns a template context for one panel (with a "template" key), or None.
Panel = dict[str, Any]
PanelProvider = Callable[[HttpRequest], Panel | None]
_providers: list[tuple[int, PanelProvider]] = []


def register_panel(provider: PanelProvider, *, order: int = 100) -> PanelProvider:
    if all(existing is not provider for _, existing in _providers):
        _providers.append((order, provider))
        _providers.sort(key=lambda item: item[0])
    return provider


def panels_for(request: HttpRequest) -> list[Panel]:
    return [panel for _, provider in _providers if (panel := provider(request)) is not None]
