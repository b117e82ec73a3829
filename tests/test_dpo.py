import json
import math
import os
import signal

import pytest
import torch
import yaml
from safetensors.torch import load_file

from conftest import TINY
from fnedge.catalog import load_catalog
from fnedge.errors import FnedgeError
from fnedge.train.config import TrainConfig

# DPO on the barely trained fc-nano model: its replies to a few dozen fresh prompts are mostly wrong,
# which gives enough pairs for a dozen steps. float32 weights so that two runs compare exactly.
# lr 3e-4: at 1e-3 a few pairs' margins swung to -30 within 9 steps (train pairs loss 8.0 after DPO,
# seen with transformers 5.25 / tokenizers 0.23); at 2e-4 and 3e-4 every pair ends preferred.
DPO = {**TINY, "save_dtype": "float32", "lr": 3e-4, "epochs": 3.0, "warmup_steps": 2, "checkpoint_every": 3,
       "eval_every": 1000, "dpo": {"beta": 0.5, "n_prompts": 40, "max_new_tokens": 24}}


def dpo_config(base, **overrides) -> TrainConfig:
    return TrainConfig.from_dict({**DPO, "base": str(base), **overrides})


def call(name: str, **arguments) -> str:
    return f'<tool_call>{json.dumps({"name": name, "arguments": arguments}, ensure_ascii=False)}</tool_call>'


def reference(content: str = "", *calls: tuple[str, dict]) -> dict:
    message = {"role": "assistant", "content": content}
    if calls:
        message["tool_calls"] = [{"id": f"call_{i}", "type": "function",
                                  "function": {"name": name, "arguments": json.dumps(args, ensure_ascii=False)}}
                                 for i, (name, args) in enumerate(calls)]
    return message


WEATHER = reference("", ("get_weather", {"city": "上海", "date": "tomorrow"}))
TWO_LIGHTS = reference("", ("control_light", {"room": "卧室", "action": "off"}),
                       ("control_light", {"room": "客厅", "action": "off"}))


@pytest.mark.parametrize("expected, reply, kind", [
    (WEATHER, call("get_weather", city="上海", date="tomorrow") + call("get_weather", city="上海"), "wrong_tool"),
    (WEATHER, call("play_music", query="上海"), "wrong_tool"),
    (WEATHER, call("get_weather", date="tomorrow"), "missing_argument"),
    (WEATHER, call("get_weather", city="上海", date="tomorrow", unit="c"), "invalid_value"),
    (reference("", ("translate", {"text": "hi", "target_lang": "fr"})), call("translate", text="hi", target_lang="xx"),
     "invalid_value"),
    (WEATHER, call("get_weather", city="海", date="tomorrow"), "wrong_value"),
    (WEATHER, call("get_weather", city="上海"), "wrong_value"),  # date left out means the default, today
    (reference("请问你想查哪个城市的天气？"), call("get_weather", city="上海"), "unexpected_call"),
    (reference("我没法锁门。"), call("control_light", room="门", action="off"), "unexpected_call"),
    (WEATHER, "请问哪个城市？", "missing_call"),
    (WEATHER, '<tool_call>{"name": "get_weather", "arguments": {"city": </tool_call>', "malformed_call"),
    (TWO_LIGHTS, call("control_light", room="卧室", action="off") * 2, "wrong_value"),
    (reference("生日快乐！", ("send_message", {"to": "妈妈", "text": "{{text}}"})),
     call("send_message", to="妈妈", text="{{text}}"), "wrong_value"),  # no text written: the message would be empty
])
def test_a_wrong_reply_gets_its_failure_kind(expected, reply, kind):
    from fnedge.train.preference_pairs import classify_reply

    failure = classify_reply(expected, reply, load_catalog(None))
    assert failure is not None and failure.kind == kind, failure


