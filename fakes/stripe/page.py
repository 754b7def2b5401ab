"""The hosted checkout page at a session's ``url``: plain HTML, no scripts, no CDN."""

from __future__ import annotations

from html import escape
from typing import Any

_STYLE = """
body{font-family:system-ui,sans-serif;background:#f6f9fc;color:#1a1f36;margin:0}
main{max-width:30rem;margin:3rem auto;background:#fff;border-radius:8px;padding:2rem;
box-shadow:0 2px 8px rgba(0,0,0,.08)}
h1{font-size:1.2rem;margin:0 0 .25rem}.test{color:#b3093c;font-size:.8rem;font-weight:600}
table{width:100%;border-collapse:collapse;margin:1rem 0}td{padding:.3rem 0}td.r{text-align:right}
tr.total td{border-top:1px solid #e3e8ee;font-weight:600}
label{display:block;margin:.75rem 0 .25rem;font-size:.9rem}
input,select{width:100%;box-sizing:border-box;padding:.5rem;border:1px solid #cfd7df;border-radius:4px}
button{display:block;width:100%;margin-top:.6rem;padding:.7rem;border:0;border-radius:4px;
font-size:1rem;cursor:pointer;background:#635bff;color:#fff}
button.alt{background:#e3e8ee;color:#1a1f36}
.alert{background:#fde8ec;color:#b3093c;padding:.6rem;border-radius:4px;margin:1rem 0}
.note{color:#697386;font-size:.85rem}a{color:#635bff}
"""


def money(amount: int, currency: str) -> str:
    symbol = {"usd": "$", "eur": "€", "gbp": "£"}.get(currency)
    return f"{symbol}{amount / 100:,.2f}" if symbol else f"{amount / 100:,.2f} {currency.upper()}"


def _layout(title: str, body: str) -> str:
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width,initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body><main>{body}</main></body></html>"
    )


def _session_rows(session: dict[str, Any]) -> str:
    cur = session["currency"]
    rows = "".join(
        f"<tr><td>{escape(item['description'] or 'Item')} × {item['quantity']}</td>"
        f"<td class=r>{money(item['amount_subtotal'], item['currency'])}</td></tr>"
        for item in session["_line_items"]
    )
    details = session["total_details"] or {}
    if details.get("amount_discount") or details.get("amount_tax"):
        rows += (
            f"<tr><td>Subtotal</td><td class=r id=subtotal>{money(session['amount_subtotal'], cur)}</td></tr>"
        )
    if details.get("amount_discount"):
        rows += f"<tr><td>Discount</td><td class=r id=discount>−{money(details['amount_discount'], cur)}</td></tr>"
    if session["automatic_tax"]["enabled"]:
        rows += f"<tr><td>Tax</td><td class=r id=tax>{money(details.get('amount_tax', 0), cur)}</td></tr>"
    rows += (
        f"<tr class=total><td>Total</td><td class=r id=total>{money(session['amount_total'], cur)}</td></tr>"
    )
    return rows


def checkout_page(
    session: dict[str, Any],
    *,
    error: str | None = None,
    async_delay: float = 3.0,
    customer_email: str = "",
    cards: list[tuple[str, str]] | None = None,
    promotion_code: str = "",
) -> str:
    sid = escape(session["id"])
    setup = session["mode"] == "setup"
    if setup:
        head = (
            "<p class=test>TEST MODE · fake Stripe</p><h1>Save a card</h1>"
            "<p class=note>Your card is saved for future payments; nothing is charged now.</p>"
        )
    else:
        head = f"<p class=test>TEST MODE · fake Stripe</p><h1>Checkout</h1><table>{_session_rows(session)}</table>"
    status = session["status"]
    if status != "open":
        if status == "complete":
            msg = "This Checkout Session is complete."
            if session["payment_status"] == "unpaid":
                msg += " The payment is still processing."
        else:
            msg = "This Checkout Session has expired. Please go back and try again."
        return _layout("Checkout", f"{head}<p id=status data-status={escape(status)}>{escape(msg)}</p>")
    alert = (
        f'<p class=alert role=alert id=error data-testid="decline-message">{escape(error)}</p>'
        if error
        else ""
    )
    # A session created with `customer` shows the Customer's email already filled in: Stripe
    # documents that a Customer attached to a Checkout Session has its saved payment methods,
    # email and billing information populate the page
    # (https://docs.stripe.com/payments/checkout/update-customer; `customer` on
    # https://docs.stripe.com/api/checkout/sessions/create).
    email = (
        session["customer_email"]
        or (session.get("customer_details") or {}).get("email")
        or customer_email
        or ""
    )
    cancel = (
        f'<p class=note><a id=cancel href="{escape(session["cancel_url"])}">← Cancel and go back</a></p>'
        if session["cancel_url"]
        else ""
    )
    # The test cards of https://docs.stripe.com/testing; 4242 is chosen unless the customer picks another.
    options = "".join(
        f"<option value={escape(value)}>{escape(label)}</option>" for value, label in cards or []
    )
    card_field = (
        f"<label for=card>Card</label><select id=card name=card data-testid=card>{options}</select>"
        "<p class=note>Any expiry, any CVC. A 3D Secure card is authenticated on this page.</p>"
    )
    promo = ""
    if session["allow_promotion_codes"]:
        # "allow_promotion_codes: Enables user redeemable promotion codes"
        # (https://docs.stripe.com/api/checkout/sessions/create#create_checkout_session-allow_promotion_codes).
        promo = (
            "<label for=promotion-code>Promotion code</label>"
            f'<input id=promotion-code name=promotion_code data-testid=promotion-code value="{escape(promotion_code)}">'
            "<button id=apply-code data-testid=apply-code class=alt name=action value=apply>Apply</button>"
        )
    if setup:
        buttons = (
            "<button id=pay data-testid=pay name=action value=pay>Save card</button>"
            "<button id=decline data-testid=decline class=alt name=action value=decline>Decline</button>"
        )
    else:
        buttons = f"""<button id=pay data-testid=pay name=action value=pay>Pay</button>
<button id=decline data-testid=decline class=alt name=action value=decline>Decline</button>
<button id=pay-later data-testid=pay-later class=alt name=action value=pay_later>Pay later (succeeds)</button>
<button id=pay-later-fail data-testid=pay-later-fail class=alt name=action value=pay_later_fail>Pay later (fails)</button>
<p class=note>"Pay later" is a bank debit: the session completes unpaid and the payment
settles about {async_delay:g} s later.</p>"""
    body = f"""{head}{alert}
<form method=post action="/c/pay/{sid}">
<label for=email>Email</label>
<input id=email name=email type=email value="{escape(email)}" placeholder="customer@example.com">
{card_field}{promo}
{buttons}
</form>{cancel}"""
    return _layout("Checkout", body)


