"""Data-subject rights and the audit log: `subject export`, `subject erase`, `audit query`."""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from cdp.errors import BadInputError, NextbestError
from nextbest.cli.base import Tracking, app, err_console, out_console, parse_utc

subject_app = typer.Typer(
    help="Data-subject rights: export or erase everything nextbest holds about a customer.",
    no_args_is_help=True,
)
app.add_typer(subject_app, name="subject")
audit_app = typer.Typer(help="The audit log of scoring calls.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")

CustomerId = Annotated[str, typer.Option("--customer-id", help="The customer's id.")]
Outputs = Annotated[
    list[Path] | None,
    typer.Option(
        "--outputs", help="Feature snapshot or score folders (repeat the option for each)."
    ),
]
StateDir = Annotated[
    Path | None,
    typer.Option(help="The service's state folder (serving.db, audit/), if no service runs."),
]
ServiceUrl = Annotated[
    str | None,
    typer.Option(
        envvar="NEXTBEST_SERVICE_URL",
        help="A running service (admin key in NEXTBEST_ADMIN_KEY): its state is handled there.",
    ),
]


def _service_call(url: str, route: str, customer_id: str) -> dict:
    import httpx

    key = os.environ.get("NEXTBEST_ADMIN_KEY", "")
    try:
        response = httpx.post(
            f"{url.rstrip('/')}{route}",
            json={"customer_id": customer_id},
            headers={"authorization": f"Bearer {key}"},
            timeout=120,
        )
    except httpx.HTTPError as error:
        raise NextbestError(f"--service-url: {url} did not answer: {error}") from None
    if response.status_code != 200:
        raise NextbestError(f"--service-url: {route} answered HTTP {response.status_code}")
    return response.json()


def _local_state(state: Path):
    from serving.memory.audit import AuditLog
    from serving.memory.feedback import FeedbackStore

    return FeedbackStore(state / "serving.db"), AuditLog(state / "audit")


@subject_app.command("export")
def subject_export(
    customer_id: CustomerId,
    data: Annotated[Path, typer.Option(help="The contract folder.")],
    outputs: Outputs = None,
    state: StateDir = None,
    service_url: ServiceUrl = None,
    out: Annotated[
        Path | None, typer.Option(help="Write the JSON document here (default: stdout).")
    ] = None,
) -> None:
    """One JSON document with everything nextbest holds about a customer (right of access)."""
    from cdp import privacy
    from nextbest import subject

    privacy.keys()
    values = subject.identity_values(data, customer_id)
    document = {
        "customer_id": customer_id,
        "exported_at": datetime.now().astimezone().isoformat(),
        "contract": subject.rows_about(data, customer_id, values),
        "outputs": {str(f): subject.rows_about(f, customer_id, values) for f in outputs or []},
    }
    if service_url:
        document["service"] = _service_call(service_url, "/admin/subject/export", customer_id)
    elif state is not None:
        from serving.memory.audit import held

        tokens = privacy.identity_tokens(*values)
        document["service"] = held(*_local_state(state), privacy.pseudonyms(customer_id), tokens)
    text = json.dumps(document, indent=2, ensure_ascii=False, default=str) + "\n"
    if out is None:
        sys.stdout.write(text)
        return
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(out)
    err_console.print(f"wrote {out}", highlight=False)


