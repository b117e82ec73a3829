"""`fnedge export --adapter`: a peft LoRA adapter merged into its base, and ORT-format artifacts."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

torch = pytest.importorskip("torch")
peft = pytest.importorskip("peft")

from conftest import make_model  # noqa: E402
from fnedge.chat_format import render  # noqa: E402
from fnedge.errors import FnedgeError  # noqa: E402
from fnedge.export.build import export_build  # noqa: E402
from fnedge.io import sha256_file  # noqa: E402
from fnedge.runtime.build import load_build  # noqa: E402

# peft's get_peft_model asks transformers a deprecated question; not ours to answer
pytestmark = pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing.*:FutureWarning")
PROMPT = render([{"role": "user", "content": "turn off the kitchen light"}], add_generation_prompt=True)


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_adapter(base_dir: Path, out_dir: Path, seed: int = 0) -> Path:
    """A LoRA adapter on q_proj/v_proj whose lora_B is random, so merging it changes the model."""
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)
    base = LlamaForCausalLM.from_pretrained(str(base_dir), dtype=torch.float32)
    model = peft.get_peft_model(base, peft.LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, 0.05)
    model.save_pretrained(str(out_dir))
    return out_dir


def torch_logits(model_dir: Path, tokens: list[int], adapter_dir: Path | None = None) -> np.ndarray:
    """Next-token logits of the base, or of the base with the adapter merged by peft."""
    from transformers import LlamaForCausalLM

    model = LlamaForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    if adapter_dir is not None:
        model = peft.PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    with torch.no_grad():
        return model.eval()(input_ids=torch.tensor([tokens])).logits[0, -1].numpy()


@pytest.fixture(scope="module")
def adapter(tiny_model, tmp_path_factory) -> Path:
    return make_adapter(tiny_model, tmp_path_factory.mktemp("lora") / "kitchen-lora")


@pytest.fixture(scope="module")
def merged_build(adapter, tmp_path_factory) -> Path:
    """Built through the CLI, without --model: the base is the one the adapter records."""
    from fnedge.cli import app

    out = tmp_path_factory.mktemp("merged") / "rpi4"
    result = CliRunner().invoke(app, ["export", "--device", "rpi4", "--adapter", str(adapter),
                                      "--quant", "f16", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "merged adapter kitchen-lora into" in result.output
    return out


def test_the_adapter_records_its_local_base(adapter, tiny_model):
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert Path(config["base_model_name_or_path"]) == tiny_model


def test_gguf_logits_are_those_of_the_merged_model(merged_build, adapter, tiny_model):
    from fnedge.runtime.llama_backend import LlamaBackend

    backend = LlamaBackend(merged_build / "model-f16.gguf", n_threads=1, n_ctx=256)
    tokens = backend.tokenize(PROMPT)
    got = backend.prompt_logits(tokens)
    merged = torch_logits(tiny_model, tokens, adapter)
    base = torch_logits(tiny_model, tokens)
    scale = float(np.abs(merged).max())
    assert np.abs(got - merged).max() < 2e-3 * scale  # f16 weights
    # the adapter moves the logits far more than f16 rounding does
    assert np.abs(base - merged).max() > 5 * np.abs(got - merged).max()
    assert np.abs(got - base).max() > 5 * np.abs(got - merged).max()


def test_manifest_records_the_adapter(merged_build, adapter, tiny_model):
    manifest = load_build(merged_build).manifest  # every file still matches its checksum
    model = manifest["model"]
    assert model["merged"] is True
    assert model["source"] == tiny_model.name
    assert model["source_sha256"] == sha256_file(tiny_model / "model.safetensors")
    record = model["adapter"]
    assert record["source"] == "kitchen-lora"
    assert record["sha256"] == sha256_file(adapter / "adapter_model.safetensors")
    assert (record["rank"], record["alpha"], record["target_modules"]) == (4, 8, ["q_proj", "v_proj"])
    assert record["merge_check"]["greedy_equal"] is True
    # the merged model folder was scratch: only the usual build files remain
    assert sorted(p.name for p in merged_build.iterdir()) == sorted([*manifest["files"], "manifest.json"])
    assert not list(merged_build.parent.glob("*.partial"))


def test_plain_builds_record_no_adapter(tiny_model, tmp_path):
    build = export_build("rpi4", model_dir=tiny_model, quants="q8_0", out_dir=tmp_path / "plain")
    model = json.loads((build / "manifest.json").read_text())["model"]
    assert "adapter" not in model and "merged" not in model


def other_base(tiny_model: Path, directory: Path, **changes) -> Path:
    from transformers import AutoConfig

    from fnedge.train.tokenizer import load_tokenizer

    config = AutoConfig.from_pretrained(str(tiny_model))
    for key, value in changes.items():
        setattr(config, key, value)
    make_model(directory, load_tokenizer(tiny_model), config)
    return directory


@pytest.mark.parametrize("changes, problem", [
    (dict(hidden_size=192, num_attention_heads=3, head_dim=64), "size mismatch"),
    (dict(num_hidden_layers=5), "match no module of the base"),
], ids=["hidden-size", "deeper"])
def test_an_adapter_for_another_base_fails_and_writes_nothing(tiny_model, tmp_path, changes, problem):
    foreign = make_adapter(other_base(tiny_model, tmp_path / "other", **changes), tmp_path / "foreign-lora")
    out = tmp_path / "builds" / "rpi4"
    previous = export_build("rpi4", model_dir=tiny_model, quants="q8_0", out_dir=out)
    before = {p.name: p.read_bytes() for p in previous.iterdir()}
    with pytest.raises(FnedgeError, match=f"foreign-lora.*not made for the base.*{problem}"):
        export_build("rpi4", model_dir=tiny_model, adapter_dir=foreign, quants="f16", out_dir=out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # the old build is untouched
    assert sorted(p.name for p in out.parent.iterdir()) == ["rpi4"]  # and no staging folder is left


def test_a_base_that_is_not_local_asks_for_model(adapter, tmp_path):
    copy = Path(shutil.copytree(adapter, tmp_path / "hub-lora"))
    config = json.loads((copy / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = "someone/some-model-on-the-hub"
    (copy / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(FnedgeError, match="hub-lora.*not a local folder.*--model"):
        export_build("rpi4", adapter_dir=copy, quants="f16", out_dir=tmp_path / "b")
    assert not (tmp_path / "b").exists() and not (tmp_path / "b.partial").exists()


def test_a_folder_without_adapter_files_is_rejected(tiny_model, tmp_path):
    with pytest.raises(FnedgeError, match="not a peft adapter folder.*adapter_config.json"):
        export_build("rpi4", model_dir=tiny_model, adapter_dir=tiny_model, quants="f16", out_dir=tmp_path / "b")


# --- ORT format ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ort_build(tiny_model, tmp_path_factory) -> Path:
    return export_build("android-arm64", model_dir=tiny_model, quants="onnx-int8-ort,onnx-int8",
                        out_dir=tmp_path_factory.mktemp("ort") / "android-arm64")


def test_ort_file_loads_in_onnxruntime_with_the_logits_of_its_onnx(ort_build):
    import onnxruntime as ort

    from fnedge.runtime.onnx_backend import OnnxBackend

    manifest = load_build(ort_build).manifest
    artifact = manifest["artifacts"][0]
    assert (artifact["file"], artifact["quant"], artifact["serialization"]) == \
        ("model-onnx-int8.ort", "onnx-int8-ort", "ort")
    assert artifact["choices"]["ort_conversion"]["converted_from"] == "model-onnx-int8.onnx"
    session = ort.InferenceSession(str(ort_build / "model-onnx-int8.ort"), providers=["CPUExecutionProvider"])
    assert session.get_outputs()[0].name == "logits"
    backends = [OnnxBackend(ort_build / name, ort_build, n_threads=1)
                for name in ("model-onnx-int8.ort", "model-onnx-int8.onnx")]
    tokens = backends[0].tokenize(PROMPT)
    got, want = (b.prompt_logits(tokens) for b in backends)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)


def test_ort_only_builds_keep_no_onnx_file_and_the_android_readme_points_to_it(tiny_model, ort_build, tmp_path):
    assert "model-onnx-int8.ort" in (ort_build / "README.md").read_text()
    build = export_build("android-arm64", model_dir=tiny_model, quants="onnx-fp32-ort", out_dir=tmp_path / "a")
    assert sorted(p.name for p in build.glob("model-*")) == ["model-onnx-fp32.ort"]
    assert not [p for p in build.iterdir() if p.name.startswith(".")]
