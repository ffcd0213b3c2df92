"""Hook (``pipeline.on_product.validation``): a group's QA verdict into the state DB, where
the manifest and the night summary read it."""

from __future__ import annotations

from dsa110_pipeline.context import Product
from dsa110_pipeline.state import StateDB


def record_verdict(state: StateDB, group_id: str, product: Product) -> None:
    """Record the verdict the validation product's meta carries (none: nothing to do)."""
    ref = product[0] if isinstance(product, list) else product
    verdict = ref.meta.get("verdict")
    if verdict is None:
        return
    reasons = [r.get("message", str(r)) if isinstance(r, dict) else str(r)
               for r in ref.meta.get("reasons", [])]
    state.set_verdict(group_id, str(verdict), reasons=reasons,
                      metrics=ref.meta.get("metrics") or {}, report=ref.path)
