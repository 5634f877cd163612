from django.contrib import admin
from django.urls import include, path

from mockups.jobs.media import media_serve

urlpatterns = [
    path("admin/", admin.site.urls),
    path("media/s/<str:token>", media_serve, name="media-signed"),
    path("", include("mockups.web.urls")),
]