@pytest.mark.parametrize("expected, reply", [
    (WEATHER, call("get_weather", city="上海", date="tomorrow")),
    (WEATHER, call("get_weather", date="Tomorrow ", city=" 上海")),  # order, case and spaces do not matter
    (reference("", ("get_weather", {"city": "Paris", "date": "today"})), call("get_weather", city="paris")),
    (reference("", ("search_hotels", {"city": "Rome", "nights": 2})),
     call("search_hotels", city="Rome", nights=2.0)),
    (TWO_LIGHTS, call("control_light", room="客厅", action="off")  # the calls in another order
     + call("control_light", room="卧室", action="off")),
    (reference("请问你想查哪个城市的天气？"), "Which city?"),  # text is not compared
    (reference("生日快乐！", ("send_message", {"to": "妈妈", "text": "{{text}}"})),
     "妈妈，生日快乐！\n" + call("send_message", to="妈妈", text="{{text}}")),  # any text the turn wrote
])
def test_a_right_reply_is_no_pair(expected, reply):
    from fnedge.train.preference_pairs import classify_reply

    assert classify_reply(expected, reply, load_catalog(None)) is None


def test_pairs_hold_the_prompt_the_reference_and_the_reply():
    from fnedge.train.preference_pairs import FAILURE_KINDS, build_pairs

    user = {"role": "user", "content": "明天上海会下雨吗？"}
    records = [{"id": "r1", "kind": "single_call", "lang": "zh", "template": "t1", "messages": [user, WEATHER]},
               {"id": "r2", "kind": "single_call", "lang": "zh", "template": "t2", "messages": [user, WEATHER]},
               {"id": "r3", "kind": "ask", "lang": "zh", "template": "t3",
                "messages": [{"role": "user", "content": "查天气"}, reference("哪个城市？")]}]
    replies = [call("get_weather", city="海", date="tomorrow"), call("get_weather", city="上海", date="tomorrow"),
               call("get_weather", city="北京")]
    asked = []

    def respond(messages):
        asked.append(messages)
        return replies[len(asked) - 1]

    pairs, report = build_pairs(records, respond, load_catalog(None), seed=1, dev_ids={"r3"})
    assert asked == [[user], [user], [records[2]["messages"][0]]]  # each prompt ends before the reference turn
    assert [(p["id"], p["failure"], p["split"]) for p in pairs] == [("r1:1", "wrong_value", "train"),
                                                                   ("r3:1", "unexpected_call", "dev")]
    assert pairs[0]["messages"] == [user] and pairs[0]["rejected"] == replies[0]
    assert pairs[0]["chosen"] == call("get_weather", city="上海", date="tomorrow")
    assert "city" in pairs[0]["detail"] and all(p["failure"] in FAILURE_KINDS for p in pairs)
    assert report.to_dict()["failures"] == {"wrong_value": 1, "unexpected_call": 1}
    assert (report.prompts, report.correct) == (3, 1)


def test_the_dpo_loss_is_log_2_when_the_policy_is_the_reference(tiny_model):
    from fnedge.train.bases import load_base
    from fnedge.train.dpo import dpo_loss, encode_pairs, pair_logps

    base = load_base(tiny_model)
    pair = {"messages": [{"role": "user", "content": "明天上海会下雨吗？"}], "split": "train",
            "chosen": call("get_weather", city="上海", date="tomorrow"), "rejected": "请问哪个城市？"}
    pairs, _, dropped = encode_pairs(base.tokenizer, [pair, {**pair, "rejected": call("get_weather", city="海")}], 256)
    assert len(pairs) == 2 and dropped == 0
    logps = pair_logps(base.model, pairs, 2048, base.tokenizer.pad_token_id)
    loss, figures = dpo_loss(logps, logps.clone(), beta=0.1)
    assert loss.item() == pytest.approx(math.log(2), abs=1e-7)
    assert figures["reward_margin"] == 0 and figures["reward_accuracy"] == 0

    # Raising the chosen reply's log-prob (or lowering the rejected one's) lowers the loss.
    better = logps + torch.tensor([[1.0, -1.0]])
    assert dpo_loss(better, logps, beta=0.1)[0] < loss < dpo_loss(logps - torch.tensor([[1.0, -1.0]]), logps, 0.1)[0]


