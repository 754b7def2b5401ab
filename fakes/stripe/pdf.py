"""A minimal, valid one-page PDF of an invoice, written by hand (no PDF library).

Stripe's ``invoice_pdf`` is a link to a PDF; ours lists the number, the lines, the tax and
the total in Helvetica, one of the 14 standard fonts every reader has, so nothing is embedded.
"""

from __future__ import annotations

from typing import Any

from .page import money


def _escape(text: str) -> bytes:
    # PDF literal strings escape backslash and parentheses; standard fonts speak Latin-1.
    raw = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
    return raw.encode("latin-1", "replace")


def document(lines: list[str]) -> bytes:
    """A one-page PDF showing ``lines`` top to bottom."""
    stream = b"BT /F1 11 Tf 14 TL 56 780 Td\n"
    for i, line in enumerate(lines[:50]):
        stream += (b"" if i == 0 else b"T* ") + b"(" + _escape(line) + b") Tj\n"
    stream += b"ET\n"
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 842] "
        b"/Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
        b"<< /Length " + str(len(stream)).encode() + b" >>\nstream\n" + stream + b"endstream",
    ]
    out = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n"
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{offset:010d} 00000 n \n".encode() for offset in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return out


def invoice_pdf(inv: dict[str, Any]) -> bytes:
    cur = inv["currency"]
    rows = [
        f"Invoice {inv['number'] or '(draft)'}",
        f"Status: {inv['status']}",
        f"Billed to: {inv['customer_email'] or inv['customer_name'] or inv['customer'] or ''}",
        "",
    ]
    if inv["description"]:
        rows += [inv["description"], ""]
    for line in inv["lines"]["data"]:
        rows.append(
            f"{line['description'] or 'Item'} x {line['quantity'] or 1}    {money(line['amount'], cur)}"
        )
    rows += ["", f"Subtotal    {money(inv['subtotal'], cur)}"]
    for discount in inv["total_discount_amounts"] or []:
        rows.append(f"Discount    -{money(discount['amount'], cur)}")
    tax = sum(t["amount"] for t in inv["total_taxes"] or [])
    if inv["automatic_tax"]["enabled"] or tax:
        rows.append(f"Tax    {money(tax, cur)}")
    rows += [
        f"Total    {money(inv['total'], cur)}",
        f"Amount paid    {money(inv['amount_paid'], cur)}",
        f"Amount due    {money(inv['amount_remaining'], cur)}",
    ]
    if inv["footer"]:
        rows += ["", inv["footer"]]
    return document(rows)
