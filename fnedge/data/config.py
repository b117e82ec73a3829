"""Knobs of the data generator, with the defaults the project trains on."""

from __future__ import annotations

from dataclasses import dataclass, field

# Share of each sample kind; see kinds.py for what each one teaches.
DEFAULT_RATIOS = {
    "single_call": 0.36,
    "parallel_call": 0.08,
    "ask": 0.10,
    "ask_then_call": 0.06,
    "no_call": 0.13,
    "deferred": 0.11,
    "multi_turn": 0.10,
    "error_correction": 0.04,
    "ambiguous": 0.02,
    "echo": 0.08,
}


@dataclass
class DataConfig:
    ratios: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_RATIOS))
    # Language of the user's words: Chinese, English, or code-mixed.
    lang_weights: dict[str, float] = field(default_factory=lambda: {"zh": 0.45, "en": 0.40, "mix": 0.15})
    # For tools with hint phrasings, how often to use the plain schema-derived phrasings instead.
    generic_share: float = 0.05
    # Scale all noise (typos, case, punctuation, polite words); 0 turns noise off.
    noise_scale: float = 1.0
    # Drop samples whose normalized text (case, spaces, punctuation removed) was seen before.
    near_dedup: bool = True
    # Give up on a kind after this many tries per wanted sample (small catalogs run out of variety).
    max_tries_per_sample: int = 20
    # Drop conversations longer than this when rendered (the model's context is 512 tokens).
    max_chars: int = 900
    # Mark the deliberately wrong call in error_correction samples with "weight": 0 (OpenAI
    # fine-tuning convention) so a trainer that honors it does not learn the mistake.
    weight_zero_mistakes: bool = True
    # Share of one-turn call samples whose copied values are swapped for never-seen ones
    # (see novel_values.py): forces copying from the user's words over recalling a value pool.
    novel_value_share: float = 0.3
    # Share of free texts (messages, phrases to translate, notes, event titles) that say more than
    # one pool item: two joined, or one with a head or tail ("good luck" + "with your exam"). 0.3
    # gave +5.5 pts of argument match on held-out templates and no gain on the dev set (README).
    longer_text_share: float = 0.0
    # Relative weight of a tool where a sample picks one tool ({name: weight}; unnamed tools 1.0):
    # a tool just added to a trained model's catalog can get more than its uniform share.
    tool_weights: dict[str, float] = field(default_factory=dict)

    def check_tool_weights(self, tool_names: list[str]) -> None:
        from fnedge.catalog import is_number
        from fnedge.errors import FnedgeError
        unknown = sorted(set(self.tool_weights) - set(tool_names))
        if unknown:
            raise FnedgeError(f"tool_weights: unknown tool(s) {unknown} (the catalog has: {', '.join(tool_names)})")
        for name, weight in self.tool_weights.items():
            if not is_number(weight) or weight <= 0:
                raise FnedgeError(f"tool_weights: the weight of '{name}' must be a positive number, not {weight!r}")

    def normalized_ratios(self) -> dict[str, float]:
        from fnedge.errors import FnedgeError
        unknown = set(self.ratios) - set(DEFAULT_RATIOS)
        if unknown:
            raise FnedgeError(f"DataConfig.ratios: unknown kind(s) {sorted(unknown)} (known: {list(DEFAULT_RATIOS)})")
        total = sum(max(0.0, r) for r in self.ratios.values())
        if total <= 0:
            raise FnedgeError("DataConfig.ratios: at least one kind needs a positive share")
        return {k: max(0.0, r) / total for k, r in self.ratios.items()}
