"""Result files by name: ``-o results.parquet | results.jsonl | results.csv | -`` (JSON lines on stdout).

Why one module: a bulk job always keeps its resumable Parquet parts; the output name only decides
what the finished rows become.  Parquet is the native, typed form (with the run's metadata);
JSON lines and CSV are what spreadsheets, ``jq`` and log pipelines read, with the row shape of
``retriever classify --json``: ``top_k`` as a list of ``{"label", "score", "id"}`` (in CSV, a JSON
string), the same names everywhere (README, "Result schema").
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path
from typing import IO, Any, Iterator

import pyarrow as pa

from .errors import OutputError

__all__ = ["FORMATS", "OutputError", "output_format", "row_dicts", "write_rows"]

FORMATS = {".parquet": "parquet", ".jsonl": "jsonl", ".csv": "csv"}
STDOUT = "-"
CSV_COLUMNS = ("path", "page", "label", "score", "accepted", "threshold", "margin", "decision_score", "rule",
               "operating_point", "top_k", "error")


def output_format(out: str | os.PathLike, allowed: tuple[str, ...] = ("parquet", "jsonl", "csv", "stdout")) -> str:
    """``parquet``, ``jsonl``, ``csv`` or ``stdout`` (for ``-``), from the output's name; refused
    before any work starts when the name says nothing this command writes."""
    text = os.fspath(out)
    fmt = "stdout" if text == STDOUT else FORMATS.get(Path(text).suffix.lower())
    if fmt is None or fmt not in allowed:
        names = ", ".join(("-" if f == "stdout" else f".{f}") for f in allowed)
        raise OutputError(f"output {text!r}: the format is chosen by the name; use one of {names}")
    return fmt


def row_dicts(table: pa.Table) -> Iterator[dict[str, Any]]:
    """Bulk result rows as ``retriever classify --json`` objects (``vector`` kept when present)."""
    names = set(table.column_names)
    for r in table.to_pylist():
        d: dict[str, Any] = {"path": r["path"], "page": r["page"]}
        if r.get("error") is not None:
            d["error"] = r["error"]
            yield d
            continue
        if "label" in names:
            labels, scores = r.get("top_k_labels") or [], r.get("top_k_scores") or []
            ids = r.get("top_k_ids") or [None] * len(labels)
            d.update(label=r["label"], score=_round(r["score"]), accepted=r["accepted"],
                     threshold=_round(r["threshold"]), margin=_round(r["margin"]),
                     decision_score=_round(r["decision_score"]), rule=r["rule"], operating_point=r["operating_point"],
                     top_k=[{"label": lab, "score": _round(s), "id": i} for lab, s, i in zip(labels, scores, ids)])
        if "vector" in names:
            d["vector"] = r["vector"]
        if "sha256" in names:
            d["sha256"] = r["sha256"]
        d["error"] = None
        yield d


def _round(v: Any) -> Any:
    return None if v is None or (isinstance(v, float) and not math.isfinite(v)) else round(float(v), 6)


def write_rows(table: pa.Table, fh: IO[str], fmt: str, header: bool = True) -> None:
    """Append ``table``'s rows to an open text stream as JSON lines or CSV."""
    if fmt in ("jsonl", "stdout"):
        for d in row_dicts(table):
            fh.write(json.dumps(d, ensure_ascii=False) + "\n")
        return
    if fmt != "csv":
        raise OutputError(f"cannot write rows as {fmt}")
    cols = [c for c in CSV_COLUMNS if c in {"path", "page", "error"} or "label" in table.column_names]
    if "vector" in table.column_names:
        cols.append("vector")
    w = csv.DictWriter(fh, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
    if header:
        w.writeheader()
    for d in row_dicts(table):
        w.writerow({k: (json.dumps(v) if isinstance(v, (list, dict)) else v) for k, v in d.items()})


def convert(parquet: str | os.PathLike, out: str | os.PathLike, fmt: str) -> None:
    """A finished Parquet result written again as ``fmt`` at ``out``, atomically."""
    import pyarrow.parquet as pq

    from indexer.atomic import atomic_write

    def write(fh: Any) -> None:
        text = io.TextIOWrapper(fh, encoding="utf-8", newline="")
        first = True
        for batch in pq.ParquetFile(str(parquet)).iter_batches(batch_size=4096):
            write_rows(pa.Table.from_batches([batch]), text, fmt, header=first)
            first = False
        if first and fmt == "csv":  # no rows: still a header
            write_rows(pq.read_schema(str(parquet)).empty_table(), text, fmt)
        text.flush()
        text.detach()

    atomic_write(Path(out), write)
