"""The report's three charts (losses, loss by t bucket, FID against steps), and PNGs as data: URIs."""

import base64
import io
from pathlib import Path


from diffusion_lab.plotting import error_bars, figure
from diffusion_lab.report.runs import Run
from diffusion_lab.report.tables import differing_choices

LOSS_LABEL = "loss on the prediction target (ε, x_0 or v)"


def styles(runs: list[Run]) -> dict[str, tuple[str, str]]:
    """Per run name (colour, line style): colour by the first differing choice, style by the second."""
    choices = differing_choices(runs) + [None, None]
    colour_by, style_by = choices[0], choices[1]
    colour_values = list(dict.fromkeys(r.choices.get(colour_by) for r in runs))
    style_values = list(dict.fromkeys(r.choices.get(style_by) for r in runs))
    palette = [f"C{i}" for i in range(10)]
    dashes = ["-", "--", ":", "-."]
    return {r.name: (palette[colour_values.index(r.choices.get(colour_by)) % 10],
                     dashes[style_values.index(r.choices.get(style_by)) % 4]) for r in runs}


def label(run: Run, runs: list[Run]) -> str:
    """A run's legend entry: its values of the differing choices, else its name."""
    return ", ".join(f"{run.choices.get(c)}" for c in differing_choices(runs)) or run.name


def smooth(values: list[float], window: int) -> list[float]:
    """Trailing mean over `window` points."""
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v - (values[i - window] if i >= window else 0.0)
        out.append(total / min(i + 1, window))
    return out


def log_scale_and_legend(ax) -> None:
    """Log scale where the values span more than a factor of 3, and a legend where there are lines."""
    values = [y for line in ax.lines for y in line.get_ydata() if y > 0]
    if values and max(values) > 3 * min(values):
        ax.set_yscale("log")
    if ax.lines:
        ax.legend(fontsize=7)


def chart(runs: list[Run], draw, width: float = 6, panels: int = 1):
    """A figure 4 inches high of `panels` axes side by side: `draw(*axes, runs, line_styles)` draws the lines,
    then each axes gets `log_scale_and_legend`."""
    fig = figure(width, 4)
    axes = fig.subplots(1, panels, squeeze=False)[0]
    draw(*axes, runs, styles(runs))
    for ax in axes:
        log_scale_and_legend(ax)
    return fig


def loss_figure(runs: list[Run]):
    """Training loss (smoothed) and validation loss against optimizer step, side by side."""
    return chart(runs, draw_losses, width=11, panels=2)


def bucket_figure(runs: list[Run]):
    """The final validation loss in each tenth of T."""
    return chart(runs, draw_bucket_losses)


def fid_figure(runs: list[Run]):
    """FID against sampling steps, a line per run and sampler (a marker per sampler)."""
    return chart(runs, draw_fids)


def draw_losses(train_ax, val_ax, runs: list[Run], line_styles: dict) -> None:
    """Each run's training loss (smoothed) on `train_ax`, its validation loss on `val_ax`."""
    for r in runs:
        colour, dash = line_styles[r.name]
        if r.train_loss:
            steps, losses = zip(*r.train_loss)
            train_ax.plot(steps, smooth(list(losses), max(1, len(losses) // 50)), color=colour, ls=dash,
                          label=label(r, runs))
        if r.val_loss:
            val_ax.plot(*zip(*r.val_loss), color=colour, ls=dash, marker="o", ms=3, label=label(r, runs))
    train_ax.set(title="training loss (smoothed)", xlabel="optimizer step", ylabel=LOSS_LABEL)
    val_ax.set(title="validation loss (EMA weights, fixed t and noise)", xlabel="optimizer step")


def draw_bucket_losses(ax, runs: list[Run], line_styles: dict) -> None:
    """Each run's final validation loss per t bucket (from its summary)."""
    for r in runs:
        buckets = r.summary.get("val_loss_by_t_bucket", {})
        if buckets:
            keys = sorted(buckets, key=lambda k: int(k[1:]))
            colour, dash = line_styles[r.name]
            ax.plot([int(k[1:]) for k in keys], [buckets[k] for k in keys], color=colour, ls=dash, marker="o",
                    ms=3, label=label(r, runs))
    ax.set(title="final validation loss by t bucket", xlabel="bucket (tenths of T, small t first)",
           ylabel=LOSS_LABEL)


def draw_fids(ax, runs: list[Run], line_styles: dict) -> None:
    """Each run's FID against steps, a line per sampler, with 95 % intervals as error bars; FID's
    real-against-real floor at each n (dotted)."""
    markers, floors = {}, set()
    for r in runs:
        colour, dash = line_styles[r.name]
        for sampler in sorted({s for s, _ in r.quality}):
            rows = sorted((k, q) for (s, k), q in r.quality.items() if s == sampler)
            fids = [q["fid"] for _, q in rows]
            marker = markers.setdefault(sampler, "os^vD"[len(markers) % 5])
            ax.errorbar([k for k, _ in rows], fids, yerr=error_bars(fids, [q.get("fid_ci") for _, q in rows]),
                        color=colour, ls=dash, marker=marker, capsize=3,
                        label=f"{label(r, runs)} · {sampler}")
            floors |= {(q["n"], q["floor_fid"]) for _, q in rows if q.get("floor_fid") is not None}
    for n, floor in sorted(floors):
        ax.axhline(floor, color="grey", ls=":", lw=1, label=f"real vs real, n = {n}")
    ax.set(title="FID against sampling steps (data set's own feature space; 95 % intervals)",
           xlabel="sampling steps", ylabel="FID", xscale="log")


CHARTS = (("loss curves", loss_figure), ("t-bucket losses", bucket_figure), ("FID against steps", fid_figure))


def png_data(fig_or_path) -> str:
    """A data: URI of a PNG, from a matplotlib Figure or a file."""
    if isinstance(fig_or_path, Path):
        data = fig_or_path.read_bytes()
    else:
        buffer = io.BytesIO()
        fig_or_path.savefig(buffer, format="png")
        data = buffer.getvalue()
    return "data:image/png;base64," + base64.b64encode(data).decode()
