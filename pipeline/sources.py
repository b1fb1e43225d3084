"""Reading a job's inputs: files on any filesystem Beam knows (local, gs://, s3://...),
listed once or watched, and Pub/Sub or Kafka messages, as chunks of raw rows.

Inputs are listed on the launcher (so a pattern that matches nothing fails at once, naming
it), then each file is read whole by one worker, which gives every record a stable position
(`file:line` for JSON Lines, `file:row` for Parquet) used as its id when none is given.
A shuffle after reading spreads the records over all workers for inference
(transforms/spreading.py).
"""
from __future__ import annotations

import bz2
import codecs
import csv
import gzip
import io
import itertools
import logging
import lzma
import os
import time
import zlib
from typing import IO, Any, Callable, Iterator, Sequence

import apache_beam as beam
import pyarrow.parquet as pq
from apache_beam.io import fileio
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.io.localfilesystem import LocalFileSystem
from apache_beam.metrics import Metrics
from apache_beam.pvalue import PCollection, TaggedOutput
from apache_beam.transforms.external import JavaJarExpansionService
from apache_beam.utils.timestamp import Timestamp

from pipeline.java_harness import process_environment_args
from transforms import progress
from transforms.dead_letters import DEAD_LETTERS, METRICS_NAMESPACE, dead_letter
from transforms.spreading import SpreadEvenly

# Python's own decompressors: unlike a plain stream, they raise on a truncated file.
DECOMPRESSORS: dict[str, Callable[[IO[bytes]], IO[bytes]]] = {
    ".gz": lambda f: gzip.GzipFile(fileobj=f), ".bz2": bz2.BZ2File,
    ".xz": lzma.LZMAFile, ".lzma": lzma.LZMAFile}
FORMAT_SUFFIXES = {".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl",
                   ".parquet": "parquet", ".pq": "parquet", ".tsv": "tsv", ".csv": "csv"}
# Delimited text with a header line, read as `train` and `calibrate` read it: TSV without
# quoting (as GLUE writes it), CSV with the csv module's standard quoting.
DELIMITED = {"tsv": {"delimiter": "\t", "quoting": csv.QUOTE_NONE}, "csv": {}}
PARQUET_READ_BATCH = 1024
# Raw rows per element from reading to parsing: the shuffle that spreads them over the
# workers then costs per chunk, and a file of a few thousand rows still spreads.
ROWS_PER_CHUNK = 256
# Reading a file is retried this many times in all, after waits of READ_BACKOFF_SECS,
# doubling, when the storage fails (not when the data is damaged).
READ_ATTEMPTS = 4
READ_BACKOFF_SECS = 0.5
# Errors that say the data itself is damaged: retrying cannot help.
DAMAGED_DATA = (ValueError, EOFError, gzip.BadGzipFile, lzma.LZMAError, zlib.error)

_LOG = logging.getLogger(__name__)


class InputError(ValueError):
    """An input that cannot be read; the message names it and says what to do."""


def detect_format(path: str) -> str | None:
    """An input format name (pipeline/flags.py) from the file name (compression suffixes
    allowed); None if unknown."""
    name = path.lower()
    for suffix in DECOMPRESSORS:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    for suffix, fmt in FORMAT_SUFFIXES.items():
        if name.endswith(suffix):
            return fmt
    return None


