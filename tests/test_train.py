import copy
import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml
from safetensors.torch import load_file

from conftest import ROOT, TINY, tiny_config
from fnedge.errors import FnedgeError
from fnedge.train.config import TrainConfig
from fnedge.train.presets import PRESETS, count_parameters, make_config
from fnedge.train.trainer import train


def test_presets_have_quantizable_shapes():
    for name in PRESETS:
        config = make_config(name)
        for dim in (config.hidden_size, config.intermediate_size,
                    config.num_key_value_heads * config.hidden_size // config.num_attention_heads):
            assert dim % 32 == 0, (name, dim)
    assert 1e6 < count_parameters(make_config("fc-nano")) < 2e6
    assert 5e6 < count_parameters(make_config("fc-micro")) < 8e6
    assert 3e6 < count_parameters(make_config("fc-3m")) < 5e6
    assert 24e6 < count_parameters(make_config("minimind-26m")) < 30e6


def test_training_lowers_dev_loss(tiny_model):
    record = json.loads((tiny_model / "fnedge.json").read_text())
    uniform = math.log(TINY["vocab_size"])
    assert record["steps"] > 10
    assert record["dev_loss"] < 0.75 * uniform, record["dev_loss"]  # from ln(V) at init
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        assert (tiny_model / name).is_file()


def test_changed_settings_refuse_to_resume(tmp_path):
    tiny_config().save(tmp_path / "config.yaml")
    with pytest.raises(FnedgeError, match=r"other settings \(lr\)"):
        train(tiny_config(lr=1e-4), tmp_path)


def test_bad_config_is_named(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("preset: fc-nano\nbatchsize: 3\n")
    with pytest.raises(FnedgeError, match=r"c.yaml: unknown training setting\(s\) \['batchsize'\]"):
        TrainConfig.load(path)
    with pytest.raises(FnedgeError, match="'tool_weights' must map tool names to weights"):
        TrainConfig.from_dict({"tool_weights": ["add_todo"]})
    with pytest.raises(FnedgeError, match="'longer_text_share' shape the conversations .* reads data: mine.jsonl"):
        TrainConfig.from_dict({"longer_text_share": 0.3, "data": "mine.jsonl"})  # would be silently unused
    with pytest.raises(FnedgeError, match="'longer_text_share' must be a number from 0 to 1"):
        TrainConfig.from_dict({"longer_text_share": 1.5})
    with pytest.raises(FnedgeError, match="'merge_min_frequency' must be a number >= 0"):
        TrainConfig.from_dict({"merge_min_frequency": -1})
    with pytest.raises(FnedgeError, match="'average_decay' must be a number from 0 \\(off\\) to below 1, got 1"):
        TrainConfig.from_dict({"average_decay": 1})


def test_a_compiled_run_learns_as_the_eager_one(tiny_model, tmp_path, monkeypatch):
    """torch.compile changes how the step runs, not what it computes: same data, same steps, and a
    dev loss equal up to the rounding of fused kernels."""
    compiled_modules = []
    real_compile = torch.compile

    def recording_compile(model, **kwargs):
        compiled_modules.append(model)
        return real_compile(model, **kwargs)

    monkeypatch.setattr(torch, "compile", recording_compile)
    compiled = json.loads((train(tiny_config(compile=True), tmp_path) / "fnedge.json").read_text())
    assert len(compiled_modules) == 1  # the setting is not silently ignored
    eager = json.loads((tiny_model / "fnedge.json").read_text())
    assert compiled["steps"] == eager["steps"]
    assert compiled["dev_loss"] == pytest.approx(eager["dev_loss"], rel=0.02)
    with pytest.raises(FnedgeError, match="'compile' must be true or false"):
        TrainConfig.from_dict({"compile": "yes"})


def test_the_optimizer_is_fused_and_updates_as_the_default_adamw():
    """`make_optimizer` takes the fused AdamW kernel (one kernel for every tensor, faster steps:
    benchmarks/train_speed.py); the update is AdamW's all the same. Parameters on a device without
    the kernel get PyTorch's default loop, not an error at the first step."""
    from fnedge.train.trainer import make_optimizer

    config = tiny_config()
    torch.manual_seed(0)
    fused_model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.LayerNorm(16), torch.nn.Linear(16, 4))
    initial, looped_model = copy.deepcopy(fused_model), copy.deepcopy(fused_model)
    fused = make_optimizer(fused_model, config)
    looped = make_optimizer(looped_model, config, fused=False)
    assert fused.defaults["fused"] is True and not looped.defaults["fused"]
    assert not make_optimizer(torch.nn.Linear(8, 4, device="meta"), config).defaults["fused"]
    inputs = torch.randn(32, 8)
    for _ in range(3):
        for model, optimizer in ((fused_model, fused), (looped_model, looped)):
            optimizer.zero_grad()
            model(inputs).square().mean().backward()
            optimizer.step()
    for a, b in zip(fused_model.parameters(), looped_model.parameters()):
        assert torch.allclose(a, b, atol=1e-6)
    assert not torch.equal(fused_model[0].weight, initial[0].weight)  # the steps moved the weights


def _cli_train(out, config_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "fnedge.cli", "train", "--out", str(out), "--config",
                             str(config_path)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_interrupted_run_resumes_to_the_same_weights(tmp_path):
    config_path = tmp_path / "cfg.yaml"
    # with weight averaging: a resume must restore the average too, not only the weights it follows
    config_path.write_text(yaml.safe_dump({**TINY, "n_samples": 300, "epochs": 2.0, "eval_every": 1000,
                                           "average_decay": 0.99}))

    straight = _cli_train(tmp_path / "straight", config_path)
    assert straight.wait(timeout=600) == 0, straight.stderr.read()

    interrupted = _cli_train(tmp_path / "resumed", config_path)
    checkpoint = tmp_path / "resumed" / "checkpoint.pt"
    deadline = time.time() + 300
    while not checkpoint.exists() and time.time() < deadline:
        time.sleep(0.05)
    interrupted.send_signal(signal.SIGINT)
    assert interrupted.wait(timeout=120) != 0
    assert "Run the same command again to resume" in interrupted.stderr.read()
    assert not (tmp_path / "resumed" / "model").exists()

    resumed = _cli_train(tmp_path / "resumed", config_path)
    out, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err
    assert "resuming at step" in out

    a = load_file(tmp_path / "straight" / "model" / "model.safetensors")
    b = load_file(tmp_path / "resumed" / "model" / "model.safetensors")
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    # the saved model is the average where its dev loss is no worse, else the last step's weights
    # (which the checkpoint keeps)
    last_step = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=False)["model"]
    record = json.loads((tmp_path / "straight" / "model" / "fnedge.json").read_text())
    assert record["dev_loss_last_step"] is not None
    saved_average = any(not torch.equal(a[name], last_step[name].half()) for name in a)
    assert saved_average == (record["weights"] == "average")
    if saved_average:  # dev_loss is the saved model's
        assert record["dev_loss"] <= record["dev_loss_last_step"]
    else:
        assert record["dev_loss"] == record["dev_loss_last_step"]


def test_weight_average_follows_the_exponential_average_and_gives_the_weights_back():
    from fnedge.train.averaging import WeightAverage

    model = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(0.0)
    average = WeightAverage(model, decay=0.5)
    expected = torch.zeros(1, 2)
    for value in (1.0, 2.0, 3.0):
        with torch.no_grad():
            model.weight.fill_(value)
        average.update()
        decay = min(0.5, (1 + average.updates) / (10 + average.updates))
        expected = decay * expected + (1 - decay) * value
    assert torch.allclose(average.averages[0], expected)
    with average.applied():
        assert torch.allclose(model.weight, expected)
    assert torch.equal(model.weight, torch.full((1, 2), 3.0))  # its own weights again
    restored = WeightAverage(model, decay=0.5)
    restored.load_state_dict(average.state_dict())
    assert restored.updates == 3 and torch.equal(restored.averages[0], average.averages[0])
    with pytest.raises(KeyError):
        WeightAverage(torch.nn.Linear(3, 1), decay=0.5).load_state_dict({**average.state_dict(), "names": ["x"]})


def test_a_second_trainer_on_the_same_run_folder_is_refused(tmp_path):
    (tmp_path / ".lock").write_text(str(os.getpid()))  # this live process holds it
    with pytest.raises(FnedgeError, match=r"another training process \(pid \d+\)"):
        train(tiny_config(), tmp_path)
    (tmp_path / ".lock").write_text("999999999")  # a dead owner: the lock is stale and taken over
    with pytest.raises(FnedgeError, match="other settings"):
        tiny_config(lr=1e-4).save(tmp_path / "config.yaml")
        train(tiny_config(), tmp_path)
    assert not (tmp_path / ".lock").exists()


def test_context_loss_weight_adds_the_users_tokens_and_nothing_else():
    from transformers import LlamaForCausalLM

    from fnedge.train.trainer import training_loss

    torch.manual_seed(0)
    model = LlamaForCausalLM(make_config("fc-nano", vocab_size=512))
    ids = torch.randint(8, 512, (2, 12))
    ids[1, 9:] = 0  # right padding
    labels = torch.full_like(ids, -100)
    labels[:, 6:9] = ids[:, 6:9]  # the reply
    reply_only = training_loss(model, ids, labels, pad_id=0, context_weight=0.0)
    assert torch.allclose(reply_only, model(input_ids=ids, labels=labels).loss)
    mixed = training_loss(model, ids, labels, pad_id=0, context_weight=0.5)
    # By hand: per-token losses, reply weight 1, other real tokens 0.5, padding 0.
    logits = model(input_ids=ids).logits[:, :-1]
    per_token = torch.nn.functional.cross_entropy(logits.reshape(-1, 512), ids[:, 1:].reshape(-1),
                                                  reduction="none").view(2, 11)
    weights = torch.full((2, 11), 0.5)
    weights[:, 5:8] = 1.0
    weights[1, 8:] = 0.0
    assert torch.allclose(mixed, (per_token * weights).sum() / weights.sum(), atol=1e-5)
    with pytest.raises(FnedgeError, match="context_loss_weight"):
        TrainConfig.from_dict({"context_loss_weight": 2})


def test_call_loss_weight_weighs_each_replys_first_token_and_the_tokens_inside_a_call():
    from transformers import LlamaForCausalLM

    from fnedge.train.trainer import inside_call, training_loss

    open_id, close_id = 3, 4
    ids = torch.tensor([[9, 9, 9, 10, 3, 11, 12, 4, 2, 0]])  # prompt, reply "10 <tool_call> 11 12 </tool_call> 2", pad
    assert inside_call(ids, (open_id, close_id)).tolist() == [[False] * 5 + [True] * 3 + [False] * 2]
    labels = torch.full_like(ids, -100)
    labels[0, 3:9] = ids[0, 3:9]
    torch.manual_seed(0)
    model = LlamaForCausalLM(make_config("fc-nano", vocab_size=64))
    weighted = training_loss(model, ids, labels, pad_id=0, context_weight=0.0, call_weight=3.0,
                             call_markers=(open_id, close_id))
    logits = model(input_ids=ids).logits[:, :-1]
    per_token = torch.nn.functional.cross_entropy(logits.reshape(-1, 64), ids[:, 1:].reshape(-1), reduction="none")
    # targets 1..9: the reply is targets 3..8. Its first token (10) and 11, 12, </tool_call> weigh 3;
    # <tool_call> itself and the end weigh 1, the prompt 0 (context weight 0), padding 0.
    weights = torch.tensor([0, 0, 3, 1, 3, 3, 3, 1, 0], dtype=torch.float)
    assert torch.allclose(weighted, (per_token * weights).sum() / weights.sum(), atol=1e-5)
    for bad in (0, -1, True, "2"):
        with pytest.raises(FnedgeError, match="'call_loss_weight' must be a positive number"):
            TrainConfig.from_dict({"call_loss_weight": bad})
    with pytest.raises(FnedgeError, match="'context_loss_weight' must be a number from 0 to 1"):
        TrainConfig.from_dict({"context_loss_weight": True})


def test_merge_min_frequency_reaches_the_runs_tokenizer(tmp_path):
    from fnedge.catalog import load_catalog
    from fnedge.data import DataConfig, generate_dataset
    from fnedge.train.trainer import prepare_tokenizer

    records = generate_dataset(load_catalog(None), 300, seed=0, config=DataConfig())
    sizes = {}
    for share in (0.0, 0.2):  # at 0.2 a merge needs its pair 60 times in these 300 conversations
        run_dir = tmp_path / str(share)
        run_dir.mkdir()
        sizes[share] = len(prepare_tokenizer(tiny_config(vocab_size=4000, merge_min_frequency=share), run_dir, records))
    assert sizes[0.2] < sizes[0.0] and sizes[0.2] % 64 == 0


def test_an_unusable_checkpoint_is_named_not_resumed(tmp_path):
    """A checkpoint saved without weight averaging cannot resume a run that averages, and a damaged
    file cannot resume at all: each is refused with the reason, never silently restarted."""
    from fnedge.train.averaging import WeightAverage
    from fnedge.train.trainer import _load_checkpoint, _save_checkpoint, RunState

    model = torch.nn.Linear(2, 1)
    optimizer = torch.optim.AdamW(model.parameters())
    _save_checkpoint(tmp_path, model, optimizer, RunState(step=3))
    assert _load_checkpoint(tmp_path, model, optimizer).step == 3
    with pytest.raises(FnedgeError, match=r"cannot resume from this checkpoint \(KeyError: no averaged weights\); "
                                          r"delete it or use --fresh"):
        _load_checkpoint(tmp_path, model, optimizer, WeightAverage(model, 0.9))
    (tmp_path / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(FnedgeError, match=r"cannot resume from this checkpoint \(\w+"):
        _load_checkpoint(tmp_path, model, optimizer)


@pytest.mark.parametrize("last_loss, averaged_loss", [(0.5, 1.0), (1.0, 0.5)])
def test_the_weights_with_the_lower_dev_loss_are_kept(tmp_path, last_loss, averaged_loss):
    from fnedge.train.trainer import Objective, fit_objective

    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    batch = (torch.randn(8, 4),)
    losses = iter([last_loss, averaged_loss])  # the last dev pass sees the last step's weights, then their average
    objective = Objective(summary="a linear model", steps_per_epoch=30, batches=lambda epoch, skip: iter([batch] * (30 - skip)),
                          loss=lambda m, b: (((m(b[0]) - 1) ** 2).mean(), {}), evaluate=lambda m: next(losses))
    config = tiny_config(average_decay=0.9, eval_every=1000, checkpoint_every=1000, time_budget_minutes=0)
    state = fit_objective(model, torch.optim.SGD(model.parameters(), lr=0.05), objective, config, tmp_path)
    last_step = torch.load(tmp_path / "checkpoint.pt", weights_only=False)["model"]
    assert state.last_eval_loss == min(last_loss, averaged_loss)
    assert state.saved_average == (averaged_loss < last_loss)
    assert torch.equal(model.weight.detach(), last_step["weight"]) == (last_loss < averaged_loss)
