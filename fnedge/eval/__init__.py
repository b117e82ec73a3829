"""The evaluator: load cases in the shared format, score assistant turns, summarize.

    cases = load_cases(path)
    scores = [score_case(case, turn) for case, turn in ...]
    summary = summarize(scores, latencies_ms); print(format_report(summary))
"""

from fnedge.eval.cases import EvalCase, Expectation, ExpectedCall, load_cases
from fnedge.eval.report import format_report, summarize
from fnedge.eval.scoring import CaseScore, score_case

__all__ = ["CaseScore", "EvalCase", "Expectation", "ExpectedCall", "format_report", "load_cases",
           "score_case", "summarize"]
