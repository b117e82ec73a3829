import json

import pytest
import torch
import yaml

from conftest import TINY, assert_same_tensors, interrupt_at_first_checkpoint
from fnedge.errors import FnedgeError
from fnedge.train.config import TrainConfig

# A fresh fc-nano student learns from the barely trained fc-nano model (the teacher) on a few
# hundred conversations: enough steps for its loss to move, seconds on one thread.
DISTILL = {**TINY, "n_samples": 240, "epochs": 1.0, "eval_every": 1000}


def distill_config(teacher, **overrides) -> TrainConfig:
    distill = {"teacher": str(teacher), "alpha": 0.5, "temperature": 2.0, **overrides.pop("distill", {})}
    return TrainConfig.from_dict({**DISTILL, "distill": distill, **overrides})


def _student_with_another_vocabulary(directory) -> int:
    """An fc-nano model whose own byte-level BPE (400 tokens) is not the teacher's."""
    from transformers import LlamaForCausalLM

    from fnedge.chat_format import render
    from fnedge.data import generate_dataset
    from fnedge.train.presets import make_config
    from fnedge.train.tokenizer import train_tokenizer

    tokenizer = train_tokenizer((render(r["messages"]) for r in generate_dataset(n=100, seed=5)), vocab_size=400)
    torch.manual_seed(0)
    LlamaForCausalLM(make_config("fc-nano", vocab_size=len(tokenizer))).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return len(tokenizer)


def test_the_kl_term_is_zero_when_the_student_is_the_teacher():
    from fnedge.train.trainer import reply_kl

    torch.manual_seed(0)
    logits = torch.randn(2, 6, 50)
    labels = torch.tensor([[-100, -100, -100, 4, 5, 6], [-100, -100, 7, 8, -100, -100]])
    assert reply_kl(logits, logits.clone(), labels, temperature=2.0).item() == 0.0
    other = logits + torch.randn(2, 6, 50)
    assert reply_kl(other, logits, labels, 2.0).item() > 0.01

    # Only the positions that predict a reply token count: changing the others changes nothing.
    prompt_only = other.clone()
    prompt_only[0, :2] = torch.randn(2, 50)
    prompt_only[1, 3:] = torch.randn(3, 50)
    assert reply_kl(prompt_only, logits, labels, 2.0).item() == pytest.approx(
        reply_kl(other, logits, labels, 2.0).item())
    assert reply_kl(logits, logits, torch.full_like(labels, -100), 2.0).item() == 0.0


def test_logit_distillation_lowers_the_students_loss_and_kl(tiny_model, tmp_path, capsys):
    from fnedge.train.distill import train_distill

    model_dir = train_distill(distill_config(tiny_model), tmp_path)
    assert "distill: logits" in capsys.readouterr().out
    record = json.loads((model_dir / "fnedge.json").read_text())
    distill = record["distill"]
    assert distill["path"] == "logits" and distill["teacher"] == str(tiny_model)
    assert distill["dev_kl_after"] < 0.8 * distill["dev_kl_before"]
    assert record["dev_loss"] < distill["dev_loss_before"] - 0.5
    teacher_vocab = json.loads((tiny_model / "tokenizer.json").read_text())["model"]["vocab"]
    assert json.loads((model_dir / "tokenizer.json").read_text())["model"]["vocab"] == teacher_vocab
    assert record["preset"] == "fc-nano" and record["steps"] >= 5


def test_an_interrupted_distillation_resumes_to_the_same_student(tiny_model, tmp_path, monkeypatch, capsys):
    from fnedge.train.distill import train_distill

    whole = train_distill(distill_config(tiny_model), tmp_path / "whole")
    interrupt_at_first_checkpoint(monkeypatch)
    with pytest.raises(FnedgeError, match=r"interrupted at step 5/.*Run the same command again to resume"):
        train_distill(distill_config(tiny_model), tmp_path / "split")
    assert not (tmp_path / "split" / "model").exists()
    capsys.readouterr()
    resumed = train_distill(distill_config(tiny_model), tmp_path / "split")
    assert "resuming at step 5" in capsys.readouterr().out
    assert_same_tensors(whole / "model.safetensors", resumed / "model.safetensors")


