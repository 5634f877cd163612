from django.contrib.auth import views as auth_views
from django.urls import path

from mockups.web import views

app_name = "web"

urlpatterns = [
    path("", views.studio, name="studio"),
    path("jobs/<str:job_id>/", views.studio, name="job"),
    path("history/", views.history, name="history"),
    path("jobs/", views.job_create_view, name="job-create"),
    path("jobs/<str:job_id>.json", views.job_detail_json, name="job-json"),
    path("jobs/<str:job_id>/cancel", views.job_cancel_view, name="job-cancel"),
    path(
        "jobs/<str:job_id>/variations/<int:index>/regenerate",
        views.variation_regenerate_view,
        name="regenerate",
    ),
    path("jobs/<str:job_id>/mockups.zip", views.job_download_zip, name="job-zip"),
    path("login/", auth_views.LoginView.as_view(template_name="web/login.html"), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("healthz", views.healthz, name="healthz"),
]
