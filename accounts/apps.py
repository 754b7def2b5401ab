from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    # "Accounts" is django-allauth's (email addresses): one heading of that name on the admin index.
    verbose_name = "Users"

    def ready(self) -> None:
        # Connects the email_confirmed receiver in every process, not only where a form was built.
        from accounts import signup  # noqa: F401
