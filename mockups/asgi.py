"""ASGI entry point: HTTP through Django, websockets through Channels.

In the embedded default (no broker configured) this process also runs the queue workers.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mockups.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.conf import settings  # noqa: E402
from django.urls import path  # noqa: E402

from mockups.jobs.consumers import JobConsumer  # noqa: E402

websocket_urlpatterns = [path("ws/mockups/<str:job_id>/", JobConsumer.as_asgi())]

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)

if settings.EMBEDDED_WORKER and os.environ.get("MOCKUPS_NO_EMBEDDED_WORKER") != "1":
    from mockups.embedded import embedded_start

    embedded_start()
