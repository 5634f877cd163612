"""Selectors never let one merchant see another's jobs, variations, keys or restricted styles."""

from __future__ import annotations

import uuid

import pytest

from mockups.accounts.selectors import api_key_list, merchant_for_user
from mockups.accounts.services import api_key_create, api_key_revoke
from mockups.catalog.selectors import style_get_for_merchant, style_list_for_merchant
from mockups.errors import NotFound
from mockups.jobs.selectors import job_active_count, job_get, job_list, variation_get
from tests.factories import make_job, make_style

pytestmark = pytest.mark.django_db


def test_owner_and_teammate_work_for_the_same_merchant_and_the_stranger_does_not(tenants):
    assert merchant_for_user(user=tenants.owner) == tenants.merchant
    assert merchant_for_user(user=tenants.teammate) == tenants.merchant
    assert merchant_for_user(user=tenants.stranger) == tenants.other_merchant


def test_a_user_without_a_merchant_is_not_found(tenants, django_user_model):
    loner = django_user_model.objects.create_user(username="loner", password="x")
    with pytest.raises(NotFound):
        merchant_for_user(user=loner)


def test_job_list_shows_only_the_merchants_own_jobs(tenants):
    style = make_style()
    mine = make_job(merchant=tenants.merchant, styles=[style])
    theirs = make_job(merchant=tenants.other_merchant, styles=[style])
    assert list(job_list(merchant=tenants.merchant)) == [mine]
    assert list(job_list(merchant=tenants.other_merchant)) == [theirs]


def test_it_answers_not_found_for_another_merchants_job_exactly_as_for_a_missing_one(tenants):
    theirs = make_job(merchant=tenants.other_merchant)
    with pytest.raises(NotFound) as not_yours:
        job_get(merchant=tenants.merchant, public_id=theirs.public_id)
    with pytest.raises(NotFound) as missing:
        job_get(merchant=tenants.merchant, public_id=uuid.uuid4())
    assert not_yours.value.message == missing.value.message
    assert job_get(merchant=tenants.other_merchant, public_id=theirs.public_id) == theirs


def test_a_malformed_job_id_is_not_found_rather_than_an_error(tenants):
    with pytest.raises(NotFound):
        job_get(merchant=tenants.merchant, public_id="not-a-uuid")


def test_variation_get_does_not_reach_into_another_merchants_job(tenants):
    style = make_style()
    theirs = make_job(merchant=tenants.other_merchant, styles=[style])
    with pytest.raises(NotFound):
        variation_get(merchant=tenants.merchant, job_public_id=theirs.public_id, index=0)
    assert variation_get(merchant=tenants.other_merchant, job_public_id=theirs.public_id, index=0).index == 0
    with pytest.raises(NotFound):
        variation_get(merchant=tenants.other_merchant, job_public_id=theirs.public_id, index=7)


def test_active_job_count_counts_only_the_merchants_queued_and_running_jobs(tenants):
    make_job(merchant=tenants.merchant, status="queued")
    make_job(merchant=tenants.merchant, status="generating")
    make_job(merchant=tenants.merchant, status="succeeded")
    make_job(merchant=tenants.other_merchant, status="queued")
    assert job_active_count(merchant=tenants.merchant) == 2


def test_a_restricted_style_is_visible_only_to_the_merchants_it_is_restricted_to(tenants):
    open_style = make_style(slug="open")
    private = make_style(slug="private")
    private.restricted_to.add(tenants.other_merchant)
    assert set(style_list_for_merchant(merchant=tenants.merchant)) >= {open_style}
    assert private not in set(style_list_for_merchant(merchant=tenants.merchant))
    assert private in set(style_list_for_merchant(merchant=tenants.other_merchant))
    with pytest.raises(NotFound):
        style_get_for_merchant(merchant=tenants.merchant, key="private")
    assert style_get_for_merchant(merchant=tenants.other_merchant, key=str(private.public_id)) == private


def test_a_disabled_style_cannot_be_picked(tenants):
    style = make_style(slug="retired")
    style.is_enabled = False
    style.save()
    with pytest.raises(NotFound):
        style_get_for_merchant(merchant=tenants.merchant, key="retired")


def test_api_keys_are_listed_and_revoked_only_within_their_merchant(tenants):
    mine, _ = api_key_create(merchant=tenants.merchant)
    theirs, _ = api_key_create(merchant=tenants.other_merchant)
    assert list(api_key_list(merchant=tenants.merchant)) == [mine]
    with pytest.raises(NotFound):
        api_key_revoke(merchant=tenants.merchant, public_id=str(theirs.public_id))
    theirs.refresh_from_db()
    assert theirs.revoked_at is None
