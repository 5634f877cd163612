"""The operators' catalog admin: LoRA files, versioned styles with previews, base models, ControlNets.

Writes go through ``mockups.catalog.services``: a LoRA upload is checked and stored by
``lora_create`` / ``lora_replace_file``; a style's settings change only by a new version
(``style_version_create``), so jobs keep the version they were made with.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from django.contrib import admin, messages
from django.db.models import F, Prefetch, QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from mockups.admin_tools import ReadOnly, ViewOnly
from mockups.catalog.forms import MAX_STYLE_LORAS, BaseModelForm, ControlNetForm, LoraForm, StyleForm
from mockups.catalog.models import (
    BaseModel,
    ControlNetModel,
    Lora,
    PreviewStatus,
    Style,
    StylePreview,
    StyleVersion,
    StyleVersionLora,
)
from mockups.catalog.reference_products import REFERENCE_PRODUCTS
from mockups.catalog.services import (
    base_model_set_default,
    controlnet_set_default,
    lora_create,
    lora_delete,
    lora_preload_request,
    lora_replace_file,
    style_delete,
    style_preview_request,
    style_version_create,
    style_versions_in_use,
)
from mockups.errors import DomainError
from mockups.fleet.selectors import gpu_workers_by_lora, gpu_workers_by_model, gpu_workers_seen
from mockups.jobs.media import media_url


def _size(size_bytes: int) -> str:
    for unit, scale in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size_bytes >= scale:
            return f"{size_bytes / scale:.1f} {unit}"
    return f"{size_bytes} B"


def _names(names: list[str]) -> str:
    return ", ".join(names) if names else "—"


def _image(name: str | None, *, side: int = 64, alt: str = "") -> SafeString:
    if not name:
        return mark_safe("—")  # noqa: S308  (a constant)
    return format_html(
        '<img src="{}" alt="{}" width="{}" height="{}" loading="lazy" '
        'style="object-fit:cover;border-radius:4px">',
        media_url(name),
        alt,
        side,
        side,
    )


# -- LoRAs ---------------------------------------------------------------------------------------


@admin.register(Lora)
class LoraAdmin(admin.ModelAdmin):
    form = LoraForm
    list_display = [
        "name",
        "rank",
        "size",
        "sha256_short",
        "preferred_weight",
        "used_by",
        "resident",
        "updated_at",
    ]
    search_fields = ["name", "trigger_words", "sha256"]
    ordering = ["name"]
    actions = ["preload_on_workers"]
    readonly_fields = [
        "file_details",
        "used_by_styles",
        "resident_on_workers",
        "preload_requested_at",
        "created_at",
        "updated_at",
    ]

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        main: tuple[str, ...] = ("name", "upload", "trigger_words", "preferred_weight", "licence_note")
        if obj is None:
            return [(None, {"fields": main})]
        return [
            (None, {"fields": main}),
            ("File", {"fields": ("file_details", "created_at", "updated_at")}),
            (
                "Where it is used",
                {"fields": ("used_by_styles", "resident_on_workers", "preload_requested_at")},
            ),
        ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Lora]:
        # The styles whose *current* version uses each LoRA, in one query for the whole page.
        current_links = StyleVersionLora.objects.filter(
            style_version__style__current_version=F("style_version")
        ).select_related("style_version__style")
        return (
            super()
            .get_queryset(request)
            .prefetch_related(Prefetch("style_links", queryset=current_links, to_attr="current_links"))
        )

    def get_changelist_instance(self, request: HttpRequest) -> Any:
        changelist = super().get_changelist_instance(request)
        holders = gpu_workers_by_lora(workers=gpu_workers_seen())
        for lora in changelist.result_list:
            lora.resident_on = holders.get(lora.sha256, [])
        return changelist

    @admin.display(description="size", ordering="size_bytes")
    def size(self, obj: Lora) -> str:
        return _size(obj.size_bytes)

    @admin.display(description="sha256")
    def sha256_short(self, obj: Lora) -> str:
        return obj.sha256[:12]

    def _styles(self, obj: Lora) -> list[Style]:
        links = getattr(obj, "current_links", None)
        if links is None:
            links = list(
                StyleVersionLora.objects.filter(
                    lora=obj, style_version__style__current_version=F("style_version")
                ).select_related("style_version__style")
            )
        return sorted(
            {link.style_version.style for link in links}, key=lambda style: (style.position, style.name)
        )

    @admin.display(description="used by styles")
    def used_by(self, obj: Lora) -> str:
        return _names([style.name for style in self._styles(obj)])

    @admin.display(description="resident on")
    def resident(self, obj: Lora) -> str:
        workers = getattr(obj, "resident_on", [])
        return f"{len(workers)} worker{'s' if len(workers) != 1 else ''}" if workers else "—"

    @admin.display(description="file")
    def file_details(self, obj: Lora) -> SafeString:
        return format_html(
            "{}<br>sha256 <code>{}</code><br>rank {} · {} ({} bytes)",
            obj.file.name,
            obj.sha256,
            obj.rank,
            _size(obj.size_bytes),
            obj.size_bytes,
        )

    @admin.display(description="styles using it now")
    def used_by_styles(self, obj: Lora) -> SafeString:
        styles = self._styles(obj)
        if not styles:
            return mark_safe("No style's current version uses this LoRA.")  # noqa: S308
        return format_html_join(
            mark_safe("<br>"),  # noqa: S308
            '<a href="{}">{}</a> (v{})',
            (
                (
                    reverse("admin:catalog_style_change", args=[style.pk]),
                    style.name,
                    style.current_version.number,
                )
                for style in styles
                if style.current_version is not None
            ),
        )

    @admin.display(description="resident on GPU workers")
    def resident_on_workers(self, obj: Lora) -> str:
        if obj.pk is None:
            return "—"
        holders = gpu_workers_by_lora(workers=gpu_workers_seen()).get(obj.sha256, [])
        return _names(holders) if holders else "Not in any live GPU worker's RAM cache."

    @admin.action(description="Pre-load into every GPU worker's RAM cache")
    def preload_on_workers(self, request: HttpRequest, queryset: QuerySet[Lora]) -> None:
        count = lora_preload_request(loras=queryset)
        workers = len(gpu_workers_seen())
        self.message_user(
            request,
            f"Asked {workers} live GPU worker{'s' if workers != 1 else ''} to pre-load {count} "
            f"LoRA{'s' if count != 1 else ''}; each does it within a few seconds, and workers that "
            "start later pre-load them too.",
            messages.SUCCESS,
        )

    def delete_model(self, request: HttpRequest, obj: Lora) -> None:
        lora_delete(lora=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Lora]) -> None:
        for lora in queryset:
            lora_delete(lora=lora)

    def save_model(self, request: HttpRequest, obj: Lora, form: Any, change: bool) -> None:
        upload = form.cleaned_data.get("upload")
        if not change:
            created = lora_create(
                name=obj.name,
                upload=upload,
                trigger_words=obj.trigger_words,
                preferred_weight=obj.preferred_weight,
                licence_note=obj.licence_note,
                info=form.lora_info,
            )
            obj.pk = created.pk
            obj.refresh_from_db()
            return
        obj.save(update_fields=["name", "trigger_words", "preferred_weight", "licence_note"])
        if upload:
            lora_replace_file(lora=obj, upload=upload, info=form.lora_info)
            self.message_user(
                request,
                f"{obj.name} now has a new file (sha256 {obj.sha256[:12]}…): the next job of every style "
                "using it reads the new file; no worker needs a restart.",
                messages.INFO,
            )


# -- styles --------------------------------------------------------------------------------------


class StyleVersionInline(ReadOnly, admin.TabularInline):
    """The version history, newest first, read-only: versions are never edited."""

    model = StyleVersion
    fk_name = "style"
    extra = 0
    can_delete = False
    show_change_link = True
    verbose_name = "version"
    verbose_name_plural = "Version history (read-only; saving the style adds a version)"
    fields = ("number", "created_at", "prompt_template", "settings", "lora_list")
    readonly_fields = fields
    ordering = ["-number"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[StyleVersion]:
        return super().get_queryset(request).prefetch_related("lora_links__lora")

    @admin.display(description="settings")
    def settings(self, obj: StyleVersion) -> str:
        if obj.backdrop == "studio":
            return f"studio {obj.studio_fill}, shadow {obj.shadow}, {obj.output_preset}"
        return (
            f"{obj.steps} steps, guidance {obj.guidance:g}, {obj.scheduler}, "
            f"ControlNet {obj.controlnet_scale:g}, shadow {obj.shadow}, {obj.output_preset}"
        )

    @admin.display(description="LoRAs")
    def lora_list(self, obj: StyleVersion) -> str:
        return _names([f"{link.lora.name} @ {link.weight:g}" for link in obj.lora_links.all()])


@admin.register(Style)
class StyleAdmin(admin.ModelAdmin):
    form = StyleForm
    change_form_template = "admin/catalog/style/change_form.html"
    list_display = [
        "thumbnail_tag",
        "name",
        "slug",
        "is_enabled",
        "position",
        "version",
        "available_to",
        "lora_names",
    ]
    list_display_links = ["thumbnail_tag", "name"]
    list_editable = ["is_enabled", "position"]
    list_filter = ["is_enabled"]
    search_fields = ["name", "slug", "description"]
    list_select_related = ["current_version"]
    prepopulated_fields = {"slug": ["name"]}
    autocomplete_fields = ["restricted_to"]  # a search box: there may be thousands of merchants
    inlines = [StyleVersionInline]
    actions = ["render_previews", "enable", "disable"]
    readonly_fields = ["prompt_preview", "previews", "tile_picture"]
    fieldsets = [
        (None, {"fields": ["name", "slug", "description", "is_enabled", "position", "based_on"]}),
        (
            "Who may use it",
            {
                "fields": ["restricted_to"],
                "description": "Leave empty for every merchant. The internal previews merchant is added "
                "when a restricted style is previewed; no shop sees it.",
            },
        ),
        ("Prompt", {"fields": ["prompt_template", "negative_prompt", "prompt_preview"]}),
        ("Backdrop", {"fields": ["backdrop", ("studio_fill", "studio_color", "studio_color_2"), "shadow"]}),
        ("Generation", {"fields": ["steps", "guidance", "scheduler", "controlnet_scale", "output_preset"]}),
        ("LoRAs", {"fields": [(f"lora_{n}", f"weight_{n}") for n in range(1, MAX_STYLE_LORAS + 1)]}),
        ("Previews", {"fields": ["previews", "tile_picture"]}),
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Style]:
        return (
            super()
            .get_queryset(request)
            .prefetch_related("restricted_to", "current_version__lora_links__lora")
        )

    # -- list columns ------------------------------------------------------------------------------

    @admin.display(description="")
    def thumbnail_tag(self, obj: Style) -> SafeString:
        return _image(obj.thumbnail.name if obj.thumbnail else "", side=56, alt=f"{obj.name} preview")

    @admin.display(description="picture on the merchants' tile")
    def tile_picture(self, obj: Style) -> SafeString:
        if not obj.thumbnail:
            return mark_safe("None yet: render the previews (the mug's becomes the tile's picture).")  # noqa: S308
        return _image(obj.thumbnail.name, side=120, alt=f"{obj.name} tile")

    @admin.display(description="version", ordering="current_version__number")
    def version(self, obj: Style) -> str:
        return f"v{obj.current_version.number}" if obj.current_version else "—"

    @admin.display(description="available to")
    def available_to(self, obj: Style) -> str:
        merchants = [merchant.name for merchant in obj.restricted_to.all()]
        return _names(merchants) if merchants else "every merchant"

    @admin.display(description="LoRAs")
    def lora_names(self, obj: Style) -> str:
        if obj.current_version is None:
            return "—"
        return _names(
            [f"{link.lora.name} @ {link.weight:g}" for link in obj.current_version.lora_links.all()]
        )

    # -- change page -------------------------------------------------------------------------------

    @admin.display(description="final prompt")
    def prompt_preview(self, obj: Style) -> SafeString:
        """What the GPU gets for each reference product; the page's script updates it as you type."""
        version = obj.current_version if obj.pk else None
        triggers = {
            str(pk): words
            for pk, words in Lora.objects.exclude(trigger_words="").values_list("pk", "trigger_words")
        }
        rows = format_html_join(
            "",
            '<li><strong>{}</strong>: <span class="prompt-preview-text" data-product="{}">{}</span></li>',
            (
                (
                    product.label,
                    product.product_name,
                    version.render_prompt(product.product_name) if version else "",
                )
                for product in REFERENCE_PRODUCTS
            ),
        )
        return format_html(
            '<div id="prompt-preview" data-triggers="{}"><ul style="margin:0;padding-left:1.2em">{}</ul>'
            '<p>Negative: <span class="prompt-preview-negative">{}</span></p>'
            '<p class="prompt-preview-warnings" style="color:#b45309"></p></div>',
            json.dumps(triggers),
            rows,
            (version.negative_prompt if version else "") or "—",
        )

    @admin.display(description="latest previews")
    def previews(self, obj: Style) -> SafeString:
        if obj.pk is None:
            return mark_safe("Save the style, then use the “Render previews” action in the list.")  # noqa: S308
        latest: dict[str, StylePreview] = {}
        for preview in (
            StylePreview.objects.filter(style=obj)
            .select_related("style_version")
            .order_by("-created_at", "-id")[:50]
        ):
            latest.setdefault(preview.product, preview)
        cells = []
        for product in REFERENCE_PRODUCTS:
            shown = latest.get(product.key)
            if shown is None:
                cells.append(format_html("<td>{}<br>not rendered yet</td>", product.label))
            elif shown.status == PreviewStatus.SUCCEEDED:
                cells.append(
                    format_html(
                        "<td>{}<br>{}<br>v{}</td>",
                        _image(shown.image.name, side=160, alt=f"{obj.name} on the {product.label}"),
                        product.label,
                        shown.style_version.number,
                    )
                )
            else:
                cells.append(
                    format_html(
                        "<td>{}<br>{} (v{}) {}</td>",
                        product.label,
                        shown.get_status_display(),
                        shown.style_version.number,
                        shown.error,
                    )
                )
        return format_html("<table><tr>{}</tr></table>", mark_safe("".join(cells)))  # noqa: S308

    def save_model(self, request: HttpRequest, obj: Style, form: Any, change: bool) -> None:
        if not isinstance(form, StyleForm):  # the list's editable columns: enabled and position
            obj.save(update_fields=[name for name in form.changed_data if name in ("is_enabled", "position")])
            return
        if change:
            obj.save(update_fields=["name", "slug", "description", "is_enabled", "position"])
        else:
            obj.save()
        if form.version_changed():
            version = style_version_create(style=obj, loras=form.version_loras(), **form.version_values())
            obj.current_version = version
            if change:
                self.message_user(
                    request,
                    f"Saved as version {version.number}. Jobs already made keep the version they used; "
                    "new jobs use this one.",
                    messages.INFO,
                )

    # -- deleting: only styles no job has used -----------------------------------------------------

    def get_deleted_objects(self, objs: Any, request: HttpRequest) -> Any:
        styles = list(objs)
        used = style_versions_in_use(styles=styles)
        if used:
            # Not the admin's list of every protecting variation: it can run to thousands of rows.
            return (
                [],
                {},
                set(),
                [
                    f"{used} mockup variation{'s' if used != 1 else ''} were made with "
                    f"{'these styles' if len(styles) > 1 else 'this style'} and keep their style version. "
                    "Disable the style instead."
                ],
            )
        to_delete, counts, perms_needed, _ = super().get_deleted_objects(styles, request)
        # What remains "protected" is each style's pointer to its own current version: style_delete
        # clears it, since the whole style goes. Versions are never deleted on their own (their admin
        # refuses it), but they go with their style.
        return to_delete, counts, perms_needed - {StyleVersion._meta.verbose_name}, []

    def delete_model(self, request: HttpRequest, obj: Style) -> None:
        style_delete(style=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Style]) -> None:
        for style in queryset:
            style_delete(style=style)

    # -- actions -----------------------------------------------------------------------------------

    @admin.action(description="Render previews on the reference products (mug, bottle, shoe)")
    def render_previews(self, request: HttpRequest, queryset: QuerySet[Style]) -> None:
        try:
            result = style_preview_request(styles=list(queryset), user=request.user)
        except DomainError as exc:
            self.message_user(request, f"No previews were queued: {exc.message}", messages.ERROR)
            return
        if result.previews:
            self.message_user(
                request,
                f"Queued {len(result.previews)} previews in {result.jobs} jobs; the thumbnails appear "
                "here and on the merchants' style tiles when they finish.",
                messages.SUCCESS,
            )
        for reason in result.skipped:
            self.message_user(request, f"Skipped {reason}", messages.WARNING)

    @admin.action(description="Enable for merchants")
    def enable(self, request: HttpRequest, queryset: QuerySet[Style]) -> None:
        count = queryset.update(is_enabled=True)
        self.message_user(request, f"Enabled {count} style{'s' if count != 1 else ''}.", messages.SUCCESS)

    @admin.action(description="Disable for merchants")
    def disable(self, request: HttpRequest, queryset: QuerySet[Style]) -> None:
        count = queryset.update(is_enabled=False)
        self.message_user(
            request,
            f"Disabled {count} style{'s' if count != 1 else ''}; jobs already made with them are kept.",
            messages.SUCCESS,
        )


