from django.conf import settings
from django.http import HttpRequest


def engine(request: HttpRequest) -> dict[str, object]:
    """Lets every page say when backgrounds come from the demo (tiny) engine."""
    return {"ENGINE_IS_DEMO": settings.MOCKUP_ENGINE == "tiny"}
