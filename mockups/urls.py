from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from mockups.api.api import api
from mockups.jobs.media import media_serve

urlpatterns = [
    path("admin/health/", RedirectView.as_view(pattern_name="admin:health")),
    path("admin/", admin.site.urls),
    path("media/s/<str:token>", media_serve, name="media-signed"),
    path("", include("mockups.web.urls")),
    # After the web pages: the API is mounted at the root (its routes live under api/ and v1/),
    # and its root view must not shadow the studio page at "/".
    path("", api.urls),
]
