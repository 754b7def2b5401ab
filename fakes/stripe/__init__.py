"""Offline stand-in for the parts of Stripe that the billing app uses.

Run it with ``python -m fakes.stripe --port 12111``; see README.md in this directory.
Nothing here imports Django or the product.
"""
