"""`calibrate --request_labels N`, then `--labelled_requests FILE`: the request file in the
input's format round-trips through the readers, and the second calibrate's promise rests
on the answers (pipeline/label_requests.py)."""
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import labelled_rows, write_jsonl

from models import model_cache
from models.label_requests import RequestDesign, new_design, record_key
from pipeline.calibrate import main as calibrate_main
from pipeline.config import load_config
from pipeline.label_requests import design_path, read_answers, requests_file, write_requests
from transforms.parsing import RecordFields
from transforms.records import Record

WORDS = "good bad movie plot fun dull great awful"
LABELS = ("neg", "pos")


def write_rows(path, rows: list[dict]):
    if path.suffix == ".parquet":
        pq.write_table(pa.Table.from_pylist(rows), path)
    elif path.suffix == ".tsv":
        columns = list(rows[0])
        path.write_text("\t".join(columns) + "\n" + "".join(
            "\t".join(str(r[c]) for c in columns) + "\n" for r in rows))
    else:
        write_jsonl(path, rows)
    return path


def answer(path, truth: dict[str, str], skip: int = 0):
    """Fills the label column of a request file from `truth` (by text), leaving the last
    `skip` rows unanswered."""
    from models.datasets import read_rows
    rows = read_rows(str(path))
    for k, row in enumerate(rows):
        row["label"] = truth[row["text"]] if k < len(rows) - skip else ""
    write_rows(path, rows)
    return rows


@pytest.mark.parametrize("extension", [".jsonl", ".tsv", ".parquet"])
def test_a_request_file_round_trips_through_the_readers(tmp_path, extension):
    fields = RecordFields("text", "id", "label", passthrough_fields=("source",))
    # quotes, a backslash and a trailing space must come back as they were
    records = [Record(f"r{i}", f'text "number" {i}, 1\\/2 ', passthrough={"source": "web"})
               for i in range(30)]
    keys = [record_key(r.text) for r in records]
    entry = [1.0 - i / 100 if i % 3 else float("-inf") for i in range(30)]
    import numpy as np
    design = new_design(keys, np.array(entry), 6, seed=1)
    path = requests_file(str(tmp_path / "tuned.yaml"), f"in/*{extension}")
    assert path.endswith(f"tuned-requests{extension}")
    assert write_requests(path, records, None, design, fields) == 6
    rows = answer(tmp_path / path.split("/")[-1], {r.text: "pos" for r in records}, skip=1)
    assert {"id", "text", "source", "label", "request_band", "request_inclusion"} <= set(rows[0])
    answers = read_answers([path], fields, LABELS)
    assert answers.design == design and answers.unanswered == 1
    assert len(answers.labels) == 5 and set(answers.labels.values()) == {1}
    assert set(answers.labels) <= {k for b in design.bands for k in b.keys[:b.requested]}


def test_requests_without_their_design_or_from_two_designs_are_refused(tmp_path):
    fields = RecordFields("text", None, "label")
    records = [Record(i, f"t{i}") for i in range(20)]
    keys = [record_key(r.text) for r in records]
    import numpy as np
    paths = []
    for seed in (1, 2):
        path = str(tmp_path / f"r{seed}.jsonl")
        write_requests(path, records, None, new_design(keys, np.linspace(1, 0.5, 20), 4, seed),
                       fields)
        paths.append(path)
    with pytest.raises(ValueError, match="another request design"):
        read_answers(paths, fields, LABELS)
    (tmp_path / "r1.jsonl.design.json").unlink()
    with pytest.raises(ValueError, match="design file calibrate wrote"):
        read_answers(paths[:1], fields, LABELS)


@pytest.fixture()
def cascade(tmp_path, models, monkeypatch):
    monkeypatch.setenv(model_cache.CACHE_ENV, str(tmp_path / "cache"))
    config = tmp_path / "cascade.yaml"
    config.write_text(yaml.safe_dump({"tiers": [
        {"name": "small", "model": models["small"], "threshold": 0.9},
        {"name": "large", "model": models["large"]}]}))
    return config


def calibrate(tmp_path, config, *flags) -> int:
    dev = write_jsonl(tmp_path / "dev.jsonl", labelled_rows(200, WORDS, 5, 6, 1))
    return calibrate_main(["--config", str(config), "--dev", str(dev), "--output",
                           str(tmp_path / "tuned.yaml"), "--batch_sizes", "4", "--repeats", "1",
                           "--max_accuracy_drop", "10", *flags])


