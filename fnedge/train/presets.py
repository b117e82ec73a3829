"""Model presets: MiniMind-style Llama decoders as plain `transformers.LlamaConfig`s.

Heads are 64 wide (32 rotary frequency pairs), as in Llama and MiniMind.

Every matrix dimension is a multiple of 32 (Q4_0/Q8_0 blocks), and of 256 where the size allows
(K-quants), so 4-bit GGUF types apply without silent fallbacks.
"""

from __future__ import annotations

from transformers import LlamaConfig

from fnedge.errors import FnedgeError

VOCAB_SIZE = 6400

PRESETS: dict[str, dict[str, int]] = {
    # name: hidden, layers, heads, kv heads, MLP width
    "fc-nano": dict(hidden_size=128, num_hidden_layers=4, num_attention_heads=2,
                    num_key_value_heads=1, intermediate_size=384),
    "fc-micro": dict(hidden_size=256, num_hidden_layers=6, num_attention_heads=4,
                     num_key_value_heads=2, intermediate_size=768),
    # fc-micro's depth at 3/4 of its width (3.0M params): 1.7x faster steps, so it trains more of
    # the recipe within a 30-minute budget on a CPU without bf16 (README, session 19).
    "fc-3m": dict(hidden_size=192, num_hidden_layers=6, num_attention_heads=3,
                  num_key_value_heads=1, intermediate_size=512),
    "minimind-26m": dict(hidden_size=512, num_hidden_layers=8, num_attention_heads=8,
                         num_key_value_heads=2, intermediate_size=1536),
}


def make_config(preset: str, vocab_size: int = VOCAB_SIZE, context_length: int = 1024) -> LlamaConfig:
    if preset not in PRESETS:
        raise FnedgeError(f"unknown preset '{preset}' (choose from {', '.join(PRESETS)})")
    return LlamaConfig(
        vocab_size=vocab_size,
        max_position_embeddings=context_length,
        rms_norm_eps=1e-5,
        # 1e4, not MiniMind's 1e6: with head_dim 64 and contexts of a few hundred tokens, the
        # slow frequencies of 1e6 leave little sharp relative position for the copy (induction)
        # heads that arguments need; 1e6 runs did not learn to copy in our CPU budget.
        rope_theta=1e4,
        tie_word_embeddings=True,
        hidden_act="silu",
        attention_bias=False,
        mlp_bias=False,
        bos_token_id=None,
        eos_token_id=2,  # <|im_end|>
        pad_token_id=0,  # <|endoftext|>
        **PRESETS[preset],
    )


def count_parameters(config: LlamaConfig) -> int:
    hidden, inter = config.hidden_size, config.intermediate_size
    head_dim = hidden // config.num_attention_heads
    kv = config.num_key_value_heads * head_dim
    per_layer = 2 * hidden * hidden + 2 * hidden * kv + 3 * hidden * inter + 2 * hidden
    return config.vocab_size * hidden + config.num_hidden_layers * per_layer + hidden
