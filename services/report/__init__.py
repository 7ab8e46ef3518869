"""The story of a run: monitor, model, charts, HTML report."""