def done_page(session: dict[str, Any]) -> str:
    paid = session["payment_status"] == "paid"
    msg = "Payment complete." if paid else "Payment submitted; it is processing."
    return _layout("Checkout", f"<p class=test>TEST MODE · fake Stripe</p><h1 id=done>{msg}</h1>")


def invoice_page(inv: dict[str, Any], *, error: str | None = None, cards: list[tuple[str, str]]) -> str:
    """The hosted invoice page (``hosted_invoice_url``): lines, tax, total and, while the invoice
    is open, a Pay button that pays on-session, where the customer can complete 3D Secure."""
    cur = inv["currency"]
    rows = "".join(
        f"<tr><td>{escape(line['description'] or 'Item')} × {line['quantity'] or 1}</td>"
        f"<td class=r>{money(line['amount'], cur)}</td></tr>"
        for line in inv["lines"]["data"]
    )
    rows += f"<tr><td>Subtotal</td><td class=r id=subtotal>{money(inv['subtotal'], cur)}</td></tr>"
    for discount in inv["total_discount_amounts"] or []:
        rows += f"<tr><td>Discount</td><td class=r id=discount>−{money(discount['amount'], cur)}</td></tr>"
    tax = sum(t["amount"] for t in inv["total_taxes"] or [])
    if inv["automatic_tax"]["enabled"] or tax:
        rows += f"<tr><td>Tax</td><td class=r id=tax>{money(tax, cur)}</td></tr>"
    rows += f"<tr class=total><td>Total</td><td class=r id=total>{money(inv['total'], cur)}</td></tr>"
    rows += (
        f"<tr><td>Amount due</td><td class=r id=amount-due>{money(inv['amount_remaining'], cur)}</td></tr>"
    )
    number = escape(inv["number"] or "draft")
    head = (
        f"<p class=test>TEST MODE · fake Stripe</p><h1>Invoice <span id=number>{number}</span></h1>"
        f"<p id=status data-status={escape(inv['status'])}>Status: {escape(inv['status'])}</p>"
        + (f"<p>{escape(inv['description'])}</p>" if inv["description"] else "")
        + f"<table>{rows}</table>"
        + f'<p class=note><a id=pdf href="/i/{escape(inv["id"])}/pdf">Download PDF</a></p>'
    )
    if inv["status"] != "open":
        return _layout(f"Invoice {number}", head)
    alert = (
        f'<p class=alert role=alert id=error data-testid="decline-message">{escape(error)}</p>'
        if error
        else ""
    )
    options = "".join(f"<option value={escape(value)}>{escape(label)}</option>" for value, label in cards)
    body = f"""{head}{alert}
<form method=post action="/i/{escape(inv["id"])}">
<label for=card>Card</label>
<select id=card name=card data-testid=card>{options}</select>
<button id=pay data-testid=pay name=action value=pay>Pay {money(inv["amount_remaining"], cur)}</button>
<p class=note>You are paying on this page, so a card that asks for 3D Secure is authenticated here.</p>
</form>"""
    return _layout(f"Invoice {number}", body)
