from __future__ import annotations

import pytest
from django.core.management import call_command

from mockups.accounts.models import ApiKey, Merchant
from mockups.accounts.services import api_key_authenticate, api_key_create, api_key_revoke

pytestmark = pytest.mark.django_db


def test_only_a_prefix_and_a_hash_of_the_key_are_stored(tenants):
    key, raw = api_key_create(merchant=tenants.merchant, name="storefront")
    stored = ApiKey.objects.get(pk=key.pk)
    assert raw.startswith(f"ms_{stored.prefix}_")
    assert raw not in {stored.key_hash, stored.prefix, stored.name}
    assert stored.key_hash == ApiKey.hash_secret(raw)


def test_a_valid_key_authenticates_and_records_its_last_use(tenants):
    key, raw = api_key_create(merchant=tenants.merchant)
    assert key.last_used_at is None
    found = api_key_authenticate(raw_key=raw)
    assert found is not None and found.merchant == tenants.merchant
    key.refresh_from_db()
    assert key.last_used_at is not None


@pytest.mark.parametrize(
    "mangle",
    [
        lambda raw: raw[:-1] + ("A" if raw[-1] != "A" else "B"),
        lambda raw: "",
        lambda raw: "ms__x",
        lambda raw: "Bearer",
    ],
)
def test_a_wrong_or_malformed_key_does_not_authenticate(tenants, mangle):
    _, raw = api_key_create(merchant=tenants.merchant)
    assert api_key_authenticate(raw_key=mangle(raw)) is None


def test_a_revoked_key_no_longer_authenticates(tenants):
    key, raw = api_key_create(merchant=tenants.merchant)
    api_key_revoke(merchant=tenants.merchant, public_id=str(key.public_id))
    assert api_key_authenticate(raw_key=raw) is None


def test_createmerchant_prints_a_working_key_alone_on_its_last_line(capsys):
    call_command(
        "createmerchant",
        "Corner Candles",
        "--email",
        "owner@candles.test",
        "--password",
        "long-enough-pass-1",
    )
    last_line = capsys.readouterr().out.strip().splitlines()[-1]
    key = api_key_authenticate(raw_key=last_line)
    assert key is not None
    assert key.merchant == Merchant.objects.get(name="Corner Candles")
    assert key.merchant.memberships.get().user.check_password("long-enough-pass-1")


def test_createmerchant_refuses_a_second_user_with_the_same_email():
    call_command("createmerchant", "One", "--email", "dup@example.com")
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="already exists"):
        call_command("createmerchant", "Two", "--email", "dup@example.com")
    assert not Merchant.objects.filter(name="Two").exists()
