"""Every recorded provider stream in the conformance corpus, decoded with the adapter's
parser and the wire decoder directly (no server): fed whole, in random small reads and one
byte at a time, it must decode to exactly what the manifest says."""

from __future__ import annotations

import pytest

from streamcoord.errors import ConnectionLost, ServerError
from tests.unit.adapters._corpus import body_of, check_outcome, decode, entry_params

# (lo, hi) read sizes and seeds: whole, random 1..17-byte reads, single bytes.
SPLITS = [(None, 0), ((1, 17), 1), ((1, 17), 2), ((1, 17), 3), ((1, 1), 0)]


@pytest.mark.parametrize("split,seed", SPLITS, ids=["whole", "r17-1", "r17-2", "r17-3", "bytes"])
@pytest.mark.parametrize("entry", entry_params())
def test_corpus_file_decodes_to_manifest(entry, split, seed):
    data = body_of(entry)
    if entry.get("error"):
        with pytest.raises(ServerError) as info:
            decode(entry["provider"], data, split, seed)
        error = info.value
        assert error.status == 529
        assert error.provider == entry["provider"]
        assert error.body["error"] == entry["error"]
        assert error.body["type"] == "error"
        return
    check_outcome(entry, decode(entry["provider"], data, split, seed))


@pytest.mark.parametrize("entry", entry_params(errors=False))
def test_half_a_corpus_file_is_never_taken_for_complete(entry):
    """Cut after half of its events (lines for NDJSON), before the provider's end signal,
    every file must fail with ConnectionLost from finish(), not pass for a whole answer."""
    data = body_of(entry).replace(b"\r\n", b"\n")
    sep = b"\n" if entry["format"] == "ndjson" else b"\n\n"
    units = data.rstrip(b"\n").split(sep)
    cut = sep.join(units[: len(units) // 2]) + sep
    with pytest.raises(ConnectionLost):
        decode(entry["provider"], cut)