def test_the_chosen_nll_term_adds_the_chosen_replies_per_token_loss(tiny_model):
    from fnedge.train.bases import load_base
    from fnedge.train.dpo import dpo_objective, encode_pairs, pair_logps

    base = load_base(tiny_model)
    pad_id = base.tokenizer.pad_token_id
    pair = {"messages": [{"role": "user", "content": "turn off the light"}], "split": "train",
            "chosen": call("control_light", room="light", action="off"), "rejected": "OK"}
    pairs, _, _ = encode_pairs(base.tokenizer, [pair], 256)
    reference = pair_logps(base.model, pairs, 2048, pad_id)
    chosen_tokens = sum(label != -100 for label in pairs[0].chosen.labels)
    results = {}
    for weight in (0.0, 2.0):
        config = dpo_config(tiny_model, dpo={**DPO["dpo"], "chosen_nll_weight": weight})
        objective = dpo_objective(pairs, reference, [], reference[:0], pad_id, config)
        with torch.no_grad():
            results[weight] = objective.loss(base.model, next(objective.batches(0, 0)))
    (plain, plain_figures), (with_nll, figures) = results[0.0], results[2.0]
    assert plain.item() == pytest.approx(math.log(2), abs=1e-5) and "chosen_nll" not in plain_figures
    assert figures["chosen_nll"] == pytest.approx(-reference[0, 0].item() / chosen_tokens, rel=1e-4)
    assert with_nll.item() == pytest.approx(plain.item() + 2.0 * figures["chosen_nll"], rel=1e-5)


@pytest.fixture(scope="module")
def dpo_run(tiny_model, tmp_path_factory):
    from fnedge.train.dpo import train_dpo

    run_dir = tmp_path_factory.mktemp("dpo-run")
    train_dpo(dpo_config(tiny_model), run_dir)
    return run_dir


def test_a_dpo_run_writes_its_pairs_and_lowers_the_loss_on_them(dpo_run, tiny_model):
    from fnedge.data import read_jsonl
    from fnedge.train.preference_pairs import FAILURE_KINDS

    pairs = read_jsonl(dpo_run / "data" / "pairs.jsonl")
    report = json.loads((dpo_run / "data" / "pairs_report.json").read_text())
    assert pairs and report["pairs"] == len(pairs) == sum(report["failures"].values())
    assert report["prompts"] == report["correct"] + report["pairs"]
    for pair in pairs:
        assert pair["failure"] in FAILURE_KINDS and pair["split"] in ("train", "dev")
        assert pair["chosen"] != pair["rejected"] and pair["messages"][-1]["role"] in ("user", "tool")

    record = json.loads((dpo_run / "model" / "fnedge.json").read_text())
    assert record["base"] == str(tiny_model) and record["preset"] == "fc-nano"
    assert record["dpo"]["prompt_seed"] == 1  # the tiny model's data came from seed 0
    after = record["dpo"]["after"]["train"]
    assert after["loss"] < math.log(2) - 0.05 and after["reward_accuracy"] > 0.5 and after["reward_margin"] > 0
    assert record["steps"] >= 6

    start = load_file(tiny_model / "model.safetensors")
    trained = load_file(dpo_run / "model" / "model.safetensors")
    assert start.keys() == trained.keys()
    assert any(not torch.equal(start[name].float(), trained[name]) for name in start)


