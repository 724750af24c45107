"""Admin form support for secrets (device passwords, API keys): never rendered back to the browser.

A blank field keeps the stored value; a "clear" checkbox removes it.
"""

from __future__ import annotations

from django import forms


class SecretFieldsForm(forms.ModelForm):
    """ModelForm whose ``secret_fields`` are write-only."""

    secret_fields: tuple[str, ...] = ()

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name in self.secret_fields:
            if name not in self.fields:
                continue
            field = self.fields[name]
            stored = bool(self.instance and getattr(self.instance, name, ""))
            field.widget = forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"})
            field.required = False
            field.help_text = "Сохранён. Оставьте пустым, чтобы не менять." if stored else "Не задан."
            self.fields[f"clear_{name}"] = forms.BooleanField(required=False, label=f"Удалить: {field.label}")

    def clean(self):
        cleaned = super().clean()
        for name in self.secret_fields:
            if name not in self.fields:
                continue
            if cleaned.get(f"clear_{name}"):
                cleaned[name] = ""
            elif not cleaned.get(name) and self.instance.pk:
                cleaned[name] = getattr(self.instance, name)
        return cleaned
