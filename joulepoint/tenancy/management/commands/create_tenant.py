from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError
from django.db import IntegrityError

from joulepoint.tenancy.services import tenant_create


class Command(BaseCommand):
    help = "Create an organization with an admin user and a full-scope OAuth2 client."

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument(
            "--json", action="store_true", dest="as_json", help="Print the credentials as one JSON object"
        )

    def handle(self, *args, name: str, as_json: bool = False, **options):
        try:
            tenant = tenant_create(name=name)
        except IntegrityError:
            raise CommandError(f"An organization or user named {name!r} already exists.") from None
        data = tenant.as_dict()
        if as_json:
            self.stdout.write(json.dumps(data))
        else:
            for key, value in data.items():
                self.stdout.write(f"{key}: {value}")
