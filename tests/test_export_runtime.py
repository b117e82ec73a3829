import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT, SHARED
from fnedge.catalog import load_catalog
from fnedge.errors import FnedgeError
from fnedge.export.build import default_model_dir, export_build
from fnedge.runtime.build import load_build
from fnedge.runtime.engine import Assistant
from fnedge.runtime.llama_backend import LlamaBackend
from fnedge.runtime.torch_backend import TorchBackend
from fnedge.chat_format import render


@pytest.fixture(scope="module")
def tiny_build(tiny_model, tmp_path_factory):
    return export_build("rpi4", model_dir=tiny_model, quants="f32,f16,q8_0",
                        out_dir=tmp_path_factory.mktemp("builds") / "rpi4")


def test_manifest_lists_every_file_with_checksums(tiny_build):
    manifest = json.loads((tiny_build / "manifest.json").read_text())
    assert [a["quant"] for a in manifest["artifacts"]] == ["f32", "f16", "q8_0"]
    assert manifest["primary"] == "model-f32.gguf"
    for artifact in manifest["artifacts"]:
        assert artifact["format"] == "gguf" and len(artifact["sha256"]) == 64
        assert (tiny_build / artifact["file"]).stat().st_size == artifact["bytes"]
    on_disk = {p.name for p in tiny_build.iterdir()} - {"manifest.json"}
    assert on_disk == set(manifest["files"])
    assert manifest["model"]["catalog_sha256"]
    assert not list(tiny_build.parent.glob("*.partial"))


def test_export_is_byte_identical(tiny_model, tiny_build, tmp_path):
    again = export_build("rpi4", model_dir=tiny_model, quants="f32,f16,q8_0", out_dir=tmp_path / "again")
    first = json.loads((tiny_build / "manifest.json").read_text())
    second = json.loads((again / "manifest.json").read_text())
    assert first["files"] == second["files"]  # sizes and sha256 of every artifact and file


def test_tampered_artifact_is_refused(tiny_model, tmp_path):
    build = export_build("rpi4", model_dir=tiny_model, quants="q8_0", out_dir=tmp_path / "b")
    gguf = build / "model-q8_0.gguf"
    data = bytearray(gguf.read_bytes())
    data[-10] ^= 0xFF
    gguf.write_bytes(bytes(data))
    with pytest.raises(FnedgeError, match="model-q8_0.gguf: checksum does not match manifest.json"):
        load_build(build)


def test_bad_export_inputs(tiny_model, tmp_path):
    with pytest.raises(FnedgeError, match="unknown device 'toaster'"):
        export_build("toaster", model_dir=tiny_model, out_dir=tmp_path / "x")
    with pytest.raises(FnedgeError, match="unknown quant type 'q2_k'"):
        export_build("rpi4", model_dir=tiny_model, quants="q2_k", out_dir=tmp_path / "x")
    with pytest.raises(FnedgeError, match="model folder not found"):
        export_build("rpi4", model_dir=tmp_path / "missing", out_dir=tmp_path / "x")
    assert not (tmp_path / "x").exists() and not (tmp_path / "x.partial").exists()


def test_model_folder_carries_its_catalog(tiny_model, tmp_path):
    """A model trained on a user's catalog brings it along: export and `eval --model` use it
    wherever they run, and a record whose catalog no longer matches its hash is refused."""
    import shutil

    from fnedge.catalog import parse_catalog

    model = tmp_path / "model"
    shutil.copytree(tiny_model, model)
    record = json.loads((model / "fnedge.json").read_text())
    assert record["catalog"] == load_catalog(None).to_openai()
    todo = {"type": "function", "function": {"name": "add_todo", "description": "Add a to-do item.",
            "parameters": {"type": "object", "properties": {"item": {"type": "string"}}, "required": ["item"]}}}
    users = parse_catalog(record["catalog"] + [todo])
    record.update(catalog=users.to_openai(), catalog_sha256=users.sha256())
    (model / "fnedge.json").write_text(json.dumps(record))
    build = export_build("rpi4", model_dir=model, quants="q8_0", out_dir=tmp_path / "b")
    assert json.loads((build / "tools.json").read_text()) == users.to_openai()
    assert "add_todo" in Assistant.from_model_dir(model).catalog.names
    record["catalog_sha256"] = "0" * 64
    (model / "fnedge.json").write_text(json.dumps(record))
    with pytest.raises(FnedgeError, match="trained on catalog 000000000000"):
        Assistant.from_model_dir(model)


@pytest.mark.parametrize("artifact", ["model-f32.gguf", "model-f16.gguf"])
def test_gguf_greedy_tokens_equal_torch(tiny_model, tiny_build, artifact):
    torch_backend = TorchBackend(tiny_model, n_threads=1)
    llama_backend = LlamaBackend(tiny_build / artifact, n_threads=1, n_ctx=512)
    for text in ["明天上海会下雨吗？", "turn off the kitchen light", "hi"]:
        prompt = render([{"role": "user", "content": text}], add_generation_prompt=True)
        assert llama_backend.tokenize(prompt) == torch_backend.tokenize(prompt)
        assert llama_backend.generate(prompt, 24).tokens == torch_backend.generate(prompt, 24).tokens


