"""The generation engine: one token loop for the library, the CLI and the server.

    params.py    SamplingParams: sampling, stop rules, logprobs, response_format (validated)
    events.py    Event tuples, TokenLogprob, the finish-reason vocabulary
    sequence.py  SequenceState: one sequence's step (logits row -> token + events), stop rules,
                 text assembly, chat parsing, constraints; PreparedGeneration
    local.py     the library's driver: one sequence on the Model's context (plain or speculative)
    cache.py     cache-key bookkeeping shared by the drivers (prefix reuse, penalty history)

The server's scheduler (``server/engine.py``) is the other driver: many SequenceStates, one
``_core.decode_batch`` row each.
"""
from .events import FINISH_REASONS, Event, TokenLogprob
from .params import SamplingParams
from .sequence import PreparedGeneration, SequenceState

__all__ = ["SamplingParams", "Event", "TokenLogprob", "FINISH_REASONS", "SequenceState", "PreparedGeneration"]
