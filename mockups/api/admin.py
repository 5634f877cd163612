"""Read-only admin views of the API's records, for operators looking into a storefront's trouble."""

from __future__ import annotations

from typing import Any

from django.contrib import admin

from mockups.api.models import UploadedFile, WebhookDelivery


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    list_display = ["created_at", "merchant", "job", "event", "attempt", "status_code", "duration_ms", "url"]
    list_filter = ["event", "status_code"]
    search_fields = ["webhook_id", "url", "job__public_id"]
    readonly_fields = [f.name for f in WebhookDelivery._meta.fields]

    def has_add_permission(self, request: Any) -> bool:
        return False

    def has_change_permission(self, request: Any, obj: Any = None) -> bool:
        return False


@admin.register(UploadedFile)
class UploadedFileAdmin(admin.ModelAdmin):
    list_display = ["created_at", "merchant", "name", "content_type", "size", "expires_at"]
    readonly_fields = [f.name for f in UploadedFile._meta.fields]

    def has_add_permission(self, request: Any) -> bool:
        return False
