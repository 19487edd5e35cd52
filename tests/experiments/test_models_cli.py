"""``mixmim-bench models`` prints the official sizes."""

from experiments.cli import main


def test_models_table_prints_official_numbers(capsys):
    assert main(["models", "mixmim_base", "mixmim_large"]) == 0
    out = capsys.readouterr().out
    assert "88,344,352" in out and "16.35" in out and "197,396,668" in out and "35.86" in out