def test_an_interrupted_dpo_run_resumes_to_the_same_weights(dpo_run, tiny_model, tmp_path, monkeypatch):
    from fnedge.train import trainer
    from fnedge.train.dpo import train_dpo

    save_checkpoint = trainer._save_checkpoint

    def save_then_interrupt(*args, **kwargs):  # Ctrl-C right after the first checkpoint
        save_checkpoint(*args, **kwargs)
        monkeypatch.setattr(trainer, "_save_checkpoint", save_checkpoint)
        os.kill(os.getpid(), signal.SIGINT)

    # The interrupt must fall inside an epoch, so that a resume has to skip that epoch's first
    # batches. How many pairs (so steps per epoch) the tiny model's mistakes give can change with
    # the runtime; checkpoint_every does not change the weights, so pick one that lands mid-epoch.
    steps_per_epoch = json.loads((dpo_run / "model" / "fnedge.json").read_text())["steps"] // 3
    assert steps_per_epoch > 1
    every = steps_per_epoch + 1  # one step into the second epoch
    monkeypatch.setattr(trainer, "_save_checkpoint", save_then_interrupt)
    with pytest.raises(FnedgeError, match=rf"interrupted at step {every}/.*Run the same command again to resume"):
        train_dpo(dpo_config(tiny_model, checkpoint_every=every), tmp_path)
    assert (tmp_path / "data" / "pairs.jsonl").is_file() and not (tmp_path / "model").exists()

    train_dpo(dpo_config(tiny_model, checkpoint_every=every), tmp_path)
    straight = load_file(dpo_run / "model" / "model.safetensors")
    resumed = load_file(tmp_path / "model" / "model.safetensors")
    assert straight.keys() == resumed.keys()
    for name in straight:
        assert torch.equal(straight[name], resumed[name]), name


def test_dpo_settings_are_checked(tmp_path, tiny_model):
    from fnedge.train.dpo import prompt_seed, starting_model_dir

    path = tmp_path / "dpo.yaml"
    for dpo, message in [({"beta": 0}, r"'dpo.beta' must be a positive number, got 0"),
                         ({"beta": -0.1}, r"'dpo.beta' must be a positive number"),
                         ({"n_prompts": 0}, r"'dpo.n_prompts' must be a positive integer"),
                         ({"constrained": "yes"}, r"'dpo.constrained' must be true or false"),
                         ({"chosen_nll_weight": -1}, r"'dpo.chosen_nll_weight' must be a number >= 0"),
                         ({"betta": 0.1}, r"unknown 'dpo' setting\(s\) \['betta'\]")]:
        path.write_text(yaml.safe_dump({"dpo": dpo}))
        with pytest.raises(FnedgeError, match=r"dpo.yaml: " + message) as raised:
            TrainConfig.load(path)
        assert "\n" not in str(raised.value)
    with pytest.raises(FnedgeError, match=r"'lora' and 'dpo' are different stages"):
        TrainConfig.from_dict({"dpo": True, "lora": True})

    config = TrainConfig.from_dict({"dpo": True})
    assert (config.lr, config.epochs, config.dpo.beta) == (2e-4, 2.0, 0.1)  # a fine-tune's defaults
    assert TrainConfig.from_dict(config.to_dict()) == config
    assert TrainConfig.from_dict({"dpo": {"beta": 0.3}, "lr": 1e-5}).lr == 1e-5  # the config's own win

    settings = TrainConfig.from_dict({"dpo": {"prompt_seed": 0}}).dpo
    with pytest.raises(FnedgeError, match=r"dpo.prompt_seed 0 is the data seed .* was trained on"):
        prompt_seed(settings, tiny_model)
    with pytest.raises(FnedgeError, match=r"nowhere: DPO starts from an HF model folder \(not found\)"):
        starting_model_dir(str(tmp_path / "nowhere"))
    (tmp_path / "model.gguf").write_bytes(b"GGUF")
    with pytest.raises(FnedgeError, match=r"model.gguf: DPO starts from an HF model folder \(is a file\)"):
        starting_model_dir(str(tmp_path / "model.gguf"))


def test_the_cli_runs_dpo_from_the_base_it_is_given(tmp_path):
    from typer.testing import CliRunner

    from fnedge.cli import app

    result = CliRunner().invoke(app, ["train", "--dpo", "--base", str(tmp_path / "nowhere"),
                                      "--out", str(tmp_path / "run")])
    assert isinstance(result.exception, FnedgeError) and "DPO starts from an HF model folder" in str(result.exception)
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["dpo"]["beta"] == 0.1
