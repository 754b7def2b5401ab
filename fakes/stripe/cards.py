"""Stripe's test PaymentMethod tokens and what each card does when it is attached or charged.

The tokens and numbers are the ones in https://docs.stripe.com/testing: ``pm_card_visa``
(4242 4242 4242 4242) succeeds; ``pm_card_chargeCustomerFail`` (4000 0000 0000 0341)
"attaching this card to a Customer object succeeds, but attempts to charge the customer
fail"; ``pm_card_authenticationRequired`` (4000 0027 6000 3184) "requires authentication on
all transactions, regardless of how the card is set up", so an off-session payment fails with
``authentication_required``; ``pm_card_chargeDeclined`` (4000 0000 0000 0002) is always
declined with ``card_declined`` / ``generic_decline``. Using a token in the API creates a new
``pm_`` object each time, as Stripe does.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TestCard:
    token: str
    number: str
    brand: str
    # "succeed": every payment succeeds; "decline_charge": attaches, every charge declined;
    # "authenticate": every payment needs 3D Secure; "decline": declined always, attach too.
    behaviour: str
    label: str

    @property
    def last4(self) -> str:
        return self.number[-4:]

    @property
    def fingerprint(self) -> str:
        # Stripe gives one card number the same fingerprint on every PaymentMethod.
        return f"Fake{self.number[-8:]}"[:16]


TEST_CARDS: dict[str, TestCard] = {
    c.token: c
    for c in (
        TestCard("pm_card_visa", "4242424242424242", "visa", "succeed", "Visa 4242 (succeeds)"),
        TestCard(
            "pm_card_chargeCustomerFail",
            "4000000000000341",
            "visa",
            "decline_charge",
            "Visa 0341 (saves, then every charge is declined)",
        ),
        TestCard(
            "pm_card_authenticationRequired",
            "4000002760003184",
            "visa",
            "authenticate",
            "Visa 3184 (3D Secure on every payment)",
        ),
        TestCard("pm_card_chargeDeclined", "4000000000000002", "visa", "decline", "Visa 0002 (declined)"),
    )
}
DEFAULT_CARD = "pm_card_visa"
_BY_NUMBER = {c.number: c for c in TEST_CARDS.values()}


def find(value: str | None) -> TestCard | None:
    """The test card named by a ``pm_card_…`` token or its number (spaces allowed)."""
    if not value:
        return None
    return TEST_CARDS.get(value) or _BY_NUMBER.get(value.replace(" ", ""))
