"""The whole job through its CLI entry: files in, predictions, errors and statistics out."""
import gzip
import json
from collections import Counter

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import read_errors, read_predictions, run_job

from pipeline.run import main
from transforms.scoring import TierModelHandler

WORDS = "the a movie film good bad great awful not very plot actor story fun dull".split()
GOOD_ROWS = [{"text": " ".join(WORDS[(i * 5 + j) % len(WORDS)] for j in range(1 + i % 7)),
              "label": ["neg", "pos"][i % 2], "extra": i} for i in range(120)]
BAD_LINES = [b"{not json\n", b"[1, 2, 3]\n", b'{"label": "pos"}\n', b'{"text": null}\n',
             b'{"text": 12}\n', b'{"text": ""}\n', b'{"text": "   "}\n',
             b'{"text": "caf\xe9 au lait"}\n']


@pytest.fixture()
def inputs(tmp_path):
    """A Parquet file and a JSON Lines file (with bad lines and a blank one), plus a .gz."""
    folder = tmp_path / "in"
    folder.mkdir()
    pq.write_table(pa.Table.from_pylist(GOOD_ROWS[:60]), folder / "part.parquet")
    lines = [json.dumps(r).encode() + b"\n" for r in GOOD_ROWS[60:100]]
    (folder / "part.jsonl").write_bytes(b"".join(lines[:20] + BAD_LINES + [b"\n"] + lines[20:]))
    with gzip.open(folder / "more.jsonl.gz", "wb") as f:
        f.writelines(json.dumps(r).encode() + b"\n" for r in GOOD_ROWS[100:])
    return folder


@pytest.fixture()
def config(tmp_path, models):
    path = tmp_path / "cascade.yaml"
    path.write_text(
        "label_field: label\npassthrough_fields: [extra, label]\ntiers:\n"
        f"  - {{name: small, model: {models['small']}, threshold: 0.9, batch_size: 16}}\n"
        f"  - {{name: medium, model: {models['medium']}, threshold: 0.97}}\n"
        f"  - {{name: large, model: {models['large']}, batch_size: 8}}\n")
    return str(path)


def test_three_tier_job_over_parquet_and_jsonl_with_bad_lines(inputs, config, tmp_path):
    out = tmp_path / "out"
    stats = run_job(["--input", str(inputs / "*.parquet"), "--input", str(inputs / "*.jsonl*"),
                     "--output", str(out), "--config", config])
    predictions, errors = read_predictions(out), read_errors(out)

    assert len(predictions) == len(GOOD_ROWS)
    assert len(errors) == len(BAD_LINES)
    assert stats.records_read == len(GOOD_ROWS) + len(BAD_LINES)
    assert stats.records == stats.records_read and stats.unaccounted == 0
    assert (stats.predictions, stats.errors) == (len(predictions), len(errors))
    assert {e["stage"] for e in errors} == {"parse"}
    assert {e["position"] for e in errors} == set(range(21, 21 + len(BAD_LINES)))
    assert all(e["source"].endswith("part.jsonl") and e["reason"] for e in errors)
    assert errors[-1]["raw"] == "{\"text\": \"caf\ufffd au lait\"}"

    ids = [p["id"] for p in predictions]
    assert len(set(ids)) == len(ids)
    assert sorted(int(p["extra"]) for p in predictions) == list(range(120))
    assert any(i.endswith("part.parquet:0") for i in ids)

    for p in predictions:
        assert p["label"] == ["neg", "pos"][p["label_id"]]
        assert p["confidence"] == p[f"confidence_{p['decided_by']}"]
        assert (p["decided_by"] == "small") == (p["confidence_small"] >= 0.9)
        assert (p["confidence_medium"] is not None) == (p["confidence_small"] < 0.9)
        if p["confidence_medium"] is not None:
            assert (p["decided_by"] == "medium") == (p["confidence_medium"] >= 0.97)

    decided = Counter(p["decided_by"] for p in predictions)
    tiers = {t.name: t for t in stats.tiers}
    assert {n: t.decided for n, t in tiers.items() if t.decided} == dict(decided)
    assert tiers["small"].seen == len(predictions)
    assert tiers["medium"].seen == tiers["small"].escalated
    assert tiers["large"].seen == tiers["medium"].escalated
    correct = sum(p["label"] == p["input_label"] for p in predictions)
    assert stats.accuracy == pytest.approx(correct / len(predictions))
    assert json.loads((out / "routing_stats.json").read_text()) == stats.to_json()


