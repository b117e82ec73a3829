"""Training: tokenizer, model presets, the from-scratch trainer."""
