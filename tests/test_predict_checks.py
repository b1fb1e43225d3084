"""`predict` (the Python API and the command) refuses the texts `run` dead-letters, for the
same reasons, through the same check (models/text_checks.py): a text the job would not
classify is not answered in this process either."""
import subprocess
import sys

import pytest
from conftest import ROOT

from pipeline.predict import Predictor, RefusedTexts, main
from transforms.parsing import InvalidRecord, RecordFields, to_record

BAD_TEXTS = {
    "": "'text' is empty",
    " \t\n": "'text' is empty",
    "\u200b\u200b": "'text' is empty",  # zero-width spaces
    "\x01\x02 \u2028\ufeff": "'text' is empty",
    "caf\udcff": "'text' holds an unpaired UTF-16 surrogate \\\\udcff",  # non-UTF-8 argv byte
    "half a pair \ud800": "'text' holds an unpaired UTF-16 surrogate \\\\ud800",
    None: "'text' is null",
    42: "'text' is a int, not a string",
    b"bytes": "'text' is a bytes, not a string",
}




def _run_reason(text) -> str:
    with pytest.raises(InvalidRecord) as refused:
        to_record({"text": text}, RecordFields(), "f.jsonl", 1)
    return str(refused.value)


@pytest.mark.parametrize("text, reason", BAD_TEXTS.items())
def test_predict_refuses_what_run_dead_letters_for_the_same_reason(two_tier_config, text, reason):
    predictor = Predictor.from_config(two_tier_config)
    with pytest.raises(RefusedTexts, match=reason) as refused:
        predictor.predict(["a good film", text])
    assert refused.value.refusals == {1: _run_reason(text)}
    assert isinstance(refused.value, ValueError)


def test_every_refused_text_is_named_with_its_index_and_pairs_are_checked_too(two_tier_config):
    predictor = Predictor.from_config(two_tier_config)
    with pytest.raises(RefusedTexts) as refused:
        predictor.predict(["", "fine", "\u200b"])
    assert list(refused.value.refusals) == [0, 2]
    assert "texts[0]: 'text' is empty" in str(refused.value)
    assert "texts[2]: 'text' is empty" in str(refused.value)
    with pytest.raises(RefusedTexts, match=r"text_pairs\[1\]: 'text_pair' is empty"):
        predictor.predict(["a", "b"], ["c", " "])


def test_the_command_answers_the_good_texts_and_refuses_the_rest_with_status_2(two_tier_config,
                                                                               capsys):
    assert main(["--config", two_tier_config, "good movie", "", "caf\udcff", "dull actor"]) == 2
    captured = capsys.readouterr()
    assert "'good movie': " in captured.out and "'dull actor': " in captured.out
    refused = [line for line in captured.err.splitlines() if "refused" in line]
    assert refused == [
        "beam-cascade predict: refused text 2 '': 'text' is empty (nothing but spaces, "
        "control or invisible characters)",
        f"beam-cascade predict: refused text 3 'caf\\udcff': {_run_reason('caf' + chr(0xdcff))}"]
    assert main(["--config", two_tier_config, "good movie"]) == 0


def test_a_command_line_argument_that_is_not_utf8_is_refused_not_a_traceback(two_tier_config):
    """Python hands bytes that are not UTF-8 to the program as surrogate escapes
    (os.fsdecode); the tokenizer raised a TypeError on them."""
    done = subprocess.run([sys.executable.encode(), b"-m", b"pipeline.cli", b"predict",
                           b"--config", two_tier_config.encode(), b"caf\xff", b"good movie"],
                          cwd=ROOT, capture_output=True, timeout=300)
    err = done.stderr.decode("utf-8", "replace")
    assert done.returncode == 2, err
    assert "Traceback" not in err
    assert "refused text 1 'caf\\udcff': 'text' holds an unpaired UTF-16 surrogate" in err
    assert b"'good movie': " in done.stdout
