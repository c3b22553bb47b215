"""`threadline contacts import`, `threadline segment ...`, `threadline export org`: import, saved
segments and exports at the server, as the operator."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from app.cli import OrgOpt, _json_default, _operator, _rt, app, contacts_app, err, out
from app.db import read_only

segment_app = typer.Typer(help="Saved segments: list, save, export.", no_args_is_help=True)
export_app = typer.Typer(help="Exports for moving to another system.", no_args_is_help=True)
app.add_typer(segment_app, name="segment")
app.add_typer(export_app, name="export")


@contacts_app.command("import")
def import_file(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="A CSV or vCard file.")],
    map_: Annotated[
        Optional[str], typer.Option("--map", help='field=column pairs, e.g. "email=E-mail,name=Full name".')
    ] = None,
    entity: Annotated[str, typer.Option(help="contacts or companies.")] = "contacts",
    fmt: Annotated[Optional[str], typer.Option("--format", help="csv or vcard (default: from the file name).")] = None,
    encoding: Annotated[Optional[str], typer.Option(help="The file's encoding when it is not UTF-8.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Check every row, write nothing.")] = False,
    preview: Annotated[
        bool, typer.Option("--preview", help="Show how the first rows are read, write nothing.")
    ] = False,
    skip_invalid: Annotated[bool, typer.Option("--skip-invalid", help="Import the good rows when some fail.")] = False,
    org: OrgOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Import contacts (or companies) in one transaction; re-importing the same file changes nothing.
    Exit code 2 when rows are in error (nothing is written then, unless --skip-invalid)."""
    from app.services import imports

    rt = _rt()
    actor = _operator(rt, org)
    fmt = fmt or ("vcard" if file.suffix.lower() in (".vcf", ".vcard") else "csv")
    mapping = imports.parse_mapping(map_)
    with file.open("rb") as stream:
        if preview:
            result = imports.preview(rt, actor, stream, entity=entity, fmt=fmt, mapping=mapping, encoding=encoding)
        else:
            result = imports.run_import(
                rt,
                actor,
                stream,
                entity=entity,
                fmt=fmt,
                mapping=mapping,
                encoding=encoding,
                dry_run=dry_run,
                skip_invalid=skip_invalid,
                source_name=file.name,
            )
    if as_json:
        out.print_json(json.dumps(result, default=_json_default))
    elif preview:
        out.print(f"encoding {result['encoding']}, columns: {', '.join(result['headers'])}")
        out.print("mapping: " + ", ".join(f"{k} <- {v}" for k, v in result["mapping"].items()))
        for row in result["rows"]:
            problem = f"  ERROR {row['error']['reason']}" if row["error"] else ""
            out.print(f"row {row['row']}: " + "; ".join(f"{k}={v}" for k, v in row["values"].items()) + problem)
    else:
        verb = "would create" if not result["written"] else "created"
        out.print(
            f"{result['rows']} rows: {verb} {result['created']}, updated {result['updated']}, "
            f"unchanged {result['unchanged']}, errors {result['error_count']}"
            + (" (dry run: nothing written)" if result["dry_run"] else "")
        )
        for e in result["errors"]:
            err.print(f"row {e['row']}: {e['reason']}" + (f" ({e['field']})" if e["field"] else ""))
    for note in result.get("notes", []):
        err.print(note)
    if not preview and result["error_count"] and not skip_invalid:
        raise typer.Exit(2)


@segment_app.command("list")
def list_segments(
    org: OrgOpt = None, as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False
) -> None:
    """Shared segments and the operator's own."""
    from app.services import segments

    rt = _rt()
    actor = _operator(rt, org)
    with read_only(rt.engine) as conn:
        rows = segments.list_segments(conn, actor)
    if as_json:
        out.print_json(json.dumps(rows, default=_json_default))
        return
    table = Table("id", "name", "of", "shared", "filters")
    for r in rows:
        table.add_row(
            str(r["id"]),
            r["name"],
            r["entity"],
            "yes" if r["shared"] else "no",
            json.dumps(r["filters"], ensure_ascii=False),
        )
    out.print(table)


@segment_app.command("save")
def save_segment(
    name: str,
    filters: Annotated[
        str, typer.Option(help='The filter as JSON, e.g. \'{"stage": ["customer"], "tags": ["vip"]}\'.')
    ],
    entity: Annotated[str, typer.Option(help="contacts or companies.")] = "contacts",
    org: OrgOpt = None,
) -> None:
    """Save a shared segment."""
    from app.services import segments
    from app.services.errors import Invalid

    try:
        raw = json.loads(filters)
    except ValueError:
        raise Invalid("--filters must be a JSON object", field="filters") from None
    if not isinstance(raw, dict):
        raise Invalid("--filters must be a JSON object", field="filters")
    rt = _rt()
    seg = segments.create_segment(rt, _operator(rt, org), name=name, entity=entity, filters=raw, shared=True)
    out.print(f"segment {seg['id']}: {seg['name']}")


@segment_app.command("export")
def export_segment(
    segment: Annotated[str, typer.Argument(help="The segment's id or name.")],
    fmt: Annotated[str, typer.Option("--format", help="csv, vcard (4.0) or vcard3.")] = "csv",
    out_file: Annotated[Optional[Path], typer.Option("--out", help="Write here (default: standard output).")] = None,
    org: OrgOpt = None,
) -> None:
    """A segment as CSV (formulas neutralised) or vCard, streamed."""
    from app.services import exports, segments

    rt = _rt()
    actor = _operator(rt, org)
    with read_only(rt.engine) as conn:
        seg_id = segments.find_segment(conn, actor, segment)["id"]
    _, chunks = exports.export_segment(rt, actor, segment_id=seg_id, fmt=fmt)
    _write(chunks, out_file)


@export_app.command("org")
def export_org(
    out_file: Annotated[Path, typer.Option("--out", help="The JSON file to write.")],
    org: OrgOpt = None,
) -> None:
    """The whole organisation as JSON: users, companies, contacts, interactions' metadata, notes,
    tasks, pipelines and deals (no mail bodies, no secrets)."""
    from app.services import exports

    rt = _rt()
    _write(exports.export_org(rt, _operator(rt, org)), out_file)
    err.print(f"wrote {out_file}")


def _write(chunks, out_file: Path | None) -> None:
    if out_file is None:
        for chunk in chunks:
            sys.stdout.write(chunk)
        sys.stdout.flush()
        return
    partial = out_file.with_name(out_file.name + ".partial")
    with partial.open("w", encoding="utf-8", newline="") as fh:
        for chunk in chunks:
            fh.write(chunk)
    partial.replace(out_file)  # a failed export leaves no file that looks complete
