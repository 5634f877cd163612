from django.contrib import admin

from mockups.jobs.models import Job, Variation


class VariationInline(admin.TabularInline):
    model = Variation
    extra = 0
    can_delete = False


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ["public_id", "merchant", "status", "source", "created_at"]
    list_select_related = ["merchant"]
    list_filter = ["status", "source"]
    inlines = [VariationInline]
