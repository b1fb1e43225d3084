"""One tier of the cascade as a Beam RunInference step.

`TierModelHandler` gives RunInference what it needs: load the tier once per worker process
(shared across threads), batch chunks of records (transforms/records.py) through Beam's
BatchElements, weighed by their records, and score each batch's records in one call. A failing
batch goes to the dead letters through RunInference's exception handling instead of failing
the job.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Optional, Sequence, TypeVar

import apache_beam as beam
from apache_beam.ml.inference.base import ModelHandler, PredictionResult, RunInference
from apache_beam.pvalue import PCollection

from models.config import TierConfig
from models.cpus import TorchThreads
from models.learned_deferral import Router
from models.loading import load_configured_router, load_configured_tier, set_torch_threads
from models.memory import freeze_long_lived_objects, release_free_memory
from models.tier import Tier
from models.tier_scoring import score_texts
from transforms.coders import register_coders
from transforms import progress
from transforms.dead_letters import METRICS_NAMESPACE, dead_letter
from transforms.records import Chunk, DeadLetter, Record, Visit

T = TypeVar("T")


@dataclass(frozen=True)
class LoadedTier:
    """What a worker loads once per tier: the model and, for confidence: learned, its
    router (one object, so every thread that shares the model shares the router)."""

    model: Tier
    router: Router | None = None


class TierModelHandler(ModelHandler[Chunk, list[Visit], LoadedTier]):
    """Scores batches of chunks of cascade records with one tier's model.

    Each PredictionResult is a chunk's, its inference the tier's visit of each of its records:
    predicted label id, temperature-scaled probabilities, confidence, the call's wall time
    shared out per record, the number of records in the call and, for a tier that exits
    early, the encoder layer the record left at.

    Beam batches within a bundle, so where bundles are small (Flink, streaming) batches are
    too; a tier's `max_batch_duration_secs` switches to Beam's stateful batching, which
    fills batches across bundles and waits at most that long for a batch to fill.
    """

    def __init__(self, tier: TierConfig, threads: TorchThreads = TorchThreads()):
        records_per_call = tier.records_per_call
        # A fixed size (min == max) in records (chunks weigh their length, and ScoreTier cuts
        # larger ones): BatchElements' adaptive sizing would start small and ramp up, and for
        # a model a bigger batch is always at least as fast per record.
        super().__init__(min_batch_size=records_per_call, max_batch_size=records_per_call,
                         max_batch_duration_secs=tier.max_batch_duration_secs,
                         element_size_fn=len)
        self._tier = tier
        self._threads = threads

    def load_model(self) -> LoadedTier:
        set_torch_threads(self._threads.per_worker, self._threads.workers_per_machine)
        loaded = LoadedTier(load_configured_tier(self._tier), load_configured_router(self._tier))
        freeze_long_lived_objects()  # the model lives as long as the worker
        return loaded

    def run_inference(self, batch: Sequence[Chunk], model: LoadedTier,
                      inference_args: Optional[dict[str, Any]] = None
                      ) -> Iterable[PredictionResult]:
        records = [record for chunk in batch for record in chunk]
        timeout = self._tier.inference_timeout_secs
        if timeout is None:
            visits = self._score(records, model)
        else:
            visits = call_with_timeout(
                lambda: self._score(records, model), timeout,
                f"tier {self._tier.name!r} on a batch of {len(records)} records")
        progress.count(progress.scored(self._tier.name), len(records))
        results, start = [], 0
        for chunk in batch:
            results.append(PredictionResult(chunk, visits[start:start + len(chunk)],
                                            model_id=self._tier.name))
            start += len(chunk)
        return results

    def _score(self, records: list[Record], model: LoadedTier) -> list[Visit]:
        texts = [record.text for record in records]
        pairs = [record.text_pair for record in records] if records[0].text_pair else None
        visits = [Visit(**scored._asdict()) for scored in score_texts(
            self._tier, model.model, texts, pairs, model.router)]
        release_free_memory()
        return visits

    def get_num_bytes(self, batch: Sequence[Chunk]) -> int:
        return sum(len(r.text) + len(r.text_pair or "") for chunk in batch for r in chunk)

    def get_metrics_namespace(self) -> str:
        return f"{METRICS_NAMESPACE}_{self._tier.name}"


class InferenceTimeout(TimeoutError):
    """A model call that took longer than the tier's inference_timeout_secs."""


def call_with_timeout(call: Callable[[], T], seconds: float, what: str) -> T:
    """`call()`, run in a thread of its own, or InferenceTimeout after `seconds`.

    Python cannot stop a running thread: a call that hangs is left behind (a daemon thread
    that dies with the process) and the next batch goes on in a new thread, so one hung
    call costs its batch, not the job."""
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = call()
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
            outcome["error"] = e

    thread = threading.Thread(target=target, name="beam-cascade-inference", daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        raise InferenceTimeout(f"{what}: no answer within inference_timeout_secs {seconds:g} s; "
                               "the batch is dead-lettered")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def pieces_of(chunk: Chunk, size: int) -> Iterator[Chunk]:
    """The chunk, or if longer than `size` records its consecutive pieces of `size`: a call
    never holds more than batch_size x sort_window records, so that a failing call
    dead-letters no more than that."""
    if len(chunk) <= size:
        yield chunk
    else:
        yield from (chunk[start:start + size] for start in range(0, len(chunk), size))


def add_visits(result: PredictionResult) -> Chunk:
    """The chunk's records, each with this tier's visit appended."""
    return [record.visited(visit) for record, visit in zip(result.example, result.inference)]


def failed_batch_to_dead_letters(failure: tuple[Sequence[Chunk], Any],
                                 tier_name: str) -> Iterable[DeadLetter]:
    """One dead letter per record of a batch whose inference raised."""
    batch, error = failure
    reason = f"tier {tier_name!r} failed on the batch: {_describe(error)}"
    for record in (record for chunk in batch for record in chunk):
        raw = {"id": record.id, "text": record.text, "text_pair": record.text_pair,
               **record.passthrough}
        yield dead_letter(f"tier:{tier_name}", reason, raw, record.source, record.position,
                          record.tiers)


def _describe(error: Any) -> str:
    """Beam's exception handling reports (type, repr, traceback); keep the first two."""
    if isinstance(error, tuple) and len(error) >= 2:
        return str(error[1])
    return repr(error)


class ScoreTier(beam.PTransform):
    """Chunks of records in; (the chunks' records with this tier's visit, as chunks; dead
    letters of batches that failed) out."""

    def __init__(self, tier: TierConfig, threads: TorchThreads = TorchThreads()):
        super().__init__()
        register_coders()
        self._tier = tier
        self._threads = threads

    def expand(self, records: PCollection) -> tuple[PCollection, PCollection]:
        name = self._tier.name
        results, failures = (
            records
            | "FitCalls" >> beam.FlatMap(pieces_of, self._tier.records_per_call)
            .with_output_types(Chunk)
            | "RunInference" >> RunInference(TierModelHandler(self._tier, self._threads))
            .with_exception_handling())
        scored = results | "AddVisit" >> beam.Map(add_visits).with_output_types(Chunk)
        dead = failures.failed_inferences | "FailedBatches" >> beam.FlatMap(
            failed_batch_to_dead_letters, name)
        return scored, dead