@admin.register(StyleVersion)
class StyleVersionAdmin(ReadOnly, admin.ModelAdmin):
    """Every version of every style, read-only: what a job's variation was made with."""

    list_display = ["__str__", "backdrop", "steps", "guidance", "output_preset", "created_at"]
    list_select_related = ["style"]
    list_filter = ["backdrop"]
    search_fields = ["style__name", "style__slug"]
    ordering = ["-id"]
    show_full_result_count = False
    readonly_fields = ["lora_list"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[StyleVersion]:
        return super().get_queryset(request).prefetch_related("lora_links__lora")

    @admin.display(description="LoRAs")
    def lora_list(self, obj: StyleVersion) -> str:
        return _names([f"{link.lora.name} @ {link.weight:g}" for link in obj.lora_links.all()])


@admin.register(StylePreview)
class StylePreviewAdmin(ViewOnly, admin.ModelAdmin):
    """Preview renders, read-only: which job made each one and how it went."""

    list_display = [
        "image_tag",
        "style",
        "product",
        "version",
        "status",
        "job_link",
        "created_at",
        "finished_at",
    ]
    list_select_related = ["style", "style_version", "job"]
    list_filter = ["status", "product"]
    search_fields = ["style__name"]
    ordering = ["-id"]

    @admin.display(description="")
    def image_tag(self, obj: StylePreview) -> SafeString:
        return _image(obj.image.name if obj.image else "", side=56)

    @admin.display(description="version")
    def version(self, obj: StylePreview) -> str:
        return f"v{obj.style_version.number}"

    @admin.display(description="job")
    def job_link(self, obj: StylePreview) -> SafeString:
        if obj.job is None:
            return mark_safe("—")  # noqa: S308
        return format_html(
            '<a href="{}">{}</a>',
            reverse("admin:jobs_job_change", args=[obj.job.pk]),
            obj.job.get_status_display(),
        )


# -- base models and ControlNets ----------------------------------------------------------------


class _RegisteredModelAdmin(admin.ModelAdmin):
    """Shared by base models and ControlNets: source, dtype, the one default, where it is resident."""

    list_display = ["name", "source", "dtype", "is_default", "resident", "created_at"]
    search_fields = ["name", "source"]
    actions = ["make_default"]
    fields = ["name", "source", "dtype", "make_default", "resident_on_workers", "created_at"]
    readonly_fields = ["resident_on_workers", "created_at"]
    # The catalog service that makes one row the default and unsets the previous one.
    set_default: Callable[..., Any]

    def get_changelist_instance(self, request: HttpRequest) -> Any:
        changelist = super().get_changelist_instance(request)
        holders = gpu_workers_by_model(workers=gpu_workers_seen())
        for model in changelist.result_list:
            model.resident_on = holders.get(model.source, [])
        return changelist

    @admin.display(description="resident on")
    def resident(self, obj: Any) -> str:
        return _names(getattr(obj, "resident_on", []))

    @admin.display(description="resident on GPU workers")
    def resident_on_workers(self, obj: Any) -> str:
        if obj.pk is None:
            return "—"
        holders = gpu_workers_by_model(workers=gpu_workers_seen()).get(obj.source, [])
        return _names(holders) if holders else "Not resident on any live GPU worker."

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        make_default = form.cleaned_data.get("make_default", False)
        was_default = change and type(obj).objects.filter(pk=obj.pk, is_default=True).exists()
        if not make_default:
            obj.is_default = False
        obj.save()
        if make_default and not was_default:
            type(self).set_default(model=obj)
            self.message_user(
                request,
                f"{obj.name} is now the default. GPU workers load it when they next start; the health page "
                "shows what each one has resident.",
                messages.INFO,
            )

    @admin.action(description="Make the selected one the default")
    def make_default(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        chosen = list(queryset[:2])
        if len(chosen) != 1:
            self.message_user(request, "Select exactly one to make it the default.", messages.ERROR)
            return
        type(self).set_default(model=chosen[0])
        self.message_user(request, f"{chosen[0].name} is now the default.", messages.SUCCESS)


@admin.register(BaseModel)
class BaseModelAdmin(_RegisteredModelAdmin):
    form = BaseModelForm
    set_default = staticmethod(base_model_set_default)


@admin.register(ControlNetModel)
class ControlNetModelAdmin(_RegisteredModelAdmin):
    form = ControlNetForm
    set_default = staticmethod(controlnet_set_default)
