"""Byte-level BPE tokenizer trained on the synthetic corpus, chat markers as single tokens.

At run time it is plain byte-level BPE with the GPT-2 pre-tokenizer regex, because llama.cpp
implements exactly that (`tokenizer.ggml.model = gpt2`, pre-tokenizer `gpt-2`).

While learning merges we split more finely: every CJK character alone, and a space before a
word alone. No merge can then join two CJK characters or a space with a word, so a value is
tokenized the same inside the user's sentence and inside the call's JSON string (`宁波` in
`宁波后天…` and in `"city": "宁波"`; `Wellington` after a space and after a quote). A tiny model
copies arguments by matching tokens; with GPT-2's usual merges the two spellings differ.
Applying these merges under the plain GPT-2 regex gives the same tokens, since no merge spans
the finer boundaries (a test checks it).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from itertools import takewhile
from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from fnedge.chat_format import CHAT_TEMPLATE, END_OF_TEXT, IM_END, SPECIAL_TOKENS
from fnedge.errors import FnedgeError


def runtime_pre_tokenizer() -> pre_tokenizers.PreTokenizer:
    return pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)


def merge_learning_pre_tokenizer() -> pre_tokenizers.PreTokenizer:
    return pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(r"[\p{Han}\p{Hiragana}\p{Katakana}\p{Hangul}]"), behavior="isolated"),
        pre_tokenizers.Split(Regex(r" (?=[\p{L}\p{N}])"), behavior="isolated"),
        runtime_pre_tokenizer(),
    ])


# The output layer's matrix multiply runs fastest on widths that are multiples of 64: fc-micro
# took 1.04 s per 16 x 128 bf16 step with 3,520 tokens, 1.12 s with 6,400 and 1.32 s with 3,510.
VOCAB_MULTIPLE = 64


def train_tokenizer(texts: Iterable[str], vocab_size: int = 6400, min_frequency: int = 2) -> PreTrainedTokenizerFast:
    """Learn merges until `vocab_size` or until no pair occurs `min_frequency` times; the size is
    then cut down to a multiple of VOCAB_MULTIPLE (the last, rarest merges go)."""
    texts = list(texts)
    tokenizer = _train_bpe(texts, vocab_size, min_frequency)
    fast_size = tokenizer.get_vocab_size() // VOCAB_MULTIPLE * VOCAB_MULTIPLE
    if fast_size != tokenizer.get_vocab_size() and fast_size > len(SPECIAL_TOKENS) + 256:  # keep every byte
        tokenizer = first_tokens(tokenizer, fast_size)
    tokenizer.pre_tokenizer = runtime_pre_tokenizer()
    return wrap(tokenizer)


def _train_bpe(texts: list[str], vocab_size: int, min_frequency: int) -> Tokenizer:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = merge_learning_pre_tokenizer()
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,  # ids 0..6, in this order
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        min_frequency=min_frequency,
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return tokenizer


def first_tokens(tokenizer: Tokenizer, size: int) -> Tokenizer:
    """The tokenizer that training with `vocab_size=size` gives, without training again: BPE learns
    its merges in order of count, each adding the next id, so a smaller run's merges are the first
    ones of a larger run and its tokens are the ids below `size`."""
    state = json.loads(tokenizer.to_str())
    model = state["model"]
    model["vocab"] = {token: i for token, i in model["vocab"].items() if i < size}
    # in learning order, up to the first merge that makes a token past the cut (a later merge may
    # remake a kept token by another split: it goes too)
    model["merges"] = list(takewhile(lambda merge: _merged(merge) in model["vocab"], model["merges"]))
    return Tokenizer.from_str(json.dumps(state))


def _merged(merge: str | list[str]) -> str:
    left, right = merge.split(" ") if isinstance(merge, str) else merge  # tokenizers < 0.20 wrote "a b"
    return left + right


def wrap(tokenizer: Tokenizer) -> PreTrainedTokenizerFast:
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token=IM_END,
        pad_token=END_OF_TEXT,
        additional_special_tokens=[t for t in SPECIAL_TOKENS if t not in (IM_END, END_OF_TEXT)],
        chat_template=CHAT_TEMPLATE,
        clean_up_tokenization_spaces=False,
        model_max_length=1024,
    )


def load_tokenizer(directory: str | Path) -> PreTrainedTokenizerFast:
    directory = Path(directory)
    if not (directory / "tokenizer.json").is_file():
        raise FnedgeError(f"{directory}: no tokenizer.json (not a model or tokenizer folder)")
    return AutoTokenizer.from_pretrained(str(directory))
