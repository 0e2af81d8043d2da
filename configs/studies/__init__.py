"""Study configs (python -m babyjax.study --config configs/studies/NAME.py): see babyjax/study/spec.py for the keys."""

import os
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[2]


def shared_data(*parts: str) -> str:
    """A path under the shared evaluation data: BABYJAX_SHARED_DATA, else ../shared/data beside the checkout."""
    base = pathlib.Path(os.environ.get("BABYJAX_SHARED_DATA") or ROOT.parent / "shared" / "data")
    return str(base.joinpath(*parts))
