"""`fnedge chat`: the interactive loop, driven through a pipe."""

from __future__ import annotations

import os
import subprocess
import sys
from types import SimpleNamespace
from typing import Any

import pytest
from typer.testing import CliRunner

from fnedge import cli
from fnedge.export.build import export_build


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    return export_build("rpi4", model_dir=None, quants="q8_0", out_dir=tmp_path_factory.mktemp("b") / "rpi4")


def fnedge_chat(build, workspace, lines: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    return subprocess.run([sys.executable, "-m", "fnedge.cli", "chat", str(build), "--workspace", str(workspace),
                           "--threads", "1"], input=lines, capture_output=True, text=True, encoding="utf-8",
                          env=env, timeout=300)


def test_two_piped_lines_are_answered_and_the_chat_ends_at_eof(build, tmp_path):
    done = fnedge_chat(build, tmp_path, "明天杭州会下雨吗？\n3乘以7等于几\n")
    assert done.returncode == 0, done.stderr
    assert '→ get_weather(city="' in done.stdout  # the loop's test; the city's accuracy is the eval's
    assert done.stderr.count(" ms)\n") >= 2  # a timing line per turn: the second line was answered too
    assert "Traceback" not in done.stderr


def test_exit_ends_the_chat(build, tmp_path):
    done = fnedge_chat(build, tmp_path, "exit\n明天上海会下雨吗？\n")
    assert done.returncode == 0, done.stderr
    assert "get_weather" not in done.stdout


class _FakeBackend:
    n_ctx = 40

    def tokenize(self, text: str) -> list[int]:
        return [ord(c) for c in text]  # a token per character


class _FakeAssistant:
    backend = _FakeBackend()

    def prompt(self, messages: list[dict[str, Any]]) -> str:
        return "".join(m["content"] for m in messages)


def test_the_conversation_is_kept_between_lines(monkeypatch, tmp_path):
    seen: list[list[dict[str, Any]]] = []

    def fake_conversation(assistant, messages, executors, on_event=None):
        seen.append(list(messages))
        return messages + [{"role": "assistant", "content": "ok"}], []

    monkeypatch.setattr("fnedge.runtime.engine.Assistant.from_build", lambda *a, **k: _FakeAssistant())
    monkeypatch.setattr("fnedge.runtime.tools.run_conversation", fake_conversation)
    result = CliRunner().invoke(cli.app, ["chat", str(tmp_path), "--workspace", str(tmp_path)], input="a\n\nb\n")
    assert result.exit_code == 0, result.output
    assert seen == [[{"role": "user", "content": "a"}],
                    [{"role": "user", "content": "a"}, {"role": "assistant", "content": "ok"},
                     {"role": "user", "content": "b"}]]


def test_old_exchanges_are_dropped_to_leave_half_the_context_free():
    assistant = SimpleNamespace(backend=_FakeBackend(), prompt=_FakeAssistant().prompt)
    old = [{"role": "user", "content": "x" * 8}, {"role": "assistant", "content": "y" * 8}]
    recent = [{"role": "user", "content": "q" * 5}, {"role": "assistant", "content": "r" * 5}]
    new = [{"role": "user", "content": "now"}]
    assert cli._fit_context(assistant, old + recent + new) == recent + new  # 16 + 10 + 3 > 20 >= 13
    assert cli._fit_context(assistant, recent + new) == recent + new
    too_long = [{"role": "user", "content": "z" * 99}]
    assert cli._fit_context(assistant, old + too_long) == too_long  # the engine says it is too long
