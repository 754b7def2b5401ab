from django.urls import path

from billing.api import views

urlpatterns = [
    path("billing/wallet/", views.WalletView.as_view(), name="api-billing-wallet"),
    path("billing/ledger/", views.LedgerView.as_view(), name="api-billing-ledger"),
    path("billing/packs/", views.PackListView.as_view(), name="api-billing-packs"),
    path("billing/purchases/", views.PurchaseListView.as_view(), name="api-billing-purchases"),
    path("billing/checkout/", views.CheckoutView.as_view(), name="api-billing-checkout"),
    path("billing/grants/", views.GrantListView.as_view(), name="api-billing-grants"),
    path("billing/promo-codes/redeem/", views.RedeemCodeView.as_view(), name="api-billing-redeem-code"),
]
