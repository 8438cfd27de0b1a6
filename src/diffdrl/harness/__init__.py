"""Comparison harness: run a grid of methods x datasets x seeds (``sweep``: one cell after another
in this process; ``submit``: each cell a SLURM job through submitit, ``slurm`` its options and
``cell_job`` what runs on the node) and summarise the scores as mean ± std over seeds in Markdown,
CSV and a bar chart (``table``)."""
