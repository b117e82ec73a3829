"""Step time of the LoRA stage on the built-in model: LoRA dropout 0.05 against 0, and what
`lora.keep_base` adds, in one process on the same batches.

    python benchmarks/lora_speed.py --steps 30 [--compile]

Each variant attaches its own adapters (rank 16 on every projection, `fnedge train --lora`'s
defaults) to its own copy of the built-in model and trains with the trainer's step
(`trainer.optimizer_step`, fused AdamW, bf16 autocast where the CPU has bf16 units) on the same
length-bucketed batches of generated conversations. The batches are visited once to warm up
(and to compile, with --compile: reported on its own), then timed step by step, the variants
interleaved batch by batch so that a busy machine slows all alike. Reports padded tokens per second
and each variant's ratio to the first.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from fnedge.catalog import load_catalog
from fnedge.data import DataConfig, generate_dataset
from fnedge.train.bases import load_base
from fnedge.train.config import LoraSettings, TrainConfig
from fnedge.train.dataset import collate, encode_conversations, plan_batches
from fnedge.train.lora import attach_lora, held_to_base
from fnedge.train.trainer import (call_marker_ids, make_optimizer, next_token_objective, optimizer_step,
                                  resolve_precision)

VARIANTS = {"dropout 0.05": LoraSettings(dropout=0.05),
            "dropout 0": LoraSettings(dropout=0.0),
            "dropout 0, keep_base 1": LoraSettings(dropout=0.0, keep_base=1.0)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--conversations", type=int, default=2000)
    parser.add_argument("--steps", type=int, default=30, help="timed steps per variant")
    parser.add_argument("--compile", action="store_true", help="torch.compile each variant's steps")
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    tokenizer = load_base(None).tokenizer
    records = generate_dataset(load_catalog(None), args.conversations, seed=0, config=DataConfig())
    defaults = TrainConfig()
    examples, _ = encode_conversations(tokenizer, records, defaults.max_tokens)
    plan = plan_batches([len(e.ids) for e in examples], defaults.batch_tokens, seed=0)[:args.steps]
    batches = [collate([examples[i] for i in batch], tokenizer.pad_token_id) for batch in plan]
    use_bf16 = resolve_precision(defaults.precision) == "bf16"
    pad_id, markers = tokenizer.pad_token_id, call_marker_ids(tokenizer)

    steps = {}
    for name, settings in VARIANTS.items():
        config = TrainConfig(lora=settings, lr=3e-3)
        torch.manual_seed(0)
        model = attach_lora(load_base(None), settings)
        model.train()
        forward = torch.compile(model, dynamic=True) if args.compile else model
        loss = (held_to_base(model, tokenizer, config) if settings.keep_base else  # as fnedge train --lora
                next_token_objective(examples, [], pad_id, config, call_markers=markers).loss)
        steps[name] = (forward, make_optimizer(model, config), loss, config.grad_clip)

    def step(name: str, batch) -> float:
        forward, optimizer, loss, grad_clip = steps[name]
        started = time.perf_counter()
        optimizer_step(forward, optimizer, loss, batch, use_bf16, grad_clip)
        return time.perf_counter() - started

    warm_up = {name: sum(step(name, batch) for batch in batches) for name in VARIANTS}
    seconds: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for batch in batches:
        for name in VARIANTS:
            seconds[name].append(step(name, batch))
    tokens = sum(ids.numel() for ids, _ in batches)

    print(f"LoRA on the built-in model, {len(batches)} batches, {tokens:,} padded tokens, "
          f"{torch.get_num_threads()} threads, bf16 autocast: {use_bf16}, compiled: {args.compile}")
    first = None
    for name in VARIANTS:
        rate = tokens / sum(seconds[name])
        first = first or rate
        print(f"{name:>24}: {rate:8,.0f} tok/s (median step {statistics.median(seconds[name]) * 1e3:.0f} ms, "
              f"{rate / first:.2f}x the first); first pass {warm_up[name]:.1f} s")


if __name__ == "__main__":
    main()
