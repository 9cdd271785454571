"""The per-batch work of a bulk job: files in, one Arrow row per page out (decode, encode, search).

Both engines run exactly this function: the local engine in a pool of threads, the Ray engine
inside each actor of its pool.  Every file is guarded on its own, so a corrupt, truncated,
empty or non-image file costs exactly its own error row; if the model fails on a batch, the
batch is retried image by image so only the culprit gets an error row.

Threads are enough for parallelism: OpenCV's decoders, ONNX Runtime and FAISS all release the
GIL, so two threads measured 1.86x one thread on 2 cores.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterator, Sequence, TypeVar

import numpy as np
import pyarrow as pa

from encoders.decode import DecodeError, read_bytes
from encoders.preprocess import preprocess

from .defaults import BATCH_SIZE
from encoders.inputs import display_path, source_and_text
from encoders.pages import iter_pages_of

T = TypeVar("T")

if TYPE_CHECKING:
    from encoders import Encoder

    from .retriever import Retriever


def _pages_and_hash(source: str, target: tuple[int, int], with_hash: bool
                    ) -> tuple[Iterator[tuple[int, Any]], str | None]:
    """The pages of ``source`` (what :func:`encoders.pages.iter_pages` gives) and, for an embedding job,
    the SHA-256 of the very bytes they are read from: one guarded read (``read_bytes``: type checked
    before opening, size bounded), never a second ``open()`` that a FIFO or /dev/zero would hang or flood."""
    try:
        data = read_bytes(source)
    except DecodeError as exc:
        return iter([(0, exc)]), None
    return iter_pages_of(data, source, target), (hashlib.sha256(data).hexdigest() if with_hash else None)


__all__ = ["SCHEMA_VERSION", "SEQ", "BatchProcessor", "embed_schema", "output_schema"]

SCHEMA_VERSION = 3  # 2: decision_score, rule, operating_point columns (open-set decisions)
                    # 3: top_k_ids; the feature column is named ``vector`` (as `indexer export/import`);
                    #    embedding files (path, page, vector, sha256, error)
SEQ = "_seq"  # internal column: index of the input item a row came from (ordering, resume)
UNIT_TOLERANCE = 1e-3  # | ||feature|| - 1 | accepted, as `indexer import` and `indexer verify` do


def embed_schema(dim: int, with_seq: bool = False) -> pa.Schema:
    """Columns of an embedding file (`retriever embed`): what `indexer import` reads, given labels."""
    fields = [
        pa.field("path", pa.string(), nullable=False),
        pa.field("page", pa.int32(), nullable=False),
        pa.field("vector", pa.list_(pa.float32(), int(dim))),
        pa.field("sha256", pa.string()),
        pa.field("error", pa.string()),
    ]
    if with_seq:
        fields.append(pa.field(SEQ, pa.int64(), nullable=False))
    return pa.schema(fields)


def output_schema(dim: int | None = None, with_features: bool = False, with_seq: bool = False) -> pa.Schema:
    """Columns of a bulk result file (``vector`` only with ``with_features``)."""
    fields = [
        pa.field("path", pa.string(), nullable=False),
        pa.field("page", pa.int32(), nullable=False),
        pa.field("label", pa.string()),
        pa.field("score", pa.float32()),
        pa.field("accepted", pa.bool_()),
        pa.field("threshold", pa.float32()),
        pa.field("top_k_labels", pa.list_(pa.string())),
        pa.field("top_k_scores", pa.list_(pa.float32())),
        pa.field("top_k_ids", pa.list_(pa.int64())),
        pa.field("margin", pa.float32()),
        pa.field("decision_score", pa.float32()),
        pa.field("rule", pa.string()),
        pa.field("operating_point", pa.string()),
        pa.field("error", pa.string()),
    ]
    if with_features:
        if not dim:
            raise ValueError("the feature column needs the feature dimension")
        fields.append(pa.field("vector", pa.list_(pa.float32(), int(dim))))
    if with_seq:
        fields.append(pa.field(SEQ, pa.int64(), nullable=False))
    return pa.schema(fields)


@dataclass
class _Rows:
    """Column buffers for one batch; a row is either classified or carries an error."""

    seq: list[int] = field(default_factory=list)
    path: list[str] = field(default_factory=list)
    page: list[int] = field(default_factory=list)
    error: list[str | None] = field(default_factory=list)
    sha256: list[str | None] = field(default_factory=list)
    tensor_of: dict[int, np.ndarray] = field(default_factory=dict)  # row -> preprocessed page
    print_of: dict[int, Any] = field(default_factory=dict)  # row -> page print, for a gallery that verifies

    def add(self, seq: int, path: str, page: int, error: str | None = None, tensor: np.ndarray | None = None,
            sha256: str | None = None, page_print: Any = None) -> None:
        """``path`` and ``error`` must be valid UTF-8 text: Arrow refuses surrogate-escaped bytes."""
        if tensor is not None:
            self.tensor_of[len(self.path)] = tensor
        if page_print is not None:
            self.print_of[len(self.path)] = page_print
        self.sha256.append(sha256)
        self.seq.append(seq)
        self.path.append(path)
        self.page.append(page)
        self.error.append(None if error is None else display_path(error))


def _reason(exc: BaseException) -> str:
    if isinstance(exc, DecodeError):
        return exc.reason
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[-1] if text else ''}".rstrip(": ")


class BatchProcessor:
    """Holds a :class:`retriever.Retriever` (encoder + gallery + threshold), or only an encoder for
    embedding jobs (``embed_only``); ``process`` is thread-safe."""

    def __init__(self, retriever: "Retriever | None", with_features: bool = False, batch_size: int = BATCH_SIZE,
                 encoder: "Encoder | None" = None) -> None:
        self.retriever = retriever
        self.embed_only = retriever is None
        self.verifies = retriever is not None and retriever.verifies  # each page also gets its print
        if self.embed_only and encoder is None:
            raise ValueError("BatchProcessor: give a retriever, or an encoder for an embedding job")
        self.encoder = encoder if retriever is None else retriever.encoder
        self.contract = self.encoder.contract
        self.with_features = bool(with_features)
        self.batch_size = max(1, int(batch_size))
        self.schema = (embed_schema(self.encoder.dim, with_seq=True) if self.embed_only
                       else output_schema(self.encoder.dim, self.with_features, with_seq=True))

    # ------------------------------------------------------------------ stages
    def _read(self, seqs: Sequence[int], paths: Sequence[str], problems: Sequence[str | None]) -> _Rows:
        rows = _Rows()
        target = tuple(self.contract.input_size) if self.retriever is None else self.retriever.decode_size
        for seq, path, problem in zip(seqs, paths, problems):
            source, path = source_and_text(str(path))
            if problem:
                rows.add(seq, path, 0, error=problem)
                continue
            last = -1
            try:
                pages, sha = _pages_and_hash(source, target, self.embed_only)
                for page, img in pages:
                    if isinstance(img, DecodeError):
                        rows.add(seq, path, page, error=img.reason, sha256=sha)
                    elif self.verifies:
                        try:
                            pp = self.retriever.page_print(img)
                        except ValueError as exc:  # a page too small to print
                            rows.add(seq, path, page, error=str(exc), sha256=sha)
                        else:
                            rows.add(seq, path, page, tensor=preprocess(img, self.contract), sha256=sha,
                                     page_print=pp)
                        del img
                    else:
                        rows.add(seq, path, page, tensor=preprocess(img, self.contract), sha256=sha)
                        del img
                    last = page
            except Exception as exc:  # a reader bug or MemoryError on one file must not stop the job
                rows.add(seq, path, last + 1, error=f"unexpected error while reading ({_reason(exc)})")
        return rows

    def _encode(self, rows: _Rows) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray]]:
        """(row -> feature, row -> local map), in chunks of ``batch_size``; a failing chunk is retried
        image by image.  Maps only when the retriever re-ranks (the same forward pass gives them).
        Nothing is kept on the object: worker threads call :meth:`process` concurrently."""
        feats: dict[int, np.ndarray] = {}
        maps: dict[int, np.ndarray] = {}
        local = not self.embed_only and self.retriever is not None and self.retriever.reranks

        def run(rs: list[int]) -> None:
            x = np.stack([rows.tensor_of[r] for r in rs])
            if local:
                out, m = self.encoder.encode_batch(x, local=True)
                maps.update(zip(rs, m))
            else:
                out = self.encoder.encode_batch(x)
            feats.update(zip(rs, out))

        order = sorted(rows.tensor_of)
        for start in range(0, len(order), self.batch_size):
            chunk = order[start:start + self.batch_size]
            try:
                run(chunk)
            except Exception:
                for r in chunk:
                    try:
                        run([r])
                    except Exception as exc:
                        rows.error[r] = f"inference failed ({_reason(exc)})"
        rows.tensor_of.clear()
        for r, f in list(feats.items()):
            if not np.all(np.isfinite(f)):
                rows.error[r] = "inference produced non-finite features"
            elif self.embed_only and abs(float(np.linalg.norm(f)) - 1.0) > UNIT_TOLERANCE:
                # a vector file must hold unit vectors (`indexer import` refuses the whole file otherwise); a
                # model may map a blank page to 0.  (Classification keeps such a row: it scores 0 and is rejected.)
                rows.error[r] = (f"inference produced a degenerate feature (norm {float(np.linalg.norm(f)):.3g}, "
                                 "not unit length)")
            else:
                continue
            del feats[r]
        return feats, maps

    # ------------------------------------------------------------------ public
    def process(self, seqs: Sequence[int], paths: Sequence[str],
                problems: Sequence[str | None] | None = None) -> pa.Table:
        """Classify input files ``paths`` (``seqs``: their input indices) -> one row per page.

        ``problems[i]`` (optional) marks an input known to be unusable before reading (e.g. an
        empty directory): it gets one error row with that message.  Rows come out in input
        order, pages in page order, with the internal ``_seq`` column.
        """
        if problems is None:
            problems = [None] * len(paths)
        rows = self._read(seqs, paths, problems)
        feats, maps = self._encode(rows)
        return self._table(rows, feats, maps)

    def _embed_table(self, rows: _Rows, feats: dict[int, np.ndarray]) -> pa.Table:
        n, dim = len(rows.path), self.encoder.dim
        flat = np.zeros((n, dim), dtype=np.float32)
        mask = np.ones(n, dtype=bool)
        for r, f in feats.items():
            flat[r] = f
            mask[r] = False
        s = self.schema
        return pa.Table.from_arrays([
            pa.array(rows.path, s.field("path").type), pa.array(rows.page, s.field("page").type),
            pa.FixedSizeListArray.from_arrays(pa.array(flat.reshape(-1)), dim, mask=pa.array(mask)),
            pa.array(rows.sha256, pa.string()), pa.array(rows.error, pa.string()),
            pa.array(rows.seq, pa.int64())], schema=s)

    def _table(self, rows: _Rows, feats: dict[int, np.ndarray], maps: dict[int, np.ndarray]) -> pa.Table:
        if self.embed_only:
            return self._embed_table(rows, feats)
        n = len(rows.path)
        order = sorted(feats)
        results: dict[int, Any] = {}
        if order:
            try:
                local = np.stack([maps[r] for r in order]) if self.retriever.reranks else None
                prints = [rows.print_of[r] for r in order] if self.verifies else None
                res = self.retriever.classify_features(np.stack([feats[r] for r in order]), local=local, pages=prints)
                results = dict(zip(order, res))
            except Exception as exc:
                for r in order:
                    rows.error[r] = f"gallery search failed ({_reason(exc)})"
        label: list[str | None] = [None] * n
        score: list[float | None] = [None] * n
        accepted: list[bool | None] = [None] * n
        threshold: list[float | None] = [None] * n
        top_labels: list[list[str] | None] = [None] * n
        top_scores: list[list[float] | None] = [None] * n
        top_ids: list[list[int] | None] = [None] * n
        margin: list[float | None] = [None] * n
        decision: list[float | None] = [None] * n
        rule: list[str | None] = [None] * n
        point: list[str | None] = [None] * n
        op_label = self.retriever.operating_point.label
        for r, res in results.items():
            label[r] = res.label
            score[r] = res.score
            accepted[r] = res.accepted
            threshold[r] = res.threshold
            top_labels[r] = [lab for lab, _ in res.top_k]
            top_scores[r] = [s for _, s in res.top_k]
            top_ids[r] = list(res.top_k_ids)
            margin[r] = None if res.margin is None or not math.isfinite(res.margin) else res.margin
            decision[r] = res.decision_score
            rule[r] = res.rule
            point[r] = op_label
        s = self.schema
        cols: list[pa.Array] = [
            pa.array(rows.path, s.field("path").type),
            pa.array(rows.page, s.field("page").type),
            pa.array(label, s.field("label").type),
            pa.array(score, s.field("score").type),
            pa.array(accepted, s.field("accepted").type),
            pa.array(threshold, s.field("threshold").type),
            pa.array(top_labels, s.field("top_k_labels").type),
            pa.array(top_scores, s.field("top_k_scores").type),
            pa.array(top_ids, s.field("top_k_ids").type),
            pa.array(margin, s.field("margin").type),
            pa.array(decision, s.field("decision_score").type),
            pa.array(rule, s.field("rule").type),
            pa.array(point, s.field("operating_point").type),
            pa.array(rows.error, s.field("error").type),
        ]
        if self.with_features:
            dim = self.encoder.dim
            flat = np.zeros((n, dim), dtype=np.float32)
            mask = np.ones(n, dtype=bool)
            for r in results:
                flat[r] = feats[r]
                mask[r] = False
            cols.append(pa.FixedSizeListArray.from_arrays(pa.array(flat.reshape(-1)), dim, mask=pa.array(mask)))
        cols.append(pa.array(rows.seq, pa.int64()))
        return pa.Table.from_arrays(cols, schema=s)


def chunked(items: Iterator[T], size: int) -> Iterator[list[T]]:
    """Consecutive lists of ``size`` items (the last may be shorter), consuming ``items`` lazily."""
    chunk: list[T] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
