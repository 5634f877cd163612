"""``manage.py setupdemo``: the embedded default's first-run helper.

Makes sure a demo merchant with a login exists and prints how to log in. The password is made
once and kept in ``DATA_DIR/demo-login.txt`` (readable by the owner only), so running the site
again prints the same login.
"""

from __future__ import annotations

import secrets
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from mockups.accounts.services import merchant_create

DEMO_EMAIL = "demo@mockups.local"


class Command(BaseCommand):
    help = "Create the demo merchant and login if missing, and print how to log in."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--url", default="http://127.0.0.1:8000/", help="Where the site is served")

    def handle(self, *args: Any, **options: Any) -> None:
        login_file = settings.DATA_DIR / "demo-login.txt"
        User = get_user_model()
        if not User.objects.filter(username=DEMO_EMAIL).exists():
            password = secrets.token_urlsafe(12)
            _merchant, _user, raw_key = merchant_create(name="Demo shop", email=DEMO_EMAIL, password=password)
            login_file.write_text(f"{DEMO_EMAIL}\n{password}\n{raw_key}\n")
            login_file.chmod(0o600)
        lines = login_file.read_text().splitlines() if login_file.exists() else []
        if len(lines) < 3:
            self.stdout.write(f"The demo user {DEMO_EMAIL} exists but its password is not in {login_file}.")
            self.stdout.write(f"Set one with: python manage.py changepassword {DEMO_EMAIL}")
            return
        url = options["url"]
        self.stdout.write("")
        self.stdout.write(f"  Mockup Studio is at {url}")
        self.stdout.write(f"  Log in as {lines[0]} with password {lines[1]}")
        self.stdout.write(f"  API key for that shop: {lines[2]}")
        self.stdout.write(f"  Operators: python manage.py createsuperuser, then {url}admin/")
        self.stdout.write("")
