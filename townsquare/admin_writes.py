"""Admin pages whose writes go through the services, with the services' refusals shown as form
errors.

A service (``chat.services.message_create``, ``shop.services.purchase_create``, …) makes the
final check where it can be made safely: inside its transaction, after locking or by a
conditional ``UPDATE``. A form's ``clean()`` runs before that and cannot see a concurrent
write, so the admin calls the service from ``save_model``/``save_related`` and turns a refusal
into ``AdminRefused``. ``ServiceWritesAdmin.changeform_view`` catches it after the admin's own
transaction (``ModelAdmin.changeform_view`` wraps a POST in ``transaction.atomic``) has rolled
back, so nothing is stored, logged or published, and renders the same POST again with the
refusal as an error on the form: the operator sees "only 8 left" under the quantity instead of
a 500 page.
"""

from __future__ import annotations

from typing import Any
from weakref import WeakKeyDictionary

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.db.models import Model
from django.http import HttpRequest, HttpResponse

#: The refusal of the first attempt of a request, read by the form of the second.
_refusals: WeakKeyDictionary[HttpRequest, AdminRefused] = WeakKeyDictionary()


class AdminRefused(Exception):
    """A service refused an admin write; ``message`` is shown on ``field`` (None: the form)."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    @classmethod
    def from_validation_error(
        cls, error: ValidationError, *, field: str | None = None
    ) -> AdminRefused:
        """The first message of a service's ``ValidationError``."""
        return cls(error.messages[0] if error.messages else str(error), field=field)


class ServiceWritesAdmin[M: Model](admin.ModelAdmin[M]):
    """A ``ModelAdmin`` whose ``save_model``/``save_related``/``delete_model`` may raise
    ``AdminRefused``: the change is rolled back and the form shown again with the error."""

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        """Called for the add and change pages; on ``AdminRefused`` render the POST again
        (validation only: the refused form does not save) with the refusal on the form."""
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except AdminRefused as refused:
            _refusals[request] = refused
            return super().changeform_view(request, object_id, form_url, extra_context)

    def get_form(
        self, request: HttpRequest, obj: M | None = None, change: bool = False, **kwargs: Any
    ) -> type[forms.ModelForm[M]]:
        """The admin's form; during the second pass, one that carries the refusal."""
        form = super().get_form(request, obj, change, **kwargs)
        refused = _refusals.get(request)
        if refused is None:
            return form
        field = refused.field if refused.field in form.base_fields else None
        message = refused.message

        class Refused(form):  # type: ignore[valid-type,misc]
            def clean(self) -> dict[str, Any]:
                cleaned: dict[str, Any] = super().clean()
                self.add_error(field, message)
                return cleaned

        return Refused
