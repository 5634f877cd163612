from django.contrib import admin

from mockups.accounts.models import ApiKey, Membership, Merchant


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    raw_id_fields = ["user"]


@admin.register(Merchant)
class MerchantAdmin(admin.ModelAdmin):
    list_display = ["name", "public_id", "is_active", "created_at"]
    search_fields = ["name", "public_id"]
    inlines = [MembershipInline]
    readonly_fields = ["public_id", "webhook_secret"]


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ["__str__", "merchant", "created_at", "last_used_at", "revoked_at"]
    list_select_related = ["merchant"]
    readonly_fields = ["prefix", "key_hash", "created_at", "last_used_at"]
