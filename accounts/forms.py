from django import forms

from accounts.models import User


class ProfileForm(forms.ModelForm):
    class Meta:
        model = User
        fields = ["name"]
        labels = {"name": "Display name"}


class LowBalanceForm(forms.Form):
    threshold = forms.IntegerField(
        required=False, min_value=0, max_value=1_000_000_000, label="Warn me by email when my balance falls to",
        help_text="Credits. Leave empty for the default: 20% of the last pack you bought.",
    )
