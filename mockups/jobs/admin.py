"""Jobs and variations in the admin: read-only, with their images, quick at 100,000 jobs.

Lists are ordered by the primary key (an index scan; ``created_at`` has no index of its own), join
what they show with ``list_select_related``, fetch each page's variations in one query, never count
the whole table twice (``show_full_result_count = False``), and on PostgreSQL read an unfiltered
list's total from the planner's estimate instead of ``COUNT(*)`` (see :class:`EstimatedCountPaginator`).
"""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

from django.contrib import admin
from django.core.paginator import Paginator
from django.db import connections
from django.db.models import Prefetch, QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.functional import cached_property
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

from mockups.admin_tools import ReadOnly
from mockups.jobs.media import media_url
from mockups.jobs.models import Job, Variation

# Below this many rows an exact count is cheap enough everywhere.
EXACT_COUNT_BELOW = 50_000


class EstimatedCountPaginator(Paginator):
    """Counts exactly, except an unfiltered queryset on PostgreSQL with a large table: then the
    planner's row estimate (``pg_class.reltuples``, kept by autovacuum) stands in for ``COUNT(*)``,
    which would read the whole table on every page of the list."""

    @cached_property
    def count(self) -> int:
        queryset = self.object_list
        if isinstance(queryset, QuerySet) and not queryset.query.where:
            estimate = _table_estimate(queryset)
            if estimate is not None and estimate >= EXACT_COUNT_BELOW:
                return estimate
        return super().count


def _table_estimate(queryset: QuerySet[Any]) -> int | None:
    connection = connections[queryset.db]
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass(%s)",
            [queryset.model._meta.db_table],
        )
        row = cursor.fetchone()
    return int(row[0]) if row and row[0] is not None and row[0] >= 0 else None


def _thumb(name: str | None, *, side: int = 48, alt: str = "") -> SafeString:
    if not name:
        return mark_safe("—")  # noqa: S308  (a constant)
    return format_html(
        '<a href="{0}" target="_blank" rel="noopener"><img src="{0}" alt="{1}" width="{2}" height="{2}" '
        'loading="lazy" style="object-fit:contain;background:#eee;border-radius:3px"></a>',
        media_url(name),
        alt,
        side,
    )


class VariationInline(ReadOnly, admin.TabularInline):
    model = Variation
    extra = 0
    can_delete = False
    fields = (
        "index",
        "image_tag",
        "status",
        "style_version",
        "seed",
        "steps",
        "fidelity_max_delta",
        "gpu_seconds",
        "error",
    )
    readonly_fields = fields
    ordering = ["index"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Variation]:
        return super().get_queryset(request).select_related("style_version__style")

    @admin.display(description="image")
    def image_tag(self, obj: Variation) -> SafeString:
        return _thumb(obj.image.name if obj.image else "", side=160, alt=f"variation {obj.index}")


@admin.register(Job)
class JobAdmin(ReadOnly, admin.ModelAdmin):
    list_display = [
        "public_id",
        "merchant",
        "status",
        "source",
        "variation_summary",
        "gpu_time",
        "created_at",
    ]
    list_select_related = ["merchant"]
    list_filter = ["status", "source"]
    search_fields = ["merchant__name", "product_name"]  # and a job id, see get_search_results
    ordering = ["-id"]
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    list_per_page = 50
    raw_id_fields = ["merchant", "created_by"]
    inlines = [VariationInline]
    fieldsets = [
        (None, {"fields": ["public_id", "merchant", "created_by", "source", "status", "product_name"]}),
        ("Images", {"fields": ["original_tag", "cutout_tag", "mask_tag", "control_tag"]}),
        ("Cutout", {"fields": ["cutout_method", "cutout_confidence", "original_width", "original_height"]}),
        (
            "Request",
            {"fields": ["parameters", "base_model", "webhook_url", "webhook_events", "idempotency_key"]},
        ),
        (
            "Progress",
            {
                "fields": [
                    "attempts",
                    "error_code",
                    "error",
                    "cancel_requested_at",
                    "gpu_seconds",
                    "created_at",
                    "started_at",
                    "prepared_at",
                    "generating_at",
                    "finished_at",
                ]
            },
        ),
    ]
    readonly_fields = ["original_tag", "cutout_tag", "mask_tag", "control_tag"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Job]:
        # The list sums up each job's variations: one query for the whole page. Their images are on
        # the job's own page: a page of 50 jobs would otherwise pull 250 full-size PNGs.
        variations = Variation.objects.only("id", "job_id", "index", "status").order_by("index")
        return super().get_queryset(request).prefetch_related(Prefetch("variations", queryset=variations))

    def get_search_results(self, request: HttpRequest, queryset: QuerySet[Job], search_term: str) -> Any:
        try:  # a job id finds that job through its unique index
            return queryset.filter(public_id=uuid.UUID(search_term.strip())), False
        except ValueError:
            return super().get_search_results(request, queryset, search_term)

    @admin.display(description="variations")
    def variation_summary(self, obj: Job) -> str:
        counts = Counter(variation.get_status_display().lower() for variation in obj.variations.all())
        return ", ".join(f"{count} {status}" for status, count in sorted(counts.items())) or "—"

    @admin.display(description="GPU time", ordering="gpu_seconds")
    def gpu_time(self, obj: Job) -> str:
        return f"{obj.gpu_seconds:.2f} s" if obj.gpu_seconds else "—"

    @admin.display(description="original")
    def original_tag(self, obj: Job) -> SafeString:
        return _thumb(obj.original.name if obj.original else "", side=240, alt="original")

    @admin.display(description="cutout")
    def cutout_tag(self, obj: Job) -> SafeString:
        return _thumb(obj.cutout.name if obj.cutout else "", side=240, alt="cutout")

    @admin.display(description="mask")
    def mask_tag(self, obj: Job) -> SafeString:
        return _thumb(obj.mask.name if obj.mask else "", side=240, alt="mask")

    @admin.display(description="control image")
    def control_tag(self, obj: Job) -> SafeString:
        return _thumb(obj.control.name if obj.control else "", side=240, alt="control image")


@admin.register(Variation)
class VariationAdmin(ReadOnly, admin.ModelAdmin):
    list_display = ["__str__", "status", "style", "fidelity_max_delta", "gpu_seconds", "finished_at"]
    list_select_related = ["job", "style_version__style"]
    list_filter = ["status"]
    ordering = ["-id"]
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    list_per_page = 50
    raw_id_fields = ["job", "style_version"]
    readonly_fields = ["image_tag", "job_link"]
    exclude = ["image"]

    @admin.display(description="image")
    def image_tag(self, obj: Variation) -> SafeString:
        return _thumb(obj.image.name if obj.image else "", side=48, alt=f"variation {obj.index}")

    @admin.display(description="style")
    def style(self, obj: Variation) -> str:
        return str(obj.style_version)

    @admin.display(description="job")
    def job_link(self, obj: Variation) -> SafeString:
        return format_html(
            '<a href="{}">{}</a>', reverse("admin:jobs_job_change", args=[obj.job_id]), obj.job
        )
