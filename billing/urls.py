from django.urls import path

from billing import topup_views, views

urlpatterns = [
    path("billing/buy/", views.buy_credits, name="buy_credits"),
    path("billing/success/", views.checkout_success, name="billing_success"),
    path("billing/purchases/", views.purchase_history, name="billing_purchases"),
    path("billing/purchases/<uuid:public_id>/status/", views.purchase_status, name="billing_purchase_status"),
    path("billing/wallet/", views.wallet, name="billing_wallet"),
    path("billing/wallet/redeem/", views.redeem_code, name="billing_redeem_code"),
    path("billing/auto-top-up/", topup_views.auto_top_up, name="billing_auto_top_up"),
    path("billing/auto-top-up/card/", topup_views.save_card, name="billing_save_card"),
    path("billing/stripe/webhook/", views.stripe_webhook, name="stripe_webhook"),
]
