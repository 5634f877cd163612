"""Merchants, their members and API keys in the admin.

A new API key is shown once, on the page that answers its creation, and never stored in clear
(nor put in a message, a cookie or the session); keys are revoked, not deleted, so the list keeps
who had access and when.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import Count, QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html

from mockups.accounts.models import ApiKey, Membership, Merchant
from mockups.accounts.services import api_key_create, api_key_revoke
from mockups.admin_tools import ViewOnly


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    raw_id_fields = ["user"]
    fields = ["user", "role", "created_at"]
    readonly_fields = ["created_at"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Membership]:
        return super().get_queryset(request).select_related("user")


class ApiKeyInline(ViewOnly, admin.TabularInline):
    """The merchant's keys, read-only here: create and revoke them from the API keys list."""

    model = ApiKey
    extra = 0
    can_delete = False
    show_change_link = True
    fields = ("name", "prefix", "created_at", "last_used_at", "revoked_at")
    readonly_fields = fields


@admin.register(Merchant)
class MerchantAdmin(admin.ModelAdmin):
    list_display = ["name", "public_id", "is_active", "max_active_jobs", "members", "created_at"]
    list_filter = ["is_active"]
    search_fields = ["name", "=public_id"]
    inlines = [MembershipInline, ApiKeyInline]
    readonly_fields = ["public_id", "webhook_secret_hint", "new_key_link", "created_at"]
    fields = [
        "name",
        "is_active",
        "max_active_jobs",
        "public_id",
        "webhook_secret_hint",
        "new_key_link",
        "created_at",
    ]
    actions = ["deactivate", "activate"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Merchant]:
        return super().get_queryset(request).annotate(member_count=Count("memberships"))

    @admin.display(description="members", ordering="member_count")
    def members(self, obj: Merchant) -> int:
        return int(getattr(obj, "member_count", 0))

    @admin.display(description="webhook signing secret")
    def webhook_secret_hint(self, obj: Merchant) -> str:
        return (
            f"{obj.webhook_secret[:10]}… (the merchant sees it in full in their settings)" if obj.pk else "—"
        )

    @admin.display(description="API keys")
    def new_key_link(self, obj: Merchant) -> str:
        if obj.pk is None:
            return "Save the merchant first."
        url = reverse("admin:accounts_apikey_add") + f"?merchant={obj.pk}"
        return format_html('<a class="addlink" href="{}">Create an API key for {}</a>', url, obj.name)

    @admin.action(description="Deactivate (their keys and logins stop working)")
    def deactivate(self, request: HttpRequest, queryset: QuerySet[Merchant]) -> None:
        count = queryset.update(is_active=False)
        self.message_user(
            request, f"Deactivated {count} merchant{'s' if count != 1 else ''}.", messages.SUCCESS
        )

    @admin.action(description="Activate")
    def activate(self, request: HttpRequest, queryset: QuerySet[Merchant]) -> None:
        count = queryset.update(is_active=True)
        self.message_user(
            request, f"Activated {count} merchant{'s' if count != 1 else ''}.", messages.SUCCESS
        )


class KeyStatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("active", "Active"), ("revoked", "Revoked")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> QuerySet[ApiKey]:
        if self.value() == "active":
            return queryset.filter(revoked_at__isnull=True)
        if self.value() == "revoked":
            return queryset.filter(revoked_at__isnull=False)
        return queryset


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = [
        "__str__",
        "name",
        "merchant",
        "active",
        "created_at",
        "created_by",
        "last_used_at",
        "revoked_at",
    ]
    list_select_related = ["merchant", "created_by"]
    list_filter = [KeyStatusFilter]
    search_fields = ["prefix", "name", "merchant__name"]
    autocomplete_fields = ["merchant"]
    actions = ["revoke"]
    ordering = ["-created_at", "-id"]

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return ["merchant", "name"]
        return ["merchant", "name", "prefix", "created_by", "created_at", "last_used_at", "revoked_at"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return [] if obj is None else self.get_fields(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # revoke instead: the row records who had access, and until when

    @admin.display(boolean=True, description="active")
    def active(self, obj: ApiKey) -> bool:
        return obj.is_active

    def save_model(self, request: HttpRequest, obj: ApiKey, form: Any, change: bool) -> None:
        if change:
            obj.save(update_fields=["name"])
            return
        key, raw = api_key_create(merchant=obj.merchant, name=obj.name, created_by=request.user)
        obj.pk = key.pk
        obj.refresh_from_db()
        # Kept on this request only, for response_add: the raw key is shown once and stored nowhere.
        request._new_api_key = raw  # type: ignore[attr-defined]

    def response_add(
        self, request: HttpRequest, obj: ApiKey, post_url_continue: str | None = None
    ) -> HttpResponse:
        raw = getattr(request, "_new_api_key", None)
        if raw is None:
            return super().response_add(request, obj, post_url_continue)
        context = {
            **self.admin_site.each_context(request),
            "title": "Copy the new API key now",
            "opts": self.model._meta,
            "key": obj,
            "raw_key": raw,
            "list_url": reverse("admin:accounts_apikey_changelist"),
        }
        response = TemplateResponse(request, "admin/accounts/apikey/created.html", context)
        response["Cache-Control"] = "no-store"
        return response

    @admin.action(description="Revoke the selected keys")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        count = 0
        for key in queryset.select_related("merchant").filter(revoked_at__isnull=True):
            api_key_revoke(merchant=key.merchant, public_id=str(key.public_id))
            count += 1
        self.message_user(
            request,
            f"Revoked {count} key{'s' if count != 1 else ''}; requests with them are refused from now on.",
            messages.SUCCESS,
        )
