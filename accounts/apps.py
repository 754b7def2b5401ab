from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    # "Accounts" is django-allauth's (email addresses): one heading of that name on the admin index.
    verbose_name = "Users"
