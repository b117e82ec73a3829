"""Training-data generator: catalog (+ optional hints) -> chat conversations with tool calls.

Public API:
    generate_dataset(catalog, n, seed, config, hints) -> list of records
    write_jsonl(records, path) / read_jsonl(path)
    stats(records), split_by_template(records, dev_fraction, seed)
    DataConfig, load_hints, GenerationReport, DataWarning
"""

from fnedge.data.config import DEFAULT_RATIOS, DataConfig
from fnedge.data.generate import GenerationReport, generate_dataset, read_jsonl, write_jsonl
from fnedge.data.hints import HintSet, load_hints
from fnedge.data.plan import DataWarning
from fnedge.data.quality import record_problem, split_by_template, stats

__all__ = ["DEFAULT_RATIOS", "DataConfig", "DataWarning", "GenerationReport", "HintSet", "generate_dataset",
           "load_hints", "read_jsonl", "record_problem", "split_by_template", "stats", "write_jsonl"]
