"""Result cache: stage runs keyed by a content hash, storing product references only.

The key covers the stage name, the stage's code version, its config, the
checksums of its input products, the pipeline version and the sweep variant.
A hit is only taken when every cached product still exists unchanged.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from . import __version__
from .atomic import atomic_path
from .checksum import path_checksum
from .context import PipelineContext, Product, ProductRef


def _input_fingerprint(product: Product) -> Any:
    refs = product if isinstance(product, list) else [product]
    return [r.checksum or f"path:{r.path}" for r in refs]


def cache_key(stage: Any, ctx: PipelineContext, *, variant: dict | None = None) -> str:
    """Content hash of everything that determines a stage's products."""
    inputs = {k: _input_fingerprint(ctx.get(k)) for k in sorted(stage.requires) if ctx.has(k)}
    blob = json.dumps({
        "stage": stage.name,
        "class": f"{type(stage).__module__}.{type(stage).__qualname__}",
        "version": stage.version,
        "config": stage.config_hash(),
        "inputs": inputs,
        "pipeline": __version__,
        "variant": variant or {},
    }, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def _stat_sig(path: str) -> list[int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


class ResultCache:
    """Product references of completed stage runs, one small JSON file per key."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def _file(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        """The cached entry, or None on a miss or when a product changed or vanished."""
        f = self._file(key)
        try:
            entry = json.loads(f.read_text())
        except (OSError, ValueError):
            return None
        for item in entry.get("products", []):
            sig = _stat_sig(item["path"])
            if sig is None:
                return None
            # Touched since: fall back to the checksum before giving up.
            if (sig != item.get("stat") and item.get("checksum")
                    and path_checksum(item["path"]) != item["checksum"]):
                return None
        entry["outputs"] = {k: _load_product(v) for k, v in entry["outputs"].items()}
        return entry

    def put(self, key: str, outputs: dict[str, Product], metadata: dict[str, Any],
            metrics: dict[str, Any] | None = None) -> None:
        products = []
        for product in outputs.values():
            for ref in product if isinstance(product, list) else [product]:
                products.append({"path": ref.path, "checksum": ref.checksum,
                                 "stat": _stat_sig(ref.path)})
        entry = {
            "key": key,
            "outputs": {k: _dump_product(v) for k, v in outputs.items()},
            "metadata": metadata,
            "metrics": metrics or {},
            "products": products,
        }
        target = self._file(key)
        with atomic_path(target) as tmp:
            tmp.write_text(json.dumps(entry, default=str))

    def clear(self) -> None:
        import shutil

        shutil.rmtree(self.root, ignore_errors=True)


def _dump_product(p: Product) -> Any:
    if isinstance(p, list):
        return [r.model_dump(mode="json") for r in p]
    return p.model_dump(mode="json")


def _load_product(data: Any) -> Product:
    if isinstance(data, list):
        return [ProductRef.model_validate(d) for d in data]
    return ProductRef.model_validate(data)
