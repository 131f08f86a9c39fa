"""examples/llm_scoring.py runs, agrees with the materialised logits, and needs less
memory than they do."""

import importlib.util
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "llm_scoring.py"


def test_llm_scoring_example(capsys):
    spec = importlib.util.spec_from_file_location("llm_scoring", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        result = module.main(["--batch", "2", "--seq-len", "300", "--hidden", "32",
                              "--vocab", "50000"])
    finally:
        sys.modules.pop(spec.name, None)
    out = capsys.readouterr().out
    assert "perplexity" in out and "linear_cross_entropy" in out
    assert result["max_difference"] < 1e-4
    # 600 x 50000 float32 logits are 114 MiB; one chunk of them is 64 MiB at most.
    assert result["peak_materialized_mib"] > 110
    assert result["peak_chunked_mib"] < 0.7 * result["peak_materialized_mib"]
    # A near-uniform random model over 50000 classes.
    assert 10000 < result["perplexity"] < 500000
