"""Forms of billing's pages (the page's view calls the service; the form only reads the input)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django import forms

from billing.models import CreditPack, Wallet
from billing.services import caps


def _time_zone_choices() -> list[tuple[str, str]]:
    return [(name, name.replace("_", " ")) for name in sorted(caps.time_zone_names())]


class AutoTopUpForm(forms.Form):
    """The auto top-up page: when to buy which pack, how often a month, and the spending cap."""

    enabled = forms.BooleanField(required=False, label="Top up automatically")
    threshold = forms.IntegerField(
        required=False, min_value=1, max_value=1_000_000_000, label="When my available credits fall below",
        help_text="Credits (at least 1).",
    )
    pack = forms.ModelChoiceField(
        queryset=CreditPack.objects.none(), required=False, to_field_name="key", label="Buy this pack",
        empty_label="Choose a pack", error_messages={"invalid_choice": "Choose a pack that is on sale."},
    )
    monthly_limit = forms.IntegerField(
        min_value=1, max_value=100, label="At most this many top-ups a month", initial=3,
    )
    monthly_cap = forms.DecimalField(
        required=False, min_value=Decimal("0.01"), max_value=Decimal("1000000"), decimal_places=2,
        label="Monthly spending cap", help_text="Dollars per calendar month; leave empty for no cap.",
    )
    time_zone = forms.ChoiceField(label="My time zone", help_text="Months start on the 1st at midnight here.")

    def __init__(self, *args: Any, wallet: Wallet, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.wallet = wallet
        self.fields["pack"].queryset = CreditPack.objects.filter(active=True)  # type: ignore[attr-defined]
        self.fields["time_zone"].choices = _time_zone_choices()  # type: ignore[attr-defined]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("enabled"):
            if not self.wallet.payment_method_id:
                self.add_error("enabled", "Save a card first: auto top-up charges it.")
            if not data.get("pack") and "pack" not in self.errors:
                self.add_error("pack", "Choose the pack to buy.")
            if data.get("threshold") is None and "threshold" not in self.errors:
                self.add_error("threshold", "Say below how many credits to top up.")
        return data

    @property
    def cap_cents(self) -> int | None:
        cap = self.cleaned_data.get("monthly_cap")
        return None if cap is None else int(cap * 100)
