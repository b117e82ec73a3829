import json
import sys

import pytest
import torch
import yaml
from safetensors.torch import load_file

from conftest import TINY, assert_same_tensors, interrupt_at_first_checkpoint
from fnedge.errors import FnedgeError
from fnedge.train.config import TrainConfig


def _bitsandbytes_problem() -> str | None:
    try:
        import bitsandbytes  # noqa: F401
    except Exception as e:  # ImportError, or its native library failing to load
        return f"bitsandbytes is not importable here ({e.__class__.__name__}); pip install 'fnedge[qlora]'"
    return None


needs_bitsandbytes = pytest.mark.skipif(_bitsandbytes_problem() is not None, reason=str(_bitsandbytes_problem()))

# The LoRA test's run (test_lora.py), with the frozen base in NF4.
QLORA = {**TINY, "n_samples": 200, "epochs": 1.0, "lr": 1e-2, "warmup_steps": 3, "checkpoint_every": 4,
         "eval_every": 1000, "save_dtype": "float32",
         "lora": {"rank": 4, "alpha": 8, "dropout": 0.1, "target_modules": ["q_proj", "v_proj", "up_proj"],
                  "quantize_base": "nf4"}}


def qlora_config(base, **overrides) -> TrainConfig:
    return TrainConfig.from_dict({**QLORA, "base": str(base), **overrides})


@pytest.fixture(scope="module")
def qlora_run(tiny_model, tmp_path_factory):
    from fnedge.train.lora import train_lora

    run_dir = tmp_path_factory.mktemp("qlora-run")
    train_lora(qlora_config(tiny_model), run_dir)
    return run_dir


@needs_bitsandbytes
def test_every_linear_but_the_head_becomes_4_bit(tiny_model):
    import bitsandbytes as bnb

    from fnedge.train.bases import load_base
    from fnedge.train.qlora import quantize_base

    model = load_base(tiny_model).model
    ids = torch.tensor([[5, 17, 42, 99, 7]])
    with torch.no_grad():
        reference = model(input_ids=ids).logits
    names = quantize_base(model, "nf4")
    assert len(names) == 7 * model.config.num_hidden_layers
    assert all(isinstance(model.get_submodule(name), bnb.nn.Linear4bit) for name in names)
    assert type(model.get_output_embeddings()) is torch.nn.Linear
    assert model.get_input_embeddings().weight.dtype == torch.float32
    layer = model.get_submodule(names[0])
    assert layer.weight.dtype == torch.uint8 and layer.weight.quant_state.quant_type == "nf4"
    with torch.no_grad():
        logits = model(input_ids=ids).logits
    assert not torch.equal(logits, reference)  # 4-bit weights: close, not equal
    assert torch.allclose(logits.softmax(-1), reference.softmax(-1), atol=0.05)


@needs_bitsandbytes
def test_an_eval_pass_leaves_the_gradients_of_a_4_bit_base_intact(tiny_model):
    """bitsandbytes repacks 4-bit weights for a backward-less CPU kernel on an eval pass (on
    AVX512-BF16 CPUs); after one, every adapter must still get its gradient."""
    from fnedge.train.bases import load_base
    from fnedge.train.config import LoraSettings
    from fnedge.train.lora import attach_lora
    from fnedge.train.qlora import quantize_base

    def lora_grads(evaluate_first: bool) -> dict[str, torch.Tensor]:
        torch.manual_seed(0)
        base = load_base(tiny_model)
        quantize_base(base.model, "nf4")
        model = attach_lora(base, LoraSettings(rank=2, dropout=0.0))
        with torch.no_grad():  # lora_B starts at zero: give every adapter a gradient to lose
            for name, p in model.named_parameters():
                if "lora_B" in name:
                    p.normal_(0, 0.1)
        ids = torch.tensor([[5, 17, 42, 99, 7, 3]])
        if evaluate_first:
            model.eval()
            with torch.no_grad():
                model(input_ids=ids)
            model.train()
        model(input_ids=ids, labels=ids).loss.backward()
        return {n: p.grad for n, p in model.named_parameters() if p.requires_grad}

    fresh, after_eval = lora_grads(False), lora_grads(True)
    assert fresh.keys() == after_eval.keys() and len(fresh) == 2 * 7 * 4
    for name, grad in fresh.items():
        assert grad is not None and after_eval[name] is not None, name
        assert torch.equal(grad, after_eval[name]), name


