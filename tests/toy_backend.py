"""A backend that lives outside the package, as a user's own would: a converter and a runtime in this one
module and one registry row, registered through ``NANODET_DEPLOY_BACKENDS=tests.toy_backend`` (targets.py imports
the modules it names). Nothing else in nanodet_deploy or in the suite names it: test_registry.py runs the
backend-parametrised tests with it registered and checks that they pick it up and pass.

The format is real but small: the model's state dict saved with ``torch.save`` (``model.pt``), loaded back with
``torch.load(weights_only=True)`` into the architecture the manifest records, and run by PyTorch — exact, so it is
held to the FP32 budgets like every other FP32 export.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nanodet_deploy.runtimes.base import Runtime
from nanodet_deploy.targets import Target, register

NAME = "toy"
CALIBRATION_METHODS: tuple[str, ...] = ()
FLOAT_PARTS: dict = {}
DEFAULT_FLOAT_PARTS: tuple[str, ...] = ()


def convert(module, processing, directory: Path, precision: str = "fp32", calib_paths=(), progress=None,
            **options) -> tuple[dict[str, str], dict]:
    import torch

    torch.save(module.state_dict(), directory / "model.pt")
    return {"model": "model.pt"}, {"format": "torch.save(state_dict)"}


def describe(conversion: dict) -> str:
    return "the state dict, for the architecture the manifest records"


def embed_manifest(path: Path, manifest_json: str) -> None:
    """A state dict has no place for metadata: the manifest is the nanodet.json beside it."""


def embedded_manifest(path: Path) -> str | None:
    return None


class ToyRuntime(Runtime):
    backend = NAME

    def __init__(self, module, threads: int | None = None):
        from nanodet_deploy.runtimes.torch import TorchRuntime

        self._torch = TorchRuntime(module, threads=threads)

    @classmethod
    def from_export(cls, files: dict[str, Path], manifest, threads: int | None = None) -> "ToyRuntime":
        import torch

        from nanodet_deploy.export import reference_spec
        from nanodet_deploy.model import build_model

        module = build_model(reference_spec(manifest))
        module.load_state_dict(torch.load(str(files["model"]), map_location="cpu", weights_only=True))
        return cls(module, threads)

    def run(self, tensor: np.ndarray) -> np.ndarray:
        return self._torch.run(tensor)


register(Target(NAME, f"{__name__}:ToyRuntime", "torch", "torch", converter=__name__, colour="tab:brown",
                description="toy: a state dict run by PyTorch (tests only)"))
