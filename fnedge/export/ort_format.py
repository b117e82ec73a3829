"""Convert an fnedge ONNX export to the ORT format, for ONNX Runtime Mobile.

`convert_to_ort(onnx_path, out_path)` calls onnxruntime's own converter in-process
(`onnxruntime.tools.convert_onnx_models_to_ort`, the function behind its command line) with the
settings its docs give for mobile CPUs: optimization style Fixed (the graph optimizations are
applied now and stored), level "all", target platform "arm" (leaves out the x86-only NCHWc layout,
so the file runs on any CPU). The converted file is loaded back and must give the logits of the
ONNX file it came from before it is kept.

Two properties to know, both recorded in the returned choices:

* The file is bigger than its ONNX source by the fp32 embedding table: our graphs keep tied
  embeddings as one tensor and transpose it for the head, and the converter's constant folding
  stores that transpose as a second table (ONNX Runtime makes the same copy in memory when it
  loads the .onnx file, so memory use at run time is the same).
* Its bytes differ between conversions of the same model: the kernel type table in the file is
  written in hash-map order, which varies from process to process; the graph and weights do not.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from fnedge.errors import FnedgeError

TARGET_PLATFORM = "arm"
LEVEL_VARIABLE = "ORT_CONVERT_ONNX_MODELS_TO_ORT_OPTIMIZATION_LEVEL"  # the converter reads it
PARITY_TOLERANCE = 1e-4  # max |logit difference| between the .ort and its .onnx on a short prompt


def convert_to_ort(onnx_path: Path, out_path: Path) -> dict[str, Any]:
    """Write `out_path` (.ort) from `onnx_path`; returns the conversion's choices for the manifest."""
    onnx_path, out_path = Path(onnx_path), Path(out_path)
    if not onnx_path.is_file():
        raise FnedgeError(f"{onnx_path}: ONNX file not found")
    # a dot-prefixed scratch folder beside the output, so the final move is a rename
    with tempfile.TemporaryDirectory(dir=out_path.parent, prefix=".ort-") as scratch:
        produced, operators = _run_converter(onnx_path, Path(scratch))
        difference = _logit_difference(onnx_path, produced)
        if difference > PARITY_TOLERANCE:
            raise FnedgeError(f"{onnx_path}: the ORT-format conversion changes the logits by up to "
                              f"{difference:.2e}")
        os.replace(produced, out_path)
    return {
        "converter": "onnxruntime.tools.convert_onnx_models_to_ort",
        "converted_from": onnx_path.name,
        "optimization_style": "Fixed",
        "optimization_level": os.environ.get(LEVEL_VARIABLE, "all"),
        "target_platform": TARGET_PLATFORM,
        "max_logit_difference_vs_onnx": difference,
        "required_operators": operators,
        "deterministic_bytes": False,
        "onnxruntime": _version("onnxruntime"),
    }


def _run_converter(onnx_path: Path, scratch: Path) -> tuple[Path, list[str]]:
    """The converter's .ort file in `scratch`, and the operator list it writes beside it."""
    with _quiet_converter():
        from onnxruntime.tools.convert_onnx_models_to_ort import OptimizationStyle, convert_onnx_models_to_ort

        try:
            convert_onnx_models_to_ort(onnx_path.resolve(), output_dir=scratch,
                                       optimization_styles=[OptimizationStyle.Fixed],
                                       target_platform=TARGET_PLATFORM)
        except Exception as exc:  # onnxruntime's load errors derive from Exception only
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise FnedgeError(f"{onnx_path}: onnxruntime cannot convert it to the ORT format ({reason})") from None
    # the file name carries the optimization level when it is not "all": take what was written
    produced = sorted(scratch.glob("*.ort"))
    if len(produced) != 1:
        raise FnedgeError(f"{onnx_path}: the ORT converter wrote {len(produced)} .ort files, expected 1")
    operators = [line.strip() for config in sorted(scratch.glob("*.config"))
                 for line in config.read_text(encoding="utf-8").splitlines()
                 if line.strip() and not line.startswith("#")]
    return produced[0], operators


@contextlib.contextmanager
def _quiet_converter() -> Iterator[None]:
    """The converter prints its progress, logs at INFO, and its logger module calls
    logging.basicConfig on import; none of that belongs in `fnedge export`'s output."""
    root = logging.getLogger()
    handlers = list(root.handlers)
    try:
        import onnxruntime.tools.convert_onnx_models_to_ort  # noqa: F401  (its import sets the level)

        converter_log = logging.getLogger("ort_format_model.utils")
        level = converter_log.level
        converter_log.setLevel(logging.WARNING)
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                yield
        finally:
            converter_log.setLevel(level)
    finally:
        root.handlers[:] = handlers


def _logit_difference(onnx_path: Path, ort_path: Path) -> float:
    """Max |logit difference| between the two files on one short prompt from an empty cache."""
    import onnxruntime as ort

    from fnedge.runtime.onnx_backend import CacheLayout

    outputs = []
    for path in (onnx_path, ort_path):
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        try:
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime's load errors derive from Exception only
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise FnedgeError(f"{path}: onnxruntime cannot load it ({reason})") from None
        cache = CacheLayout.from_session(session)
        tokens = np.array([[1, 2, 3, 4]], dtype=np.int64)
        feed = {"input_ids": tokens, "attention_mask": np.ones_like(tokens),
                **dict(zip(cache.past_names, cache.empty()))}
        outputs.append(session.run(["logits"], feed)[0])
    return float(np.max(np.abs(outputs[0] - outputs[1])))


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None