def test_escalation_budget_in_batch_caps_every_escalating_tier(inputs, config, tmp_path):
    """In batch the budget's window is the whole run: each escalating tier sends at most the
    budgeted share of what it saw, routed by a threshold it reports, and nothing is lost."""
    out = tmp_path / "out"
    stats = run_job(["--input", str(inputs / "*.parquet"), "--output", str(out),
                     "--config", config, "--max_escalation_rate", "0.1"])
    assert len(read_predictions(out)) == 60
    small, medium, _ = stats.tiers
    assert small.seen == 60 and 0 < small.escalation_rate <= 0.1
    assert small.effective_threshold.min == small.effective_threshold.max < 0.9
    assert medium.escalation_rate <= 0.1


def test_jsonl_output_and_rerun_replaces_previous_shards(inputs, config, tmp_path):
    out = tmp_path / "out"
    run_job(["--input", str(inputs / "part.parquet"), "--output", str(out),
             "--config", config])
    assert len(list(out.glob("predictions-*.parquet"))) >= 1
    stats = run_job(["--input", str(inputs / "more.jsonl.gz"), "--output", str(out),
                     "--config", config, "--output_format", "jsonl"])
    assert not list(out.glob("predictions-*.parquet"))
    rows = read_predictions(out)
    assert len(rows) == stats.predictions == len(GOOD_ROWS) - 100
    assert rows[0]["probabilities"] and isinstance(rows[0]["extra"], int)


def test_two_tiers_from_flags_alone_with_text_pairs(tmp_path, models):
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps({"premise": f"good movie {i}", "hypothesis": "not bad",
                                        "id": f"r{i}"}) + "\n" for i in range(30)))
    out = tmp_path / "out"
    stats = run_job(["--input", str(data), "--output", str(out), "--tier1", models["small"],
                     "--tier2", models["large"], "--threshold", "0.95",
                     "--text_field", "premise", "--text_pair_field", "hypothesis",
                     "--id_field", "id"])
    rows = read_predictions(out)
    assert sorted(r["id"] for r in rows) == sorted(f"r{i}" for i in range(30))
    assert [t.name for t in stats.tiers] == ["tier1", "tier2"]
    assert stats.labelled == 0 and stats.accuracy is None


def test_unreadable_and_mistyped_parquet_go_to_dead_letters(tmp_path, models):
    folder = tmp_path / "in"
    folder.mkdir()
    pq.write_table(pa.table({"text": [1, 2, 3]}), folder / "ints.parquet")
    (folder / "broken.parquet").write_bytes(b"PAR1 this is not parquet")
    out = tmp_path / "out"
    stats = run_job(["--input", str(folder / "*.parquet"), "--output", str(out),
                     "--tier1", models["small"], "--tier2", models["large"],
                     "--threshold", "0.9"])
    errors = read_errors(out)
    assert stats.predictions == 0 and stats.errors == 3 and stats.files_unread == 1
    assert stats.failures == (
        "no record was classified: 'text' is a int, not a string in 3 of 3 records "
        "(errors-*.jsonl holds each record and its reason)",
        "1 input file(s) could not be read to the end; their 'read' errors in errors-*.jsonl "
        "name them")
    assert Counter(e["stage"] for e in errors) == {"parse": 3, "read": 1}
    read_error = next(e for e in errors if e["stage"] == "read")
    assert "broken.parquet" in read_error["reason"]
    assert all("'text' is a int" in e["reason"] for e in errors if e["stage"] == "parse")