@needs_bitsandbytes
def test_qlora_trains_merges_into_the_float_base_and_records_it(qlora_run, tiny_model):
    from transformers import AutoModelForCausalLM

    record = json.loads((qlora_run / "model" / "fnedge.json").read_text())
    assert record["quantized_base"] == {"type": "nf4", "layers": 28, "merged_into": "float32 base"}
    assert record["merge_check"]["merged_equal"] and record["merge_check"]["saved_equal"]
    assert record["dev_loss"] < record["base_dev_loss"]
    assert record["trained_parameters"] == sum(
        t.numel() for t in load_file(qlora_run / "adapter" / "adapter_model.safetensors").values())

    merged = load_file(qlora_run / "model" / "model.safetensors")
    base = load_file(tiny_model / "model.safetensors")
    assert base.keys() == merged.keys() and all(t.dtype == torch.float32 for t in merged.values())
    for name, weight in base.items():  # the float base plus the adapter: untargeted weights are the base's
        targeted = any(t in name for t in ("q_proj", "v_proj", "up_proj"))
        assert torch.equal(weight.float(), merged[name]) != targeted, name
    model = AutoModelForCausalLM.from_pretrained(str(qlora_run / "model"))  # a plain HF folder
    assert "quantization_config" not in model.config.to_dict()


@needs_bitsandbytes
def test_an_interrupted_qlora_run_resumes_to_the_same_adapter(qlora_run, tiny_model, tmp_path, monkeypatch):
    from fnedge.train.lora import train_lora

    interrupt_at_first_checkpoint(monkeypatch)
    with pytest.raises(FnedgeError, match=r"interrupted at step 4/"):
        train_lora(qlora_config(tiny_model), tmp_path)
    train_lora(qlora_config(tiny_model), tmp_path)
    assert_same_tensors(qlora_run / "adapter" / "adapter_model.safetensors",
                        tmp_path / "adapter" / "adapter_model.safetensors")


# --- platforms without support: one FnedgeError line, never a traceback ---------------------------


def test_without_bitsandbytes_the_stage_says_so_in_one_line(tiny_model, tmp_path, monkeypatch):
    from fnedge.train.lora import train_lora

    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # import bitsandbytes -> ImportError
    with pytest.raises(FnedgeError) as error:
        train_lora(qlora_config(tiny_model), tmp_path)
    message = str(error.value)
    assert "\n" not in message and message.startswith("QLoRA needs bitsandbytes, which does not load here")
    assert "pip install 'fnedge[qlora]'" in message


@needs_bitsandbytes
def test_a_cpu_without_avx2_or_without_a_kernel_is_named(tiny_model, monkeypatch):
    import bitsandbytes as bnb

    from fnedge.train.bases import load_base
    from fnedge.train.qlora import quantize_base

    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "DEFAULT")
    monkeypatch.setattr("platform.machine", lambda: "x86_64")
    with pytest.raises(FnedgeError, match=r"^QLoRA on this CPU: bitsandbytes' 4-bit CPU kernels need AVX2, "
                                          r"and torch reports DEFAULT"):
        quantize_base(load_base(tiny_model).model, "nf4")
    monkeypatch.undo()

    def no_kernel(*args, **kwargs):
        raise NotImplementedError("no kernel for 'bitsandbytes::dequantize_4bit' on this backend\nmore detail")

    monkeypatch.setattr(bnb, "matmul_4bit", no_kernel)
    with pytest.raises(FnedgeError) as error:
        quantize_base(load_base(tiny_model).model, "nf4")
    assert str(error.value) == ("QLoRA: bitsandbytes has no working 4-bit nf4 kernel on cpu here (NotImplementedError: "
                                "no kernel for 'bitsandbytes::dequantize_4bit' on this backend); train without "
                                "lora.quantize_base")


def test_quantize_base_is_checked(tmp_path):
    path = tmp_path / "qlora.yaml"
    path.write_text(yaml.safe_dump({"lora": {"quantize_base": "int8"}}))
    with pytest.raises(FnedgeError, match=r"qlora.yaml: 'lora.quantize_base' must be one of nf4, fp4"):
        TrainConfig.load(path)
    config = TrainConfig.from_dict({"lora": {"quantize_base": "fp4"}})
    assert config.lora.quantize_base == "fp4" and TrainConfig.from_dict(config.to_dict()) == config
    assert TrainConfig.from_dict({"lora": True}).lora.quantize_base is None
