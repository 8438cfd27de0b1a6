"""The four beta schedules side by side: alpha-bar and the information-bottleneck curve C_t."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from diffdrl.diffusion.schedule import SCHEDULES, ScheduleConfig, information_bottleneck_curve, make_betas


def save_schedule_plot(path: str | Path, timesteps: int = 1000) -> Path:
    figure = Figure(figsize=(10, 3.6), dpi=100)
    FigureCanvasAgg(figure)
    left, right = figure.subplots(1, 2)
    for name in SCHEDULES:
        betas = make_betas(ScheduleConfig(name=name, timesteps=timesteps))
        left.plot(np.cumprod(1 - betas), label=name)
        right.semilogy(np.arange(1, timesteps), information_bottleneck_curve(betas), label=name)
    left.set(title=r"$\bar\alpha_t$", xlabel="t")
    right.set(
        title=r"information bottleneck $C_t$ = KL(q(x$_{t-1}$|x$_t$,x$_0$) || N(0,I)) per dim", xlabel="t"
    )
    right.title.set_fontsize(9)
    for ax in (left, right):
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, bbox_inches="tight")
    return path
