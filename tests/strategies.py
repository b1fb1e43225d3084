"""Hypothesis strategies for input lines: records, any JSON, random bytes, hostile cases."""
import json

from hypothesis import strategies as st

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.text(max_size=5), children, max_size=3), max_leaves=8)
rows = st.dictionaries(st.sampled_from(["text", "id", "label", "extra", "other"]),
                       json_values, max_size=5)
hostile = st.sampled_from([b"[" * 100_000, b'{"text": "a", "n": ' + b"9" * 5000 + b"}",
                           b'{"text": "a", "label": "\xc2\xb2"}', b"\xff\xfe{}",
                           b'{"text": "a\\ud800"}', b"NaN", b'{"text": "\x00"}'])
lines = st.one_of(st.binary(max_size=200), rows.map(lambda r: json.dumps(r).encode()), hostile)
# The lines of a JSON Lines file: newlines inside a line removed, blank lines included.
file_lines = st.lists(lines.map(lambda line: line.replace(b"\n", b""))
                      | st.sampled_from([b"", b"  ", b"\r"]), max_size=30)
