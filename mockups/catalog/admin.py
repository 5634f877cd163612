from django.contrib import admin

from mockups.catalog.models import BaseModel, ControlNetModel, Lora, Style, StyleVersion

admin.site.register([BaseModel, ControlNetModel, Lora])


@admin.register(Style)
class StyleAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "is_enabled", "position", "current_version"]
    list_select_related = ["current_version"]


@admin.register(StyleVersion)
class StyleVersionAdmin(admin.ModelAdmin):
    list_display = ["__str__", "backdrop", "output_preset", "created_at"]
    list_select_related = ["style"]