def list_input_files(patterns: Sequence[str], input_format: str | None = None
                     ) -> list[tuple[str, str]]:
    """Expands the patterns to sorted, de-duplicated (path, format) pairs.

    A file named twice (a relative and an absolute path, a symbolic link) is read once: files
    are told apart by their real path. Raises InputError for a pattern that matches no file
    or names a folder (to be read, its files need a pattern: `folder/*.parquet`) and for a
    file whose format cannot be told from its name when no input_format is given.
    """
    if not patterns:
        raise InputError("no input: pass --input PATTERN (repeatable)")
    files: dict[str, str] = {}
    seen: set[str] = set()
    for pattern in patterns:
        try:
            matched = [m for r in FileSystems.match([pattern]) for m in r.metadata_list]
        except Exception as e:  # Beam raises BeamIOError with the filesystem's reason
            raise InputError(f"cannot list input {pattern!r}: {e}") from None
        if not matched:
            raise InputError(f"input pattern {pattern!r} matches no file; check the path")
        for metadata in matched:
            path = metadata.path
            if is_local_folder(path):  # Beam matches a folder only when it is named as such
                example = FileSystems.join(path, f"*.{input_format or 'jsonl'}")
                raise InputError(f"input {pattern!r} is a folder; give a pattern of the files "
                                 f"in it, such as {example!r}")
            if canonical_path(path) in seen:
                continue
            seen.add(canonical_path(path))
            if metadata.size_in_bytes == 0:
                _LOG.warning("input file %s is empty: it holds no records", path)
            fmt = input_format or detect_format(path)
            if fmt is None:
                raise InputError(
                    f"cannot tell the format of {path!r} from its name; name it .jsonl/.json, "
                    ".parquet, .tsv or .csv (all but Parquet optionally .gz/.bz2/.xz), or "
                    "pass --input_format jsonl|parquet|tsv|csv")
            if fmt == "parquet" and _compression(path):
                raise InputError(
                    f"{path!r}: Parquet compresses its pages itself and cannot be read from a "
                    "compressed file; decompress it (or write it with Parquet compression)")
            files[path] = fmt
    return sorted(files.items())


def is_local_folder(path: str) -> bool:
    """Whether the path names a folder on this machine's filesystem: reading it as a file
    would fail on every worker, after the job started."""
    return isinstance(FileSystems.get_filesystem(path), LocalFileSystem) and os.path.isdir(path)


def canonical_path(path: str) -> str:
    """The one name of a file however it is written: the real path of a local file (links
    and `..` resolved), the URL of a remote object."""
    if isinstance(FileSystems.get_filesystem(path), LocalFileSystem):
        return os.path.realpath(path)
    return path


def _compression(path: str) -> str | None:
    return next((s for s in DECOMPRESSORS if path.lower().endswith(s)), None)


def read_json_lines(readable: fileio.ReadableFile) -> Iterator[tuple[str, int, bytes]]:
    """Yields (path, line number from 1, raw line bytes); compression follows the file name."""
    path = readable.metadata.path
    compression = _compression(path)
    with readable.open(compression_type=CompressionTypes.UNCOMPRESSED) as raw:
        f = DECOMPRESSORS[compression](raw) if compression else raw
        for number, line in enumerate(iter(f.readline, b""), start=1):
            if number == 1 and line.startswith(codecs.BOM_UTF8):
                line = line[len(codecs.BOM_UTF8):]  # a byte-order mark, as JSON readers allow
            yield path, number, line


def read_delimited_rows(readable: fileio.ReadableFile, fmt: str
                        ) -> Iterator[tuple[str, int, dict]]:
    """Yields (path, line number from 2, row dict by the header line) of a TSV or CSV file;
    compression follows the file name."""
    path = readable.metadata.path
    compression = _compression(path)
    with readable.open(compression_type=CompressionTypes.UNCOMPRESSED) as raw:
        f = DECOMPRESSORS[compression](raw) if compression else raw
        text = io.TextIOWrapper(f, encoding="utf-8-sig", newline="")
        for number, row in enumerate(csv.DictReader(text, **DELIMITED[fmt]), start=2):
            yield path, number, row


def read_parquet_rows(readable: fileio.ReadableFile, columns: Sequence[str]
                      ) -> Iterator[tuple[str, int, dict]]:
    """Yields (path, row index from 0, row dict) reading only `columns` that the file has."""
    path = readable.metadata.path
    with readable.open(compression_type=CompressionTypes.UNCOMPRESSED) as f:
        parquet = pq.ParquetFile(f)
        names = parquet.schema_arrow.names
        refuse_duplicate_columns(names, columns)
        present = [c for c in columns if c in names]
        row = 0
        for batch in parquet.iter_batches(batch_size=PARQUET_READ_BATCH, columns=present):
            for values in batch.to_pylist():
                yield path, row, values
                row += 1


