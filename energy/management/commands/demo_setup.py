from __future__ import annotations

import json
from pathlib import Path

from django.core.management.base import BaseCommand

from energy.demo import demo_ensure, demo_state_path
from energy.demo_history import HISTORY_DAYS


class Command(BaseCommand):
    help = (
        "Create (or find) the demo organization, depot, five meters and OAuth2 client; "
        "print the credentials and write them to var/demo.json for the simulator. Demo only."
    )

    def add_arguments(self, parser):
        parser.add_argument("--url", default="http://127.0.0.1:8000", help="Where the platform is served (printed)")
        parser.add_argument("--state", default=None, help="Where to write the demo credentials (var/demo.json)")
        parser.add_argument("--json", action="store_true", dest="as_json", help="Print the credentials as JSON")
        parser.add_argument(
            "--history-days",
            type=int,
            default=HISTORY_DAYS,
            help=f"Days of simulated history stored before the first reading (default {HISTORY_DAYS}; 0: none)",
        )
        parser.add_argument("--sim-state", default=None, help="The simulator's state file (var/simulator-state.json)")

    def handle(self, *args, url: str, state: str | None, as_json: bool, history_days: int, **options):
        path = state or demo_state_path()
        sim_state = options.get("sim_state")
        data = demo_ensure(
            state_path=path, history_days=history_days, simulator_state=Path(sim_state) if sim_state else None
        )
        stored = data.get("history")
        if stored is None:
            history = "none asked for"
        elif stored["stored"]:
            history = f"{stored['stored']} readings of {stored['days']} days stored in {stored['seconds']:.1f} s"
        else:
            history = "already stored (kept)"
        if as_json:
            self.stdout.write(json.dumps(data, indent=2))
            return
        url = url.rstrip("/")
        shown = next(meter for meter in data["meters"] if meter["kind"] == "pv")
        client_note = "new" if data["client_created"] else f"reused from {path}"
        lines = [
            "",
            "Joulepoint Edge demo (demo-only credentials: never use them in production)",
            f"  Platform       {url}/admin/   API docs {url}/api/docs/",
            f"  Live dashboard {url}/dashboard/  (same login; live socket ws{url[4:]}/ws/live/)",
            f"  Topology (3D)  {url}/dashboard/sites/{data['site']['id']}/topology/   "
            f"graph API {url}/api/energy/topology/nodes/graph?site={data['site']['id']}",
            f"  Admin login    {data['admin_username']} / {data['admin_password']}",
            f"  OAuth2 client  client_id     {data['client_id']}",
            f"                 client_secret {data['client_secret']}   ({client_note})",
            f"  Get a token    curl -s -u '{data['client_id']}:{data['client_secret']}' \\",
            f"                   -d grant_type=client_credentials {url}/o/token/",
            f"  Meter          {shown['name']} (id {shown['id']}, kind {shown['kind']}, serial {shown['serial']})",
            f"                 device_key    {shown['device_key']}",
            f"                 device_secret {shown['device_secret']}",
            f"                 MQTT login    meter-{shown['id']} / its device_key  "
            f"(topics joulepoint/meter-{shown['id']}/readings, …/ack, …/commands; with make run MQTT_URL=…)",
            "  Read readings  curl -s -H 'Authorization: Bearer TOKEN' \\",
            f"                   '{url}/api/energy/energy-data/?meter={shown['id']}&ordering=-ts&limit=5'",
            f"  Audit trail    {url}/api/audit/ (the same token) and the admin's Audit trail",
            f"  All five meters' device keys and secrets: {path}",
            f"  History        {history}",
            "",
        ]
        self.stdout.write("\n".join(lines))
