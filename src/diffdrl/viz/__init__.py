"""Pictures of what the units mean: interchange grids, traversals, attention maps, schedule plots, report."""
