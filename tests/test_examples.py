"""The example scripts run (with small settings) and say what they claim."""

import runpy
from pathlib import Path

EXAMPLES = Path(__file__).parent.parent / "examples"


def test_synthetic_example(capsys):
    runpy.run_path(str(EXAMPLES / "synthetic_ntps.py"), run_name="__main__")
    rows = {line.split()[0]: line.split()[1:] for line in capsys.readouterr().out.splitlines()[1:]}
    assert float(rows["predictable"][1]) > 0.9 > 0.1 > float(rows["unpredictable"][1])
    assert float(rows["unpredictable"][2]) > 0.9  # a probe on all features still finds the class