def unlabelled_input(tmp_path):
    """300 texts without labels as the job's input, and their labels (the truth a person
    labelling the requests would give)."""
    rows = labelled_rows(300, WORDS, 7, 8, 2)
    data = write_jsonl(tmp_path / "input.jsonl",
                       [{"id": i, "text": r["text"]} for i, r in enumerate(rows)])
    return {r["text"]: r["label"] for r in rows}, data


def test_calibrate_requests_labels_and_then_bounds_the_drop_on_them(tmp_path, cascade, capsys):
    truth, data = unlabelled_input(tmp_path)
    assert calibrate(tmp_path, cascade, "--unlabelled", str(data), "--request_labels", "30") == 0
    requests = tmp_path / "tuned-requests.jsonl"
    asked = [json.loads(line) for line in requests.read_text().splitlines()]
    assert 0 < len(asked) <= 30 and all(r["label"] == "" for r in asked)
    design = RequestDesign.from_json((tmp_path / design_path(requests.name)).read_text())
    assert design.requested == 30 or len(asked) == sum(len(b.keys) for b in design.bands)
    assert "--labelled_requests" in capsys.readouterr().err
    assert "## Label requests" in (tmp_path / "tuned-report" / "report.md").read_text()
    before = load_config(str(tmp_path / "tuned.yaml")).guarantee

    answer(requests, truth)
    assert calibrate(tmp_path, cascade, "--unlabelled", str(data),
                     "--labelled_requests", str(requests)) == 0
    after = load_config(str(tmp_path / "tuned.yaml")).guarantee
    assert "requested labels" in after.evidence and "on these records" in after.evidence
    assert "requested labels" not in before.evidence
    report = (tmp_path / "tuned-report" / "report.md").read_text()
    assert "requested labels" in report


def test_requests_need_the_unlabelled_sample(tmp_path, cascade, capsys):
    with pytest.raises(SystemExit):
        calibrate(tmp_path, cascade, "--request_labels", "10")
    assert "add --unlabelled" in capsys.readouterr().err


def test_a_second_round_deepens_the_same_design_and_both_rounds_count(tmp_path, cascade):
    truth, data = unlabelled_input(tmp_path)
    assert calibrate(tmp_path, cascade, "--unlabelled", str(data), "--request_labels", "2") == 0
    first = tmp_path / "round1.jsonl"
    (tmp_path / "tuned-requests.jsonl").rename(first)
    (tmp_path / "tuned-requests.jsonl.design.json").rename(tmp_path / design_path(first.name))
    answer(first, truth)
    assert calibrate(tmp_path, cascade, "--unlabelled", str(data), "--labelled_requests",
                     str(first), "--request_labels", "1") == 0
    second = tmp_path / "tuned-requests.jsonl"
    one = RequestDesign.from_json((tmp_path / design_path(first.name)).read_text())
    two = RequestDesign.from_json((tmp_path / design_path(second.name)).read_text())
    assert [b.keys for b in two.bands] == [b.keys for b in one.bands]
    assert one.requested < sum(len(b.keys) for b in one.bands)  # something left to ask
    assert two.requested == one.requested + 1
    asked_again = {json.loads(line)["text"] for line in second.read_text().splitlines()}
    assert asked_again and not asked_again & {
        json.loads(line)["text"] for line in first.read_text().splitlines()}
    answer(second, truth)
    assert calibrate(tmp_path, cascade, "--unlabelled", str(data), "--labelled_requests",
                     str(first), "--labelled_requests", str(second)) == 0
    evidence = load_config(str(tmp_path / "tuned.yaml")).guarantee.evidence
    assert "requested labels" in evidence


def test_a_budget_the_data_cannot_support_yet_still_gets_its_requests(tmp_path, cascade,
                                                                        capsys):
    """Refused without labels is when labels are wanted most: the requests are written."""
    _, data = unlabelled_input(tmp_path)
    dev = write_jsonl(tmp_path / "dev.jsonl", labelled_rows(200, WORDS, 5, 6, 1))
    assert calibrate_main(["--config", str(cascade), "--dev", str(dev), "--output",
                           str(tmp_path / "tuned.yaml"), "--batch_sizes", "4", "--repeats",
                           "1", "--max_accuracy_drop", "0.01", "--unlabelled", str(data),
                           "--request_labels", "5"]) == 2
    err = capsys.readouterr().err
    assert "supports no accuracy-drop budget" in err and "## Label requests" in err
    design = RequestDesign.from_json((tmp_path / "tuned-requests.jsonl.design.json").read_text())
    disagreements = sum(len(b.keys) for b in design.bands)
    written = (tmp_path / "tuned-requests.jsonl").read_text().count("\n")
    assert written == design.requested == min(5, disagreements) > 0
    assert not (tmp_path / "tuned.yaml").exists()
