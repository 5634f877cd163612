"""The styles every new installation starts with. Operators can edit or disable them in the admin."""

from django.db import migrations

DEFAULT_STYLES = [
    {
        "slug": "marketplace-white",
        "name": "Marketplace white",
        "description": "Pure white studio backdrop, product filling the frame: what marketplaces ask for.",
        "position": 10,
        "version": {
            "prompt_template": "{product} on a pure white studio background",
            "backdrop": "studio",
            "studio_fill": "white",
            "shadow": "soft",
            "output_preset": "marketplace_2000",
        },
    },
    {
        "slug": "marble-kitchen",
        "name": "Marble kitchen",
        "description": "On a white marble countertop in a bright kitchen, soft morning light.",
        "position": 20,
        "version": {
            "prompt_template": "professional product photo of {product} on a white marble kitchen countertop, "
            "bright morning light, shallow depth of field, high detail",
            "negative_prompt": "text, watermark, logo, people, hands, blurry, low quality",
        },
    },
    {
        "slug": "forest-moss",
        "name": "Forest moss",
        "description": "Resting on green moss with a soft forest bokeh behind it.",
        "position": 30,
        "version": {
            "prompt_template": "product photo of {product} resting on green moss in a forest, "
            "soft sunlight through trees, bokeh background, natural colours",
            "negative_prompt": "text, watermark, people, animals, blurry, low quality",
        },
    },
    {
        "slug": "concrete-loft",
        "name": "Concrete loft",
        "description": "Minimal grey concrete plinth, industrial loft, dramatic side light.",
        "position": 40,
        "version": {
            "prompt_template": "minimal product shot of {product} on a grey concrete plinth in an industrial loft, "
            "dramatic side lighting, architectural, editorial",
            "negative_prompt": "text, watermark, clutter, people, blurry, low quality",
        },
    },
    {
        "slug": "sunlit-beach",
        "name": "Sunlit beach",
        "description": "On warm sand by the sea, golden hour.",
        "position": 50,
        "version": {
            "prompt_template": "lifestyle product photo of {product} on warm sand at the beach, golden hour, "
            "gentle waves in the background, summer mood",
            "negative_prompt": "text, watermark, people, blurry, low quality",
        },
    },
    {
        "slug": "pastel-gradient",
        "name": "Pastel gradient",
        "description": "Soft pastel gradient studio backdrop with a gentle shadow.",
        "position": 60,
        "version": {
            "prompt_template": "{product} on a pastel studio gradient",
            "backdrop": "studio",
            "studio_fill": "gradient",
            "studio_color": "#fbe8f0",
            "studio_color_2": "#dfe9fb",
            "shadow": "soft",
            "output_preset": "portrait_4_5",
        },
    },
]


def create_default_styles(apps, schema_editor):
    Style = apps.get_model("catalog", "Style")
    StyleVersion = apps.get_model("catalog", "StyleVersion")
    for spec in DEFAULT_STYLES:
        if Style.objects.filter(slug=spec["slug"]).exists():
            continue
        style = Style.objects.create(
            slug=spec["slug"], name=spec["name"], description=spec["description"], position=spec["position"]
        )
        version = StyleVersion.objects.create(style=style, number=1, **spec["version"])
        style.current_version = version
        style.save(update_fields=["current_version"])


def remove_default_styles(apps, schema_editor):
    Style = apps.get_model("catalog", "Style")
    for style in Style.objects.filter(slug__in=[s["slug"] for s in DEFAULT_STYLES]):
        style.current_version = None
        style.save(update_fields=["current_version"])
        style.versions.all().delete()
        style.delete()


class Migration(migrations.Migration):
    dependencies = [("catalog", "0001_initial")]
    operations = [migrations.RunPython(create_default_styles, remove_default_styles)]