def refuse_duplicate_columns(names: Sequence[str], read: Sequence[str]) -> None:
    """Raises InputError, which reading takes for damaged data (the file's one 'read' dead
    letter), when a column the job reads appears more than once in a file (pyarrow writes
    such files): pyarrow would read one of them, and which one would be its choice, not the
    user's."""
    for name in read:
        positions = [str(i) for i, column in enumerate(names, start=1) if column == name]
        if len(positions) > 1:
            raise InputError(f"it has {len(positions)} columns named {name!r} (columns "
                             f"{', '.join(positions[:-1])} and {positions[-1]}): rename or "
                             "drop all but one")


class ReadInputFile(beam.DoFn):
    """One input file in; its raw rows out, in chunks (lists) of up to ROWS_PER_CHUNK rows.

    A storage failure (a lost connection, a file not there yet) is retried READ_ATTEMPTS
    times in all with doubling waits, going on after the rows already read, so no row is
    lost or doubled. A file that still cannot be read, or whose data is damaged, yields the
    rows read before the failure and one dead letter (stage 'read') naming the file and the
    error; the statistics count it as an unread file and the job exits with status 3."""

    def __init__(self, input_format: str | None, columns: Sequence[str]):
        self._input_format = input_format
        self._columns = list(columns)
        self._retries = Metrics.counter(METRICS_NAMESPACE, "read_retries")

    def process(self, readable: fileio.ReadableFile) -> Iterator[Any]:
        path = readable.metadata.path
        fmt = self._input_format or detect_format(path)
        chunk: list = []
        emitted = 0  # rows read so far, in chunks given out or in `chunk`
        for attempt in range(1, READ_ATTEMPTS + 1):
            try:
                for row in itertools.islice(self._rows(readable, fmt), emitted, None):
                    chunk.append(row)
                    emitted += 1
                    if len(chunk) == ROWS_PER_CHUNK:
                        yield chunk
                        chunk = []
                if chunk:
                    yield chunk
                progress.count(progress.FILES_READ, 1)
                return
            except Exception as e:  # noqa: BLE001 - any failure is retried or dead-lettered
                if isinstance(e, DAMAGED_DATA) or attempt == READ_ATTEMPTS:
                    if chunk:
                        yield chunk
                    tries = f" (after {attempt} attempts)" if attempt > 1 else ""
                    reason = (f"cannot read {fmt} file {path!r} from row {emitted} on{tries}: "
                              f"{type(e).__name__}: {e}")
                    yield TaggedOutput(DEAD_LETTERS, dead_letter("read", reason, "", path))
                    progress.count(progress.FILES_READ, 1)
                    return
                self._retries.inc()
                time.sleep(READ_BACKOFF_SECS * 2 ** (attempt - 1))

    def _rows(self, readable: fileio.ReadableFile, fmt: str | None) -> Iterator[Any]:
        if fmt == "parquet":
            return read_parquet_rows(readable, self._columns)
        if fmt == "jsonl":
            return read_json_lines(readable)
        if fmt in DELIMITED:
            return read_delimited_rows(readable, fmt)
        raise InputError("cannot tell its format from its name; name it .jsonl, .parquet, "
                         ".tsv or .csv, or pass --input_format")


class ListedFiles(beam.PTransform):
    """PBegin in; the input files listed on the launcher out (batch mode)."""

    def __init__(self, paths: Sequence[str]):
        super().__init__()
        self._paths = list(paths)

    def expand(self, pbegin) -> PCollection:
        return pbegin | "Paths" >> beam.Create(self._paths)


