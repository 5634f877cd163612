"""``manage.py createmerchant NAME --email EMAIL [--password PASSWORD]``.

Creates a merchant, its first user and an API key, and prints the key alone on the last line,
so a deployment script can capture it with ``| tail -n 1``.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from mockups.accounts.services import merchant_create
from mockups.errors import DomainError


class Command(BaseCommand):
    help = "Create a merchant with its first user and API key; the key is printed alone on the last line."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="The shop's name")
        parser.add_argument("--email", required=True, help="The first user's e-mail (also the login name)")
        parser.add_argument(
            "--password", help="Password for the browser UI; without it the user cannot log in yet"
        )
        parser.add_argument("--username", help="Login name, if not the e-mail")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            merchant, user, raw_key = merchant_create(
                name=options["name"],
                email=options["email"],
                password=options["password"],
                username=options["username"],
            )
        except DomainError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(f"Merchant {merchant.name!r} created ({merchant.public_id}).")
        self.stdout.write(f"User {user.get_username()!r} is its owner.")
        self.stdout.write("API key (shown once, keep it safe):")
        self.stdout.write(raw_key)
