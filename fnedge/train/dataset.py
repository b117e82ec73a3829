"""Conversations -> token ids with a loss mask -> length-bucketed, padded batches.

Only assistant replies are learned (labels elsewhere are -100). Each rendered segment is
tokenized on its own, as at inference time the prompt ends exactly at `<|im_start|>assistant\n`
and the reply's tokens are generated separately.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from fnedge.chat_format import render_segments

IGNORE_INDEX = -100


@dataclass
class Example:
    ids: list[int]
    labels: list[int]


def encode_conversations(tokenizer, conversations: Sequence[dict[str, Any]],
                         max_tokens: int) -> tuple[list[Example], int]:
    """Tokenize conversations; returns the examples and how many were too long to keep."""
    rendered = [render_segments(c["messages"], c.get("tool_schemas")) for c in conversations]
    flat = [text for segments in rendered for text, _ in segments]
    encoded = tokenizer.backend_tokenizer.encode_batch(flat, add_special_tokens=False)
    examples: list[Example] = []
    dropped = 0
    cursor = 0
    for segments in rendered:
        ids: list[int] = []
        labels: list[int] = []
        for _, learned in segments:
            piece = encoded[cursor].ids
            cursor += 1
            ids.extend(piece)
            labels.extend(piece if learned else [IGNORE_INDEX] * len(piece))
        if len(ids) > max_tokens:
            dropped += 1
            continue
        examples.append(Example(ids, labels))
    return examples, dropped


def plan_batches(lengths: Sequence[int], batch_tokens: int, seed: int) -> list[list[int]]:
    """Group example indices into batches of similar length, <= batch_tokens padded tokens each.

    Deterministic in `seed`, so a resumed run replays exactly the same order.
    """
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    pool = 64 * max(1, batch_tokens // max(1, max(lengths, default=1)))
    batches: list[list[int]] = []
    for start in range(0, len(order), pool):
        chunk = sorted(order[start:start + pool], key=lambda i: lengths[i])
        batch: list[int] = []
        for index in chunk:  # ascending length: the newest index is the batch's longest
            if batch and lengths[index] * (len(batch) + 1) > batch_tokens:
                batches.append(batch)
                batch = []
            batch.append(index)
        if batch:
            batches.append(batch)
    rng.shuffle(batches)
    return batches


def collate(examples: Sequence[Example], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad to the longest example. No attention mask is needed: with causal attention,
    padding at the end cannot influence the real tokens before it, and its labels are ignored."""
    width = max(len(e.ids) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    for row, example in enumerate(examples):
        ids[row, :len(example.ids)] = torch.tensor(example.ids)
        labels[row, :len(example.labels)] = torch.tensor(example.labels)
    return ids, labels


def iterate_epoch(examples: Sequence[Example], batch_tokens: int, seed: int, pad_id: int,
                  skip: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    for batch in plan_batches([len(e.ids) for e in examples], batch_tokens, seed)[skip:]:
        yield collate([examples[i] for i in batch], pad_id)
