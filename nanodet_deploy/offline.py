"""No network traffic and nothing written under the user's home by the libraries we load.

Applied once, when ``nanodet_deploy`` is imported, before any backend library loads (each reads its switch at
load time). Measured with a fresh HOME in a network namespace whose resolver records every query
(tests/test_untrusted.py): ``export --to openvino`` looked up ONNX Runtime's telemetry host (onnxsim loads
ONNX Runtime; it wrote ``~/.cache/Microsoft/DeveloperTools/.onnxruntime/deviceid``) and Google Analytics dozens of
times for OpenVINO's ``convert_model`` and NNCF (consent is assumed when no opt-out file exists; a client id is
written under ``~/intel/``). With this module: no query, nothing under HOME.

- ONNX Runtime (its Linux wheels carry 1DS telemetry: 1.32 here): ``ORT_DISABLE_TELEMETRY=1`` set before it
  initialises is its full opt-out — no uploader, no device id, no event (``ORT_TELEMETRY_DISABLED`` is the
  later spelling of the same switch).
- OpenVINO's tools (``convert_model``) and NNCF send through the optional ``openvino_telemetry`` package and
  fall back to their own no-op stubs when it cannot be imported. Its only opt-out, ``opt_in_out --opt_out``,
  writes a file under the user's home; instead the package is made unimportable in this process.
- MNN's Python wrapper scripts (``mnnconvert``, ``mnnquant``) upload usage data: converters/mnn.py runs MNN's
  binaries directly and never imports them.
"""

from __future__ import annotations

import os
import sys

ENVIRONMENT = {"ORT_DISABLE_TELEMETRY": "1", "ORT_TELEMETRY_DISABLED": "1"}
BLOCKED_MODULES = ("openvino_telemetry",)


def apply() -> None:
    os.environ.update(ENVIRONMENT)
    for name in BLOCKED_MODULES:
        if name not in sys.modules:  # None in sys.modules: `import name` raises ImportError
            sys.modules[name] = None