class WatchedFiles(beam.PTransform):
    """PBegin in; every file that matches a pattern, now or later, out once (streaming).

    Beam's MatchContinuously polls each pattern every `poll_interval_secs`, remembers the
    files it has matched and gives each one the time it was found as its event time; the
    watermark follows the polls, so no record read from a found file is ever late."""

    def __init__(self, patterns: Sequence[str], poll_interval_secs: float):
        super().__init__()
        self._patterns = list(patterns)
        self._interval = poll_interval_secs

    def expand(self, pbegin) -> PCollection:
        return [pbegin | f"Watch[{pattern}]" >> fileio.MatchContinuously(
                    pattern, interval=self._interval, start_timestamp=Timestamp.now())
                for pattern in self._patterns] | "AllPatterns" >> beam.Flatten()


class ReadRecords(beam.PTransform):
    """PBegin in; {'rows': chunks of raw rows, 'dead_letters': unreadable files} out, reading
    the files that `files` (ListedFiles or WatchedFiles) names."""

    def __init__(self, files: beam.PTransform, input_format: str | None,
                 columns: Sequence[str]):
        super().__init__()
        self._files = files
        self._input_format = input_format
        self._columns = list(columns)

    def expand(self, pbegin) -> dict[str, PCollection]:
        read = (
            pbegin
            | "InputFiles" >> self._files
            | "SpreadFiles" >> SpreadEvenly()
            | "Open" >> fileio.ReadMatches()
            | "Read" >> beam.ParDo(ReadInputFile(self._input_format, self._columns))
            .with_outputs(DEAD_LETTERS, main="rows"))
        return {"rows": read.rows | "SpreadRows" >> SpreadEvenly(),
                "dead_letters": read[DEAD_LETTERS]}


class ReadPubSubRecords(beam.PTransform):
    """PBegin in; {'rows', 'dead_letters'} out: one JSON record per Pub/Sub message (a chunk
    of one row), its message id as its position, its publish time as its event time."""

    def __init__(self, subscription: str | None = None, topic: str | None = None):
        super().__init__()
        self._subscription = subscription
        self._topic = topic

    def expand(self, pbegin) -> dict[str, PCollection]:
        source = f"pubsub:{self._subscription or self._topic}"
        messages = pbegin | "ReadPubSub" >> beam.io.ReadFromPubSub(
            subscription=self._subscription, topic=self._topic, with_attributes=True)
        rows = messages | "ToRows" >> beam.Map(lambda m: [(source, m.message_id, m.data)])
        return {"rows": rows, "dead_letters": pbegin | "NoReadErrors" >> beam.Create([])}


class ReadKafkaRecords(beam.PTransform):
    """PBegin in; {'rows', 'dead_letters'} out: one JSON record per Kafka message value (a
    chunk of one row), `topic/partition` and offset as its position. Beam's Kafka source is
    Java, run through an expansion service (Java on the launcher): Beam's own, or
    `expansion_jar` from scripts/kafka_expansion_service.sh, whose Java runs as local
    processes (see pipeline/java_harness.py and docs/streaming.md)."""

    def __init__(self, bootstrap_servers: str, topics: Sequence[str],
                 expansion_jar: str | None = None):
        super().__init__()
        self._servers = bootstrap_servers
        self._topics = list(topics)
        self._expansion_jar = expansion_jar

    def expand(self, pbegin) -> dict[str, PCollection]:
        from apache_beam.io.kafka import ReadFromKafka  # cross-language: imported when used
        expansion = {}
        if self._expansion_jar:
            expansion["expansion_service"] = JavaJarExpansionService(
                self._expansion_jar, append_args=process_environment_args(self._expansion_jar))
        messages = pbegin | "ReadKafka" >> ReadFromKafka(
            consumer_config={"bootstrap.servers": self._servers,
                             "auto.offset.reset": "earliest"},
            topics=self._topics, with_metadata=True, **expansion)
        rows = messages | "ToRows" >> beam.Map(
            lambda m: [(f"kafka:{m.topic}/{m.partition}", m.offset, m.value)])
        return {"rows": rows, "dead_letters": pbegin | "NoReadErrors" >> beam.Create([])}
