"""The four beta schedules side by side: alpha-bar and the information-bottleneck curve C_t."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from diffdrl.diffusion.schedule import (
    SCHEDULES,
    ScheduleConfig,
    alpha_bar_of,
    information_bottleneck_curve,
    make_betas,
)
from diffdrl.viz.grid import panels, save_figure


def save_schedule_plot(path: str | Path, timesteps: int = 1000) -> Path:
    figure, (left, right) = panels(2, 2, 5, 3.6)
    for name in SCHEDULES:
        betas = make_betas(ScheduleConfig(name=name, timesteps=timesteps))
        left.plot(alpha_bar_of(betas), label=name)
        right.semilogy(np.arange(1, timesteps), information_bottleneck_curve(betas), label=name)
    left.set(title=r"$\bar\alpha_t$", xlabel="t")
    right.set(
        title=r"information bottleneck $C_t$ = KL(q(x$_{t-1}$|x$_t$,x$_0$) || N(0,I)) per dim", xlabel="t"
    )
    right.title.set_fontsize(9)
    for ax in (left, right):
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    return save_figure(figure, path)