@subject_app.command("erase")
def subject_erase(
    customer_id: CustomerId,
    data: Annotated[Path, typer.Option(help="The contract folder nextbest manages.")],
    outputs: Outputs = None,
    state: StateDir = None,
    service_url: ServiceUrl = None,
    mlruns: Tracking = Path("mlruns"),
) -> None:
    """Erase a customer everywhere nextbest keeps data, suppress them for later imports, and
    check that no trace of their id or pseudonym is left (exit 1 naming the files if so)."""
    from cdp import privacy
    from nextbest import subject

    privacy.keys()
    values = subject.identity_values(data, customer_id)
    summary: dict = {}
    if service_url:
        summary["service"] = _service_call(service_url, "/admin/subject/erase", customer_id)
    elif state is not None:
        from serving.memory.audit import erase_held

        summary["service"] = erase_held(
            *_local_state(state),
            privacy.pseudonyms(customer_id),
            datetime.now().astimezone(),
            "nextbest subject erase",
            None,
            privacy.identity_tokens(*values),
        )
    else:
        err_console.print(
            "warning: neither --service-url nor --state: the service's stores and audit log"
            " were not searched or erased",
            highlight=False,
        )
    summary["contract"] = subject.erase_rows(data, customer_id, values)
    for folder in outputs or []:
        summary[str(folder)] = subject.erase_rows(folder, customer_id, values)
    privacy.suppress([customer_id, *values])
    needles = {customer_id, *privacy.pseudonyms(customer_id)}
    left = subject.traces([data, *(outputs or []), *([state] if state else []), mlruns], needles)
    out_console.print_json(json.dumps(summary, default=str))
    if left:
        raise NextbestError("erasure incomplete: still found in " + ", ".join(left))
    searched = ", ".join(
        ["the data", *(["the outputs"] if outputs else []), *(["--state"] if state else [])]
    )
    service = (
        "the service erased what it holds"
        if service_url
        else "the service's state was not searched (give --state DIR or --service-url)"
        if state is None
        else "the state folder's stores and audit log were erased"
    )
    out_console.print(
        f"erased {customer_id} and {len(values)} identities; suppressed for later imports;"
        f" no trace left in {searched} and the MLflow store; {service}",
        highlight=False,
        soft_wrap=True,
    )


@audit_app.command("query")
def audit_query(
    state: Annotated[Path, typer.Option(help="The service's state folder.")] = Path("data/serving"),
    customer_id: Annotated[
        str | None, typer.Option("--customer-id", help="Entries about this customer.")
    ] = None,
    key_id: Annotated[str | None, typer.Option(help="Entries by this API key id.")] = None,
    purpose: Annotated[str | None, typer.Option(help="service or marketing.")] = None,
    action: Annotated[str | None, typer.Option(help="Entries that returned this action.")] = None,
    route: Annotated[str | None, typer.Option(help="e.g. /suggest or /profile.")] = None,
    since: Annotated[str | None, typer.Option(help="From this moment (ISO, UTC).")] = None,
    until: Annotated[str | None, typer.Option(help="Up to this moment (ISO, UTC).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines.")] = False,
) -> None:
    """Filter the audit log (customer ids are matched through their pseudonyms)."""
    from cdp import privacy
    from serving.memory.audit import AuditLog, query

    log = AuditLog(state / "audit")
    if not log.files():
        raise BadInputError(f"--state: no audit log in {state / 'audit'}")
    entries = query(
        log,
        customers=privacy.pseudonyms(customer_id) if customer_id else None,
        key_id=key_id,
        purpose=purpose,
        action=action,
        route=route,
        since=parse_utc(since),
        until=parse_utc(until),
    )
    n = 0
    table = Table(title=f"audit entries in {state / 'audit'}")
    for column in ("at", "route", "key", "customer", "purposes", "actions"):
        table.add_column(column)
    for entry in entries:
        n += 1
        if as_json:
            print(json.dumps(entry, ensure_ascii=False))
        else:
            table.add_row(
                entry["at"][:19],
                entry.get("route") or "",
                entry.get("key_id") or "",
                entry.get("customer") or "",
                ",".join(entry.get("purposes", [])),
                ",".join(entry.get("actions", [])),
            )
    if not as_json:
        out_console.print(table)
        out_console.print(f"{n} entries", highlight=False)
    for name, count in log.torn.items():
        err_console.print(
            f"warning: skipped {count} torn line{'s' if count != 1 else ''} in {name}",
            highlight=False,
        )