def test_assistant_reply_from_build(tiny_build):
    reply = Assistant.from_build(tiny_build, threads=1).respond([{"role": "user", "content": "hello"}])
    assert reply.generation.prompt_tokens > 3
    assert reply.latency_ms > 0


def _cli(*args):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "fnedge.cli", *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=300)


def _assert_one_line_error(result, *fragments):
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fnedge: error:"), result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_cli_errors_are_one_line(tiny_model, tmp_path):
    _assert_one_line_error(_cli("run", tmp_path / "nobuild", "hi"), "nobuild", "not a build folder")
    _assert_one_line_error(_cli("export", "--device", "rpi4", "--model", tmp_path / "nomodel"),
                           "nomodel", "model folder not found")
    bad_catalog = tmp_path / "tools.json"
    bad_catalog.write_text("[{")
    _assert_one_line_error(_cli("data", "generate", "--catalog", bad_catalog, "--n", "10", "--out",
                                tmp_path / "d.jsonl"), "tools.json", "not valid JSON")
    cases = tmp_path / "cases.jsonl"
    cases.write_text('{"id": "a", "tools": "default", "messages": [{"role": "user", "content": "x"}], '
                     '"expect": {"type": "text"}}\n{not json}\n')
    _assert_one_line_error(_cli("eval", cases, "--model", tiny_model), "cases.jsonl:2")


def test_cli_refuses_a_tampered_build(tiny_model, tmp_path):
    build = export_build("rpi4", model_dir=tiny_model, quants="q8_0", out_dir=tmp_path / "b")
    (build / "model-q8_0.gguf").write_bytes(b"GGUF" + b"\0" * 100)
    _assert_one_line_error(_cli("run", build, "hi"), "model-q8_0.gguf", "checksum does not match")


@pytest.mark.skipif(not (default_model_dir() / "model.safetensors").is_file(), reason="no built-in model yet")
def test_default_model_end_to_end(tmp_path):
    """The README's main job: export the built-in model for the Pi 4 and ask for the weather."""
    build = tmp_path / "rpi4"
    result = _cli("export", "--device", "rpi4", "--out", build)
    assert result.returncode == 0, result.stderr
    result = _cli("run", build, "明天上海会下雨吗？", "--json")
    assert result.returncode == 0, result.stderr
    reply = json.loads(result.stdout)
    assert [c["name"] for c in reply["calls"]] == ["get_weather"]
    assert reply["calls"][0]["arguments"]["date"] == "tomorrow"
    assert reply["problems"] == []


@pytest.mark.skipif(not (default_model_dir() / "model.safetensors").is_file(), reason="no built-in model yet")
def test_default_model_copies_the_city_under_the_call_grammar(tmp_path):
    build = tmp_path / "rpi4"
    assert _cli("export", "--device", "rpi4", "--out", build).returncode == 0
    # The README's first command. Not 上海: after a day word the built-in model reads its 上 as part
    # of what follows the day ("明天上海会下雨吗？" -> city "海会"), a failure the README states.
    reply = json.loads(_cli("run", build, "明天北京会下雨吗？", "--json").stdout)
    assert reply["calls"] == [{"name": "get_weather", "arguments": {"city": "北京", "date": "tomorrow"}}]


def test_kept_prefix_gives_the_same_replies_as_a_fresh_prefill(tiny_build):
    """Consecutive prompts share the template prefix; keeping its KV cache must not change a token."""
    from fnedge.chat_format import render
    from fnedge.runtime.llama_backend import LlamaBackend

    tools = load_catalog(None).to_openai()[:2]
    prompts = [render([{"role": "user", "content": text}], tools, add_generation_prompt=True)
               for text in ("明天上海会下雨吗？", "turn off the light", "明天上海会下雨吗？", "算一下 3+4")]
    backend = LlamaBackend(tiny_build / "model-f32.gguf", n_threads=1, n_ctx=1024)
    runs = {}
    for reuse in (True, False):
        backend.reuse_prefix = reuse
        runs[reuse] = [backend.generate(p, 12).tokens for p in prompts]
    assert runs[True] == runs[False]
    assert all(runs[True])  # not vacuous: every reply has tokens


def test_llama_cpp_renders_tools_with_the_gguf_chat_template(tiny_build):
    """llama-cpp-python's own Jinja chat formatter, fed the template stored in the GGUF, renders
    a request with tools exactly as training did."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    from fnedge.chat_format import render
    from fnedge.runtime.llama_backend import open_llama

    llm = open_llama(tiny_build / "model-q8_0.gguf", n_ctx=64)
    template = llm.metadata["tokenizer.chat_template"]
    tools = load_catalog(None).to_openai()[:3]
    messages = [{"role": "user", "content": "明天上海会下雨吗？"}]
    formatter = Jinja2ChatFormatter(template, eos_token="<|im_end|>", bos_token="")
    rendered = formatter(messages=messages, tools=tools).prompt
    assert rendered == render(messages, tools, add_generation_prompt=True)
    assert '"name": "get_weather"' in rendered