def test_a_student_with_another_vocabulary_learns_from_teacher_written_replies(tiny_model, tmp_path, capsys):
    from fnedge.data import read_jsonl
    from fnedge.train.distill import train_distill

    student = tmp_path / "student"
    _student_with_another_vocabulary(student)
    config = distill_config(tiny_model, base=str(student), n_samples=40, distill={"max_new_tokens": 24})
    model_dir = train_distill(config, tmp_path / "run")
    assert "distill: teacher-written data (their vocabularies differ" in capsys.readouterr().out

    distill = json.loads((model_dir / "fnedge.json").read_text())["distill"]
    assert distill["path"] == "data" and distill["teacher_data"]["kept"] > 0
    teacher_rows = read_jsonl(tmp_path / "run" / "data" / "teacher.jsonl")
    generated = read_jsonl(tmp_path / "run" / "data" / "train.jsonl")
    assert distill["teacher_data"]["teacher_conversations"] == len(teacher_rows) <= len(generated)
    assert all(row["messages"][-1]["role"] == "assistant" for row in teacher_rows)
    # alpha 0.5: the teacher's conversations are half of what the student trained on
    assert distill["teacher_data"]["train_conversations"] == 2 * len(generated)


def test_forcing_logits_with_another_vocabulary_is_refused(tiny_model, tmp_path):
    from fnedge.train.distill import train_distill

    student = tmp_path / "student"
    size = _student_with_another_vocabulary(student)
    config = distill_config(tiny_model, base=str(student), n_samples=40, distill={"mode": "logits"})
    with pytest.raises(FnedgeError, match=rf"distill.mode 'logits' needs a teacher and a student with one tokenizer, "
                                          rf"but their vocabularies differ \(\d+ and {size} tokens\)") as raised:
        train_distill(config, tmp_path / "run")
    assert "\n" not in str(raised.value)


def test_a_deferred_reply_keeps_its_text_reference():
    from fnedge.train.distill import reply_message

    text = '生日快乐！\n<tool_call>{"name": "send_message", "arguments": {"to": "妈妈", "text": "{{text}}"}}' \
           '</tool_call>'
    message = reply_message(text, "call_")
    assert message["content"] == "生日快乐！"
    assert json.loads(message["tool_calls"][0]["function"]["arguments"]) == {"to": "妈妈", "text": "{{text}}"}
    assert reply_message('<tool_call>{"name": </tool_call>', "call_") is None
    assert reply_message("哪个城市？", "call_") == {"role": "assistant", "content": "哪个城市？"}


def test_distillation_settings_are_checked(tmp_path):
    from fnedge.train.distill import train_distill

    path = tmp_path / "distill.yaml"
    for distill, message in [(True, r"distillation needs a teacher model \('distill.teacher' or --teacher PATH\)"),
                             ({"teacher": "t", "alpha": 1.5}, r"'distill.alpha' must be a number from 0 to 1"),
                             ({"teacher": "t", "temperature": 0}, r"'distill.temperature' must be a positive number"),
                             ({"teacher": "t", "mode": "kl"}, r"'distill.mode' must be one of auto, logits, data"),
                             ({"teacher": "t", "alhpa": 0.1}, r"unknown 'distill' setting\(s\) \['alhpa'\]")]:
        path.write_text(yaml.safe_dump({"distill": distill}))
        with pytest.raises(FnedgeError, match=r"distill.yaml: " + message) as raised:
            TrainConfig.load(path)
        assert "\n" not in str(raised.value)
    config = TrainConfig.from_dict({"distill": {"teacher": "t"}, "base": "student"})
    assert TrainConfig.from_dict(config.to_dict()) == config

    with pytest.raises(FnedgeError, match=r"nowhere: teacher model not found") as raised:
        train_distill(distill_config(tmp_path / "nowhere"), tmp_path / "run")
    assert "\n" not in str(raised.value) and not (tmp_path / "run" / "data").exists()  # refused before any data


def test_the_cli_takes_the_teacher_from_an_option(tmp_path):
    from typer.testing import CliRunner

    from fnedge.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["train", "--distill", "--teacher", str(tmp_path / "nowhere"),
                                 "--out", str(tmp_path / "run")])
    assert isinstance(result.exception, FnedgeError) and "nowhere: teacher model not found" in str(result.exception)
    result = runner.invoke(app, ["train", "--distill", "--out", str(tmp_path / "run")])
    assert isinstance(result.exception, FnedgeError) and "needs a teacher model" in str(result.exception)
    result = runner.invoke(app, ["train", "--teacher", str(tmp_path), "--out", str(tmp_path / "run")])
    assert isinstance(result.exception, FnedgeError) and "add --distill" in str(result.exception)
