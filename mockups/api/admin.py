"""The API's records in the admin, read-only, for operators looking into a storefront's trouble:
webhook deliveries (with a "redeliver" action) and files uploaded to ``/v1/files``."""

from __future__ import annotations

import uuid
from typing import Any

from django.contrib import admin, messages
from django.db.models import Max, QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from mockups.admin_tools import ViewOnly
from mockups.api.models import UploadedFile, WebhookDelivery
from mockups.jobs.admin import EstimatedCountPaginator

# Redelivery waits for each receiver's answer (up to WEBHOOK_TIMEOUT_S), so an action sends a few.
REDELIVER_AT_ONCE = 10


class DeliveryOutcomeFilter(admin.SimpleListFilter):
    title = "outcome"
    parameter_name = "outcome"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("delivered", "Delivered (2xx)"), ("failed", "Failed")]

    def queryset(
        self, request: HttpRequest, queryset: QuerySet[WebhookDelivery]
    ) -> QuerySet[WebhookDelivery]:
        delivered = {"status_code__gte": 200, "status_code__lt": 300}
        if self.value() == "delivered":
            return queryset.filter(**delivered)
        if self.value() == "failed":
            return queryset.exclude(**delivered)
        return queryset


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ViewOnly, admin.ModelAdmin):
    list_display = ["created_at", "merchant", "job_link", "event", "attempt", "outcome", "duration_ms", "url"]
    list_select_related = ["merchant", "job"]
    list_filter = [DeliveryOutcomeFilter, "event"]
    search_fields = ["=webhook_id", "url"]  # and a job id, see get_search_results
    ordering = ["-id"]
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    list_per_page = 50
    readonly_fields = [field.name for field in WebhookDelivery._meta.fields]
    actions = ["redeliver"]

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[WebhookDelivery], search_term: str
    ) -> Any:
        try:  # a job id finds that job's deliveries through the job's unique index
            return queryset.filter(job__public_id=uuid.UUID(search_term.strip())), False
        except ValueError:
            return super().get_search_results(request, queryset, search_term)

    @admin.display(description="job")
    def job_link(self, obj: WebhookDelivery) -> SafeString:
        return format_html(
            '<a href="{}">{}</a>',
            reverse("admin:jobs_job_change", args=[obj.job_id]),
            str(obj.job.public_id)[:8],
        )

    @admin.display(description="outcome")
    def outcome(self, obj: WebhookDelivery) -> str:
        if obj.succeeded:
            return f"{obj.status_code}"
        return f"{obj.status_code or ''} {obj.error[:80]}".strip() or "—"

    @admin.action(description="Redeliver now (same webhook-id, the job's latest state)")
    def redeliver(self, request: HttpRequest, queryset: QuerySet[WebhookDelivery]) -> None:
        """Send each selected event again, once, and report what the receiver answered.

        The webhook-id stays the same, so a receiver that already processed the event can tell;
        the body is built now, from the job's latest state, as every delivery is.
        """
        from mockups.api.webhooks import WebhookDeliveryFailed, webhook_deliver

        events = list(
            queryset.values("job__public_id", "event", "webhook_id")
            .annotate(last_attempt=Max("attempt"))
            .order_by("job__public_id", "event")[: REDELIVER_AT_ONCE + 1]
        )
        if len(events) > REDELIVER_AT_ONCE:
            self.message_user(
                request,
                f"Select at most {REDELIVER_AT_ONCE} events at a time: each one waits for the receiver.",
                messages.ERROR,
            )
            return
        for event in events:
            label = f"{event['event']} of job {event['job__public_id']}"
            try:
                delivery = webhook_deliver(
                    job_id=str(event["job__public_id"]),
                    event=event["event"],
                    webhook_id=event["webhook_id"],
                    attempt=event["last_attempt"] + 1,
                )
            except WebhookDeliveryFailed as exc:
                self.message_user(request, f"{label}: not delivered ({exc}).", messages.ERROR)
                continue
            if delivery is None:
                self.message_user(
                    request, f"{label}: nothing to send (the job has no webhook any more).", messages.WARNING
                )
            elif delivery.succeeded:
                self.message_user(
                    request, f"{label}: delivered, the receiver answered {delivery.status_code}."
                )
            else:
                self.message_user(request, f"{label}: not delivered ({delivery.error}).", messages.ERROR)


@admin.register(UploadedFile)
class UploadedFileAdmin(ViewOnly, admin.ModelAdmin):
    list_display = ["created_at", "merchant", "name", "content_type", "size", "expires_at"]
    list_select_related = ["merchant"]
    search_fields = ["=public_id", "name", "sha256"]
    ordering = ["-id"]
    show_full_result_count = False
    readonly_fields = [field.name for field in UploadedFile._meta.fields]
