import json
import shutil

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

from conftest import TINY, assert_same_tensors, interrupt_at_first_checkpoint
from fnedge.errors import FnedgeError
from fnedge.train.config import QAT_DEFAULTS, TrainConfig

# A dozen steps of QAT on the barely trained fc-nano model, weights saved as float16 (the default):
# the fake quantizer has to see the weights as the export will read them.
QAT = {**TINY, "n_samples": 200, "epochs": 1.0, "lr": 1e-3, "warmup_steps": 3, "checkpoint_every": 4,
       "eval_every": 1000, "qat": {}}


def qat_config(base, **overrides) -> TrainConfig:
    return TrainConfig.from_dict({**QAT, "base": str(base), **overrides})


def writer_q4_0(array: np.ndarray) -> np.ndarray:
    """What the GGUF writer stores as Q4_0 (gguf-py's quantizer), dequantized."""
    from gguf import GGMLQuantizationType, quants

    return quants.dequantize(quants.quantize(array, GGMLQuantizationType.Q4_0), GGMLQuantizationType.Q4_0)


def gguf_weights(model_dir, path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Export `model_dir` as Q4_0; every tensor dequantized ({gguf name: array}, {gguf name: type})."""
    from gguf import GGUFReader, quants

    from fnedge.export.gguf_writer import write_gguf

    write_gguf(model_dir, path, quant="q4_0")
    arrays, types = {}, {}
    for tensor in GGUFReader(path).tensors:
        arrays[tensor.name] = quants.dequantize(np.asarray(tensor.data), tensor.tensor_type)
        types[tensor.name] = tensor.tensor_type.name
    return arrays, types


def as_in_gguf(name: str, weight: torch.Tensor, config) -> tuple[str, np.ndarray]:
    """An HF weight's GGUF name, with Q/K rows in the writer's order."""
    from fnedge.export.gguf_writer import _LAYER_TENSORS, _permute_qk

    array = weight.detach().float().numpy()
    if name == "model.embed_tokens.weight":
        return "token_embd.weight", array
    layer, suffix = name.removeprefix("model.layers.").split(".", 1)
    if suffix == "self_attn.q_proj.weight":
        array = _permute_qk(array, config.num_attention_heads)
    elif suffix == "self_attn.k_proj.weight":
        array = _permute_qk(array, config.num_key_value_heads)
    return f"blk.{layer}.{_LAYER_TENSORS[suffix]}", array


# --- the fake quantizer is the writer's Q4_0 ------------------------------------------------------


def test_fake_quant_equals_the_writers_q4_0_bit_for_bit():
    from fnedge.train.qat import q4_0_dequantized

    g = torch.Generator().manual_seed(0)
    scales = torch.logspace(-9, 3, 96).unsqueeze(1)  # down to scales that underflow float16
    random = torch.randn(96, 256, generator=g) * scales
    grid = (torch.randint(-16, 17, (32, 64), generator=g) / 2).float()  # many exact halves: round-half-up ties
    edge = torch.zeros(4, 32)
    edge[1, :] = 0.25            # every value is the block's extreme (the first one wins)
    edge[2, 3], edge[2, 9] = 0.5, -0.5  # +max and -max: the sign of the first decides the grid
    edge[3, 0], edge[3, 1] = -1e-30, 1e-31  # a scale far below float16's smallest
    for values in (random, grid, edge, random.half().float()):
        expected = torch.from_numpy(writer_q4_0(values.numpy()))
        assert torch.equal(q4_0_dequantized(values), expected)


def test_q4_0_rounds_halves_up_with_the_signed_extreme_as_scale():
    from fnedge.train.qat import q4_0_dequantized

    block = torch.zeros(32)
    block[:6] = torch.tensor([-8.0, 2.5, -2.5, 0.5, 8.0, 3.2])  # d = -8 / -8 = 1
    # 2.5 -> 3 and -2.5 -> -2 (trunc(x + 8.5), not round-half-even), +8 clips to 7 (q = 15)
    expected = torch.tensor([-8.0, 3.0, -2.0, 1.0, 7.0, 3.0])
    assert torch.equal(q4_0_dequantized(block.view(1, 32))[0, :6], expected)


def test_the_straight_through_gradient_and_the_storage_rounding():
    from fnedge.train.qat import fake_quant_q4_0, q4_0_dequantized

    weight = (torch.randn(64, 1024, generator=torch.Generator().manual_seed(1)) * 0.02).requires_grad_()
    upstream = torch.randn(64, 1024)
    out = fake_quant_q4_0(weight)  # float16 storage by default, as save_dtype
    out.backward(upstream)
    assert torch.equal(weight.grad, upstream)
    assert torch.equal(out, q4_0_dequantized(weight.detach().half()))
    # the scales agree (a power-of-two division commutes with rounding), but values near a rounding
    # boundary land on the other side once rounded to float16
    assert not torch.equal(out, q4_0_dequantized(weight.detach()))
    assert torch.equal(fake_quant_q4_0(weight, torch.float32), q4_0_dequantized(weight.detach()))


def test_an_untied_model_quantizes_its_embedding_as_the_writer_does(tiny_model, tmp_path):
    """Untied, the writer stores token_embd as Q4_0 and the head as Q8_0; the plan follows it, and
    the parametrized weights equal what the exported GGUF holds."""
    from transformers import AutoModelForCausalLM

    from fnedge.train.qat import attach_fake_quant, detach_fake_quant, export_plan

    model = AutoModelForCausalLM.from_pretrained(str(tiny_model), dtype=torch.float32, tie_word_embeddings=False)
    with torch.no_grad():
        model.lm_head.weight.copy_(model.model.embed_tokens.weight * 0.5)
    quantized, kept = export_plan(model)
    assert quantized[0] == "model.embed_tokens.weight" and len(quantized) == 1 + 7 * 4
    assert list(kept) == ["lm_head.weight"]

    attach_fake_quant(model, quantized, torch.float16)
    seen = {name: model.get_submodule(name.rsplit(".", 1)[0]).weight.detach().clone() for name in quantized}
    detach_fake_quant(model)
    assert not any("parametrizations" in name for name in model.state_dict())
    model.half().save_pretrained(str(tmp_path / "model"))
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        if (tiny_model / name).is_file():
            shutil.copy(tiny_model / name, tmp_path / "model" / name)

    arrays, types = gguf_weights(tmp_path / "model", tmp_path / "m.gguf")
    assert types["token_embd.weight"] == "Q4_0" and types["output.weight"] == "Q8_0"
    for name, weight in seen.items():
        gguf_name, expected = as_in_gguf(name, weight, model.config)
        assert types[gguf_name] == "Q4_0" and np.array_equal(arrays[gguf_name], expected), name


def test_matrices_without_whole_blocks_are_left_to_the_writers_fallback():
    from transformers import LlamaConfig, LlamaForCausalLM

    from fnedge.train.qat import export_plan

    config = LlamaConfig(vocab_size=64, hidden_size=48, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, tie_word_embeddings=True)
    quantized, kept = export_plan(LlamaForCausalLM(config))
    assert quantized == ["model.layers.0.mlp.down_proj.weight"]  # the only matrix with 64-value rows
    assert "model.layers.0.self_attn.q_proj.weight" in kept
    assert "not a multiple of the Q4_0 block size 32" in kept["model.layers.0.self_attn.q_proj.weight"]


# --- a tiny QAT run -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def qat_run(tiny_model, tmp_path_factory):
    """A QAT run, with the weights each fake quantizer returned in the run's last forward pass."""
    import fnedge.train.qat as qat

    last_forward: dict[str, torch.Tensor] = {}
    attach = qat.attach_fake_quant

    def attach_and_record(model, names, storage_dtype):
        attach(model, names, storage_dtype)
        for name in names:
            quantizer = model.get_submodule(name.rsplit(".", 1)[0]).parametrizations.weight[0]
            quantizer.register_forward_hook(
                lambda module, args, out, name=name: last_forward.__setitem__(name, out.detach().clone()))

    run_dir = tmp_path_factory.mktemp("qat-run")
    patch = pytest.MonkeyPatch()
    patch.setattr(qat, "attach_fake_quant", attach_and_record)
    try:
        qat.train_qat(qat_config(tiny_model), run_dir)
    finally:
        patch.undo()
    return run_dir, last_forward


def test_the_q4_0_export_holds_exactly_the_weights_of_the_last_forward_pass(qat_run, tiny_model, tmp_path):
    from transformers import AutoConfig

    from fnedge.train.qat import q4_0_dequantized

    run_dir, last_forward = qat_run
    model_dir = run_dir / "model"
    config = AutoConfig.from_pretrained(str(model_dir))
    assert len(last_forward) == 7 * config.num_hidden_layers  # tied: the embedding is the Q8_0 head

    arrays, types = gguf_weights(model_dir, tmp_path / "qat.gguf")
    assert types["token_embd.weight"] == "Q8_0"
    assert sorted(n for n, t in types.items() if t == "Q4_0") == sorted(as_in_gguf(n, w, config)[0]
                                                                        for n, w in last_forward.items())
    saved = load_file(model_dir / "model.safetensors")
    for name, weight in last_forward.items():
        gguf_name, expected = as_in_gguf(name, weight, config)
        assert np.array_equal(arrays[gguf_name], expected), name
        # the folder holds the float weights, not their grid: export quantizes them to the above
        assert saved[name].dtype == torch.float16 and not torch.equal(saved[name].float(), weight)
        assert torch.equal(q4_0_dequantized(saved[name]), weight), name


def test_qat_trains_every_weight_and_records_the_q4_0_losses(qat_run, tiny_model):
    run_dir, _ = qat_run
    record = json.loads((run_dir / "model" / "fnedge.json").read_text())
    assert record["base"] == str(tiny_model) and record["preset"] == "fc-nano"
    assert isinstance(record["copied_arguments"], dict)  # the runtime's grammar reads it, as for any model
    qat = record["qat"]
    assert qat["scheme"] == "q4_0" and qat["quantized"] == 28 and qat["storage_dtype"] == "float16"
    assert list(qat["kept_in_float"]) == ["model.embed_tokens.weight"]
    assert qat["dev_loss_as_q4_0"] == record["dev_loss"] < qat["base_dev_loss_as_q4_0"]
    assert 8 <= record["steps"] <= 30

    base = load_file(tiny_model / "model.safetensors")
    trained = load_file(run_dir / "model" / "model.safetensors")
    assert base.keys() == trained.keys()
    moved = [name for name in base if not torch.equal(base[name], trained[name])]
    assert len(moved) == len(base)  # a full fine-tune: embedding and norms move too


def test_an_interrupted_qat_run_resumes_to_the_same_weights(qat_run, tiny_model, tmp_path, monkeypatch):
    from fnedge.train.qat import train_qat

    interrupt_at_first_checkpoint(monkeypatch)
    with pytest.raises(FnedgeError, match=r"interrupted at step 4/.*Run the same command again to resume"):
        train_qat(qat_config(tiny_model), tmp_path)
    assert not (tmp_path / "model").exists()
    saved = torch.load(tmp_path / "checkpoint.pt", weights_only=False)["model"]
    assert any(name.endswith("parametrizations.weight.original") for name in saved)  # the float weights

    train_qat(qat_config(tiny_model), tmp_path)
    assert_same_tensors(qat_run[0] / "model" / "model.safetensors", tmp_path / "model" / "model.safetensors")


# --- settings ------------------------------------------------------------------------------------


def test_qat_defaults_are_a_fine_tunes_and_explicit_settings_win():
    config = TrainConfig.from_dict({"qat": True})
    assert config.qat.scheme == "q4_0" and config.base is None
    assert ((config.lr, config.epochs, config.warmup_steps, config.average_decay) == (2e-4, 0.25, 20, 0.0)
            == tuple(QAT_DEFAULTS.values()))
    config = TrainConfig.from_dict({"qat": {"scheme": "q4_0"}, "lr": 1e-4, "base": "m"})
    assert config.lr == 1e-4 and config.epochs == 0.25 and config.base == "m"
    assert TrainConfig.from_dict(config.to_dict()) == config
    assert TrainConfig.from_dict({}).lr == 2e-3  # other runs keep theirs
    assert TrainConfig.from_dict({}).average_decay == 0.999


def test_bad_qat_settings_are_named(tmp_path):
    from fnedge.train.qat import train_qat

    path = tmp_path / "qat.yaml"
    cases = [({"qat": {"scheme": "q4_1"}}, r"qat.yaml: 'qat.scheme' must be one of q4_0 \(got 'q4_1'\)"),
             ({"qat": {"bits": 4}}, r"qat.yaml: unknown 'qat' setting\(s\) \['bits'\]"),
             ({"qat": "q4_0"}, r"qat.yaml: 'qat' must be a mapping of settings \(or true\)"),
             ({"qat": {}, "lora": {}}, r"qat.yaml: 'lora' and 'qat' are two different stages"),
             ({"base": "x.gguf"}, r"qat.yaml: 'base' is only used by LoRA runs and QAT runs")]
    for raw, message in cases:
        path.write_text(yaml.safe_dump(raw))
        with pytest.raises(FnedgeError, match=message):
            TrainConfig.load(path)
    with pytest.raises(FnedgeError, match=r"a QAT run needs QAT settings"):
        train_qat(TrainConfig(), tmp_path / "run")


def test_the_cli_refuses_qat_with_lora_and_names_a_missing_base(tmp_path):
    from typer.testing import CliRunner

    from fnedge.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["train", "--qat", "--lora", "--out", str(tmp_path / "run")])
    assert isinstance(result.exception, FnedgeError)
    assert "--lora and --qat are two different stages" in str(result.exception)
    result = runner.invoke(app, ["train", "--qat", "--base", str(tmp_path / "no-such"), "--n-samples", "50",
                                 "--out", str(tmp_path / "run")])
    assert isinstance(result.exception, FnedgeError) and "no-such: base model not found" in str(result.exception)
    result = runner.invoke(app, ["train", "--base", str(tmp_path), "--out", str(tmp_path / "run2")])
    assert isinstance(result.exception, FnedgeError) and "add --lora or --qat" in str(result.exception)
