"""The one amount helper (billing/templatetags/money.py): pages and e-mails format money and
credits through it, in the active language's way."""

from django.template import Context, Template
from django.utils import translation

from billing.models import money
from billing.templatetags.money import format_credits, format_money


def test_money_is_written_the_english_way_by_default():
    assert format_money(1200, "usd") == "$12.00"
    assert format_money(123456, "usd") == "$1,234.56"
    assert format_money(5, "usd") == "$0.05"


def test_money_follows_the_currency_s_minor_units():
    # JPY has no minor unit: 500 of them is ¥500, not ¥5.00.
    assert format_money(500, "jpy") == "¥500"
    assert format_money(1999, "eur") == "€19.99"


def test_money_follows_the_active_language():
    with translation.override("de"):
        assert format_money(123456, "eur") == "1.234,56\xa0€"
        assert format_credits(7500) == "7.500"
    with translation.override("fr"):
        assert format_credits(7500) == "7\u202f500"


def test_credits_are_grouped_and_none_is_a_dash():
    assert format_credits(1000) == "1,000"
    assert format_credits(-1500) == "-1,500"
    assert format_credits(None) == "–"


def test_the_model_helper_is_the_same_helper():
    assert money(750000, "usd") == "$7,500.00"


def test_template_filters():
    rendered = Template(
        "{% load money %}{{ cents|money:cur }}|{{ n|credits }}|{{ n|credits_label }}|{{ one|credits_label }}|{{ none|credits }}"
    ).render(Context({"cents": 1000, "cur": "usd", "n": 7500, "one": 1, "none": None}))
    assert rendered == "$10.00|7,500|7,500 credits|1 credit|–"
