"""Merchants, API keys, jobs and variations in the admin."""

from __future__ import annotations

import pytest
from django.urls import reverse

from mockups.accounts.models import ApiKey
from mockups.accounts.services import api_key_authenticate, api_key_create
from mockups.jobs.models import Job
from tests.admin.conftest import make_jobs
from tests.factories import make_job, make_style

pytestmark = pytest.mark.django_db


def test_creating_an_api_key_shows_it_once_and_keeps_only_its_hash(admin_client, admin_user, tenants):
    response = admin_client.post(
        reverse("admin:accounts_apikey_add"), {"merchant": tenants.merchant.pk, "name": "storefront"}
    )
    assert response.status_code == 200
    raw = response.context["raw_key"]
    assert raw.startswith("ms_") and raw in response.content.decode()
    assert "no-store" in response["Cache-Control"]

    key = ApiKey.objects.get(name="storefront")
    assert key.merchant == tenants.merchant and key.created_by == admin_user
    assert raw not in (key.key_hash, key.prefix) and key.key_hash == ApiKey.hash_secret(raw)
    assert api_key_authenticate(raw_key=raw) == key

    # Nowhere to be seen again: not on the key's page, not in the list, not in a message.
    for url in (
        reverse("admin:accounts_apikey_change", args=[key.pk]),
        reverse("admin:accounts_apikey_changelist"),
    ):
        assert raw not in admin_client.get(url).content.decode()


def test_the_merchant_page_links_to_a_new_key_for_that_merchant(admin_client, tenants):
    page = admin_client.get(
        reverse("admin:accounts_merchant_change", args=[tenants.merchant.pk])
    ).content.decode()
    assert f"{reverse('admin:accounts_apikey_add')}?merchant={tenants.merchant.pk}" in page
    add_page = admin_client.get(reverse("admin:accounts_apikey_add"), {"merchant": tenants.merchant.pk})
    assert add_page.context["adminform"].form.initial["merchant"] == str(tenants.merchant.pk)


def test_the_revoke_action_stops_the_keys_working(admin_client, tenants):
    key, raw = api_key_create(merchant=tenants.merchant, name="old")
    other, other_raw = api_key_create(merchant=tenants.other_merchant, name="kept")
    response = admin_client.post(
        reverse("admin:accounts_apikey_changelist"),
        {"action": "revoke", "_selected_action": [key.pk]},
        follow=True,
    )
    assert "Revoked 1 key" in response.content.decode()
    assert api_key_authenticate(raw_key=raw) is None
    assert api_key_authenticate(raw_key=other_raw) == other


def test_keys_are_revoked_not_deleted(admin_client, tenants):
    key, _ = api_key_create(merchant=tenants.merchant)
    assert admin_client.get(reverse("admin:accounts_apikey_delete", args=[key.pk])).status_code == 403
    changelist = admin_client.get(reverse("admin:accounts_apikey_changelist"))
    assert "delete_selected" not in dict(changelist.context["action_form"].fields["action"].choices)


def test_jobs_are_read_only_and_show_their_images(admin_client, tenants):
    style = make_style()
    job = make_job(merchant=tenants.merchant, styles=[style], status="succeeded")
    page = admin_client.get(reverse("admin:jobs_job_change", args=[job.pk]))
    assert page.status_code == 200
    html = page.content.decode()
    assert 'alt="original"' in html and "/media/s/" in html
    assert 'name="_save"' not in html  # a view page, not a form
    assert admin_client.post(reverse("admin:jobs_job_change", args=[job.pk]), {}).status_code == 403
    assert admin_client.get(reverse("admin:jobs_job_delete", args=[job.pk])).status_code == 403
    assert admin_client.get(reverse("admin:jobs_job_add")).status_code == 403


def test_the_job_list_sums_up_variations_and_finds_a_job_by_its_id(admin_client):
    style = make_style()
    jobs = make_jobs(60, styles=[style, style])
    response = admin_client.get(reverse("admin:jobs_job_changelist"))
    assert response.status_code == 200
    assert response.content.decode().count("2 succeeded") == 50  # 50 jobs a page
    assert 'alt="variation ' not in response.content.decode()  # images are on each job's page

    found = admin_client.get(reverse("admin:jobs_job_changelist"), {"q": str(jobs[7].public_id)})
    assert list(found.context["cl"].result_list) == [Job.objects.get(pk=jobs[7].pk)]
    page = admin_client.get(reverse("admin:jobs_job_change", args=[jobs[7].pk])).content.decode()
    assert page.count('alt="variation ') == 2


def test_variations_are_read_only_with_their_images(admin_client, tenants):
    style = make_style()
    make_jobs(3, styles=[style])
    variation = Job.objects.first().variations.get()
    page = admin_client.get(reverse("admin:jobs_variation_change", args=[variation.pk]))
    assert page.status_code == 200 and 'alt="variation 0"' in page.content.decode()
    assert (
        admin_client.post(reverse("admin:jobs_variation_change", args=[variation.pk]), {}).status_code == 403
    )
