"""Training throughput of what `fnedge train` does (`compile: true`, fused AdamW) against eager
PyTorch and against the default AdamW, in one process on the same batches.

    python benchmarks/train_speed.py --preset fc-micro --conversations 3000 --steps 120

Three variants train their own copy of the same freshly initialised model with the training step of
`fnedge train` (`trainer.optimizer_step`) (bf16 autocast where the CPU has bf16 units) on the same
length-bucketed batches of generated conversations: eager with PyTorch's default AdamW (a loop
over the tensors), compiled with the default AdamW, and compiled with the fused AdamW
(`trainer.make_optimizer`). The batches are visited once to warm up (the compiled variants
compile here: reported on its own), then timed step by step, the variants interleaved batch by
batch so that a busy machine slows all alike. Reports padded tokens per second and the ratios.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
from transformers import AutoTokenizer, LlamaForCausalLM

from fnedge.catalog import load_catalog
from fnedge.data import DataConfig, generate_dataset
from fnedge.export.build import default_model_dir
from fnedge.train.config import TrainConfig
from fnedge.train.dataset import collate, encode_conversations, plan_batches
from fnedge.train.presets import make_config
from fnedge.train.trainer import make_optimizer, optimizer_step, resolve_precision, training_loss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="fc-micro")
    parser.add_argument("--conversations", type=int, default=3000)
    parser.add_argument("--steps", type=int, default=120, help="timed steps per variant")
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    config = TrainConfig(preset=args.preset)
    tokenizer = AutoTokenizer.from_pretrained(default_model_dir())
    records = generate_dataset(load_catalog(None), args.conversations, seed=0, config=DataConfig())
    examples, _ = encode_conversations(tokenizer, records, config.max_tokens)
    plan = plan_batches([len(e.ids) for e in examples], config.batch_tokens, seed=0)[:args.steps]
    batches = [collate([examples[i] for i in batch], tokenizer.pad_token_id) for batch in plan]

    torch.manual_seed(0)
    eager_model = LlamaForCausalLM(make_config(args.preset, vocab_size=len(tokenizer)))
    compiled_model, fused_model = copy.deepcopy(eager_model), copy.deepcopy(eager_model)
    variants = {"eager": (eager_model, eager_model),
                "compiled": (compiled_model, torch.compile(compiled_model, dynamic=True)),
                "compiled+fused": (fused_model, torch.compile(fused_model, dynamic=True))}
    optimizers = {"eager": make_optimizer(eager_model, config, fused=False),
                  "compiled": make_optimizer(compiled_model, config, fused=False),
                  "compiled+fused": make_optimizer(fused_model, config)}
    use_bf16 = resolve_precision(config.precision) == "bf16"

    def reply_loss(forward: torch.nn.Module, batch: tuple[torch.Tensor, torch.Tensor]):
        ids, labels = batch
        return training_loss(forward, ids, labels, tokenizer.pad_token_id, config.context_loss_weight), {}

    def step(name: str, ids: torch.Tensor, labels: torch.Tensor) -> float:
        _, forward = variants[name]
        started = time.perf_counter()
        optimizer_step(forward, optimizers[name], reply_loss, (ids, labels), use_bf16, config.grad_clip)
        return time.perf_counter() - started

    warm_up = {name: sum(step(name, ids, labels) for ids, labels in batches) for name in variants}
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    for ids, labels in batches:
        for name in variants:
            seconds[name].append(step(name, ids, labels))
    tokens = sum(ids.numel() for ids, _ in batches)

    print(f"{args.preset}, {len(batches)} batches, {tokens:,} padded tokens, {torch.get_num_threads()} threads, "
          f"bf16 autocast: {use_bf16}")
    rates = {}
    for name in variants:
        rates[name] = tokens / sum(seconds[name])
        print(f"{name:>14}: {rates[name]:8,.0f} tok/s (median step {statistics.median(seconds[name]) * 1e3:.0f} ms); "
              f"first pass {warm_up[name]:.1f} s")
    print(f"compiled / eager: {rates['compiled'] / rates['eager']:.2f}x; "
          f"compiled+fused / compiled: {rates['compiled+fused'] / rates['compiled']:.2f}x; "
          f"compiled+fused / eager: {rates['compiled+fused'] / rates['eager']:.2f}x")


if __name__ == "__main__":
    main()