def test_bad_config_or_input_exits_2_with_the_reason(tmp_path, models, capsys):
    out = str(tmp_path / "out")
    data = tmp_path / "x.jsonl"
    data.write_text('{"text": "good"}\n')
    assert main(["--input", str(tmp_path / "none*.jsonl"), "--output", out,
                 "--tier1", models["small"], "--tier2", models["large"],
                 "--threshold", "0.9"]) == 2
    assert "matches no file" in capsys.readouterr().err
    assert main(["--input", str(data), "--output", out, "--tier1", models["small"],
                 "--tier2", models["three_labels"], "--threshold", "0.9"]) == 2
    assert "tiers disagree on labels" in capsys.readouterr().err
    assert main(["--input", str(data), "--output", out, "--tier1", models["small"],
                 "--tier2", models["large"], "--threshold", "2"]) == 2
    assert "must be a number in [0, 1]" in capsys.readouterr().err


def test_an_unknown_flag_is_refused_naming_the_nearest_known_one(tmp_path, models, capsys):
    """Beam drops flags it does not know with a warning: `--max_escalation 0.1` ran the job
    without a budget. Real Beam options still pass (`--direct_num_workers` here)."""
    data = tmp_path / "x.jsonl"
    data.write_text('{"text": "good"}\n')
    job = ["--input", str(data), "--output", str(tmp_path / "out"), "--tier1",
           models["small"], "--tier2", models["large"], "--threshold", "0.9",
           "--runner", "FnApiRunner", "--direct_num_workers", "1"]
    assert main(job + ["--max_escalation", "0.1"]) == 2
    assert ("unknown flag(s) --max_escalation (did you mean --max_escalation_rate?)"
            in capsys.readouterr().err)
    assert not (tmp_path / "out").exists()
    assert main(job + ["--max_escalation_rate", "0.1"]) == 0


def test_a_tier_that_raises_sends_its_batches_to_dead_letters(tmp_path, models, monkeypatch):
    """Tier 2 fails on every batch holding a whole word (as a model whose embedding table is
    too small for its tokenizer did, before the launcher refused such models); the job still
    finishes."""
    score = TierModelHandler._score

    def fails_on_words(handler, batch, model):
        if handler._tier.name == "tier2" and any(set(r.text.split()) & set(WORDS)
                                                 for r in batch):
            raise IndexError("index out of range in self")
        return score(handler, batch, model)

    monkeypatch.setattr(TierModelHandler, "_score", fails_on_words)
    data = tmp_path / "in.jsonl"
    texts = ["good movie", "xq zz", "bad plot", "kk jj"] * 10  # words fail, letters do not
    data.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    out = tmp_path / "out"
    stats = run_job(["--input", str(data), "--output", str(out), "--tier1", models["small"],
                     "--tier2", models["medium"], "--threshold", "1.0"])
    errors = read_errors(out)
    assert stats.records == len(texts) == stats.predictions + stats.errors
    assert stats.errors > 0 and {e["stage"] for e in errors} == {"tier:tier2"}
    tier1, tier2 = stats.tiers
    assert tier1.seen == tier1.escalated == len(texts)  # threshold 1.0 escalates all
    assert tier2.seen == len(texts) and tier2.failed == len(errors)
    assert tier2.decided == stats.predictions and stats.unaccounted == 0
    assert all(e["source"].endswith("in.jsonl") and e["position"] >= 1 for e in errors)
    assert all([v["tier"] for v in e["tiers"]] == ["tier1"] for e in errors)
    assert all("index out of range" in e["reason"] for e in errors)
    assert {json.loads(e["raw"])["text"] for e in errors} >= {"good movie", "bad plot"}


def test_a_megabyte_text_is_truncated_not_rejected(tmp_path, models):
    data = tmp_path / "in.jsonl"
    data.write_text(json.dumps({"text": "good movie " * 100_000}) + "\n")
    out = tmp_path / "out"
    stats = run_job(["--input", str(data), "--output", str(out), "--tier1", models["small"],
                     "--tier2", models["large"], "--threshold", "0.5"])
    assert (stats.predictions, stats.errors) == (1, 0)


