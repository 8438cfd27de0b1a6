"""Comparison harness: run a grid of methods x datasets x seeds (``sweep``) and summarise the
scores as mean ± std over seeds in Markdown, CSV and a bar chart (``table``)."""
