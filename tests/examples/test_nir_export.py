"""examples/nir_export.py trains with STDP, exports to NIR and agrees with Norse / from_nir."""

import importlib.util
import re

import pytest

pytest.importorskip("nir")
pytest.importorskip("sklearn")


def test_nir_export_quick_run(quick_example, tmp_path):
    out = quick_example("nir_export.py")
    assert "CHECK PASSED" in out, out
    assert (tmp_path / "digits_lif.nir").is_file()
    rows = re.findall(r"(Norse|pysnn\.from_nir) vs pysnn: (\d+)/(\d+) cells agree", out)
    assert "pysnn.from_nir" in {name for name, _, _ in rows}, out
    for _, agree, cells in rows:
        assert int(agree) == int(cells) > 0
    spikes = re.search(r"spikes (\d+) vs (\d+)", out)
    assert spikes is not None and int(spikes.group(2)) > 0
    if importlib.util.find_spec("norse") is None:
        assert "Norse is not installed" in out
    else:
        assert "Norse vs pysnn" in out
