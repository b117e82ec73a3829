"""`export_build` as a whole: same inputs -> byte-identical builds, and dev-set metrics per artifact."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fnedge.errors import FnedgeError
from fnedge.eval.cases import load_cases
from fnedge.eval.runner import run_eval
from fnedge.export.build import export_build
from fnedge.export.dev_metrics import HEADLINE_METRICS
from fnedge.io import sha256_file
from fnedge.runtime.build import load_build
from fnedge.runtime.engine import Assistant

# every writer the build uses: gguf-py (float and legacy blocks), llama.cpp (K-quant), ONNX (+ ort)
EVERY_WRITER = "f16,q4_0,q4_k_m,onnx-fp32,onnx-int8,onnx-int4"
CASES = [
    {"id": "weather", "lang": "zh", "tools": "default",
     "messages": [{"role": "user", "content": "明天上海会下雨吗？"}],
     "expect": {"type": "call", "calls": [{"name": "get_weather",
                                           "arguments": {"city": ["上海"], "date": ["tomorrow"]}}]}},
    {"id": "light", "lang": "en", "tools": "default",
     "messages": [{"role": "user", "content": "turn off the kitchen light"}],
     "expect": {"type": "call", "calls": [{"name": "control_light",
                                           "arguments": {"room": ["kitchen"], "action": ["off"]}}]}},
    {"id": "hello", "lang": "en", "tools": "default",
     "messages": [{"role": "user", "content": "hello there"}], "expect": {"type": "text"}},
]


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_same_inputs_give_byte_identical_builds(tiny_model, tmp_path):
    first = export_build("rpi4", model_dir=tiny_model, quants=EVERY_WRITER, out_dir=tmp_path / "a" / "rpi4")
    second = export_build("rpi4", model_dir=tiny_model, quants=EVERY_WRITER, out_dir=tmp_path / "b" / "rpi4")
    manifest = json.loads((first / "manifest.json").read_text())
    assert [a["quant"] for a in manifest["artifacts"]] == EVERY_WRITER.split(",")
    one, two = folder_bytes(first), folder_bytes(second)
    assert set(one) == set(two) == set(manifest["files"]) | {"manifest.json"}
    for name in one:
        assert one[name] == two[name], f"{name} differs between two exports of the same model"


@pytest.fixture(scope="module")
def cases_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cases") / "mini-dev.jsonl"
    path.write_text("".join(json.dumps(case, ensure_ascii=False) + "\n" for case in CASES), encoding="utf-8")
    load_cases(path)  # the fixture itself must be a valid cases file
    return path


@pytest.fixture(scope="module")
def evaluated_build(tiny_model, cases_file, tmp_path_factory) -> Path:
    return export_build("rpi4", model_dir=tiny_model, quants="f16,q4_k_m", eval_cases=cases_file,
                        out_dir=tmp_path_factory.mktemp("evaluated") / "rpi4")


def test_each_artifact_gets_its_dev_metrics(evaluated_build, cases_file):
    manifest = load_build(evaluated_build).manifest  # checksums still verify after the manifest rewrite
    for artifact in manifest["artifacts"]:
        metrics = artifact["dev_metrics"]
        assert tuple(metrics) == HEADLINE_METRICS
        assert metrics["n"] == len(CASES)
        for key in ("function_match", "argument_match", "valid_calls"):
            assert metrics[key] is None or 0.0 <= metrics[key] <= 1.0
        assert 0 < metrics["latency_p50_ms"] <= metrics["latency_p95_ms"]
    assert manifest["dev_eval"]["cases"] == "mini-dev.jsonl"
    assert manifest["dev_eval"]["cases_sha256"] == sha256_file(cases_file)
    assert manifest["dev_eval"]["threads"] >= 1
    assert not list(evaluated_build.parent.glob("*.partial"))


def test_dev_metrics_are_those_of_their_artifact(evaluated_build, cases_file):
    """Greedy decoding is deterministic: re-scoring the q4_k_m file gives its recorded accuracy."""
    manifest = load_build(evaluated_build).manifest
    recorded = next(a for a in manifest["artifacts"] if a["quant"] == "q4_k_m")["dev_metrics"]
    assistant = Assistant.from_build(evaluated_build, artifact="model-q4_k_m.gguf",
                                     threads=manifest["dev_eval"]["threads"])
    summary = run_eval(load_cases(cases_file), assistant, show_progress=False)
    for key in ("n", "function_match", "argument_match", "valid_calls"):
        assert recorded[key] == (round(summary[key], 4) if isinstance(summary[key], float) else summary[key])


def test_without_eval_cases_the_manifest_has_no_metrics(tiny_model, tmp_path):
    build = export_build("rpi4", model_dir=tiny_model, quants="q8_0", out_dir=tmp_path / "b")
    manifest = json.loads((build / "manifest.json").read_text())
    assert "dev_eval" not in manifest
    assert all("dev_metrics" not in a for a in manifest["artifacts"])


def test_a_bad_cases_file_fails_before_anything_is_written(tiny_model, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a"\n')
    with pytest.raises(FnedgeError, match="bad.jsonl"):
        export_build("rpi4", model_dir=tiny_model, quants="q8_0", eval_cases=bad, out_dir=tmp_path / "b")
    with pytest.raises(FnedgeError, match="missing.jsonl"):
        export_build("rpi4", model_dir=tiny_model, quants="q8_0", eval_cases=tmp_path / "missing.jsonl",
                     out_dir=tmp_path / "b")
    assert not (tmp_path / "b").exists() and not (tmp_path / "b.partial").exists()


def test_cli_prints_the_metrics_per_artifact(tiny_model, cases_file, tmp_path):
    from fnedge.cli import app

    out = tmp_path / "cli-build"
    result = CliRunner().invoke(app, ["export", "--device", "rpi4", "--model", str(tiny_model), "--quant",
                                      "q4_k_m", "--out", str(out), "--eval-cases", str(cases_file)])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if "model-q4_k_m.gguf  " in line]
    assert len(lines) == 1 and "q4_k_m" in lines[0] and "function " in lines[0] and " ms" in lines[0]
    assert "dev_metrics" in json.loads((out / "manifest.json").read_text())["artifacts"][0]


def test_parity_is_recorded_and_a_broken_float_export_is_refused(tiny_model, tmp_path):
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    from fnedge.export.parity import check_parity

    build = export_build("rpi4", model_dir=tiny_model, quants="f16,q8_0", out_dir=tmp_path / "b")
    manifest = json.loads((build / "manifest.json").read_text())
    parity = {a["quant"]: a["parity"] for a in manifest["artifacts"]}
    assert parity["f16"]["max_abs_logit_error"] < 0.05 and parity["f16"]["same_greedy_tokens"] == 4
    assert parity["q8_0"]["prompts"] == 4
    # The same artifacts checked against a model whose weights moved: the f16 file no longer matches.
    other = tmp_path / "other"
    shutil.copytree(tiny_model, other)
    weights = load_file(other / "model.safetensors")
    weights = {k: (v + 0.05 * torch.randn_like(v.float())).to(v.dtype) if v.ndim == 2 else v for k, v in weights.items()}
    save_file(weights, other / "model.safetensors")
    f16 = [a for a in manifest["artifacts"] if a["quant"] == "f16"]
    with pytest.raises(FnedgeError, match="broken export"):
        check_parity(other, build, f16, context_length=256)


def test_export_refuses_a_build_that_breaks_the_device_budget(tiny_model, tmp_path):
    slow = (Path(__file__).parent.parent / "benchmarks" / "device-example.yaml").read_text()
    slow = slow.replace("latency_budget_ms: 400", "latency_budget_ms: 1").replace("name: jetson-nano-cpu", "name: slow-board")
    device = tmp_path / "slow-board.yaml"
    device.write_text(slow)
    with pytest.raises(FnedgeError, match=r"breaks its 1 ms budget.*q4_k_m"):
        export_build(str(device), model_dir=tiny_model, quants="q8_0", out_dir=tmp_path / "refused")
    assert not (tmp_path / "refused").exists() and not (tmp_path / "refused.partial").exists()
    build = export_build(str(device), model_dir=tiny_model, quants="q8_0", out_dir=tmp_path / "b",
                         allow_over_budget=True)
    estimate = json.loads((build / "manifest.json").read_text())["budget_estimate"]
    assert estimate["verdict"] == "misses" and estimate["est_latency_p95_ms"] > 1
    fine = export_build("rpi4", model_dir=tiny_model, quants="q8_0", out_dir=tmp_path / "pi")
    assert json.loads((fine / "manifest.json").read_text())["budget_estimate"]["verdict"] == "meets"