def test_damaged_compressed_files_become_read_errors(tmp_path, models):
    """A truncated .gz and corrupt .bz2/.xz: rows before the damage kept, one error each."""
    folder = tmp_path / "in"
    folder.mkdir()
    body = b"".join(json.dumps({"text": f"good movie {i}"}).encode() + b"\n"
                    for i in range(2000))
    (folder / "cut.jsonl.gz").write_bytes(gzip.compress(body)[:3000])
    (folder / "bad.jsonl.bz2").write_bytes(b"BZh91AY&SY" + b"\x00" * 64)
    (folder / "bad.jsonl.xz").write_bytes(b"\xfd7zXZ\x00" + b"\x01" * 64)
    out = tmp_path / "out"
    stats = run_job(["--input", str(folder / "*"), "--output", str(out),
                     "--tier1", models["small"]])
    read_errors_ = [e for e in read_errors(out) if e["stage"] == "read"]
    assert sorted(e["source"].rsplit("/", 1)[1] for e in read_errors_) == [
        "bad.jsonl.bz2", "bad.jsonl.xz", "cut.jsonl.gz"]
    assert 0 < stats.predictions < 2000
    assert stats.unaccounted == 0


def test_compressed_parquet_is_refused_before_the_job(tmp_path, models, capsys):
    pq.write_table(pa.table({"text": ["a"]}), tmp_path / "x.parquet")
    (tmp_path / "x.parquet.gz").write_bytes(gzip.compress((tmp_path / "x.parquet").read_bytes()))
    assert main(["--input", str(tmp_path / "x.parquet.gz"), "--output", str(tmp_path / "o"),
                 "--tier1", models["small"]]) == 2
    assert "Parquet compresses its pages itself" in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["--threshold", "0.9"], "either --config or"),
    (["--tier3", "x"], "--tier3 needs --tier2"),
])
def test_conflicting_flags_are_refused(tmp_path, models, config, capsys, args, message):
    data = tmp_path / "x.jsonl"
    data.write_text('{"text": "good"}\n')
    base = ["--input", str(data), "--output", str(tmp_path / "o")]
    base += ["--config", config] if "--threshold" in args else ["--tier1", models["small"]]
    assert main(base + args) == 2
    assert message in capsys.readouterr().err


def test_ids_come_from_the_id_field_by_default_and_keep_their_json_type(tmp_path, models):
    data = tmp_path / "in.jsonl"
    ids = [1, "1", True, "", None, {"nested": 1}]
    data.write_text("".join(json.dumps({"id": i, "text": "good movie"}) + "\n" for i in ids))

    def job(*extra):
        out = tmp_path / f"out{len(extra)}"
        stats = run_job(["--input", str(data), "--output", str(out), "--output_format",
                         "jsonl", "--tier1", models["small"], *extra])
        return stats, sorted((p["id"] for p in read_predictions(out)), key=json.dumps), out

    stats, given, out = job()
    assert given == sorted([1, "1", True, f"{data}:4", f"{data}:5"], key=json.dumps)
    assert stats.errors == 1
    assert read_errors(out)[0]["reason"] == "'id' is a dict; an id must be a string or a number"
    _, generated, _ = job("--id_field", "")
    assert generated == sorted((f"{data}:{n}" for n in range(1, 7)), key=json.dumps)


def test_run_reads_the_tsv_and_csv_files_train_and_calibrate_read(tmp_path, models):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "glue.tsv").write_text('sentence\tlabel\na "good" movie\t1\nbad plot\t0\n')
    (folder / "more.csv").write_text('sentence,label\n"fun, and good",pos\n')
    out = tmp_path / "out"
    stats = run_job(["--input", str(folder / "*"), "--output", str(out), "--output_format",
                     "jsonl", "--tier1", models["small"], "--text_field", "sentence",
                     "--label_field", "label"])
    assert stats.predictions == 3 and stats.errors == 0 and stats.labelled == 3
    assert sorted(p["id"].rsplit("/", 1)[1] for p in read_predictions(out)) == [
        "glue.tsv:2", "glue.tsv:3", "more.csv:2"]
