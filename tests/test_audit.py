"""The run-time audit: a hash-chosen sample of a tier's decisions also goes to the last tier,
only to measure; the statistics against a direct computation."""
import pytest
from conftest import read_predictions, run_job, write_jsonl

from models.binomial import binomial_interval
from models.routing_rule import audited
from pipeline.summary import format_summary

WORDS = "the a movie film good bad great awful not very plot actor story fun dull".split()
ROWS = [{"id": f"r{i}", "text": " ".join(WORDS[(i * 7 + j) % len(WORDS)] for j in range(1 + i % 9)),
         "label": ["neg", "pos"][(i // 3) % 2]} for i in range(300)]


def test_the_audit_sample_is_a_deterministic_share_of_ids():
    ids = [f"id-{i}" for i in range(20_000)] + list(range(20_000))
    chosen = [i for i in ids if audited("small", i, 0.05)]
    assert len(chosen) / len(ids) == pytest.approx(0.05, abs=0.005)
    assert chosen == [i for i in ids if audited("small", i, 0.05)]  # same every time
    assert not any(audited("small", i, 0.0) or audited("small", i, None) for i in ids[:100])
    assert all(audited("small", i, 1.0) for i in ids[:100])
    # another tier draws its own sample
    assert chosen != [i for i in ids if audited("medium", i, 0.05)]


def _config(tmp_path, models, audit_rate, name="cascade.yaml"):
    path = tmp_path / name
    audit = f", audit_rate: {audit_rate}" if audit_rate is not None else ""
    path.write_text(
        "label_field: label\ntiers:\n"
        f"  - {{name: small, model: {models['small']}, threshold: 0.6{audit}}}\n"
        f"  - {{name: large, model: {models['large']}}}\n")
    return path


def test_audited_records_keep_the_cascade_answer_and_the_statistics_match(tmp_path, models):
    data = write_jsonl(tmp_path / "in.jsonl", ROWS)
    plain = run_job(["--input", str(data), "--output", str(tmp_path / "plain"),
                     "--config", str(_config(tmp_path, models, None))])
    stats = run_job(["--input", str(data), "--output", str(tmp_path / "audited"),
                     "--config", str(_config(tmp_path, models, 0.5, "audited.yaml"))])
    (tmp_path / "alone.yaml").write_text(
        f"label_field: label\ntiers:\n  - {{name: large, model: {models['large']}}}\n")
    alone = run_job(["--input", str(data), "--output", str(tmp_path / "alone"),
                     "--config", str(tmp_path / "alone.yaml")])
    predictions = {r["id"]: r for r in read_predictions(tmp_path / "audited")}
    assert predictions == {r["id"]: r for r in read_predictions(tmp_path / "plain")}
    assert alone.tiers[0].decided == len(ROWS)
    last_tier = {r["id"]: r["label"] for r in read_predictions(tmp_path / "alone")}
    gold = {r["id"]: r["label"] for r in ROWS}

    sample = [i for i, r in predictions.items()
              if r["decided_by"] == "small" and audited("small", i, 0.5)]
    assert 0 < len(sample) < len(ROWS)
    agreed = sum(predictions[i]["label"] == last_tier[i] for i in sample)
    audit = stats.tiers[0].audit
    assert (audit.audited, audit.agreed, audit.failed) == (len(sample), agreed, 0)
    assert audit.agreement_interval_95 == pytest.approx(binomial_interval(agreed, len(sample)))
    assert audit.drop_bound_95 == pytest.approx(1 - audit.agreement_interval_95[0])
    assert audit.accuracy == pytest.approx(
        sum(predictions[i]["label"] == gold[i] for i in sample) / len(sample))
    assert audit.last_tier_accuracy == pytest.approx(
        sum(last_tier[i] == gold[i] for i in sample) / len(sample))
    assert stats.tiers[1].audit is None
    # the audit's copies are not predictions, errors or visits of the last tier
    assert stats.predictions == plain.predictions == len(ROWS)
    assert stats.tiers[1].seen == plain.tiers[1].seen
    whole = stats.audit
    share = stats.tiers[0].decided / len(ROWS)
    assert whole.disagreement == pytest.approx(share * (1 - agreed / len(sample)))
    assert whole.drop_bound_95 >= whole.disagreement
    assert plain.audit is None and plain.tiers[0].audit is None
    said = format_summary(stats, "out")
    assert (f"audit: the cascade disagrees with the last tier on {whole.disagreement:.2%} "
            f"of its decisions (from {whole.audited} audited); the accuracy drop against "
            f"the last tier alone is at most {100 * whole.drop_bound_95:.2f} points") in said
    assert "estimate" not in said.split("audit: ")[1].splitlines()[0]


def test_audit_rate_is_refused_on_the_last_tier(tmp_path, models, capsys):
    from pipeline.run import main
    path = tmp_path / "bad.yaml"
    path.write_text(f"tiers:\n  - {{name: small, model: {models['small']}, threshold: 0.6}}\n"
                    f"  - {{name: large, model: {models['large']}, audit_rate: 0.1}}\n")
    data = write_jsonl(tmp_path / "in.jsonl", ROWS[:3])
    assert main(["--input", str(data), "--output", str(tmp_path / "o"),
                 "--config", str(path)]) == 2
    assert "audit_rate" in capsys.readouterr().err
